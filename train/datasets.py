"""Pair data for training: the rows of a list indexed by unique frames and clips, frame decoding, epoch sampling.

- :func:`load_pairs` reads one pair list, or several (concatenated), into a :class:`PairData` (row -> unique frame
  index, unique clip index). A row with an empty ``start`` is a *whole-file* clip (``start`` ``None``).
- :class:`FrameStore` turns frame files into ``uint8 (3, S, S)`` tensors: preloaded once into one tensor when they
  fit in a memory budget, else decoded per batch in a ``DataLoader`` worker. :class:`FeatureStore` serves
  precomputed per-frame features (the pretrained family's cached backbone features) through the same interface.
- :func:`bce_epoch` / :func:`contrastive_epoch` give one epoch's batches from a numpy ``Generator`` (deterministic
  for a seed): balanced positive/negative pairs for the BCE families, positives with in-batch negatives (no sample
  twice in a batch when avoidable) for the contrastive ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from soundlib.errors import ListError
from soundlib.progress import ProgressFn, null_progress

#: A negative from the same audio file must start at least this many seconds away from the positive.
MIN_NEGATIVE_GAP = 2.0


@dataclass
class PairData:
    """A pair list indexed for training.

    Attributes:
        path: the (first) list file.
        samples: per row, its sample label.
        row_frame: ``(rows,)`` int index into ``frames``.
        row_clip: ``(rows,)`` int index into ``clips``.
        frames: unique frame files.
        clips: unique ``(audio file, start seconds)``; start ``None`` for a whole-file row (a library item).
        clip_sample: per clip, its sample label (the first row's). A row's ground truth for retrieval is the
            sample of its own clip: ``clip_sample[row_clip[i]]``.
        clip_file: ``(clips,)`` int index of the clip's audio file (for the same-file negative rule).
        clip_start: ``(clips,)`` float start seconds (0 for a whole-file clip).
        clip_category: ``(clips,)`` int category code (-1 when unknown).
        categories: category names (codes index this).
        skipped: rows the list reader left out.
        row_category: ``(rows,)`` int category code of each row (-1 when it has none).
        paths: every list file read (several when lists were concatenated).
    """

    path: Path
    samples: list[str]
    row_frame: np.ndarray
    row_clip: np.ndarray
    frames: list[Path]
    clips: list[tuple[Path, float]]
    clip_sample: list[str]
    clip_file: np.ndarray
    clip_start: np.ndarray
    clip_category: np.ndarray
    categories: list[str] = field(default_factory=list)
    skipped: list[ListError] = field(default_factory=list)
    row_category: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    paths: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.row_frame.shape[0])

    @property
    def has_categories(self) -> bool:
        """True when every clip has a category and there are at least two."""
        return bool(len(self.categories) >= 2 and (self.clip_category >= 0).all())


def load_pairs(list_path: str | os.PathLike | Sequence[str | os.PathLike], roots: Any = None) -> PairData:
    """Read a pair list (or several, concatenated in order) and index its frames and clips.

    Rows of several lists are pooled: a frame file or an ``(audio, start)`` clip used by two lists is one frame or
    clip. Rows with an empty ``start`` are whole-file clips (``start`` ``None``; see :mod:`train.features` for the
    windows they train on). A list may also be in the reference code's format (``roots``: where its frames and
    audio are, a :class:`soundlib.reference_lists.ReferenceRoots`; see :func:`soundlib.lists.read_list`).

    Raises:
        ListError: a list is missing/malformed or no list has a usable row.
    """
    from soundlib.lists import read_list

    paths = [list_path] if isinstance(list_path, (str, os.PathLike)) else list(list_path)
    if not paths:
        raise ListError("no list given")
    rows = []
    errors: list[ListError] = []
    for p in paths:
        pl = read_list(p, roots=roots)
        if not pl.rows:
            why = f" ({len(pl.errors)} bad rows, first: {pl.errors[0]})" if pl.errors else ""
            raise ListError(f"no usable rows{why}", str(p))
        rows += pl.rows
        errors += pl.errors
    frame_ix: dict[Path, int] = {}
    clip_ix: dict[tuple[Path, float | None], int] = {}
    file_ix: dict[Path, int] = {}
    cat_ix: dict[str, int] = {}
    clip_sample: list[str] = []
    clip_file: list[int] = []
    clip_cat: list[int] = []
    row_frame: list[int] = []
    row_clip: list[int] = []
    row_cat: list[int] = []
    samples: list[str] = []
    for r in rows:
        fi = frame_ix.setdefault(r.frame, len(frame_ix))
        key = (r.audio, None if r.start is None else float(r.start))
        cat = cat_ix.setdefault(r.category, len(cat_ix)) if r.category else -1
        ci = clip_ix.get(key)
        if ci is None:
            ci = clip_ix[key] = len(clip_ix)
            clip_sample.append(r.sample)
            clip_file.append(file_ix.setdefault(r.audio, len(file_ix)))
            clip_cat.append(cat)
        row_frame.append(fi)
        row_clip.append(ci)
        row_cat.append(cat)
        samples.append(r.sample)
    clips = list(clip_ix)
    return PairData(
        path=Path(paths[0]), samples=samples,
        row_frame=np.asarray(row_frame, dtype=np.int64), row_clip=np.asarray(row_clip, dtype=np.int64),
        frames=list(frame_ix), clips=clips, clip_sample=clip_sample,
        clip_file=np.asarray(clip_file, dtype=np.int64),
        clip_start=np.asarray([0.0 if s is None else s for _, s in clips], dtype=np.float64),
        clip_category=np.asarray(clip_cat, dtype=np.int64), categories=list(cat_ix), skipped=errors,
        row_category=np.asarray(row_cat, dtype=np.int64), paths=[Path(p) for p in paths],
    )


# --- frames ---------------------------------------------------------------------------------------------------

def decode_frame(path: str | os.PathLike, size: int) -> Any:
    """Decode an image file into a ``uint8`` tensor ``(3, size, size)``: RGB, short side scaled to ``size`` and
    centre-cropped, exactly as :func:`soundlib.images.load_image` prepares pictures for queries and evaluation.

    Raises:
        ImageError: the file cannot be decoded.
    """
    import torch

    from soundlib.images import load_image

    img = load_image(path, size)  # (3, size, size) float in [0, 1]
    return (img.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


class _FrameBatches:
    """Map-style dataset: item ``i`` is batch ``i``'s frames decoded as one ``uint8 (B, 3, S, S)`` tensor."""

    def __init__(self, paths: Sequence[Path], batches: Sequence[np.ndarray], size: int) -> None:
        self.paths = [str(p) for p in paths]
        self.batches = [np.asarray(b, dtype=np.int64) for b in batches]
        self.size = size

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.stack([decode_frame(self.paths[j], self.size) for j in self.batches[i]])


