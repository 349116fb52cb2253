"""Feature caches for training: each audio window's and each frame's model input is computed once, kept on disk.

Audio (:class:`LogMelCache`): one ``.npz`` per (audio file content, front end):
``<cache>/<sha256 of the file>-<front-end key>.npz`` holding ``starts`` (seconds, float64) and ``mels`` (``[n, ...]``
float32: the paper models' raw log-mels ``[n, n_mels, frames]``, or the pretrained family's packed backbone features
``[n, F]``; the front-end key then includes ``model.features_key``). A later request for new starts of the same file
computes only those and rewrites the file with the union. Keys use the file's content hash, so a renamed file hits
the cache and an edited one misses it.

Whole-file clips (list rows with an empty ``start``, e.g. catalog pairs): :meth:`LogMelCache.loudest` picks up to
``n`` windows of the file -- its loudest 1-s windows on the ``hop`` grid, among those within
:data:`WINDOW_KEEP_DB` dB of the loudest (the rule ``train.catalog --windows`` uses), in time order; a file no longer
than one window has one (wrap-padded) window -- and caches their features; the choice itself is cached in
``<cache>/picks/<sha256>-<key>-loud<n>.json`` so later runs do not decode the file again. The training loop draws
one of a clip's windows per epoch (see :mod:`train.loop`); validation scores the file by its best window, like
``soundlib eval`` and ``soundlib query`` do.

Images (:class:`ImageFeatureCache`, pretrained family only): ``<cache>/images/<sha256 of the frame file>-<key>.npy``
holds the frame's backbone features ``(F,)`` float32, the key hashing ``model.features_key`` and the image size.
Frames are read with :func:`soundlib.images.load_image` at the model's image size, exactly as ``soundlib query``
and ``soundlib eval`` read pictures.
"""

from __future__ import annotations

from encoders.hashing import config_key, file_sha256  # noqa: F401 (file_sha256 re-exported)

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoders.atomic import atomic_write
from encoders.config import AudioConfig
from soundlib.config import INFERENCE_BATCH
from soundlib.errors import AudioError
from soundlib.progress import ProgressFn, null_progress

#: Bump when the cache layout changes.
CACHE_VERSION = 1
#: Whole-file clips: a window is a candidate when its RMS is within this many dB of the file's loudest window.
WINDOW_KEEP_DB = 12.0




def frontend_key(audio: AudioConfig, extra: str = "") -> str:
    """Short hash of the audio front-end configuration (plus ``extra``, e.g. the model class) for cache keys."""
    from dataclasses import asdict

    return config_key({"v": CACHE_VERSION, "audio": asdict(audio), "extra": extra})


