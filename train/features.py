"""Log-mel cache: each (audio file, start) window's raw log-mel is computed once and kept on disk.

One ``.npz`` per (audio file content, front end): ``<cache>/<sha256 of the file>-<front-end key>.npz`` holding
``starts`` (seconds, float64) and ``mels`` (``[n, n_mels, frames]`` float32, not normalised). A later request for
new starts of the same file computes only those and rewrites the file with the union. Keys use the file's content
hash, so a renamed file hits the cache and an edited one misses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoders.config import AudioConfig
from soundlib.errors import AudioError
from soundlib.progress import ProgressFn, null_progress

#: Bump when the cache layout changes.
CACHE_VERSION = 1


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def frontend_key(audio: AudioConfig, extra: str = "") -> str:
    """Short hash of the audio front-end configuration (plus ``extra``, e.g. the model class) for cache keys."""
    from dataclasses import asdict

    text = json.dumps({"v": CACHE_VERSION, "audio": asdict(audio), "extra": extra}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


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
                 audio: AudioConfig | None = None, extra_key: str = "", batch: int = 64) -> None:
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

    def windows(self, audio_path: str | os.PathLike, starts: Sequence[float], sha256: str | None = None) -> np.ndarray:
        """Log-mels of the windows at ``starts`` (seconds) of one file.

        Returns:
            ``(len(starts), n_mels, frames)`` float32, in the order of ``starts``.

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
            new = self._compute(audio_path, missing)
            self.computed += len(missing)
            all_starts = np.concatenate([have_starts, np.asarray(missing, dtype=np.float64)])
            all_mels = new if have is None or have.size == 0 else np.concatenate([have, new])
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = cpath.with_name(cpath.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, starts=all_starts, mels=all_mels.astype(np.float32))
            os.replace(tmp, cpath)
            index = {round(float(s), 6): i for i, s in enumerate(all_starts)}
            have = all_mels
        assert have is not None
        return np.ascontiguousarray(have[[index[s] for s in want]], dtype=np.float32)

    def _compute(self, audio_path: str | os.PathLike, starts: Sequence[float]) -> np.ndarray:
        import torch

        from soundlib.audio import cut_windows, load_audio

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
        mels = cache.windows(p, [clips[i][1] for i in idx])
        if result is None:
            result = np.empty((len(clips),) + mels.shape[1:], dtype=np.float32)
        result[idx] = mels
        progress(task, n, len(by_file), windows=len(idx))
    if result is None:
        return np.zeros((0, cache.audio.n_mels, cache.audio.frames), dtype=np.float32)
    return result
