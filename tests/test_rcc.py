"""train.rcc on real archives made by Qt's rcc tool (tests/data/*.rcc) and on corrupt copies of them.

The archives were made by Qt 5.15's ``/usr/lib/qt5/bin/rcc`` (Debian qtbase5-dev-tools); to regenerate them:
``.venv/bin/python tests/data/make_rcc_fixtures.py`` (its docstring and TEXT_FILES say what they hold).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.data import make_rcc_fixtures as fx
from train.rcc import MAX_ENTRY_BYTES, RccError, extract_rcc, read_rcc

DATA = Path(__file__).resolve().parent / "data"
MINI, TINY_V1, ZSTD = DATA / "mini_farm.rcc", DATA / "tiny-v1.rcc", DATA / "tiny-zstd.rcc"
PREFIX = fx.ACTIVITY + "/"


def _files(path: Path) -> dict[str, bytes]:
    archive = read_rcc(path)
    return {e.path: archive.read(e) for e in archive.files if e.default_locale}


def test_mini_archive_holds_exactly_what_rcc_was_given() -> None:
    archive = read_rcc(MINI)
    assert archive.version == 3
    files = _files(MINI)
    expected = {PREFIX + rel for rel in fx.TEXT_FILES}
    expected |= {f"{PREFIX}resource/animals/{n}.wav" for n in [*fx.TONES, "rain_copy"]}
    expected |= {f"{PREFIX}resource/animals/{n}.webp" for n in fx.PHOTOS}
    expected.add(PREFIX + "resource/noise.bin")
    assert set(files) == expected
    for rel, text in fx.TEXT_FILES.items():
        assert files[PREFIX + rel].decode("utf-8") == text
    assert files[PREFIX + "resource/noise.bin"] == fx.noise_bytes()
    # Both storage kinds are exercised: rcc compressed some entries with zlib and stored others.
    assert {e.compression for e in archive.files} == {"zlib", "none"}
    for e in archive.files:
        if e.default_locale:
            assert e.size == len(files[e.path])


def test_mini_archive_media_decode() -> None:
    files = _files(MINI)
    for name, freq in fx.TONES.items():
        y, rate = sf.read(io.BytesIO(files[f"{PREFIX}resource/animals/{name}.wav"]))
        assert rate == 8000 and len(y) == 400
        peak = np.argmax(np.abs(np.fft.rfft(y))) * rate / len(y)
        assert abs(peak - freq) <= rate / len(y)
    assert files[f"{PREFIX}resource/animals/rain_copy.wav"] == files[f"{PREFIX}resource/animals/rain.wav"]
    for name, rgb in fx.PHOTOS.items():
        im = Image.open(io.BytesIO(files[f"{PREFIX}resource/animals/{name}.webp"])).convert("RGB")
        assert im.size == (16, 16) and im.getpixel((8, 8)) == rgb


def test_locale_variant_is_listed_but_not_extracted(tmp_path: Path) -> None:
    archive = read_rcc(MINI)
    readmes = [e for e in archive.files if e.path == PREFIX + "resource/README"]
    assert sorted(e.default_locale for e in readmes) == [False, True]
    french = next(e for e in readmes if not e.default_locale)
    assert archive.read(french).decode() == fx.README_FR
    extract_rcc(MINI, tmp_path)
    assert (tmp_path / PREFIX / "resource/README").read_text() == fx.TEXT_FILES["resource/README"]


def test_format_version_1() -> None:
    archive = read_rcc(TINY_V1)
    assert archive.version == 1
    assert {p: b.decode() for p, b in _files(TINY_V1).items()} == fx.TINY_FILES


def test_zstd_is_refused_in_one_line_naming_the_file(tmp_path: Path) -> None:
    archive = read_rcc(ZSTD)
    (entry,) = archive.files
    assert entry.compression == "zstd" and entry.size is None
    with pytest.raises(RccError) as e:
        archive.read(entry)
    assert str(ZSTD) in str(e.value) and "zstd" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RccError):
        extract_rcc(ZSTD, tmp_path)


def test_extract_writes_selected_files_and_is_idempotent(tmp_path: Path) -> None:
    out = extract_rcc(MINI, tmp_path, select=lambda e: e.path.endswith(".wav"))
    assert sorted(p.name for p in out) == sorted(f"{n}.wav" for n in [*fx.TONES, "rain_copy"])
    assert not (tmp_path / PREFIX / "resource/icon.svg").exists()
    every = extract_rcc(MINI, tmp_path)
    assert (tmp_path / PREFIX / "resource/board/board1.qml").read_text() == fx.TEXT_FILES["resource/board/board1.qml"]
    stamps = {p: p.stat().st_mtime_ns for p in every}
    assert extract_rcc(MINI, tmp_path) == every
    assert {p: p.stat().st_mtime_ns for p in every} == stamps
    assert not list(tmp_path.rglob("*.part"))


# --- corrupt archives ------------------------------------------------------------------------------------------------

def _write(tmp_path: Path, blob: bytes | bytearray, name: str = "bad.rcc") -> Path:
    p = tmp_path / name
    p.write_bytes(bytes(blob))
    return p


def _read_all(path: Path) -> None:
    archive = read_rcc(path)
    for e in archive.files:
        if e.compression != "zstd":
            archive.read(e)


def _one_line_error(path: Path) -> str:
    with pytest.raises(RccError) as e:
        _read_all(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    return msg


def _header(blob: bytes) -> tuple[int, int, int, int]:
    return struct.unpack_from(">4I", blob, 4)  # version, tree, data, names


@pytest.mark.parametrize("blob, reason", [
    (b"", "no 'qres' magic"),
    (b"PK\x03\x04" + bytes(40), "no 'qres' magic"),
    (b"qres", "truncated"),
    (b"qres" + struct.pack(">4I", 9, 24, 24, 24) + bytes(8), "unknown rcc format version 9"),
    (b"qres" + struct.pack(">5I", 3, 10**9, 24, 24, 0), "tree offset"),
])
def test_garbage_is_refused(tmp_path: Path, blob: bytes, reason: str) -> None:
    assert reason in _one_line_error(_write(tmp_path, blob))


def test_every_truncation_is_refused(tmp_path: Path) -> None:
    blob = MINI.read_bytes()
    for n in list(range(0, len(blob), 37)) + [len(blob) - 1]:
        _one_line_error(_write(tmp_path, blob[:n]))


def test_flipped_bytes_give_an_rcc_error_or_a_readable_archive(tmp_path: Path) -> None:
    blob = MINI.read_bytes()
    refused = 0
    for i in range(0, len(blob), 5):
        bad = bytearray(blob)
        bad[i] ^= 0xFF
        path = _write(tmp_path, bad)
        try:
            _read_all(path)
        except RccError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            refused += 1
    assert refused > 0


def test_a_loop_in_the_tree_is_refused(tmp_path: Path) -> None:
    blob = bytearray(TINY_V1.read_bytes())
    _, tree, _, _ = _header(blob)
    struct.pack_into(">2I", blob, tree + 6, 1, 0)  # the root lists itself as its only child
    assert "reached twice" in _one_line_error(_write(tmp_path, blob))


def test_children_beyond_the_tree_are_refused(tmp_path: Path) -> None:
    blob = bytearray(TINY_V1.read_bytes())
    _, tree, _, _ = _header(blob)
    struct.pack_into(">2I", blob, tree + 6, 2, 10**6)
    assert "beyond the" in _one_line_error(_write(tmp_path, blob))


def _zlib_entry(path: Path) -> tuple[bytearray, int]:
    blob = bytearray(path.read_bytes())
    entry = next(e for e in read_rcc(path).files if e.compression == "zlib")
    return blob, entry.data_offset


def test_absurd_declared_size_is_refused(tmp_path: Path) -> None:
    blob, at = _zlib_entry(TINY_V1)
    struct.pack_into(">I", blob, at + 4, MAX_ENTRY_BYTES + 1)
    assert "limit" in _one_line_error(_write(tmp_path, blob))


def test_wrong_declared_size_is_refused(tmp_path: Path) -> None:
    blob, at = _zlib_entry(TINY_V1)
    (size,) = struct.unpack_from(">I", blob, at + 4)
    struct.pack_into(">I", blob, at + 4, size + 1)
    assert f"not the declared {size + 1}" in _one_line_error(_write(tmp_path, blob))


def test_payload_past_the_end_is_refused(tmp_path: Path) -> None:
    blob, at = _zlib_entry(TINY_V1)
    struct.pack_into(">I", blob, at, 10**7)
    assert "past the end" in _one_line_error(_write(tmp_path, blob))


def test_an_entry_escaping_the_destination_is_refused(tmp_path: Path) -> None:
    blob = bytearray(TINY_V1.read_bytes())
    _, _, _, names = _header(blob)
    at = blob.index("dir".encode("utf-16-be"), names) - 6  # the name record: u16 length, u32 hash, UTF-16BE
    struct.pack_into(">H", blob, at, 2)
    blob[at + 6:at + 10] = "..".encode("utf-16-be")
    bad = _write(tmp_path, blob)
    assert any(e.path == "sub/../b.txt" for e in read_rcc(bad).files)
    with pytest.raises(RccError, match="unsafe entry path"):
        extract_rcc(bad, tmp_path / "out")
    assert not (tmp_path / "b.txt").exists() and not (tmp_path / "out" / "b.txt").exists()


def test_missing_file_and_folder(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.rcc", tmp_path):
        with pytest.raises(RccError, match="cannot read"):
            read_rcc(path)
