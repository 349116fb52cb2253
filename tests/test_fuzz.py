"""Fuzzing the parsers of untrusted files with hypothesis.

- The audio loader (:func:`soundlib.audio.load_windows`, which probes, decodes, resamples and cuts): random bytes
  behind audio-like headers (RIFF/WAVE, FLAC, Ogg, ID3/MPEG, AIFF, CAF, AU, Matroska) and real small files with
  bytes flipped or cut. Each must give an :class:`AudioError` or valid windows (float32, finite, one row of
  ``window_samples`` per start), never another exception.
- The pair-list parser (:func:`soundlib.lists.read_list`): CSV-like text from the list's own vocabulary (headers,
  numbers, NaN/inf, quotes, BOMs, CR/LF) and raw bytes. Each must give a :class:`PairList` whose rows are sane, or
  a :class:`ListError`.

Run deeper with ``SOUNDLIB_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import io
import math
import os
import struct
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoders.config import AudioConfig
from soundlib.errors import AudioError, ListError

CFG = AudioConfig()
#: Examples per test: a quick deterministic run by default; ``SOUNDLIB_FUZZ_EXAMPLES=5000`` fuzzes deeper (random).
_DEEP = int(os.environ.get("SOUNDLIB_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_DEEP or 60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=not _DEEP, database=None)


def _riff(fmt_tag: int, channels: int, rate: int, bits: int, data_len: int) -> bytes:
    block = max(1, channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    return (b"RIFF" + struct.pack("<I", (36 + data_len) & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_len))


wav_headers = st.builds(_riff, st.sampled_from([1, 3, 6, 7, 0x55, 0xFFFE, 0x1234]), st.integers(0, 300),
                        st.sampled_from([0, 1, 8000, 44100, 48000, 192000, 2**31 - 1]),
                        st.sampled_from([0, 8, 16, 24, 32, 64]), st.integers(0, 2**32 - 1))
fixed_headers = st.sampled_from([
    b"fLaC\x00\x00\x00\x22",                               # FLAC STREAMINFO block header
    b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x1e\x01vorbis",  # Ogg page with a Vorbis identification packet
    b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x13OpusHead",
    b"ID3\x04\x00\x00\x00\x00\x00\x00",                     # ID3v2 tag, then MPEG frames
    b"\xff\xfb\x90\x64",                                   # MPEG-1 layer III frame sync
    b"FORM\x00\x00\x10\x00AIFFCOMM\x00\x00\x00\x12",
    b"caff\x00\x01\x00\x00desc",
    b".snd\x00\x00\x00\x18",
    b"\x1aE\xdf\xa3",                                      # Matroska / WebM EBML header
    b"\x00\x00\x00\x20ftypM4A ",                           # MP4 audio
    b"",
])


@lru_cache(maxsize=None)
def real_files() -> dict[str, bytes]:
    """Small valid files (0.6 s of a chirp) in every format this libsndfile writes: bytes by suffix."""
    import soundfile as sf

    from tests.conftest import AUDIO_FORMATS, WRITABLE_AUDIO

    sr = 16_000
    t = np.arange(int(0.6 * sr)) / sr
    y = (0.4 * np.sin(2 * np.pi * (300 + 500 * t) * t)).astype(np.float32)
    out = {}
    for ext in WRITABLE_AUDIO:
        buf = io.BytesIO()
        sf.write(buf, y, sr, format=AUDIO_FORMATS[ext][0])
        out[ext] = buf.getvalue()
    return out


def check_loader(data: bytes, suffix: str) -> None:
    """Write ``data`` to a file and load it: an AudioError or valid windows, nothing else."""
    from soundlib.audio import load_windows

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            starts, windows = load_windows(path, CFG, max_windows=4)
        except AudioError as e:
            assert str(e).startswith(str(path)) and e.reason and "\n" not in str(e)
            return
    assert windows.dtype == np.float32 and windows.shape == (len(starts), CFG.window_samples)
    assert 1 <= len(starts) <= 4 and starts == sorted(starts) and starts[0] == 0.0
    assert np.isfinite(windows).all()


@FUZZ
@given(header=st.one_of(wav_headers, fixed_headers), body=st.binary(max_size=3000),
       suffix=st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".aiff", ".mka", ".m4a"]))
def test_audio_loader_on_random_bytes_behind_audio_headers(header: bytes, body: bytes, suffix: str) -> None:
    check_loader(header + body, suffix)


@FUZZ
@given(data=st.data())
def test_audio_loader_on_damaged_real_files(data: st.DataObject) -> None:
    files = real_files()
    ext = data.draw(st.sampled_from(sorted(files)))
    raw = bytearray(files[ext])
    for _ in range(data.draw(st.integers(0, 12))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    check_loader(bytes(raw[:cut] if cut is not None else raw), "." + ext)


# --- pair lists ---------------------------------------------------------------------------------------------------

cells = st.one_of(
    st.sampled_from(["frame", "audio", "start", "sample", "category", "video", "", " ", "0", "1.5", "-1", "nan",
                     "inf", "-inf", "1e400", "1,5", "0x10", "a.wav", "f.png", "../f.png", "/abs/x.wav", "sub/a.wav",
                     '"quoted, cell"', '"', "\ufeff", "\r", "é", "\x00"]),
    st.text(max_size=8),
)
rows = st.lists(st.lists(cells, min_size=0, max_size=7).map(",".join), min_size=0, max_size=8)


def check_list(text_or_bytes: str | bytes, check_files: bool) -> None:
    from soundlib.lists import read_list

    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        (base / "a.wav").write_bytes(b"x")
        (base / "f.png").write_bytes(b"x")
        (base / "sub").mkdir()
        (base / "sub" / "a.wav").write_bytes(b"x")
        path = base / "list.csv"
        if isinstance(text_or_bytes, bytes):
            path.write_bytes(text_or_bytes)
        else:
            path.write_text(text_or_bytes, encoding="utf-8", errors="surrogatepass")
        try:
            parsed = read_list(path, check_files=check_files)
        except ListError as e:
            assert str(e).startswith(str(path)) and e.reason
            return
        except UnicodeEncodeError:  # a lone surrogate cannot be written as UTF-8: not a file anyone can have
            pytest.skip("unwritable text")
        n_lines = max(1, len(path.read_bytes().splitlines()))
        for row in parsed.rows:
            assert row.start is None or (math.isfinite(row.start) and row.start >= 0)
            assert row.frame.is_absolute() and row.audio.is_absolute() and row.sample
            assert 2 <= row.line <= n_lines + 1
            if check_files:
                assert row.frame.is_file() and row.audio.is_file()
        for e in parsed.errors:
            assert isinstance(e, ListError) and e.line is not None and 2 <= e.line <= n_lines + 1
        lines = [r.line for r in parsed.rows] + [e.line for e in parsed.errors]
        assert len(lines) == len(set(lines))  # each data line is a row or an error, never both


@FUZZ
@given(header=st.lists(cells, min_size=0, max_size=7).map(",".join), body=rows,
       newline=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans(), check_files=st.booleans())
def test_list_parser_on_csv_like_text(header: str, body: list[str], newline: str, bom: bool,
                                      check_files: bool) -> None:
    text = ("\ufeff" if bom else "") + newline.join([header, *body])
    check_list(text.replace("\x00", ""), check_files)


@FUZZ
@given(header=st.sampled_from(["frame,audio", "frame,audio,start,category", "audio,frame,start", ""]),
       body=st.binary(max_size=400))
def test_list_parser_on_raw_bytes(header: str, body: bytes) -> None:
    check_list(header.encode() + b"\n" + body, check_files=True)