class FrameStore:
    """Frames of a :class:`PairData` as ``uint8 (3, size, size)`` tensors.

    Args:
        paths: frame files (index = frame index).
        size: output side in pixels (the model's ``picture_size``).
        workers: ``DataLoader`` worker processes for decoding (0 = in the main process).
        preload_mb: preload every frame into one tensor when it takes at most this many MiB (else decode per
            batch in the workers while the model trains).
        progress: reports ``progress("frames", done, total)`` while preloading.
    """

    def __init__(self, paths: Sequence[Path], size: int, workers: int = 1, preload_mb: float = 1024.0,
                 progress: ProgressFn | None = None) -> None:
        self.paths = list(paths)
        self.size = int(size)
        self.workers = max(0, int(workers))
        self.cache: Any = None
        need_mb = len(self.paths) * 3 * self.size * self.size / 2**20
        if need_mb <= preload_mb:
            self._preload(progress or null_progress)

    @property
    def preloaded(self) -> bool:
        return self.cache is not None

    def _preload(self, progress: ProgressFn) -> None:
        import torch

        n = len(self.paths)
        chunk = 64
        batches = [np.arange(i, min(i + chunk, n)) for i in range(0, n, chunk)]
        cache = torch.empty((n, 3, self.size, self.size), dtype=torch.uint8)
        progress("frames", 0, n)
        for b, x in zip(batches, self._iterate(batches)):
            cache[torch.from_numpy(b)] = x
            progress("frames", int(b[-1]) + 1, n)
        self.cache = cache

    def _iterate(self, batches: Sequence[np.ndarray]) -> Iterator[Any]:
        import torch

        ds = _FrameBatches(self.paths, batches, self.size)
        if self.workers == 0 or len(batches) <= 1:
            for i in range(len(ds)):
                yield ds[i]
            return
        loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.workers,
                                             prefetch_factor=4, persistent_workers=False)
        yield from loader

    def batches(self, index_batches: Sequence[np.ndarray]) -> Iterator[Any]:
        """Yield ``uint8 (B, 3, S, S)`` frame tensors for each array of frame indices, in order."""
        import torch

        if self.cache is not None:
            for b in index_batches:
                yield self.cache[torch.from_numpy(np.asarray(b, dtype=np.int64))]
        else:
            yield from self._iterate(index_batches)


