"""What the web page asks of the library, answered with the model loaded once (no HTTP here).

:class:`Engine` holds the loaded model, the open store (read only: nothing here writes to the collection), the
collection's files by id, and the pictures of recent queries (for the frame strip and the heatmaps). Every
method is synchronous and takes the engine's lock around the model and the store; the app calls them in a
worker thread.

Uploads are decoded here with the library's own readers (:func:`soundlib.images.load_image`,
:func:`soundlib.images.video_frames`) after the caps of :class:`~soundlib.serve.config.ServeConfig`; a refused
upload is an :class:`UploadError` whose text is the line the CLI prints for the same file (``name: reason``).
"""

from __future__ import annotations

import io
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundlib.errors import ImageError, SoundlibError, VideoError
from soundlib.serve.config import ServeConfig

_FILE_ID = re.compile(r"^[0-9a-f]{24}$")
_WINDOW_ID = re.compile(r"^[0-9a-f]{24}:[0-9]{1,6}$")
#: Seconds between re-reads of the collection's file list when an unknown id is asked for.
_REFRESH_EVERY = 5.0
#: What the page says after a lack (the CLI's hint names a command; the page's reader has a library, not a shell).
PAGE_LACK_HINT = "your library may lack it"


class UploadError(SoundlibError):
    """A refused upload: ``status`` is the HTTP answer (413 too large, 415 not a picture or video, 422 bad data)."""

    def __init__(self, reason: str, path: str | None = None, status: int = 422) -> None:
        super().__init__(reason, path)
        self.status = status


class NotFound(SoundlibError):
    """An id that is not in the collection (or a query that is no longer kept)."""


@dataclass(frozen=True)
class LibraryFile:
    """A file of the collection as the page may see it: its id, where it is, and what the store says of it."""

    file_id: str
    path: Path
    rel: str
    category: str
    sha256: str
    duration: float

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file_id, "name": self.path.name, "path": self.rel, "category": self.category,
                "duration": round(self.duration, 3)}


@dataclass
class _Query:
    """A recent upload: its pictures at the model's size (uint8, ``(S, S, 3)``) and their labels."""

    pictures: list[np.ndarray]
    labels: list[tuple[str, float]]
    created: float = field(default_factory=time.monotonic)