class LogMelCache:
    """Raw log-mel windows of audio files, computed once and cached on disk.

    Args:
        cache_dir: folder of the ``.npz`` files (created).
        features: ``waves[B, window_samples] (torch float32) -> [B, n_mels, frames]`` (e.g.
            ``AVModel.audio_features``); called under ``torch.no_grad``.
        audio: the front end's configuration (sample rate, window); part of the cache key.
        extra_key: anything else that changes the features (e.g. the model family).
        batch: windows per call of ``features``.
    """

    def __init__(self, cache_dir: str | os.PathLike, features: Callable[[Any], Any],
                 audio: AudioConfig | None = None, extra_key: str = "", batch: int = INFERENCE_BATCH) -> None:
        self.dir = Path(cache_dir).expanduser()
        self.features = features
        self.audio = audio or AudioConfig()
        self.key = frontend_key(self.audio, extra_key)
        self.batch = int(batch)
        self.hits = 0
        self.computed = 0

    def path_for(self, sha256: str) -> Path:
        """The cache file of an audio file with this content hash."""
        return self.dir / f"{sha256}-{self.key}.npz"

    def windows(self, audio_path: str | os.PathLike, starts: Sequence[float], sha256: str | None = None,
                wave: np.ndarray | None = None) -> np.ndarray:
        """Features (log-mels) of the windows at ``starts`` (seconds) of one file.

        Args:
            audio_path: the audio file.
            starts: window starts in seconds.
            sha256: the file's content hash if already known.
            wave: the file already decoded (mono at ``audio.sample_rate``), to skip decoding it again.

        Returns:
            ``(len(starts), ...)`` float32 (``(n_mels, frames)`` per window for the paper models), in the order of
            ``starts``.

        Raises:
            AudioError: the audio file cannot be decoded.
        """
        want = [round(float(s), 6) for s in starts]
        sha = sha256 or file_sha256(audio_path)
        cpath = self.path_for(sha)
        have_starts = np.zeros(0, dtype=np.float64)
        have = None
        if cpath.exists():
            try:
                with np.load(cpath) as z:
                    have_starts, have = z["starts"].astype(np.float64), z["mels"].astype(np.float32)
            except (OSError, ValueError, KeyError):
                have_starts, have = np.zeros(0, dtype=np.float64), None
        index = {round(float(s), 6): i for i, s in enumerate(have_starts)}
        missing = sorted({s for s in want if s not in index})
        self.hits += len(want) - len([s for s in want if s not in index])
        if missing:
            new = self._compute(audio_path, missing, wave)
            self.computed += len(missing)
            all_starts = np.concatenate([have_starts, np.asarray(missing, dtype=np.float64)])
            all_mels = new if have is None or have.size == 0 else np.concatenate([have, new])
            with atomic_write(cpath) as tmp:
                np.savez(tmp, starts=all_starts, mels=all_mels.astype(np.float32))
            index = {round(float(s), 6): i for i, s in enumerate(all_starts)}
            have = all_mels
        assert have is not None
        return np.ascontiguousarray(have[[index[s] for s in want]], dtype=np.float32)

    def loudest(self, audio_path: str | os.PathLike, n: int, sha256: str | None = None
                ) -> tuple[list[float], np.ndarray]:
        """Up to ``n`` of the file's loudest windows (see the module notes) and their features.

        Returns:
            ``(starts, features)``: starts in seconds (time order), features ``(len(starts), ...)`` float32.

        Raises:
            AudioError: the audio file cannot be decoded (or is silent).
        """
        import json as _json

        n = max(1, int(n))
        sha = sha256 or file_sha256(audio_path)
        ppath = self.dir / "picks" / f"{sha}-{frontend_key(self.audio, 'picks')}-loud{n}.json"
        starts: list[float] | None = None
        wave = None
        if ppath.exists():
            try:
                starts = [float(x) for x in _json.loads(ppath.read_text(encoding="utf-8"))["starts"]]
            except (OSError, ValueError, KeyError, TypeError):
                starts = None
        if not starts:
            from soundlib.audio import load_audio

            wave = load_audio(audio_path, self.audio.sample_rate)
            starts = loud_window_starts(wave, n, self.audio)
            with atomic_write(ppath) as tmp:
                tmp.write_text(_json.dumps({"starts": starts}), encoding="utf-8")
        return starts, self.windows(audio_path, starts, sha, wave=wave)

    def _compute(self, audio_path: str | os.PathLike, starts: Sequence[float],
                 wave: np.ndarray | None = None) -> np.ndarray:
        import torch

        from soundlib.audio import cut_windows, load_audio

        if wave is None:
            wave = load_audio(audio_path, self.audio.sample_rate)  # whole track; silence judged on all of it
        try:
            waves = cut_windows(wave, list(starts), self.audio)  # a window past the end is wrap-padded
        except ValueError as e:
            raise AudioError(str(e), audio_path) from None
        outs = []
        with torch.no_grad():
            for i in range(0, len(waves), self.batch):
                x = torch.from_numpy(waves[i:i + self.batch])
                outs.append(self.features(x).detach().float().cpu().numpy())
        return np.concatenate(outs).astype(np.float32)


def loud_window_starts(wave: np.ndarray, n: int, cfg: AudioConfig | None = None) -> list[float]:
    """Starts of up to ``n`` of the loudest windows of a clip.

    Args:
        wave: (np.ndarray, shape (samples,)) mono audio at ``cfg.sample_rate``.
        n: (int >= 1) how many windows at most.
        cfg: window and hop (:func:`soundlib.audio.window_starts` gives the candidate grid, uncapped).

    Returns:
        starts (list of float): seconds, in time order: the ``n`` candidates of highest RMS among those within
            :data:`WINDOW_KEEP_DB` dB of the loudest (ties: the earlier window); ``[0.0]`` for a clip no longer than
            one window.
    """
    from soundlib.audio import cut_windows, window_starts

    cfg = cfg or AudioConfig()
    starts = window_starts(len(wave) / cfg.sample_rate, cfg, max_windows=0)
    if len(starts) <= 1:
        return [0.0]
    return loudest_starts(starts, cut_windows(np.asarray(wave, dtype=np.float32), starts, cfg), n)


