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
    A sound that is in the library as it is on disk (same path below a stored root, same size and mtime) is
    searched with its stored windows, exactly what ingest wrote (its name's concepts mixed in, as for every stored
    file). Any other sound is cut into windows exactly as ingest cuts it (same cap) and embedded; with a bridged
    model the concepts its own file name and embedded tags name are mixed in as ingest would
    (:mod:`soundlib.name_concepts`; ``names=False``: the audio alone). Each window is searched, and a library file
    scores its smallest distance over all (query window, library window) pairs: the best-matching moment. So a sound
    that is in the library finds itself first (distance 0), and a long query matches files that share any part of
    it. Sounds and pictures cannot be mixed in one query (their distances are not on one scale).

Names
    With a bridged model, what a picture's or video's file name names (``horse.png``, ``thunderstorm.mp4``; read
    like a library file's name, :mod:`soundlib.name_concepts`) gets half of its concept part, as ingest gives a
    sound's name half of the sound's: the answer's ``named`` says so, and ``read_as`` stays what the pictures
    themselves were read as. ``names=False`` (``query --no-names``): the pictures alone.

What the user says it is (``as_words``, ``query --as``)
    With a bridged model, words that name concepts (``"horse"``) replace the concept part of every query vector
    (pictures, frames or sound windows) before the search; the heads' part, how the query looks or sounds, stays
    (:mod:`soundlib.told_as`). The answer still says what the query was read as on its own. With no inputs, the
    words alone are the query: sounds ranked by their concept part.

Filters
    ``categories`` keeps sounds whose category matches one of the names at any level (``wolf`` finds
    ``widelands/wolf``, and so does ``widelands/wolf``; :func:`soundlib.words.category_where`); ``text`` keeps sounds that have every one of its
    words (name, folders, tags; :mod:`soundlib.words`). Both pick the allowed files from their metadata
    with Chroma's own filter (on their last window), then rank only those by the picture (:meth:`SoundStore.search_within`).
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
from soundlib.config import DEFAULT_K, INFERENCE_BATCH
from soundlib.progress import ProgressFn
from soundlib.aim import Check, aim_of_query, aim_of_told, check
from soundlib.read_as import read_as, read_as_json, read_as_text
from soundlib.store import Hit, SoundStore
from soundlib.told_as import Told, as_told, told_concepts, words_query

#: Model calls on fewer pictures than this run on one torch thread. One picture is too little work to split:
#: with other jobs on the cores, each parallel region waits for a descheduled thread (bench/README.md).
ONE_THREAD_BELOW = 4
#: Seconds between video frames used as queries.
FRAME_EVERY = 1.0


@dataclass
class FrameResult:
    """The ranking for one picture or one window: ``input`` path, ``time`` in seconds, ``results``, and for a
    picture with a bridged model the concepts it was read as (:func:`soundlib.read_as.read_as`)."""

    input: str
    time: float
    results: list[Hit]
    read_as: list[tuple[str, float]] | None = None


@dataclass
class QueryResult:
    """Answer of :func:`recommend`: the aggregated ranking (and, with ``per_frame``, one per picture/window);
    ``read_as``: the concepts the query was read as (bridged models; ``None`` otherwise, and for words alone);
    ``told``: the concepts the user's words named, which the ranking used instead (``as_words``);
    ``named``: the concepts the pictures' own file names named, mixed into the query (``names``);
    ``check``: what the ranking looked for (the told concepts, else the ones the query vector points at firmly)
    and which of ``results`` are named or heard as it (:mod:`soundlib.aim`; none says the library may lack it);
    ``None`` when nothing was checked."""

    inputs: list[str]
    k: int
    results: list[Hit]
    frames: list[FrameResult] | None = None
    read_as: list[tuple[str, float]] | None = None
    told: Told | None = None
    named: list[str] = field(default_factory=list)
    check: Check | None = None

    @property
    def fits(self) -> list[bool] | None:
        """Per result, named or heard as what the ranking looked for (``None``: not checked)."""
        return None if self.check is None else self.check.hits

    @property
    def found(self) -> int | None:
        """How many of ``results`` are named or heard as what the ranking looked for (``None``: not checked)."""
        return None if self.check is None else self.check.found

    def named_text(self, most: int = 5) -> str:
        """``"named: horse"`` when the pictures' names named concepts (mixed into the query), else ``""``; past
        ``most`` concepts (a folder of named stills) ``"... and 7 more"``."""
        if not self.named:
            return ""
        more = len(self.named) - most
        return "named: " + ", ".join(self.named[:most]) + (f" and {more} more" if more > 0 else "")

    def caption(self) -> str:
        """What the answer says under its ranking, ``" · "``-joined: what the query was read as, what its names
        named, what the user said it is, and how many results are that (``"read as: book 100 % · named: horse ·
        4 of 10 named or heard as book or horse"``)."""
        parts = (read_as_text(self.read_as), self.named_text(), self.told.text() if self.told else "",
                 self.check.text() if self.check else "")
        return " · ".join(t for t in parts if t)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (shape fixed by the library issue; ``read_as`` only when there is one, ``as``
        only with ``as_words``)."""
        doc: dict[str, Any] = {"inputs": list(self.inputs), "k": self.k,
                               "results": hits_json(self.results, self.check.concepts if self.check else None)}
        if self.read_as is not None:
            doc["read_as"] = read_as_json(self.read_as)
        if self.named:
            doc["named"] = list(self.named)
        if self.told is not None:
            doc["as"] = self.told.to_json()
        if self.check is not None:
            doc["fits"] = self.check.to_json()
        if self.frames is not None:
            doc["frames"] = [{"input": f.input, "time": round(f.time, 3), "results": hits_json(f.results),
                              **({"read_as": read_as_json(f.read_as)} if f.read_as is not None else {})}
                             for f in self.frames]
        return doc


def file_info(meta: dict[str, Any]) -> dict[str, Any]:
    """What describes a result's file, for ``--json``: folder, category rule, duration, sample rate and the
    :data:`soundlib.store.FILE_INFO_KEYS` present."""
    from soundlib.store import FILE_INFO_KEYS

    out = {k: meta[k] for k in ("folder", "category_from", "duration", "sample_rate") if k in meta}
    out.update({k: meta[k] for k in FILE_INFO_KEYS if k in meta})
    return out


def hits_json(hits: Sequence[Hit], fits: Sequence[Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """``[{"rank", "path", "category", "start", "distance", "description", "info"}]`` for a ranking; with
    ``fits`` (per hit, the concepts of what the ranking looked for it is named or heard as), each hit also says
    ``"fits"``: that list, empty when it is none of them."""
    rows = [{"rank": i + 1, "path": h.path, "category": h.category, "start": round(h.start, 3),
             "distance": round(h.distance, 6), "description": str(h.metadata.get("description", "")),
             "info": file_info(h.metadata)} for i, h in enumerate(hits)]
    if fits is not None:
        for row, hit_fits in zip(rows, fits):
            row["fits"] = list(hit_fits)
    return rows


@dataclass
class _Vectors:
    kind: str  # "picture", "sound" or "words"
    labels: list[tuple[str, float]] = field(default_factory=list)  # (input, time)
    vectors: list[np.ndarray] = field(default_factory=list)
    own: np.ndarray | None = None  # pictures whose names were mixed in: the vectors before (what they read as)
    named: list[str] = field(default_factory=list)  # the concepts the pictures' names named


def _mix_picture_names(model: Any, acc: _Vectors) -> None:
    """Mix what each picture's (or video's) file name names into its vectors, as ingest mixes a sound's name
    (:mod:`soundlib.name_concepts`; ``horse.png`` -> horse); the vectors before are kept in ``acc.own``."""
    from soundlib.name_concepts import for_model

    mixing = for_model(model)
    if mixing is None or not acc.vectors:
        return
    vecs = np.stack(acc.vectors).astype(np.float32)
    out, evidence = mixing.mix_pictures(model, vecs, [Path(name).name for name, _ in acc.labels])
    named = evidence.max(axis=0)
    if named.any():
        acc.own, acc.vectors, acc.named = vecs, list(out), mixing.names_of(named)


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


def embed_pictures(model: Any, pictures: Sequence[Any]) -> np.ndarray:
    """Embed pictures already read at ``model.picture_size`` (one model call; one torch thread for a few).

    Args:
        model: the model (``loaded.model``).
        pictures: ``(3, S, S)`` float tensors in [0, 1] (:func:`soundlib.images.load_image`).

    Returns:
        ``(N, D)`` float32 L2-normalised embeddings.
    """
    import torch

    with torch_threads(1 if len(pictures) < ONE_THREAD_BELOW else None):
        vecs = model.embed_images(torch.stack(list(pictures)))
    return vecs.detach().float().cpu().numpy()


def _embed_pictures(model: Any, items: list[tuple[str, str]], acc: _Vectors,
                    progress: ProgressFn | None) -> None:
    from soundlib.images import load_image, video_frames

    size = model.picture_size
    batch: list[Any] = []
    labels: list[tuple[str, float]] = []

    def run() -> None:
        if batch:
            acc.vectors += list(embed_pictures(model, batch))
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
                if len(batch) >= INFERENCE_BATCH:
                    run()
            if got == 0:
                raise VideoError("no frames decoded", path)
        if len(batch) >= INFERENCE_BATCH:
            run()
        if progress is not None:
            progress("embed", n + 1, len(items))
    run()


def stored_sound(store: SoundStore, path: str | os.PathLike) -> tuple[list[float], np.ndarray] | None:
    """The stored windows ``(starts, (N, D) vectors)`` of a sound file that is in the library as it is on disk
    (same path below one of its folders' roots, same size and mtime), else ``None`` (one read by id per folder
    above the file, no scan)."""
    from soundlib.store import file_key, window_id

    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        return None
    heads = store.file_heads([file_key(str(root), p.relative_to(root).as_posix()) for root in p.parents])
    for fid, m in heads.items():
        n = int(m.get("n_windows", 0))
        if n < 1 or int(m.get("size", -1)) != st.st_size or int(m.get("mtime_ns", -1)) != st.st_mtime_ns:
            continue
        ids, vectors, metas = store.windows(ids=[window_id(fid, i) for i in range(n)])
        if len(ids) == n:  # complete (a file cut by a crash is embedded as any other sound)
            order = np.argsort([int(mm.get("window", 0)) for mm in metas])
            return [float(metas[i].get("start", 0.0)) for i in order], vectors[order]
    return None


def _embed_sounds(model: Any, items: list[tuple[str, str]], acc: _Vectors, max_windows: int | None,
                  store: SoundStore, names: bool) -> None:
    from soundlib.audio import load_windows
    from soundlib.name_concepts import for_model
    from soundlib.tags import read_tags_partial

    cfg = model.config.audio
    mixing = for_model(model) if names else None
    for path, _kind in items:
        stored = stored_sound(store, path)
        if stored is not None:
            starts, vectors = stored
        else:
            starts, windows = load_windows(path, cfg, max_windows=max_windows)
            vectors = embed_windows(model, windows)
            if mixing is not None:
                vectors = mixing.apply(model, Path(path).name, vectors, read_tags_partial(path)[0])
        acc.vectors += list(vectors)
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


def recommend(inputs: Sequence[str | os.PathLike], loaded_model: Any, store: SoundStore, k: int = DEFAULT_K,
              categories: Iterable[str] | None = None, per_frame: bool = False,
              max_windows: int | None = None, progress: ProgressFn | None = None,
              text: str | None = None, names: bool = True, as_words: str | None = None) -> QueryResult:
    """Recommend ``k`` distinct sound files for pictures, videos or sounds (rules in the module docstring).

    Args:
        inputs: image files, folders of images, video files, or sound files (not pictures and sounds together);
            may be empty with ``as_words`` (the words alone make the query).
        loaded_model: a :class:`soundlib.models.LoadedModel`; must be the collection's model.
        store: the open library.
        k: number of distinct files to return.
        categories: only recommend sounds of these categories (any level).
        text: only recommend sounds that have every word of this text (name, folders, tags).
        per_frame: also return one ranking per picture / video frame / sound window.
        max_windows: window cap for sound inputs (default ``AudioConfig.max_windows``, as ingest).
        progress: receives ``("embed", inputs_done, inputs_total)``.
        names: mix what an input's own file name names into it as ingest does for the library (bridged models:
            ``horse.png`` -> horse, half of the concept part; a sound's embedded tags too; sounds that are in the
            library use their stored windows either way); ``False``: the picture or audio alone.
        as_words: what the user says the query is (``"horse"``): the concepts these words name replace the
            query's own concept part (:mod:`soundlib.told_as`; bridged models only).

    Returns:
        :class:`QueryResult`; ``results`` has ``k`` hits unless the (filtered) library holds fewer files.

    Raises:
        ImageError, VideoError, AudioError: an input cannot be decoded.
        SoundlibError: unknown input type, sounds mixed with pictures, no inputs and no words, or words that name
            no concept of the model.
        ModelMismatchError / StoreError: wrong model for the collection, or no collection.
    """
    if k < 1:
        raise SoundlibError(f"k must be at least 1, got {k}")
    store.check_model(loaded_model)
    items = classify_inputs(inputs)
    model = loaded_model.model
    told = told_concepts(model, as_words) if as_words is not None else None
    if not items and told is None:
        raise SoundlibError("no inputs")
    sounds = [it for it in items if it[1] == "audio"]
    pictures = [it for it in items if it[1] != "audio"]
    if sounds and pictures:
        raise SoundlibError("give either pictures/videos or sounds in one query, not both")
    files = _allowed_files(store, text, categories)
    if not items:
        acc = _Vectors(kind="words", labels=[(str(as_words), 0.0)], vectors=list(words_query(model, told)))
    else:
        acc = _Vectors(kind="sound" if sounds else "picture")
        if sounds:
            _embed_sounds(model, sounds, acc, max_windows, store, names)
        else:
            _embed_pictures(model, pictures, acc, progress)
            if names and told is None:
                _mix_picture_names(model, acc)
    return _rank(acc, store, k, files, per_frame, [str(p) for p in inputs], model, told)


def _allowed_files(store: SoundStore, text: str | None, categories: Iterable[str] | None) -> Any:
    """The files a ranking may return under a word / category filter (``None``: no filter)."""
    if not text and not any(categories or ()):
        return None
    from soundlib.words import allowed_files

    return allowed_files(store, text, categories or ())


def _rank(acc: _Vectors, store: SoundStore, k: int, files: Any, per_frame: bool, inputs: list[str],
          model: Any, told: Told | None = None) -> QueryResult:
    """Search the store with embedded queries: one ranking (pictures: their centroid; sounds: min-fusion of the
    windows) and, with ``per_frame``, one per picture / window; ``files`` restricts it (see :func:`_allowed_files`).
    Rankings say what ``model`` read the query as (pictures: their centroid; a sound: the mean of its windows;
    ``model=None`` or words alone: not said). ``told`` replaces every query vector's concept part before the
    search (:func:`soundlib.told_as.as_told`; a words query is made of it already)."""
    vecs = np.stack(acc.vectors).astype(np.float32)
    seen = acc.own if acc.own is not None else vecs  # pictures: what they read as before their names were mixed in
    own = _normalise(seen.mean(axis=0, keepdims=True))  # a sound's windows, or the pictures: what it reads as
    read = read_as(model, own[0]) if acc.kind != "words" else None
    own_frames = [read_as(model, v) if acc.kind == "picture" else None for v in seen] if per_frame else []
    if told is not None and acc.kind != "words":
        vecs = as_told(model, vecs, told)
    centroid = _normalise(vecs.mean(axis=0, keepdims=True))
    frames: list[FrameResult] | None = None
    if acc.kind == "sound":
        per = store.search(vecs, k, files=files)
        results = _fuse_min(per, k)
    else:
        per_frame = per_frame and acc.kind == "picture"
        per = store.search(np.concatenate([centroid, vecs]), k, files=files) if per_frame else \
            store.search(centroid, k, files=files)
        results, per = per[0], per[1:]
    if per_frame:
        frames = [FrameResult(input=lab[0], time=lab[1], results=hits, read_as=r)
                  for lab, hits, r in zip(acc.labels, per, own_frames)]
    # the told concepts, else what the query vector the search used points at (a picture's reading, mixed with
    # what its name names; no model, as for "more like this": nothing)
    aim = aim_of_told(told) if told is not None else aim_of_query(model, centroid[0], acc.named)
    checked = check(store, model, aim, results) if aim is not None and results else None
    return QueryResult(inputs=inputs, k=k, results=results, frames=frames, read_as=read, told=told,
                       named=[] if told is not None else list(acc.named), check=checked)


def recommend_pictures(pictures: Sequence[Any], labels: Sequence[tuple[str, float]], loaded_model: Any,
                       store: SoundStore, k: int = 10, categories: Iterable[str] | None = None,
                       per_frame: bool = False, as_words: str | None = None, names: bool = True) -> QueryResult:
    """:func:`recommend` for pictures already decoded (e.g. uploads to ``soundlib serve``): same rankings.

    Args:
        pictures: ``(3, S, S)`` float tensors in [0, 1] read at ``loaded_model.model.picture_size``.
        labels: ``(input name, time in seconds)`` of each picture (names the frames of the answer; with ``names``
            what the input name names is mixed in, as :func:`recommend` does with a file's name).
        loaded_model, store, k, categories, per_frame, as_words, names: as in :func:`recommend`.

    Raises:
        SoundlibError: no pictures, ``k < 1``, labels that do not match the pictures, or words that name no
            concept of the model.
        ModelMismatchError / StoreError: wrong model for the collection, or no collection.
    """
    if k < 1:
        raise SoundlibError(f"k must be at least 1, got {k}")
    if not pictures or len(pictures) != len(labels):
        raise SoundlibError("no pictures" if not pictures else "one label per picture is needed")
    store.check_model(loaded_model)
    told = told_concepts(loaded_model.model, as_words) if as_words is not None else None
    acc = _Vectors(kind="picture", labels=[(str(n), float(t)) for n, t in labels],
                   vectors=list(embed_pictures(loaded_model.model, pictures)))
    if names and told is None:
        _mix_picture_names(loaded_model.model, acc)
    inputs = list(dict.fromkeys(str(n) for n, _ in labels))
    return _rank(acc, store, k, _allowed_files(store, None, categories), per_frame, inputs, loaded_model.model,
                 told)


def more_like_file(store: SoundStore, file_id: str, k: int = 10,
                   categories: Iterable[str] | None = None) -> QueryResult:
    """"More like this" for a file of the library, from its stored window embeddings (nothing is decoded).

    The same ranking as :func:`recommend` with the file itself as a sound query (its windows are the ones ingest
    cut, embedded by the collection's model): each window is searched and a file scores its best (window, window)
    distance, so the file itself comes first (distance 0) unless the category filter excludes it.

    Args:
        store: the open library.
        file_id: the file's id in the collection (``Hit.metadata["file_id"]``).
        k, categories: as in :func:`recommend`.

    Raises:
        SoundlibError: ``k < 1``, or no file with this id in the collection.
    """
    if k < 1:
        raise SoundlibError(f"k must be at least 1, got {k}")
    ids, vectors, metas = store.windows(file_id=file_id)
    if not ids:
        raise SoundlibError(f"no file with id '{file_id}' in the collection", store.location)
    root, rel = metas[0].get("root"), str(metas[0].get("path", file_id))
    name = os.path.join(root, rel) if root else rel
    acc = _Vectors(kind="sound", labels=[(name, float(m.get("start", 0.0))) for m in metas], vectors=list(vectors))
    return _rank(acc, store, k, _allowed_files(store, None, categories), False, [name], None)