class FeatureStore:
    """Precomputed per-frame inputs (e.g. the pretrained family's cached backbone features), served like a
    :class:`FrameStore`: ``batches`` yields ``cache[indices]``.

    Args:
        paths: frame files (index = frame index).
        features: ``(len(paths), ...)`` tensor (float32 features).
    """

    def __init__(self, paths: Sequence[Path], features: Any) -> None:
        if int(features.shape[0]) != len(paths):
            raise ValueError(f"{features.shape[0]} feature rows for {len(paths)} frames")
        self.paths = list(paths)
        self.cache = features

    @property
    def preloaded(self) -> bool:
        return True

    def batches(self, index_batches: Sequence[np.ndarray]) -> Iterator[Any]:
        """Yield the feature rows of each array of frame indices, in order."""
        import torch

        for b in index_batches:
            yield self.cache[torch.from_numpy(np.asarray(b, dtype=np.int64))]


# --- epochs ---------------------------------------------------------------------------------------------------

@dataclass
class Epoch:
    """One epoch's batches: per batch, row indices (frames come from them), clip indices and labels.

    ``labels`` is ``None`` for the contrastive families (row ``i``'s own clip is its positive).
    """

    rows: list[np.ndarray]
    clips: list[np.ndarray]
    labels: list[np.ndarray] | None

    @property
    def pairs(self) -> int:
        return int(sum(len(b) for b in self.rows))


def _split(n: int, batch: int) -> list[slice]:
    """Consecutive slices of ``batch`` (the last one merged into the previous when it would hold a single pair)."""
    cuts = list(range(0, n, batch)) + [n]
    sl = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    if len(sl) > 1 and sl[-1].stop - sl[-1].start < 2:
        last = sl.pop()
        sl[-1] = slice(sl[-1].start, last.stop)
    return sl


