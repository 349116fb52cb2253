"""Shared test fixtures: real media files written on the fly (no mocks, no binary files in the repo).

Import the helpers in a test module with ``from tests.conftest import write_tone, write_video, ...`` or use the
fixtures. Everything is small and fast (tens of milliseconds per file).

Audio (soundfile)
    ``tone(freq, seconds, sample_rate, channels, amplitude)`` -> float32 samples (``(n,)`` or ``(n, channels)``);
    channel ``c`` has amplitude ``amplitude / (c + 1)`` so a channel mix is observable.
    ``write_audio(path, y, sample_rate)`` writes with the format implied by the suffix (:data:`AUDIO_FORMATS`).
    ``write_tone(path, freq=440, seconds=1.0, sample_rate=48000, channels=1, amplitude=0.5)`` = both.
    ``warbling_tone(seconds=3.0, sample_rate=44100)``: a swelling tone (varying MP3 bitrate).
    ``drop_length_tag(path)``: an MP3 written here without its Xing tag (as some encoders leave files).
    :data:`WRITABLE_AUDIO` lists the suffixes this libsndfile can write (``mp3`` needs libsndfile >= 1.1).

Images (Pillow)
    ``write_image(path, array_or_size, mode=None, color=(200, 40, 40), **save_kwargs)``: an ``(H, W[, C])``
    uint8/uint16 array, or a ``(width, height)`` size filled with ``color``; the format follows the suffix.
    ``halves(width, height, left, right)``: an RGB array, left half one colour, right half another.

Video (PyAV)
    ``write_video(path, seconds=3.2, fps=10, size=(64, 48), audio=True, sample_rate=48000, freq=440.0)``:
    H.264 (MPEG-4 Part 2 when libx264 is missing) + AAC mono tone. Frame ``i`` is a flat colour with red
    ``frame_red(i)`` (= ``8 * i mod 256``), green 128, blue 64, so a test can tell which frame it got:
    ``frame_index(red)``; ``frame_fn(i)`` supplies custom frames. ``rotation`` (degrees, counter-clockwise)
    writes a display matrix like a phone does.

Fixtures
    ``test_video`` (session): 3.2 s, 10 fps, 64x48, 440 Hz AAC at 48 kHz. ``video_no_audio`` (session): the same
    pictures, no audio stream. ``make_image`` / ``make_video``: the helpers bound to ``tmp_path``
    (pass a file name instead of a path).
"""

from __future__ import annotations

import fractions
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_models import other_checkpoint, tiny_checkpoint, tiny_model  # noqa: F401 (fixtures for every test)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# --- audio ---------------------------------------------------------------------------------------------------------

#: suffix -> (libsndfile format, subtype) used by :func:`write_audio`.
AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "aiff": ("AIFF", "PCM_16"),
    "caf": ("CAF", "PCM_16"),
}


def _writable_audio() -> list[str]:
    import soundfile as sf

    formats = sf.available_formats()
    return [ext for ext, (fmt, _) in AUDIO_FORMATS.items() if fmt in formats]


#: Suffixes this libsndfile can write (``mp3`` only with libsndfile >= 1.1).
WRITABLE_AUDIO: list[str] = _writable_audio()


def tone(freq: float = 440.0, seconds: float = 1.0, sample_rate: int = 48_000, channels: int = 1,
         amplitude: float = 0.5) -> np.ndarray:
    """A sine of ``freq`` Hz; shape ``(n,)`` for mono, ``(n, channels)`` otherwise (channel c: amplitude / (c+1))."""
    n = int(round(seconds * sample_rate))
    y = np.sin(2 * np.pi * freq * np.arange(n) / sample_rate)
    if channels == 1:
        return (amplitude * y).astype(np.float32)
    return np.stack([amplitude / (c + 1) * y for c in range(channels)], axis=1).astype(np.float32)