def loudest_starts(starts: list[float], windows: np.ndarray, n: int) -> list[float]:
    """The starts (in time order) of the ``n`` windows of highest RMS among those within :data:`WINDOW_KEEP_DB` dB
    of the loudest (ties: the earlier window); ``windows`` is ``(len(starts), samples)``."""
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
    keep = np.flatnonzero(rms >= rms.max() * 10 ** (-WINDOW_KEEP_DB / 20))
    best = keep[np.argsort(-rms[keep], kind="stable")][:max(1, int(n))]
    return [float(starts[i]) for i in sorted(best)]


class ClipWindows:
    """The windows a list's clips train and validate on, with their features.

    Attributes:
        features: ``(W, ...)`` float32 features of every window (clip ``c``'s windows are rows
            ``offsets[c]:offsets[c + 1]``).
        offsets: ``(C + 1,)`` int64.
        starts: per clip, its windows' starts in seconds.
        window_clip: ``(W,)`` int64 clip index of each window.
    """

    def __init__(self, features: np.ndarray, counts: Sequence[int], starts: list[list[float]]) -> None:
        self.features = features
        self.offsets = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)
        self.starts = starts
        self.window_clip = np.repeat(np.arange(len(counts), dtype=np.int64), np.asarray(counts, dtype=np.int64))

    @property
    def counts(self) -> np.ndarray:
        """``(C,)`` windows per clip."""
        return np.diff(self.offsets)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One window per clip, uniformly among its windows: ``(C,)`` int64 window indices (rows of ``features``)."""
        counts = self.counts
        pick = np.minimum((rng.random(len(counts)) * counts).astype(np.int64), counts - 1)
        return self.offsets[:-1] + pick


def clip_windows(cache: LogMelCache, clips: Sequence[tuple[Path, float | None]], n_windows: int = 3,
                 progress: ProgressFn | None = None, task: str = "audio") -> ClipWindows:
    """Features of every clip's windows: a clip with a start has that one window; a whole-file clip (start ``None``)
    has up to ``n_windows`` of the file's loudest windows (:meth:`LogMelCache.loudest`). Each file is decoded at
    most once (and not at all when everything is cached).

    Returns:
        a :class:`ClipWindows` in the order of ``clips``.

    Raises:
        AudioError: an audio file cannot be decoded.
    """
    progress = progress or null_progress
    by_file: dict[Path, list[int]] = {}
    for i, (p, _) in enumerate(clips):
        by_file.setdefault(Path(p), []).append(i)
    per_clip: list[np.ndarray | None] = [None] * len(clips)
    starts: list[list[float]] = [[] for _ in clips]
    progress(task, 0, len(by_file))
    for n, (p, idx) in enumerate(by_file.items(), start=1):
        sha = file_sha256(p)
        whole = [i for i in idx if clips[i][1] is None]
        timed = [i for i in idx if clips[i][1] is not None]
        if whole:
            st, feats = cache.loudest(p, n_windows, sha)
            for i in whole:
                per_clip[i], starts[i] = feats, list(st)
        if timed:
            feats = cache.windows(p, [float(clips[i][1]) for i in timed], sha)  # type: ignore[arg-type]
            for j, i in enumerate(timed):
                per_clip[i], starts[i] = feats[j:j + 1], [float(clips[i][1])]  # type: ignore[arg-type]
        progress(task, n, len(by_file), windows=sum(len(starts[i]) for i in idx))
    if not clips:
        return ClipWindows(np.zeros((0, cache.audio.n_mels, cache.audio.frames), dtype=np.float32), [], [])
    counts = [len(s) for s in starts]
    features = np.concatenate(per_clip)  # type: ignore[arg-type]
    per_clip.clear()
    return ClipWindows(features, counts, starts)


class ImageFeatureCache:
    """Per-frame model inputs computed once and kept on disk (the pretrained family's backbone features).

    Args:
        cache_dir: cache folder (features go to ``<cache_dir>/images``).
        features: ``images[B, 3, S, S] float in [0, 1] -> [B, F]`` (e.g. ``PretrainedAVModel.image_features``);
            called under ``torch.no_grad``.
        key: identifies what ``features`` computes (e.g. ``model.features_key``).
        size: side the frames are read at (:func:`soundlib.images.load_image`; the model's ``picture_size``).
        detail: short side a large JPEG may be decoded at (``load_image``'s ``detail``; the model's
            ``picture_detail``); default ``size``.
        batch: frames per call of ``features``.
    """

    def __init__(self, cache_dir: str | os.PathLike, features: Callable[[Any], Any], key: str, size: int,
                 batch: int = INFERENCE_BATCH, detail: int | None = None) -> None:
        self.dir = Path(cache_dir).expanduser() / "images"
        self.features_fn = features
        self.size = int(size)
        self.detail = int(detail or size)
        self.key = config_key({"v": CACHE_VERSION, "features": key, "size": self.size, "detail": self.detail,
                               "reader": "load_image"})
        self.batch = int(batch)
        self.hits = 0
        self.computed = 0

    def path_for(self, sha256: str) -> Path:
        """The cache file of a frame file with this content hash."""
        return self.dir / f"{sha256}-{self.key}.npy"

    def features(self, paths: Sequence[str | os.PathLike], progress: ProgressFn | None = None,
                 task: str = "images") -> np.ndarray:
        """Features of frame files (computed for those not cached yet).

        Returns:
            ``(len(paths), F)`` float32 in the order of ``paths``.

        Raises:
            ImageError: a frame cannot be decoded.
        """
        import torch

        from soundlib.images import load_image

        progress = progress or null_progress
        shas = [file_sha256(p) for p in paths]
        rows: dict[str, np.ndarray] = {}
        todo: list[tuple[str, Path]] = []
        queued: set[str] = set()
        for sha, p in zip(shas, paths):
            if sha in rows or sha in queued:
                continue
            cpath = self.path_for(sha)
            if cpath.exists():
                try:
                    rows[sha] = np.load(cpath).astype(np.float32)
                    continue
                except (OSError, ValueError):
                    pass
            todo.append((sha, Path(p)))
            queued.add(sha)
        self.hits += len(paths) - len(todo)
        progress(task, 0, len(todo))
        self.dir.mkdir(parents=True, exist_ok=True)
        for i in range(0, len(todo), self.batch):
            chunk = todo[i:i + self.batch]
            x = torch.stack([load_image(p, self.size, detail=self.detail) for _, p in chunk])
            with torch.no_grad():
                feats = self.features_fn(x).detach().float().cpu().numpy()
            for (sha, _), f in zip(chunk, feats):
                cpath = self.path_for(sha)
                with atomic_write(cpath) as tmp:
                    np.save(tmp, f.astype(np.float32))
                rows[sha] = f.astype(np.float32)
            self.computed += len(chunk)
            progress(task, i + len(chunk), len(todo))
        if not paths:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([rows[s] for s in shas])


def clip_features(cache: LogMelCache, clips: Sequence[tuple[Path, float]],
                  progress: ProgressFn | None = None, task: str = "log-mel") -> np.ndarray:
    """Log-mels for many ``(audio path, start)`` clips, grouped per file (each file decoded at most once).

    Returns:
        ``(len(clips), n_mels, frames)`` float32 in the order of ``clips``.
    """
    progress = progress or null_progress
    by_file: dict[Path, list[int]] = {}
    for i, (p, _) in enumerate(clips):
        by_file.setdefault(Path(p), []).append(i)
    result: np.ndarray | None = None
    progress(task, 0, len(by_file))
    for n, (p, idx) in enumerate(by_file.items(), start=1):
        mels = cache.windows(p, [clips[i][1] or 0.0 for i in idx])  # a whole-file clip: its first window
        if result is None:
            result = np.empty((len(clips),) + mels.shape[1:], dtype=np.float32)
        result[idx] = mels
        progress(task, n, len(by_file), windows=len(idx))
    if result is None:
        return np.zeros((0, cache.audio.n_mels, cache.audio.frames), dtype=np.float32)
    return result
