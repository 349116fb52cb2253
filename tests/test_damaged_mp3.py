"""Damaged MP3 frames: libsndfile's mpg123 prints a line per damaged frame straight to file descriptor 2. Those lines
stay off the terminal (:mod:`soundlib.native_stderr`), and the file gets one warning line naming it instead.

Real MP3s are written with soundfile and damaged by overwriting bytes in their middle (a fixed generator), as a bad
disk or a broken download would.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from soundlib.native_stderr import captured
from tests.cli_process import start_cli
from tests.conftest import WRITABLE_AUDIO, drop_length_tag, warbling_tone, write_audio, write_tone

needs_mp3 = pytest.mark.skipif("mp3" not in WRITABLE_AUDIO, reason="this libsndfile cannot write MP3")

MPG123 = ("libmpg123", "Note: ", "Warning: ", "] error:")  # what mpg123 itself prints (our warning quotes its message)


def write_damaged_mp3(path: Path, seed: int = 2, hits: int = 40) -> Path:
    """A 3-s MP3 with ``hits`` bytes of its middle third overwritten (seed 2: the decoder stops early, at ~1.6 s)."""
    write_audio(path, warbling_tone(), 44_100)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(len(data) // 3, 2 * len(data) // 3, hits):
        data[pos] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
    return path


# --- the capture itself --------------------------------------------------------------------------------------------

PICK = re.compile(r"^\[src/libmpg123/[^\n]*\n?", re.MULTILINE)


def test_picked_lines_stay_off_descriptor_2_and_the_rest_is_written_back_in_order(capfd) -> None:
    with captured(PICK) as picked:
        os.write(2, b"before\n[src/libmpg123/layer3.c:f():1] error: boom\nafter\n")
    assert picked == ["[src/libmpg123/layer3.c:f():1] error: boom"]
    assert capfd.readouterr().err == "before\nafter\n"


def test_a_capture_nests_in_one_thread_and_gives_descriptor_2_back(capfd) -> None:
    with captured(PICK) as outer:
        os.write(2, b"[src/libmpg123/a.c:f():1] error: outer\n")
        with captured(PICK) as inner:
            os.write(2, b"[src/libmpg123/b.c:g():2] error: inner\nkept\n")
        assert inner == ["[src/libmpg123/b.c:g():2] error: inner"]
    assert outer == ["[src/libmpg123/a.c:f():1] error: outer"]
    os.write(2, b"afterwards\n")
    assert capfd.readouterr().err == "kept\nafterwards\n"


def test_a_failing_block_still_gives_descriptor_2_back(capfd) -> None:
    with pytest.raises(RuntimeError, match="decoder failed"):
        with captured(PICK):
            os.write(2, b"[src/libmpg123/c.c:h():3] error: gone\n")
            raise RuntimeError("decoder failed")
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


# --- the audio front end -------------------------------------------------------------------------------------------

@needs_mp3
def test_a_damaged_mp3_loads_with_a_warning_and_nothing_on_descriptor_2(tmp_path: Path, capfd) -> None:
    from soundlib.audio import load_windows_and_info, probe_audio

    bad = write_damaged_mp3(tmp_path / "bark.mp3")
    info, starts, windows = load_windows_and_info(bad)
    err = capfd.readouterr().err
    assert not any(m in err for m in MPG123), err
    assert info.warning is not None and info.warning.startswith('damaged MP3 (decoder: "'), info.warning
    # the decoder gave up part-way: the warning says how much of the header's length decoded
    assert "s of the 3.00 s its header gives" in info.warning and info.duration < 2.9
    assert len(starts) == len(windows) >= 1 and np.isfinite(windows).all()
    assert probe_audio(bad).warning == info.warning  # probing counts an MP3 by decoding it: the same damage


@needs_mp3
def test_a_cut_mp3_loads_shorter_with_a_warning_and_nothing_on_descriptor_2(tmp_path: Path, capfd) -> None:
    """A file cut short (a broken copy) keeps its Xing tag's length: mpg123 says "Warning: Xing stream size off..."."""
    from soundlib.audio import load_windows_and_info

    whole = write_audio(tmp_path / "whole.mp3", warbling_tone(), 44_100)
    (cut := tmp_path / "cut.mp3").write_bytes(whole.read_bytes()[:3_000])
    info = load_windows_and_info(cut)[0]
    err = capfd.readouterr().err
    assert not any(m in err for m in MPG123), err
    assert info.duration < 1.0 and info.warning is not None, info
    assert info.warning.startswith('damaged MP3 (decoder: "Xing stream size off'), info.warning
    assert "s of the 3.00 s its header gives" in info.warning


