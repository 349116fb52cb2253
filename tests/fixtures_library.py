"""A small but nasty sound library written with real files, and what ingesting it must give (hand-computed).

Layout under ``root`` (named ``lib``)::

    dogs/bark 1.wav                  2.5 s @ 16 kHz  -> windows at 0, 1, 1.5 (last one ends at the end)
    dogs/nested/deep/growl.flac      1.5 s @ 22.05 kHz -> 0, 0.5
    dogs/notes.wav                   a text file        -> skipped "not an audio file"
    dogs/.secret.wav, .hidden/x.wav  hidden             -> not seen
    dogs/loop -> ..                  symlink loop       -> not walked twice
    rain/drizzle.wav                 3.0 s @ 48 kHz  -> 0, 1, 2
    rain/Sturm über Nacht (ß).wav    2.0 s @ 44.1 kHz -> 0, 1
    rain/broken.wav                  header promises more data than the file holds -> skipped "truncated"
    cars/engine long.wav             40 s @ 8 kHz    -> 40 windows, capped to 30
    cars/blip.wav                    0.4 s @ 48 kHz  -> 0 (wrap-padded)
    loose.wav                        1.2 s @ 48 kHz  -> 0; lies in the root: category "lib"
    readme.txt                       not audio          -> not seen
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Expected:
    category: str
    folder: str
    starts: tuple[float, ...]
    sample_rate: int


#: rel path -> what the store must hold for it (with the default cap of 30 windows).
GOOD: dict[str, Expected] = {
    "dogs/bark 1.wav": Expected("dogs", "dogs", (0.0, 1.0, 1.5), 16_000),
    "dogs/nested/deep/growl.flac": Expected("dogs", "dogs/nested/deep", (0.0, 0.5), 22_050),
    "rain/drizzle.wav": Expected("rain", "rain", (0.0, 1.0, 2.0), 48_000),
    "rain/Sturm über Nacht (ß).wav": Expected("rain", "rain", (0.0, 1.0), 44_100),
    "cars/engine long.wav": Expected("cars", "cars", tuple(float(round(i * 39 / 29)) for i in range(30)), 8_000),
    "cars/blip.wav": Expected("cars", "cars", (0.0,), 48_000),
    "loose.wav": Expected("lib", "", (0.0,), 48_000),
}
#: rel path -> a word the skip reason must contain.
BAD: dict[str, str] = {
    "dogs/notes.wav": "not an audio file",
    "rain/broken.wav": "truncated",
}
TOTAL_WINDOWS = sum(len(e.starts) for e in GOOD.values())


def tone(seconds: float, sr: int, kind: str, seed: int) -> np.ndarray:
    """A deterministic test sound: ``kind`` in {"noise", "tone", "chirp", "clicks"}; float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    if kind == "noise":
        y = rng.normal(scale=0.2, size=n)
    elif kind == "tone":
        y = 0.4 * np.sin(2 * np.pi * (110 + 40 * seed) * t)
    elif kind == "chirp":
        y = 0.4 * np.sin(2 * np.pi * (200 + 900 * t / max(seconds, 1e-3)) * t)
    else:
        y = np.zeros(n)
        y[:: max(1, sr // 7)] = 0.5
        y += rng.normal(scale=0.01, size=n)
    return np.clip(y, -0.5, 0.5).astype(np.float32)


def write_sound(path: Path, seconds: float, sr: int, kind: str = "noise", seed: int = 0) -> Path:
    """Write a sound file (format from the extension) and return its path."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, sr, kind, seed), sr)
    return path


def build_library(root: Path) -> Path:
    """Write the library described in the module docstring under ``root`` (created) and return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    write_sound(root / "dogs" / "bark 1.wav", 2.5, 16_000, "clicks", 1)
    write_sound(root / "dogs" / "nested" / "deep" / "growl.flac", 1.5, 22_050, "noise", 2)
    (root / "dogs" / "notes.wav").write_text("these are not the sounds you are looking for\n")
    write_sound(root / "dogs" / ".secret.wav", 1.0, 16_000, "noise", 3)
    write_sound(root / ".hidden" / "x.wav", 1.0, 16_000, "noise", 4)
    os.symlink("..", root / "dogs" / "loop")
    write_sound(root / "rain" / "drizzle.wav", 3.0, 48_000, "noise", 5)
    write_sound(root / "rain" / "Sturm über Nacht (ß).wav", 2.0, 44_100, "chirp", 6)
    broken = write_sound(root / "rain" / "broken.wav", 2.0, 16_000, "tone", 7)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    write_sound(root / "cars" / "engine long.wav", 40.0, 8_000, "tone", 8)
    write_sound(root / "cars" / "blip.wav", 0.4, 48_000, "chirp", 9)
    write_sound(root / "loose.wav", 1.2, 48_000, "tone", 10)
    (root / "readme.txt").write_text("a library\n")
    return root
