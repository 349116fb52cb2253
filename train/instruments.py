"""Real instrument recordings by concept, rendered from the General MIDI soundfont of Debian's fluid-soundfont-gm.

The catalog's own instrument sounds are few (LMMS and Scratch samples) and some instruments the concept table knows
have none at all (accordion, banjo, harmonica, harp, saxophone), so the concept bridge's sound classifier cannot
name them. FluidR3_GM (MIT, Frank Wen) holds multi-sampled recordings of real instruments. For each row of
``data/instruments/gm_programs.csv`` this module writes a few short MIDI files (a phrase, chords, a held note for
an instrument; beats, fills and single hits for percussion) and has Debian's ``fluidsynth`` render them to WAV:

    DEST/sfx/fluidr3/<concept>/<gm>_<clip>.wav

so ``DEST/sfx`` is a ``--sounds`` root whose package (LOSO source) is ``fluidr3``, and the category map's
``fluidr3/<concept>/*`` patterns pick the files. ``tools/get-instruments.sh DEST`` fetches the soundfont and runs
:func:`render_all`.

The table's columns: ``concept`` (a concept of ``data/concepts/``), ``kind`` (``melodic``: ``gm`` holds General
MIDI program numbers, 0-127; ``drums``: ``gm`` holds General MIDI percussion keys of channel 10, 35-81),
``low``/``high`` (the MIDI note range the phrases stay in; melodic only), ``notes``.
"""

from __future__ import annotations

import argparse
import random
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from soundlib.errors import ListError, SoundlibError
from soundlib.lists import read_records
from train.scripts import run_script

#: The shipped table of instruments by concept.
DEFAULT_PROGRAMS = Path(__file__).resolve().parent.parent / "data" / "instruments" / "gm_programs.csv"
#: The soundfont's package folder under ``DEST/sfx`` (the LOSO source name of these sounds).
SOURCE = "fluidr3"
#: MIDI ticks per quarter note; at the default tempo (120 bpm) one tick is 1/960 s.
TICKS_PER_QUARTER = 480
TICKS_PER_SECOND = 960
#: Sample rate the files are rendered at (soundlib's own).
RENDER_RATE = 48_000
DRUM_CHANNEL = 9


@dataclass(frozen=True)
class InstrumentRow:
    """One row of the table: a concept and the General MIDI sounds that play it."""

    concept: str
    kind: str  # "melodic" | "drums"
    gm: tuple[int, ...]
    low: int
    high: int
    line: int


def read_programs(path: str | Path = DEFAULT_PROGRAMS) -> list[InstrumentRow]:
    """Read the table.

    Raises:
        ListError: the file is missing or unreadable, a column is missing, an unknown kind, a number out of range
            (one line naming the file and the row).
    """
    rows = []
    for i, r in read_records(path, ("concept", "kind", "gm", "low", "high")):
        try:
            gm = tuple(int(x) for x in r["gm"].split(";") if x.strip())
            low, high = int(r["low"]), int(r["high"])
        except ValueError:
            raise ListError("gm, low and high must be integers", str(path), i) from None
        kind = r["kind"]
        if kind not in ("melodic", "drums"):
            raise ListError(f"kind must be melodic or drums, got {kind!r}", str(path), i)
        lo, hi = (0, 127) if kind == "melodic" else (35, 81)
        if not gm or any(not lo <= g <= hi for g in gm):
            raise ListError(f"gm must list numbers in {lo}..{hi} for {kind}", str(path), i)
        if kind == "melodic" and not 0 <= low < low + 12 <= high <= 127:
            raise ListError("low..high must span at least an octave inside 0..127", str(path), i)
        rows.append(InstrumentRow(r["concept"], kind, gm, low, high, i))
    return rows


# --- MIDI --------------------------------------------------------------------------------------------------------

