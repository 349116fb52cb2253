"""Waveform overviews of sound files: min/max peaks per bin and a loudness figure, cached on disk by content hash.

A sound designer judges a sound by its shape before hearing it; ``soundlib serve`` draws these peaks for every
result row. The file is decoded once with :func:`soundlib.audio.load_audio` (soundfile, or PyAV for what
libsndfile cannot read) at its own sample rate, mixed to mono, and reduced to ``bins`` (min, max) pairs with
numpy. The result is cached as a small JSON file named after the file's sha256 (which the collection records for
every file), so a file that moved still hits the cache and a changed file never does.

Loudness
    ``loudness_db`` is a gated RMS level in dBFS: the mean power of the 100-ms blocks that are no more than 40 dB
    below the loudest block (silence and near-silence do not pull a short hit down). It is not K-weighted LUFS,
    but it ranks sounds by how loud they play. :func:`preview_gain_db` turns it into a gain that only ever turns a
    sound *down* to a common level, for loudness-matched auditioning.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoders.atomic import atomic_write
from soundlib.config import StoreConfig

#: Bins of a waveform overview (about one per pixel of a result row).
DEFAULT_BINS = 800
#: Level (dBFS, gated RMS) that loudness-matched preview turns louder sounds down to.
PREVIEW_LEVEL_DB = -20.0
#: Length of a loudness block, seconds; blocks this far (dB) below the loudest do not count.
_BLOCK_S, _GATE_DB = 0.1, 40.0
#: Bump when the cached document changes.
_VERSION = 1


@dataclass(frozen=True)
class Peaks:
    """A waveform overview of one file.

    Attributes:
        duration: length in seconds.
        sample_rate: the file's own rate (Hz).
        mins, maxs: per bin, the smallest and largest sample (mono mix, in [-1, 1]), ``bins`` values each; bin
            ``i`` covers ``[i, i + 1) * duration / bins`` seconds.
        loudness_db: gated RMS level in dBFS (see the module docstring); ``-inf`` is never returned (silent files
            are refused by the decoder).
        peak_db: the largest absolute sample in dBFS.
    """

    duration: float
    sample_rate: int
    mins: list[float]
    maxs: list[float]
    loudness_db: float
    peak_db: float

    @property
    def bins(self) -> int:
        return len(self.mins)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (samples rounded to 4 decimals)."""
        d = asdict(self)
        d["mins"] = [round(v, 4) for v in self.mins]
        d["maxs"] = [round(v, 4) for v in self.maxs]
        d["loudness_db"] = round(self.loudness_db, 2)
        d["peak_db"] = round(self.peak_db, 2)
        d["duration"] = round(self.duration, 4)
        return d


def default_cache_dir(cfg: StoreConfig | None = None) -> Path:
    """``$SOUNDLIB_HOME/cache`` (default ``~/.soundlib/cache``): beside the default store."""
    cfg = cfg or StoreConfig()
    return Path(os.environ.get(cfg.home_env) or cfg.default_home).expanduser() / "cache"


def compute_peaks(y: np.ndarray, sample_rate: int, bins: int = DEFAULT_BINS) -> Peaks:
    """Peaks and loudness of mono samples.

    Args:
        y: ``(samples,)`` float samples in [-1, 1].
        sample_rate: their rate in Hz.
        bins: number of (min, max) pairs; files shorter than ``bins`` samples get one bin per sample.

    Returns:
        :class:`Peaks`.
    """
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if y.size == 0:
        raise ValueError("no samples")
    n = int(min(max(1, bins), y.size))
    edges = np.linspace(0, y.size, n + 1).astype(np.int64)
    mins = np.minimum.reduceat(y, edges[:-1])
    maxs = np.maximum.reduceat(y, edges[:-1])
    block = max(1, int(round(_BLOCK_S * sample_rate)))
    usable = (y.size // block) * block
    blocks = y[:usable].reshape(-1, block) if usable else y[None, :]
    power = (blocks.astype(np.float64) ** 2).mean(axis=1)
    loud = power.max()
    gated = power[power >= loud * 10 ** (-_GATE_DB / 10)] if loud > 0 else power
    level = float(10 * np.log10(max(float(gated.mean()), 1e-20)))
    peak = float(20 * np.log10(max(float(np.abs(y).max()), 1e-10)))
    return Peaks(duration=y.size / float(sample_rate), sample_rate=int(sample_rate), mins=mins.tolist(),
                 maxs=maxs.tolist(), loudness_db=level, peak_db=peak)


def file_peaks(path: str | os.PathLike, sha256: str | None = None, bins: int = DEFAULT_BINS,
               cache_dir: str | os.PathLike | None = None) -> Peaks:
    """The waveform overview of a sound file, from the cache when it holds one for this content.

    Args:
        path: the sound file.
        sha256: its content hash (the collection's ``sha256``); ``None`` computes it from the file.
        bins: number of (min, max) pairs.
        cache_dir: cache root (default :func:`default_cache_dir`); the overview lives in ``peaks/`` below it.
            A cache that cannot be written is not an error (the overview is returned all the same).

    Returns:
        :class:`Peaks`.

    Raises:
        AudioError: the file cannot be decoded (missing, corrupt, silent...).
    """
    from soundlib.audio import load_audio, probe_audio

    if sha256 is None:
        from encoders.hashing import file_sha256

        from soundlib.errors import AudioError

        try:
            sha256 = file_sha256(path)
        except OSError as e:
            raise AudioError(f"cannot read ({e.strerror or e})", str(path)) from None
    folder = Path(cache_dir or default_cache_dir()) / "peaks" / sha256[:2]
    cached = folder / f"{sha256}-{int(bins)}-v{_VERSION}.json"
    try:
        return Peaks(**json.loads(cached.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    rate = probe_audio(path).sample_rate
    peaks = compute_peaks(load_audio(path, sample_rate=rate), rate, bins)
    try:
        with atomic_write(cached) as tmp, tmp.open("w", encoding="utf-8") as f:
            json.dump(asdict(peaks), f)
    except OSError:
        pass
    return peaks


def preview_gain_db(loudness_db: float, level_db: float = PREVIEW_LEVEL_DB) -> float:
    """Gain (dB, <= 0) that plays a sound of ``loudness_db`` at ``level_db``: louder sounds are turned down,
    quieter ones are left alone (never turned up, so nothing clips and no noise floor is raised)."""
    return float(min(0.0, level_db - loudness_db))