def negative_clips(data: PairData, rows: np.ndarray, rng: np.random.Generator, tries: int = 16) -> np.ndarray:
    """Draw one negative clip per row.

    A negative is a clip of another category when both clips have one (pooled lists may mix categorised catalog
    rows and uncategorised video rows); otherwise a clip of another audio file (another video) or of the same file
    at least :data:`MIN_NEGATIVE_GAP` seconds away. Never the row's own sample. Rows without any such clip fall back
    to any clip with another sample label.

    Returns:
        ``(len(rows),)`` clip indices.

    Raises:
        ListError: the list holds a single sample (no negative exists).
    """
    n_clips = len(data.clips)
    own = data.row_clip[rows]
    sample_ids = _sample_codes(data)
    if len(set(sample_ids.tolist())) < 2:
        raise ListError("needs at least two different samples to draw negatives", str(data.path))
    cat = data.clip_category

    def valid(cand: np.ndarray, own_c: np.ndarray, strict: bool = True) -> np.ndarray:
        ok = sample_ids[cand] != sample_ids[own_c]
        if strict:
            both = (cat[cand] >= 0) & (cat[own_c] >= 0)
            far = np.abs(data.clip_start[cand] - data.clip_start[own_c]) >= MIN_NEGATIVE_GAP
            apart = (data.clip_file[cand] != data.clip_file[own_c]) | far
            ok &= np.where(both, cat[cand] != cat[own_c], apart)
        return ok

    out = rng.integers(0, n_clips, size=len(rows))
    bad = ~valid(out, own)
    for _ in range(tries):
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        out[idx] = rng.integers(0, n_clips, size=len(idx))
        bad[idx] = ~valid(out[idx], own[idx])
    all_clips = np.arange(n_clips)
    for i in np.flatnonzero(bad):  # rare: few valid candidates; pick among them exactly
        cand = all_clips[valid(all_clips, np.full(n_clips, own[i]))]
        if cand.size == 0:
            cand = all_clips[valid(all_clips, np.full(n_clips, own[i]), strict=False)]
        out[i] = cand[rng.integers(0, cand.size)]
    return out


def _sample_codes(data: PairData) -> np.ndarray:
    codes: dict[str, int] = {}
    return np.asarray([codes.setdefault(s, len(codes)) for s in data.clip_sample], dtype=np.int64)


def bce_epoch(data: PairData, batch: int, rng: np.random.Generator) -> Epoch:
    """Balanced pairs for the BCE families: every row once with its own clip (label 1) and once with a negative
    clip (label 0), rows shuffled; each batch holds ``batch // 2`` rows, each as a positive and a negative."""
    order = rng.permutation(len(data))
    neg = negative_clips(data, order, rng)
    rows = np.repeat(order, 2)
    clips = np.empty(2 * len(order), dtype=np.int64)
    clips[0::2] = data.row_clip[order]
    clips[1::2] = neg
    labels = np.tile(np.asarray([1, 0], dtype=np.int64), len(order))
    half = max(1, batch // 2)
    sl = [slice(2 * s.start, 2 * s.stop) for s in _split(len(order), half)]
    return Epoch(rows=[rows[s] for s in sl], clips=[clips[s] for s in sl], labels=[labels[s] for s in sl])


def contrastive_epoch(data: PairData, batch: int, rng: np.random.Generator) -> Epoch:
    """Positives only, shuffled, for the in-batch-negative losses. A sample label is not repeated inside a batch
    when another row can take its place (rows are deferred to the next batch instead)."""
    order = rng.permutation(len(data))
    codes: dict[str, int] = {}
    sample = np.asarray([codes.setdefault(s, len(codes)) for s in data.samples], dtype=np.int64)
    if len(codes) < len(data):
        order = _spread_duplicates(order, sample, batch)
    sl = _split(len(order), batch)
    rows = [order[s] for s in sl]
    return Epoch(rows=rows, clips=[data.row_clip[r] for r in rows], labels=None)


def _spread_duplicates(order: np.ndarray, sample: np.ndarray, batch: int) -> np.ndarray:
    pending = list(order.tolist())
    out: list[int] = []
    while pending:
        seen: set[int] = set()
        taken: list[int] = []
        rest: list[int] = []
        for r in pending:
            if len(taken) < batch and sample[r] not in seen:
                seen.add(int(sample[r]))
                taken.append(r)
            else:
                rest.append(r)
        if len(taken) < batch:  # not enough distinct samples left: fill with duplicates
            fill = batch - len(taken)
            taken += rest[:fill]
            rest = rest[fill:]
        out += taken
        pending = rest
    return np.asarray(out, dtype=np.int64)


def make_epoch(data: PairData, contrastive: bool, batch: int, rng: np.random.Generator) -> Epoch:
    """One epoch of batches for the model family (see :func:`bce_epoch`, :func:`contrastive_epoch`)."""
    return contrastive_epoch(data, batch, rng) if contrastive else bce_epoch(data, batch, rng)