def _vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(events: list[tuple[int, bytes]]) -> bytes:
    """A format-0 Standard MIDI File of ``(tick, message)`` events (any order; ties keep their order), at
    :data:`TICKS_PER_QUARTER` and 120 bpm."""
    track = b"\x00\xff\x51\x03" + (500_000).to_bytes(3, "big")  # tempo: 500,000 us per quarter
    last = 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track += _vlq(tick - last) + msg
        last = tick
    track += b"\x00\xff\x2f\x00"  # end of track
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER) + b"MTrk" + struct.pack(">I", len(track)) + track


def _note(events: list[tuple[int, bytes]], channel: int, key: int, start_s: float, length_s: float,
          velocity: int) -> None:
    on, off = int(start_s * TICKS_PER_SECOND), int((start_s + length_s) * TICKS_PER_SECOND)
    events.append((on, bytes([0x90 | channel, key, velocity])))
    events.append((off, bytes([0x80 | channel, key, 0])))


def melodic_clips(program: int, low: int, high: int, rng: random.Random) -> dict[str, list[tuple[int, bytes]]]:
    """Three clips of one instrument: a six-note scale phrase, two held chords, one long note (~3 s each)."""
    major = [0, 2, 4, 5, 7, 9, 11, 12]
    clips: dict[str, list[tuple[int, bytes]]] = {}
    for name in ("phrase", "chords", "long"):
        ev: list[tuple[int, bytes]] = [(0, bytes([0xC0, program]))]
        if name == "phrase":
            root = rng.randint(low, high - 12)
            for k in range(6):
                _note(ev, 0, root + major[k], 0.1 + 0.45 * k, 0.42, rng.randint(80, 110))
        elif name == "chords":
            root = rng.randint(low, max(low, high - 19))
            for k, (shift, third) in enumerate(((0, 4), (5, 3))):
                for iv in (0, third, 7):
                    _note(ev, 0, min(high, root + shift + iv), 0.1 + 1.5 * k, 1.4, rng.randint(75, 100))
        else:
            _note(ev, 0, rng.randint((low + 2 * high) // 3 - 6, high - 2), 0.1, 2.6, rng.randint(85, 115))
        clips[name] = ev
    return clips


def drum_clips(keys: tuple[int, ...], rng: random.Random) -> dict[str, list[tuple[int, bytes]]]:
    """Percussion clips: each key hit on its own (a few hits, then a roll), and, for a kit (a kick among the
    keys), a beat and a fill."""
    clips: dict[str, list[tuple[int, bytes]]] = {}
    for key in keys:
        ev: list[tuple[int, bytes]] = []
        for k in range(4):
            _note(ev, DRUM_CHANNEL, key, 0.1 + 0.5 * k, 0.2, rng.randint(70, 120))
        for k in range(8):
            _note(ev, DRUM_CHANNEL, key, 2.1 + 0.125 * k, 0.1, rng.randint(60, 100))
        clips[f"hit{key}"] = ev
    if 36 in keys or 35 in keys:
        beat: list[tuple[int, bytes]] = []
        _note(beat, DRUM_CHANNEL, 49, 0.1, 0.5, 110)
        for k in range(16):  # two bars of eighths at 120 bpm
            t = 0.1 + 0.25 * k
            _note(beat, DRUM_CHANNEL, 42, t, 0.1, rng.randint(60, 90))
            if k % 4 == 0:
                _note(beat, DRUM_CHANNEL, 36, t, 0.1, 110)
            if k % 4 == 2:
                _note(beat, DRUM_CHANNEL, 38, t, 0.1, 105)
        clips["beat"] = beat
        fill: list[tuple[int, bytes]] = []
        for k, key in enumerate([38, 38, 48, 48, 45, 45, 41, 41, 38, 48, 45, 41]):
            _note(fill, DRUM_CHANNEL, key, 0.1 + 0.125 * k, 0.1, rng.randint(85, 115))
        _note(fill, DRUM_CHANNEL, 49, 1.7, 0.5, 115)
        _note(fill, DRUM_CHANNEL, 36, 1.7, 0.2, 115)
        clips["fill"] = fill
    return clips


def clips_for(row: InstrumentRow, seed: int = 0) -> dict[str, bytes]:
    """``{file stem: MIDI file bytes}`` of one table row (seeded: the same row gives the same files)."""
    rng = random.Random(f"{seed}:{row.concept}")
    out: dict[str, bytes] = {}
    if row.kind == "drums":
        for name, ev in drum_clips(row.gm, rng).items():
            out[name] = midi_bytes(ev)
        return out
    for program in row.gm:
        for name, ev in melodic_clips(program, row.low, row.high, rng).items():
            out[f"p{program:03d}_{name}"] = midi_bytes(ev)
    return out


# --- rendering ---------------------------------------------------------------------------------------------------

def check_soundfont(sf2: str | Path) -> Path:
    """``sf2`` if it is a SoundFont 2 file (``RIFF....sfbk``); fluidsynth itself renders silence from a missing or
    wrong file and exits 0.

    Raises:
        SoundlibError: missing, unreadable or not a SoundFont (one line naming the file).
    """
    path = Path(sf2)
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as e:
        raise SoundlibError(f"cannot read the soundfont ({e.strerror or e})", str(path)) from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise SoundlibError("not a SoundFont 2 file (no RIFF sfbk header)", str(path))
    return path


def render(sf2: Path, midi: bytes, out: Path, fluidsynth: str = "fluidsynth") -> None:
    """Render MIDI bytes to a 16-bit WAV at :data:`RENDER_RATE` with ``fluidsynth`` (written atomically).

    Raises:
        SoundlibError: fluidsynth is missing, fails or renders silence (one line naming the output file).
    """
    import numpy as np
    import soundfile as sf

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "clip.mid", Path(tmp) / "clip.wav"
        mid.write_bytes(midi)
        try:
            subprocess.run([fluidsynth, "-n", "-i", "-q", "-g", "0.6", "-r", str(RENDER_RATE), "-T", "wav",
                            "-O", "s16", "-F", str(wav), str(sf2), str(mid)], check=True, capture_output=True,
                           timeout=120)
        except FileNotFoundError:
            raise SoundlibError(f"{fluidsynth} not found (Debian package fluidsynth)", str(out)) from None
        except subprocess.CalledProcessError as e:
            raise SoundlibError(f"fluidsynth failed: {e.stderr.decode(errors='replace').strip()[:200]}",
                                str(out)) from None
        if not wav.exists() or not np.any(sf.read(wav, dtype="int16")[0]):
            raise SoundlibError("fluidsynth rendered no sound (the soundfont lacks this instrument?)", str(out))
        wav.replace(out)


def render_all(sf2: str | Path, dest: str | Path, table: str | Path = DEFAULT_PROGRAMS, seed: int = 0,
               fluidsynth: str = "fluidsynth") -> int:
    """Render every clip of the table to ``dest/sfx/fluidr3/<concept>/<stem>.wav``; existing files are kept
    (idempotent, resumable). Returns the number of files the folder holds for the table."""
    root = Path(dest) / "sfx" / SOURCE
    rows = read_programs(table)
    sf2 = check_soundfont(sf2)
    n = 0
    for row in rows:
        for stem, midi in clips_for(row, seed).items():
            path = root / row.concept / f"{stem}.wav"
            if not path.exists():
                render(sf2, midi, path, fluidsynth)
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sf2", required=True, help="FluidR3_GM.sf2 (Debian fluid-soundfont-gm)")
    p.add_argument("--out", required=True, help="DEST: files go to DEST/sfx/fluidr3/<concept>/")
    p.add_argument("--table", default=str(DEFAULT_PROGRAMS))
    args = p.parse_args(argv)
    return run_script(lambda: f"{render_all(args.sf2, args.out, args.table)} files in "
                              f"{Path(args.out) / 'sfx' / SOURCE}")


if __name__ == "__main__":
    sys.exit(main())
