"""Recommending sounds from the library for pictures, videos or sounds (``soundlib query``).

Inputs
    image files; folders of images (the images directly inside, sorted; hidden files skipped); video files (one
    frame per second, :func:`soundlib.images.video_frames`); or sound files ("more like this").

One ranking for several pictures (images, folders, video frames)
    The L2-normalised embeddings of all pictures are averaged and the mean re-normalised (their centroid on the
    sphere): the result fits the scene as a whole rather than one frame, costs one search whatever the number of
    frames, and is the same vector the per-frame rankings average. ``per_frame=True`` adds one ranking per picture
    (video frames with their time in seconds, images with time 0).

Sounds ("more like this")
    A sound is cut into windows exactly as ingest cuts it (same cap), each window is searched, and a library file
    scores its smallest distance over all (query window, library window) pairs: the best-matching moment. So a sound
    that is in the library finds itself first (distance ~0), and a long query matches files that share any part of
    it. Sounds and pictures cannot be mixed in one query (their distances are not on one scale).

Category filter
    ``categories`` restricts results with a Chroma ``where`` on the ``category`` metadata (``$in`` for several).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundlib.embedding import embed_windows, torch_threads
from soundlib.errors import AudioError, ImageError, SoundlibError, VideoError
from soundlib.progress import ProgressFn
from soundlib.store import Hit, SoundStore

#: Images per model call.
IMAGE_BATCH = 32
#: Model calls on fewer pictures than this run on one torch thread. One picture is too little work to split:
#: at 200k windows, one-image query p50 was the same with 1 or 2 threads on an idle 2-core machine, but with
#: another job on both cores 2 threads took 230 ms p50 / 1.6 s p95 (each parallel region waits for a
#: descheduled thread) and 1 thread 132 / 162 ms (bench/query.py).
ONE_THREAD_BELOW = 4
#: Seconds between video frames used as queries.
FRAME_EVERY = 1.0


@dataclass
class FrameResult:
    """The ranking for one picture or one window: ``input`` path, ``time`` in seconds, ``results``."""

    input: str
    time: float
    results: list[Hit]


@dataclass
class QueryResult:
    """Answer of :func:`recommend`: the aggregated ranking (and, with ``per_frame``, one per picture/window)."""

    inputs: list[str]
    k: int
    results: list[Hit]
    frames: list[FrameResult] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (shape fixed by the library issue)."""
        doc: dict[str, Any] = {"inputs": list(self.inputs), "k": self.k, "results": hits_json(self.results)}
        if self.frames is not None:
            doc["frames"] = [{"input": f.input, "time": round(f.time, 3), "results": hits_json(f.results)}
                             for f in self.frames]
        return doc