def warbling_tone(seconds: float = 3.0, sample_rate: int = 44_100) -> np.ndarray:
    """A 440 Hz tone whose level swells 3 times a second (``(n,)`` float32): MP3 encodes it at a varying bitrate."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def write_audio(path: str | Path, y: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    """Write samples with soundfile in the format of the suffix (ogg in blocks: big Vorbis writes crash libsndfile)."""
    import soundfile as sf

    path = Path(path)
    fmt, default_subtype = AUDIO_FORMATS[path.suffix.lower().lstrip(".")]
    y = np.asarray(y)
    channels = 1 if y.ndim == 1 else y.shape[1]
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=channels, format=fmt,
                      subtype=subtype or default_subtype) as f:
        block = 1 << 15
        for i in range(0, len(y), block):
            f.write(y[i:i + block])
    return path


def drop_length_tag(path: str | Path) -> Path:
    """Remove the first frame of an MP3 written by :func:`write_audio` (LAME puts its Xing tag there, with the
    length), as encoders that write no tag leave a file. Frame size: MPEG-1 Layer III, 144 x bitrate / rate bytes
    (+ 1 when padded)."""
    path = Path(path)
    data = path.read_bytes()
    assert data[21:25] == b"Xing", "not a tagged MPEG-1 Layer III file"
    bitrate = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)[data[2] >> 4] * 1000
    first = 144 * bitrate // (44_100, 48_000, 32_000)[(data[2] >> 2) & 3] + ((data[2] >> 1) & 1)
    assert data[first] == 0xFF and data[first + 1] & 0xE0 == 0xE0, "no frame sync after the tag's frame"
    path.write_bytes(data[first:])
    return path


def write_tone(path: str | Path, freq: float = 440.0, seconds: float = 1.0, sample_rate: int = 48_000,
               channels: int = 1, amplitude: float = 0.5) -> Path:
    """Write :func:`tone` to ``path`` (format from the suffix)."""
    return write_audio(path, tone(freq, seconds, sample_rate, channels, amplitude), sample_rate)


def peak_frequency(y: np.ndarray, sample_rate: int) -> float:
    """Frequency (Hz) of the largest FFT magnitude of ``y`` (Hann window, zero-padded to >= 2**18 points)."""
    n = max(1 << 18, 1 << int(np.ceil(np.log2(len(y)))))
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)), n))
    return float(np.argmax(spec) * sample_rate / n)


# --- images --------------------------------------------------------------------------------------------------------

def halves(width: int, height: int, left: tuple[int, int, int] = (255, 0, 0),
           right: tuple[int, int, int] = (0, 0, 255)) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 image: left half ``left``, right half ``right``."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 2] = left
    a[:, width // 2:] = right
    return a


def write_image(path: str | Path, array_or_size: np.ndarray | tuple[int, int] = (32, 24), mode: str | None = None,
                color: tuple[int, ...] = (200, 40, 40), **save_kwargs: Any) -> Path:
    """Write a real image file with Pillow (format from the suffix); returns the path."""
    from PIL import Image

    path = Path(path)
    if isinstance(array_or_size, np.ndarray):
        im = Image.fromarray(array_or_size)
    else:
        w, h = array_or_size
        base = "RGBA" if len(color) == 4 else "RGB"
        im = Image.new(base, (w, h), tuple(color))
    if mode is not None and im.mode != mode:
        im = im.convert(mode)
    im.save(path, **save_kwargs)
    return path


# --- video ---------------------------------------------------------------------------------------------------------

RED_STEP = 8


def frame_red(i: int) -> int:
    """Red value of frame ``i`` written by :func:`write_video`."""
    return (RED_STEP * i) % 256


def frame_index(red: float) -> int:
    """Inverse of :func:`frame_red` for the first 32 frames."""
    return int(round(red / RED_STEP))


def video_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(path: str | Path, seconds: float = 3.2, fps: int = 10, size: tuple[int, int] = (64, 48),
                audio: bool = True, sample_rate: int = 48_000, freq: float = 440.0, rotation: int = 0,
                vcodec: str | None = None, acodec: str = "aac",
                frame_fn: Callable[[int], np.ndarray] | None = None) -> Path:
    """Encode a small real video (flat frames coloured by index) with an optional mono tone track.

    ``frame_fn(i)`` may supply frame ``i`` as an ``(height, width, 3)`` uint8 array instead of the flat colour.
    """
    import av

    path = Path(path)
    w, h = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream(vcodec or video_codec(), rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if rotation:
            vs.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream(acodec, rate=sample_rate)
            a.layout = "mono"
            a.bit_rate = 128_000
        n = int(round(seconds * fps))
        for i in range(n):
            if frame_fn is not None:
                img = np.ascontiguousarray(frame_fn(i), dtype=np.uint8)
            else:
                img = np.empty((h, w, 3), np.uint8)
                img[...] = (frame_red(i), 128, 64)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, fractions.Fraction(1, fps)
            for packet in vs.encode(frame):
                c.mux(packet)
        for packet in vs.encode():
            c.mux(packet)
        if a is not None:
            y = tone(freq, seconds, sample_rate)
            step = a.codec_context.frame_size or 1024
            for s in range(0, len(y), step):
                frame = av.AudioFrame.from_ndarray(y[None, s:s + step], format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = sample_rate, s, fractions.Fraction(1, sample_rate)
                for packet in a.encode(frame):
                    c.mux(packet)
            for packet in a.encode():
                c.mux(packet)
    return path


# --- fixtures ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def foreground_signals():
    """Ctrl-C as a terminal user has it, whoever started the suite.

    A shell starts a background job (``make test &`` in a script, ``nohup``) with SIGINT ignored, and soundlib keeps
    an ignored SIGINT ignored (as shells and Python do), so the Ctrl-C tests, and the commands they start, would see
    no Ctrl-C at all. The suite runs as a foreground command does: SIGINT raises KeyboardInterrupt here, and the
    processes it starts begin with SIGINT at its default. The inherited setting is restored at the end.
    """
    import signal

    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="session")
def test_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3.2 s, 10 fps, 64x48 video (frame i: red = frame_red(i)) with a 440 Hz mono AAC track at 48 kHz."""
    return write_video(tmp_path_factory.mktemp("video") / "test.mp4")


@pytest.fixture(scope="session")
def video_no_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pictures of ``test_video`` without an audio stream."""
    return write_video(tmp_path_factory.mktemp("video") / "mute.mp4", audio=False)


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """``make_image("a.png", array_or_size, mode=None, color=..., **save_kwargs)`` -> path in tmp_path."""
    return lambda name, *args, **kw: write_image(tmp_path / name, *args, **kw)


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """``make_video("a.mp4", seconds=..., fps=..., audio=..., ...)`` -> path in tmp_path."""
    return lambda name, **kw: write_video(tmp_path / name, **kw)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of tiny-tensor tests (~30x faster than two on a busy 2-core machine).

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the previous setting is restored.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
