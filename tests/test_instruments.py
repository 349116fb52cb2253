"""The instrument renderer's pieces that need no synthesizer: its table, its MIDI files and the category map's
patterns for its sounds (rendering itself needs Debian's fluidsynth and the soundfont: tools/get-instruments.sh)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from soundlib.concepts import load_concepts
from soundlib.errors import ListError, SoundlibError
from tests.conftest import tone, write_audio
from train.defaults import DEFAULT_MAP
from train.instruments import (DRUM_CHANNEL, SOURCE, TICKS_PER_QUARTER, TICKS_PER_SECOND, _vlq, check_soundfont,
                               clips_for, midi_bytes, read_programs)


def _read_vlq(data: bytes, i: int) -> tuple[int, int]:
    n = 0
    while True:
        b = data[i]
        i += 1
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            return n, i


def _events(midi: bytes) -> list[tuple[int, bytes]]:
    """An independent reader of a format-0 file: absolute ticks and each event's bytes."""
    assert midi[:4] == b"MThd" and int.from_bytes(midi[4:8], "big") == 6
    assert int.from_bytes(midi[8:10], "big") == 0 and int.from_bytes(midi[10:12], "big") == 1
    assert int.from_bytes(midi[12:14], "big") == TICKS_PER_QUARTER and midi[14:18] == b"MTrk"
    length = int.from_bytes(midi[18:22], "big")
    track = midi[22:]
    assert len(track) == length
    out, i, t = [], 0, 0
    while i < len(track):
        dt, i = _read_vlq(track, i)
        t += dt
        if track[i] == 0xFF:
            n = track[i + 2]
            out.append((t, track[i:i + 3 + n]))
            i += 3 + n
        else:
            size = 2 if track[i] & 0xF0 == 0xC0 else 3
            out.append((t, track[i:i + size]))
            i += size
    return out


def test_variable_length_quantities() -> None:
    for n, want in ((0, b"\x00"), (127, b"\x7f"), (128, b"\x81\x00"), (0x3FFF, b"\xff\x7f"),
                    (0x4000, b"\x81\x80\x00"), (0x0FFFFFFF, b"\xff\xff\xff\x7f")):
        assert _vlq(n) == want and _read_vlq(want, 0) == (n, len(want))


def test_midi_files_hold_the_notes_in_time_order_and_end_their_track() -> None:
    events = [(960, bytes([0x80, 60, 0])), (0, bytes([0xC0, 21])), (0, bytes([0x90, 60, 100]))]
    got = _events(midi_bytes(events))
    assert got[0] == (0, b"\xff\x51\x03" + (500_000).to_bytes(3, "big"))  # 120 bpm: 960 ticks per second
    assert got[1:] == [(0, bytes([0xC0, 21])), (0, bytes([0x90, 60, 100])), (960, bytes([0x80, 60, 0])),
                       (960, b"\xff\x2f\x00")]


def test_every_table_row_gives_seeded_clips_inside_its_range() -> None:
    rows = read_programs()
    for row in rows:
        clips = clips_for(row)
        assert clips == clips_for(row) and clips != clips_for(row, seed=1)  # seeded
        for stem, midi in clips.items():
            ev = _events(midi)
            notes = [e for _, e in ev if len(e) == 3 and e[0] & 0xF0 == 0x90]
            offs = [e for _, e in ev if len(e) == 3 and e[0] & 0xF0 == 0x80]
            assert notes and len(notes) == len(offs)
            seconds = ev[-1][0] / TICKS_PER_SECOND
            assert 1.0 <= seconds <= 4.5, (row.concept, stem, seconds)
            if row.kind == "drums":
                assert all(e[0] & 0x0F == DRUM_CHANNEL for e in notes)
                if stem.startswith("hit"):
                    assert {e[1] for e in notes} == {int(stem[3:])}
            else:
                assert stem.startswith("p") and ev[1][1] == bytes([0xC0, int(stem[1:4])])
                assert all(e[0] & 0x0F == 0 and row.low <= e[1] <= row.high for e in notes), (row.concept, stem)
    kit = next(r for r in rows if r.concept == "drum kit")
    assert {"beat", "fill"} <= set(clips_for(kit))


def test_the_table_names_concepts_and_the_map_picks_their_files() -> None:
    names = set(load_concepts().names)
    rows = read_programs()
    assert {r.concept for r in rows} <= names
    with open(DEFAULT_MAP, newline="", encoding="utf-8") as f:
        patterns = {r["concept"]: [p.strip() for p in r["sound_patterns"].split(";")] for r in csv.DictReader(f)}
    for r in rows:
        assert f"{SOURCE}/{r.concept}/*" in patterns[r.concept], r.concept


@pytest.mark.parametrize("line, reason", [
    ("harp,melodic,46,60,65,x", "span at least an octave"),
    ("harp,strings,46,36,84,x", "kind must be melodic or drums"),
    ("drum kit,drums,36; 99,0,0,x", "35..81"),
    ("harp,melodic,forty,36,84,x", "must be integers"),
])
def test_bad_table_rows_are_one_line_naming_the_row(tmp_path: Path, line: str, reason: str) -> None:
    p = tmp_path / "t.csv"
    p.write_text("concept,kind,gm,low,high,notes\npiano,melodic,0,48,84,ok\n" + line + "\n")
    with pytest.raises(ListError, match=reason) as e:
        read_programs(p)
    assert re.search(r"t\.csv:3\b", str(e.value))


def test_a_missing_table_and_a_file_that_is_no_soundfont_are_one_line(tmp_path: Path) -> None:
    """fluidsynth renders silence from a missing or wrong soundfont and exits 0: the renderer checks it first."""
    with pytest.raises(ListError, match="list file not found"):
        read_programs(tmp_path / "nope.csv")
    with pytest.raises(SoundlibError, match="cannot read the soundfont") as e:
        check_soundfont(tmp_path / "nope.sf2")
    assert "nope.sf2" in str(e.value)
    wav = write_audio(tmp_path / "a.wav", tone(440.0, 0.2, 16_000), 16_000)
    with pytest.raises(SoundlibError, match="not a SoundFont 2 file"):
        check_soundfont(wav)
    sf2 = tmp_path / "ok.sf2"
    sf2.write_bytes(b"RIFF" + (4).to_bytes(4, "little") + b"sfbk")
    assert check_soundfont(sf2) == sf2