def hits_json(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """``[{"rank", "path", "category", "start", "distance"}]`` for a ranking."""
    return [{"rank": i + 1, "path": h.path, "category": h.category, "start": round(h.start, 3),
             "distance": round(h.distance, 6)} for i, h in enumerate(hits)]


@dataclass
class _Vectors:
    kind: str  # "picture" or "sound"
    labels: list[tuple[str, float]] = field(default_factory=list)  # (input, time)
    vectors: list[np.ndarray] = field(default_factory=list)


def category_where(categories: Iterable[str] | None) -> dict[str, Any] | None:
    """Chroma ``where`` for a category filter (``None`` when no filter)."""
    cats = sorted({c for c in (categories or []) if c})
    if not cats:
        return None
    return {"category": cats[0]} if len(cats) == 1 else {"category": {"$in": cats}}


def _image_files(folder: Path) -> list[Path]:
    from soundlib.media import media_kind

    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise ImageError(f"cannot list folder ({e.strerror or e})", str(folder)) from None
    files = [folder / n for n in names if not n.startswith(".") and media_kind(n) == "image"
             and (folder / n).is_file()]
    if not files:
        raise ImageError("no images in this folder", str(folder))
    return files


def classify_inputs(inputs: Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
    """``[(path, kind)]`` with kind ``"image"``, ``"video"`` or ``"audio"`` (folders expanded to their images).

    Raises:
        ImageError / VideoError / AudioError: a missing input (by its extension), an empty folder.
        SoundlibError: an input of an unknown type.
    """
    from soundlib.media import media_kind

    out: list[tuple[str, str]] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        kind = media_kind(p)
        if p.is_dir():
            out += [(str(f), "image") for f in _image_files(p)]
            continue
        if not p.exists():
            err = {"audio": AudioError, "video": VideoError}.get(kind or "", ImageError)
            raise err("file not found", str(p))
        if kind is None:
            raise SoundlibError(f"not an image, video or sound file (extension '{p.suffix or 'none'}')", str(p))
        out.append((str(p), kind))
    return out


def _embed_pictures(model: Any, items: list[tuple[str, str]], acc: _Vectors,
                    progress: ProgressFn | None) -> None:
    import torch

    from soundlib.images import load_image, video_frames

    size = model.picture_size
    batch: list[Any] = []
    labels: list[tuple[str, float]] = []

    def run() -> None:
        if batch:
            with torch_threads(1 if len(batch) < ONE_THREAD_BELOW else None):
                vecs = model.embed_images(torch.stack(batch))
            acc.vectors += list(vecs.detach().float().cpu().numpy())
            acc.labels += labels
            batch.clear()
            labels.clear()

    for n, (path, kind) in enumerate(items):
        if kind == "image":
            batch.append(load_image(path, size, detail=model.picture_detail))
            labels.append((path, 0.0))
        else:
            got = 0
            for t, frame in video_frames(path, every=FRAME_EVERY, size=size):
                batch.append(frame)
                labels.append((path, float(t)))
                got += 1
                if len(batch) >= IMAGE_BATCH:
                    run()
            if got == 0:
                raise VideoError("no frames decoded", path)
        if len(batch) >= IMAGE_BATCH:
            run()
        if progress is not None:
            progress("embed", n + 1, len(items))
    run()


def _embed_sounds(model: Any, items: list[tuple[str, str]], acc: _Vectors, max_windows: int | None) -> None:
    from soundlib.audio import load_windows

    cfg = model.config.audio
    for path, _kind in items:
        starts, windows = load_windows(path, cfg, max_windows=max_windows)
        acc.vectors += list(embed_windows(model, windows))
        acc.labels += [(path, float(s)) for s in starts]


def _normalise(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def _fuse_min(rankings: list[list[Hit]], k: int) -> list[Hit]:
    """Best hit per file over several rankings, sorted by distance (exact top-k of the min-distance fusion)."""
    best: dict[str, Hit] = {}
    for hits in rankings:
        for h in hits:
            key = str(h.metadata.get("file_id", h.path))
            if key not in best or h.distance < best[key].distance:
                best[key] = h
    return sorted(best.values(), key=lambda h: h.distance)[:k]


def recommend(inputs: Sequence[str | os.PathLike], loaded_model: Any, store: SoundStore, k: int = 10,
              categories: Iterable[str] | None = None, per_frame: bool = False,
              max_windows: int | None = None, progress: ProgressFn | None = None) -> QueryResult:
    """Recommend ``k`` distinct sound files for pictures, videos or sounds (rules in the module docstring).

    Args:
        inputs: image files, folders of images, video files, or sound files (not pictures and sounds together).
        loaded_model: a :class:`soundlib.models.LoadedModel`; must be the collection's model.
        store: the open library.
        k: number of distinct files to return.
        categories: only recommend sounds of these categories.
        per_frame: also return one ranking per picture / video frame / sound window.
        max_windows: window cap for sound inputs (default ``AudioConfig.max_windows``, as ingest).
        progress: receives ``("embed", inputs_done, inputs_total)``.

    Returns:
        :class:`QueryResult`; ``results`` has ``k`` hits unless the (filtered) library holds fewer files.

    Raises:
        ImageError, VideoError, AudioError: an input cannot be decoded.
        SoundlibError: unknown input type, or sounds mixed with pictures.
        ModelMismatchError / StoreError: wrong model for the collection, or no collection.
    """
    if k < 1:
        raise SoundlibError(f"k must be at least 1, got {k}")
    store.check_model(loaded_model)
    items = classify_inputs(inputs)
    if not items:
        raise SoundlibError("no inputs")
    sounds = [it for it in items if it[1] == "audio"]
    pictures = [it for it in items if it[1] != "audio"]
    if sounds and pictures:
        raise SoundlibError("give either pictures/videos or sounds in one query, not both")
    model = loaded_model.model
    where = category_where(categories)
    acc = _Vectors(kind="sound" if sounds else "picture")
    if sounds:
        _embed_sounds(model, sounds, acc, max_windows)
    else:
        _embed_pictures(model, pictures, acc, progress)
    vecs = np.stack(acc.vectors).astype(np.float32)

    frames: list[FrameResult] | None = None
    if acc.kind == "sound":
        per = store.search(vecs, k, where=where)
        results = _fuse_min(per, k)
    else:
        centroid = _normalise(vecs.mean(axis=0, keepdims=True))
        per = store.search(np.concatenate([centroid, vecs]), k, where=where) if per_frame else \
            store.search(centroid, k, where=where)
        results, per = per[0], per[1:]
    if per_frame:
        frames = [FrameResult(input=lab[0], time=lab[1], results=hits) for lab, hits in zip(acc.labels, per)]
    return QueryResult(inputs=[str(p) for p in inputs], k=k, results=results, frames=frames)