def test_a_shortfall_is_told_only_against_a_stated_length() -> None:
    """Without a Xing / Info / VBRI tag an MP3's length is estimated from its bitrate (Scratch's own loops decode
    0.2-0.6 s shorter than libsndfile's estimate, with FFmpeg too), so falling short of it is no loss."""
    from soundlib.audio import mp3_damage

    lines = ["[src/libmpg123/layer3.c:INT123_do_layer3():1804] error: dequantization failed!", "Note: Trying to resync..."]
    assert mp3_damage([], 100, 200, 100) is None
    assert mp3_damage(lines, 165, 300, 100) == (
        'damaged MP3 (decoder: "dequantization failed!" and 1 more message); decoded 1.65 s of the 3.00 s its '
        "header gives")
    assert mp3_damage(lines[:1], 165, None, 100) == 'damaged MP3 (decoder: "dequantization failed!")'
    assert "decoded" not in mp3_damage(lines, 297, 300, 100)  # within 1 % + 50 ms: a rounding, not a loss


@needs_mp3
def test_a_length_tag_is_found_behind_an_id3_tag_and_missed_where_there_is_none(tmp_path: Path) -> None:
    from soundlib.audio import _has_length_tag

    tagged = write_audio(tmp_path / "tagged.mp3", warbling_tone(), 44_100)
    data = tagged.read_bytes()
    assert data[21:25] == b"Xing" and _has_length_tag(tagged)  # libsndfile's encoder (LAME) writes one
    # an ID3v2 tag in front (4,000 bytes of text, its size in 7-bit bytes), then the same frames
    body = b"TIT2" + (3_990).to_bytes(4, "big") + b"\0\0\3" + b"x" * 3_989
    id3 = b"ID3\3\0\0" + bytes((len(body) >> s) & 0x7F for s in (21, 14, 7, 0)) + body
    (behind := tmp_path / "behind_id3.mp3").write_bytes(id3 + data)
    assert _has_length_tag(behind)
    (untagged := tmp_path / "untagged.mp3").write_bytes(data)
    assert not _has_length_tag(drop_length_tag(untagged))


@needs_mp3
def test_an_intact_mp3_and_a_wav_load_without_a_warning(tmp_path: Path) -> None:
    from soundlib.audio import load_windows_and_info

    good = write_audio(tmp_path / "tone.mp3", warbling_tone(), 44_100)
    assert load_windows_and_info(good)[0].warning is None
    assert load_windows_and_info(write_tone(tmp_path / "tone.wav"))[0].warning is None


# --- a batch command in a real process -----------------------------------------------------------------------------

@needs_mp3
def test_ingest_names_the_damaged_mp3_in_one_warning_line_and_keeps_mpg123_off_the_terminal(
        tmp_path: Path, tiny_checkpoint: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    bad = write_damaged_mp3(lib / "dog_bark_damaged.mp3")
    write_tone(lib / "tone.wav", seconds=2.0)
    db = tmp_path / "db"
    rc, out, err = start_cli(["ingest", lib, "--db", db, "--model", tiny_checkpoint, "--json"],
                             tmp_path / "logs").finish()
    assert rc == 0, err
    assert not any(m in err for m in MPG123), err
    doc = json.loads(out)
    assert doc["added"] == 2 and not doc["skipped"]
    assert [w["path"] for w in doc["warnings"]] == [str(bad)]
    assert doc["warnings"][0]["reason"].startswith("damaged MP3")
    rc, out, err = start_cli(["ingest", lib, "--db", tmp_path / "db2", "--model", tiny_checkpoint],
                             tmp_path / "logs").finish()
    lines = [ln for ln in err.splitlines() if str(bad) in ln]
    assert rc == 0 and len(lines) == 1 and "damaged MP3" in lines[0], err
    assert not any(m in err for m in MPG123), err