def _upload_name(name: str) -> str:
    """The file name of an upload without any folder part or control character (never used as a path)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(c for c in base if c.isprintable()).strip() or "upload"
    return base[:200]


class Engine:
    """The model, the store and the recent queries behind ``soundlib serve``.

    Args:
        loaded: a :class:`soundlib.models.LoadedModel` (the collection's model).
        store: the open :class:`soundlib.store.SoundStore`.
        cfg: the server's settings.

    Raises:
        ModelMismatchError / StoreError: the model is not the collection's, or there is no collection.
    """

    def __init__(self, loaded: Any, store: Any, cfg: ServeConfig | None = None) -> None:
        self.loaded = loaded
        self.store = store
        self.cfg = cfg or ServeConfig()
        self.lock = threading.RLock()
        store.check_model(loaded)
        self._files: dict[str, LibraryFile] = {}
        self._read_at = 0.0
        self._queries: OrderedDict[str, _Query] = OrderedDict()
        self._refresh()

    # --- the collection ---------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        with self.lock:
            recs = self.store.file_records()
            self._files = {fid: LibraryFile(fid, Path(r.root) / r.rel if r.root else Path(r.rel), r.rel, r.category,
                                            r.sha256, r.duration) for fid, r in recs.items()}
            self._read_at = time.monotonic()

    def file(self, file_id: str) -> LibraryFile:
        """The library file with this id (the file list is read again, at most every few seconds, for an id it
        does not know: an ingest may have added it).

        Raises:
            NotFound: not a file id of this collection.
        """
        if not _FILE_ID.match(file_id or ""):
            raise NotFound("not a file id")
        if file_id not in self._files and time.monotonic() - self._read_at > _REFRESH_EVERY:
            self._refresh()
        try:
            return self._files[file_id]
        except KeyError:
            raise NotFound(f"no file with id {file_id} in the collection") from None

    @property
    def files(self) -> dict[str, LibraryFile]:
        """The collection's complete files by id, as last read."""
        return dict(self._files)

    def info(self) -> dict[str, Any]:
        """Collection, model (``adapted``: what ``soundlib adapt`` taught it, else ``None``), counts, categories, the
        model's concepts (the words the "it is" and words fields offer; empty for a model without them) and the
        upload limits (for the page's header and filters)."""
        from soundlib.explain import explain_method

        with self.lock:
            stats = self.store.stats()
        c = self.cfg
        adapted = (self.loaded.info.training or {}).get("adapted")  # `soundlib adapt`: this library's own ear
        return {"collection": stats["collection"], "model": stats["model"], "files": stats["files"],
                "adapted": {"named_files": int(adapted.get("named_files", 0)),
                            "concepts": len(adapted.get("concepts") or {})} if isinstance(adapted, dict) else None,
                "windows": stats["windows"], "categories": stats["categories"],
                "explain": explain_method(self.loaded.model),
                "concepts": list(getattr(self.loaded.model.config, "concepts", None) or ())
                if getattr(self.loaded.model, "bridge", None) is not None else [],
                "limits": {"upload_bytes": c.max_upload_bytes, "files": c.max_files, "pixels": c.max_pixels,
                           "video_seconds": c.max_video_seconds, "frames": c.max_frames, "k": c.max_k},
                "default_k": c.default_k}

    # --- rankings ---------------------------------------------------------------------------------------------

    def _rows(self, hits: list[Any], fits: Any = None) -> list[dict[str, Any]]:
        rows = []
        for i, h in enumerate(hits):
            fid = str(h.metadata.get("file_id", ""))
            f = self._files.get(fid)
            rows.append({"file": fid, "window": h.id, "name": Path(h.path).name,
                         "path": f.rel if f else str(h.metadata.get("path", "")), "category": h.category,
                         "start": round(h.start, 3), "duration": round(float(h.metadata.get("duration", 0.0)), 3),
                         "distance": round(h.distance, 6), "score": round(1.0 - h.distance ** 2 / 2.0, 4),
                         "named": str(h.metadata.get("named_concepts", ""))})
            if fits is not None:  # the concepts of what the ranking looked for this file is named or heard as
                rows[-1]["fits"] = list(fits[i])
        return rows

    def _check_k(self, k: int) -> int:
        if not 1 <= int(k) <= self.cfg.max_k:
            raise UploadError(f"k must be between 1 and {self.cfg.max_k}, got {k}", status=422)
        return int(k)

    def query_uploads(self, uploads: list[tuple[str, Path]], k: int, categories: list[str] | None = None,
                      as_words: str | None = None) -> dict[str, Any]:
        """Rank the library for uploaded pictures and videos (one ranking, plus one per picture or frame).

        Args:
            uploads: ``(name as uploaded, saved file)`` pairs.
            k: results per ranking.
            categories: only these categories.
            as_words: what the user says the pictures are (``"horse"``): the concepts these words name replace
                what the pictures were read as (:mod:`soundlib.told_as`).

        Returns:
            ``{"query", "inputs", "k", "categories", "frames": [{"index", "input", "time", "results",
            "read_as"}], "results", "read_as", "named", "as", "fits", "seconds": {"decode", "rank"}}`` (``named``:
            the concepts the uploads' names named, mixed in; ``as``: ``{"words", "concepts"}`` or ``None``;
            ``fits``: ``{"concepts", "from", "found", "each", "lacking", "text"}``, what the ranking looked for, how
            many results are it and what the page says of it, or ``None`` when nothing was checked,
            :mod:`soundlib.aim`); each result row has
            ``file``, ``window``, ``name``, ``path``, ``category``, ``start``, ``duration``, ``distance``,
            ``score`` (cosine similarity), ``named`` (the concepts the file's words named at ingest, ``"; "``-joined;
            empty when none) and, when checked, ``fits`` (the concepts of ``fits.concepts`` it is named or heard
            as; empty: none).

        Raises:
            UploadError: a refused upload (its name and the reason), or no uploads.
            SoundlibError: words that name no concept of the model.
        """
        from soundlib.aim import check_json
        from soundlib.read_as import read_as_json
        from soundlib.recommend import recommend_pictures

        k = self._check_k(k)
        if not uploads:
            raise UploadError("no picture or video in the request", status=422)
        if len(uploads) > self.cfg.max_files:
            raise UploadError(f"too many files ({len(uploads)}; limit {self.cfg.max_files})", status=413)
        t0 = time.perf_counter()
        pictures, labels = self._decode(uploads)
        t1 = time.perf_counter()
        with self.lock:
            result = recommend_pictures(pictures, labels, self.loaded, self.store, k=k, categories=categories,
                                        per_frame=len(pictures) > 1, as_words=as_words or None)
            t2 = time.perf_counter()
            qid = self._remember(pictures, labels)
            rows = self._rows(result.results, result.check.concepts if result.check else None)
            frames = [{"index": i, "input": n, "time": round(t, 3),
                       "results": self._rows(f.results) if f is not None else rows,
                       "read_as": read_as_json(f.read_as if f is not None else result.read_as)}
                      for i, ((n, t), f) in enumerate(zip(labels, result.frames or [None] * len(labels)))]
        return {"query": qid, "inputs": result.inputs, "k": k, "categories": sorted(set(categories or [])),
                "frames": frames, "results": rows, "read_as": read_as_json(result.read_as),
                "named": list(result.named), "as": result.told.to_json() if result.told else None,
                "fits": check_json(result.check, PAGE_LACK_HINT),
                "seconds": {"decode": round(t1 - t0, 4), "rank": round(t2 - t1, 4)}}

    def query_words(self, words: str, k: int, categories: list[str] | None = None) -> dict[str, Any]:
        """Rank the library by what its sounds are, from words alone (``query --as WORDS`` with no picture): the
        same document as :meth:`query_uploads` with no query picture (``query`` ``None``, no frames, ``read_as``
        ``None``) and ``as`` the concepts the words named.

        Raises:
            SoundlibError: a model without concept columns, or words that name none of its concepts.
        """
        from soundlib.aim import check_json
        from soundlib.recommend import recommend

        k = self._check_k(k)
        t0 = time.perf_counter()
        with self.lock:
            result = recommend([], self.loaded, self.store, k=k, categories=categories, as_words=words)
            rows = self._rows(result.results, result.check.concepts if result.check else None)
        return {"query": None, "inputs": [], "k": k, "categories": sorted(set(categories or [])), "frames": [],
                "results": rows, "read_as": None, "as": result.told.to_json() if result.told else None,
                "fits": check_json(result.check, PAGE_LACK_HINT),
                "seconds": {"decode": 0.0, "rank": round(time.perf_counter() - t0, 4)}}

    def more_like(self, file_id: str, k: int, categories: list[str] | None = None) -> dict[str, Any]:
        """"More like this": the ranking for a library file (its stored windows), same row format as uploads."""
        from soundlib.recommend import more_like_file

        k = self._check_k(k)
        f = self.file(file_id)
        with self.lock:
            result = more_like_file(self.store, f.file_id, k=k, categories=categories)
            rows = self._rows(result.results)
        return {"query": None, "like": f.to_json(), "inputs": [f.rel], "k": k,
                "categories": sorted(set(categories or [])), "frames": [], "results": rows}

    # --- uploads ----------------------------------------------------------------------------------------------

    def _decode(self, uploads: list[tuple[str, Path]]) -> tuple[list[Any], list[tuple[str, float]]]:
        from soundlib.images import load_image
        from soundlib.media import media_kind

        size = self.loaded.model.picture_size
        detail = self.loaded.model.picture_detail
        pictures: list[Any] = []
        labels: list[tuple[str, float]] = []
        for name, path in uploads:
            kind = media_kind(name)
            if kind == "image":
                self._check_picture(name, path)
                pictures.append(self._read(name, lambda: load_image(path, size, detail=detail)))
                labels.append((name, 0.0))
            elif kind == "video":
                for t, frame in self._video(name, path, size, self.cfg.max_frames - len(pictures)):
                    pictures.append(frame)
                    labels.append((name, t))
            else:
                ext = Path(name).suffix or "none"
                raise UploadError(f"not a picture or video (extension '{ext}')", name, status=415)
            if len(pictures) > self.cfg.max_frames:
                raise UploadError(f"too many pictures and frames (limit {self.cfg.max_frames})", name, status=413)
        return pictures, labels

    @staticmethod
    def _read(name: str, fn: Any) -> Any:
        try:
            return fn()
        except (ImageError, VideoError) as e:
            raise UploadError(e.reason, name, status=422) from None

    def _check_picture(self, name: str, path: Path) -> None:
        """Refuse a picture whose header promises more than ``max_pixels`` (before any pixel is decoded)."""
        import warnings

        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    w, h = im.size
        except Image.DecompressionBombError:
            raise UploadError("too large (a decompression bomb: more pixels than Pillow allows)", name,
                              status=413) from None
        except Exception:  # noqa: BLE001 - not an image: load_image gives the reason the CLI gives
            return
        if w * h > self.cfg.max_pixels:
            raise UploadError(f"too large ({w} x {h} = {w * h / 1e6:.0f} MP; limit "
                              f"{self.cfg.max_pixels / 1e6:.0f} MP)", name, status=413)

    def _video(self, name: str, path: Path, size: int, room: int) -> list[tuple[float, Any]]:
        from soundlib.images import video_frames, video_info

        info = self._read(name, lambda: video_info(path))
        if info.duration > self.cfg.max_video_seconds:
            raise UploadError(f"video too long ({info.duration:.0f} s; limit {self.cfg.max_video_seconds:.0f} s)",
                              name, status=413)
        if info.width * info.height > self.cfg.max_pixels:
            raise UploadError(f"video frames too large ({info.width} x {info.height}; limit "
                              f"{self.cfg.max_pixels / 1e6:.0f} MP)", name, status=413)
        limit = int(self.cfg.max_video_seconds) + 1
        frames = self._read(name, lambda: list(video_frames(path, every=1.0, size=size,
                                                            max_frames=min(limit, max(room, 0) + 1))))
        return frames

    def _remember(self, pictures: list[Any], labels: list[tuple[str, float]]) -> str:
        import torch

        qid = secrets.token_urlsafe(9)
        arrays = [np.ascontiguousarray((p.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy())
                  for p in pictures]
        self._queries[qid] = _Query(arrays, list(labels))
        while len(self._queries) > self.cfg.recent_queries:
            self._queries.popitem(last=False)
        return qid

    def _picture(self, qid: str, index: int) -> np.ndarray:
        q = self._queries.get(qid)
        if q is None:
            raise NotFound("this query is no longer kept; drop the picture again")
        if not 0 <= index < len(q.pictures):
            raise NotFound(f"no frame {index} in this query")
        return q.pictures[index]

    # --- pictures, heatmaps, waveforms ------------------------------------------------------------------------

    def frame_png(self, qid: str, index: int) -> bytes:
        """A picture of a recent query as the model saw it (PNG)."""
        from PIL import Image

        with self.lock:
            a = self._picture(qid, index)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    def explain_png(self, qid: str, index: int, window_id: str) -> bytes:
        """The heatmap of picture ``index`` of query ``qid`` for the stored window ``window_id`` (PNG).

        Raises:
            NotFound: unknown query, frame or window. SoundlibError: the model cannot explain.
        """
        import torch
        from PIL import Image

        from soundlib.explain import explain_picture, render_overlay

        if not _WINDOW_ID.match(window_id or ""):
            raise NotFound("not a window id")
        with self.lock:
            a = self._picture(qid, index)
            ids, vecs, _ = self.store.windows(ids=[window_id])
            if not ids:
                raise NotFound(f"no window {window_id} in the collection")
            picture = torch.from_numpy(a).permute(2, 0, 1).float() / 255.0
            exp = explain_picture(self.loaded.model, picture, vecs[0])
        image: Image.Image = render_overlay(picture, exp, self.cfg.overlay_size)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()

    def peaks(self, file_id: str) -> dict[str, Any]:
        """Waveform overview, loudness and the loudness-matched preview gain of a library file."""
        from soundlib.peaks import file_peaks, preview_gain_db

        f = self.file(file_id)
        p = file_peaks(f.path, sha256=f.sha256 or None, bins=self.cfg.peaks_bins, cache_dir=self.cfg.cache_dir)
        doc = p.to_json()
        doc.update(file=f.file_id, preview_gain_db=round(preview_gain_db(p.loudness_db), 2))
        return doc

    # --- picks ------------------------------------------------------------------------------------------------

    def picks_zip(self, doc: Any) -> tuple[Path, Any]:
        """Write the basket to a ZIP in a temporary file (:func:`soundlib.picks.picks_zip`): the original files,
        or with ``clip`` the best window of each with ``clip`` seconds of handles, plus picks.csv, picks.json and
        picks.m3u.

        Args:
            doc: ``{"picks": [{"file": id, "start": s, "score": distance, "query": text}], "clip": null | s}``.

        Returns:
            ``(zip path, ExportReport)``; the caller deletes the file.

        Raises:
            UploadError: a malformed document. NotFound: a file id that is not in the collection.
        """
        import math
        import os
        import tempfile

        from soundlib.picks import Pick, picks_zip

        if not isinstance(doc, dict) or not isinstance(doc.get("picks"), list) or not doc["picks"]:
            raise UploadError("the picks must be {\"picks\": [{\"file\", \"start\", \"score\", \"query\"}, ...]}",
                              status=400)
        if len(doc["picks"]) > self.cfg.max_picks:
            raise UploadError(f"too many picks ({len(doc['picks'])}; limit {self.cfg.max_picks})", status=413)
        clip = doc.get("clip")
        if clip is not None and not (isinstance(clip, (int, float)) and 0 <= clip <= 60):
            raise UploadError("clip must be null or handles in seconds between 0 and 60", status=400)
        picks = []
        for item in doc["picks"]:
            try:
                start, score = float(item.get("start", 0.0)), float(item.get("score", 0.0))
                query = str(item.get("query", ""))[:500]
                fid = str(item.get("file", ""))
            except (AttributeError, TypeError, ValueError):
                raise UploadError("each pick needs a file id, a start and a score", status=400) from None
            if not (math.isfinite(start) and start >= 0 and math.isfinite(score)):
                raise UploadError("a pick's start and score must be finite (start >= 0)", status=400)
            f = self.file(fid)
            picks.append(Pick(path=f.path, start=start, score=score, query=query, category=f.category or None))
        fd, tmp = tempfile.mkstemp(prefix="soundlib-picks-", suffix=".zip")
        try:
            with os.fdopen(fd, "wb") as out:
                report = picks_zip(picks, out, clip=None if clip is None else float(clip))
        except BaseException:
            os.unlink(tmp)
            raise
        return Path(tmp), report
