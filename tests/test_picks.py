"""Exporting picks (soundlib/picks.py): real sound files in, real files / ZIPs out."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundlib.picks import ExportError, Pick, export_picks, picks_zip, safe_name
from tests.conftest import WRITABLE_AUDIO, peak_frequency, tone, write_audio


def stepped(sr: int, freqs: list[int], channels: int = 1) -> np.ndarray:
    """One second per frequency, so a clip shows which seconds it holds."""
    y = np.concatenate([tone(f, 1.0, sr) for f in freqs])
    return y if channels == 1 else np.stack([y, 0.5 * y], axis=1)


@pytest.fixture
def sounds(tmp_path):
    src = tmp_path / "lib"
    src.mkdir()
    wav = write_audio(src / "door creak.wav", stepped(44_100, [300, 600, 900, 1200, 1500], channels=2), 44_100)
    flac = write_audio(src / "rain.flac", stepped(22_050, [400, 800, 1600]), 22_050)
    return {"wav": wav, "flac": flac}


def test_export_copies_originals_and_writes_listings(tmp_path, sounds):
    picks = [Pick(sounds["wav"], 2.0, 0.31, "frame.jpg", "DOORS"), Pick(sounds["flac"], 1.0, 0.42, "frame.jpg")]
    out = tmp_path / "out" / "deep"
    report = export_picks(picks, out)
    assert [e.file for e in report.picks] == ["door creak.wav", "rain.flac"]
    assert (out / "door creak.wav").read_bytes() == sounds["wav"].read_bytes()
    assert (out / "rain.flac").read_bytes() == sounds["flac"].read_bytes()
    assert sorted(report.listings) == ["picks.csv", "picks.json", "picks.m3u"]
    rows = list(csv.DictReader(open(out / "picks.csv", encoding="utf-8")))
    assert [(r["rank"], r["file"], r["start"], r["query"], r["category"]) for r in rows] == [
        ("1", "door creak.wav", "2.0", "frame.jpg", "DOORS"), ("2", "rain.flac", "1.0", "frame.jpg", "")]
    assert float(rows[0]["score"]) == pytest.approx(0.31) and rows[0]["path"] == str(sounds["wav"])
    doc = json.loads((out / "picks.json").read_text(encoding="utf-8"))
    assert doc["picks"][1]["path"] == str(sounds["flac"]) and doc["picks"][1]["clip_start"] is None
    m3u = (out / "picks.m3u").read_text(encoding="utf-8").splitlines()
    assert m3u[0] == "#EXTM3U" and [ln for ln in m3u if not ln.startswith("#")] == ["door creak.wav", "rain.flac"]
    assert report.bytes == sum(p.stat().st_size for p in out.iterdir())


def test_export_never_overwrites(tmp_path, sounds):
    out = tmp_path / "out"
    out.mkdir()
    (out / "door creak.wav").write_bytes(b"mine")
    (out / "picks.csv").write_text("mine")
    report = export_picks([Pick(sounds["wav"], 0.0, 0.1, "q")], out)
    assert (out / "door creak.wav").read_bytes() == b"mine" and (out / "picks.csv").read_text() == "mine"
    assert report.picks[0].file == "door creak-2.wav"
    assert (out / "door creak-2.wav").read_bytes() == sounds["wav"].read_bytes()
    assert "picks-2.csv" in report.listings
    again = export_picks([Pick(sounds["wav"], 0.0, 0.1, "q")], out)  # a second export into the same folder
    assert again.picks[0].file == "door creak-3.wav"
    assert again.listings == ["picks-3.csv", "picks-3.json", "picks-3.m3u"]


def test_export_does_not_follow_a_dangling_link(tmp_path, sounds):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.wav"
    os.symlink(outside, out / "door creak.wav")  # dangling: exists() says False, open() would create outside
    report = export_picks([Pick(sounds["wav"], 0.0, 0.1, "q")], out)
    assert not outside.exists()
    assert report.picks[0].file == "door creak-2.wav"


def test_clip_cuts_the_window_with_handles_in_the_files_format(tmp_path, sounds):
    report = export_picks([Pick(sounds["wav"], 2.0, 0.2, "q"), Pick(sounds["flac"], 0.0, 0.3, "q")], tmp_path / "o",
                          clip=1.0)
    a, b = report.picks
    assert (a.clip_start, a.clip_end) == (1.0, 4.0) and a.file.endswith(".wav")
    assert (b.clip_start, b.clip_end) == (0.0, 2.0) and b.file.endswith(".flac")  # cut at the file's start
    y, sr = sf.read(tmp_path / "o" / a.file, dtype="int32", always_2d=True)
    info = sf.info(tmp_path / "o" / a.file)
    assert sr == 44_100 and y.shape == (3 * 44_100, 2) and info.subtype == "PCM_16"
    orig, _ = sf.read(sounds["wav"], dtype="int32", always_2d=True)
    np.testing.assert_array_equal(y, orig[44_100:4 * 44_100])  # PCM copied sample for sample
    z, zsr = sf.read(tmp_path / "o" / b.file)
    assert zsr == 22_050 and sf.info(tmp_path / "o" / b.file).format == "FLAC"
    assert abs(peak_frequency(z[:zsr], zsr) - 400) < 3 and abs(peak_frequency(z[zsr:], zsr) - 800) < 3
    rows = json.loads((tmp_path / "o" / "picks.json").read_text())["picks"]
    assert rows[0]["clip_start"] == 1.0 and rows[0]["clip_end"] == 4.0


@pytest.mark.parametrize("ext", [e for e in ("ogg", "mp3") if e in WRITABLE_AUDIO])
def test_clip_of_a_lossy_file_keeps_its_format(tmp_path, ext):
    src = write_audio(tmp_path / f"s.{ext}", stepped(48_000, [300, 700, 1100, 1500]), 48_000)
    r = export_picks([Pick(src, 2.0, 0.1, "q")], tmp_path / "o", clip=0.5)
    out = tmp_path / "o" / r.picks[0].file
    assert out.suffix == f".{ext}" and sf.info(out).format == sf.info(src).format
    y, sr = sf.read(out)
    assert abs(len(y) / sr - 2.0) < 0.1
    mid = y[int(0.6 * sr): int(1.4 * sr)]
    assert abs(peak_frequency(mid, sr) - 1100) < 5


def test_clip_of_an_ffmpeg_only_file_is_a_wav(tmp_path):
    import av

    path = tmp_path / "bell.m4a"
    y = stepped(44_100, [500, 1000, 1500])
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=44_100)
        s.layout = "mono"
        step = s.codec_context.frame_size or 1024
        for i in range(0, len(y), step):
            fr = av.AudioFrame.from_ndarray(y[None, i:i + step], format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 44_100, i
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    r = export_picks([Pick(path, 1.0, 0.1, "q")], tmp_path / "o", clip=0.0)
    out = tmp_path / "o" / r.picks[0].file
    assert out.suffix == ".wav" and sf.info(out).samplerate == 44_100
    z, sr = sf.read(out)
    assert abs(len(z) - sr) <= 2 and abs(peak_frequency(z, sr) - 1000) < 5


def test_same_file_twice_is_copied_once(tmp_path, sounds):
    r = export_picks([Pick(sounds["wav"], 0.0, 0.1, "a"), Pick(sounds["wav"], 3.0, 0.2, "b")], tmp_path / "o")
    assert [e.file for e in r.picks] == ["door creak.wav", "door creak.wav"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["door creak.wav", "picks.csv", "picks.json",
                                                                  "picks.m3u"]
    c = export_picks([Pick(sounds["wav"], 0.0, 0.1, "a"), Pick(sounds["wav"], 3.0, 0.2, "b")], tmp_path / "c",
                     clip=0.0)
    assert len({e.file for e in c.picks}) == 2


def test_unreadable_picks_are_skipped_with_a_reason(tmp_path, sounds):
    bad = tmp_path / "lib" / "garbage.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00not a wave at all" * 10)
    picks = [Pick(tmp_path / "gone.wav", 0.0, 0.1, "q"), Pick(sounds["flac"], 0.0, 0.2, "q"), Pick(bad, 0.0, 0.3, "q")]
    r = export_picks(picks, tmp_path / "o")
    assert [e.file for e in r.picks] == ["rain.flac", "garbage.wav"]  # a copy does not decode
    assert r.skipped == [(str(tmp_path / "gone.wav"), "file not found")]
    c = export_picks(picks, tmp_path / "c", clip=0.5)
    assert [e.pick.path for e in c.picks] == [sounds["flac"]]
    assert [p for p, _ in c.skipped] == [str(tmp_path / "gone.wav"), str(bad)]
    assert "picks.json" in c.listings and json.loads((tmp_path / "c" / "picks.json").read_text())["skipped"]
    past = export_picks([Pick(sounds["flac"], 99.0, 0.1, "q")], tmp_path / "p", clip=0.5)
    assert "past the end" in past.skipped[0][1]


def test_export_folder_that_is_a_file_or_not_writable(tmp_path, sounds):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_picks([Pick(sounds["wav"], 0.0, 0.1, "q")], f)
    with pytest.raises(ExportError, match="cannot create the export folder"):
        export_picks([Pick(sounds["wav"], 0.0, 0.1, "q")], f / "sub")
    with pytest.raises(ExportError, match="not writable"):  # even root cannot create files in /proc
        export_picks([Pick(sounds["wav"], 0.0, 0.1, "q")], "/proc/self")
    with pytest.raises(ExportError, match="finite number"):
        export_picks([Pick(sounds["wav"], 0.0, 0.1, "q")], tmp_path / "o", clip=float("nan"))
    assert f.read_text() == "x"


def test_names_are_sanitised_and_stay_inside(tmp_path):
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert safe_name("..") == "sound" and safe_name(".hidden.wav") == "hidden.wav"
    assert safe_name("a\nb\x00c.wav") == "a_b_c.wav"
    assert safe_name("bad\udcffname.wav") == "bad_name.wav"  # an undecodable byte of a non-UTF-8 name
    long = safe_name("x" * 400 + ".flac")
    assert long.endswith(".flac") and len(long.encode()) <= 180
    src = tmp_path / "lib"
    src.mkdir()
    raw = os.fsencode(str(src)) + b"/caf\xe9 \xff.wav"  # a Latin-1 name: not valid UTF-8
    with open(raw, "wb") as fh:
        sf.write(fh, tone(440, 1.0, 16_000), 16_000, format="WAV")
    name = os.fsdecode(raw)
    r = export_picks([Pick(Path(name), 0.0, 0.1, "q\udcff", "cat")], tmp_path / "o")
    assert r.picks[0].file == "caf_ _.wav" and (tmp_path / "o" / "caf_ _.wav").is_file()
    doc = json.loads((tmp_path / "o" / "picks.json").read_text(encoding="utf-8"))
    assert doc["picks"][0]["path"].endswith("caf\\xe9 \\xff.wav") and doc["picks"][0]["query"] == "q\\xff"
    assert sorted(os.listdir(tmp_path)) == ["lib", "o"]  # nothing written beside the folder


class _Pipe(io.RawIOBase):
    """A write-only, unseekable sink (like an HTTP response body)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.buf += bytes(b)
        return len(b)


def test_zip_holds_the_same_content(tmp_path, sounds):
    picks = [Pick(sounds["wav"], 2.0, 0.31, "frame.jpg", "DOORS"), Pick(sounds["flac"], 1.0, 0.42, "frame.jpg"),
             Pick(tmp_path / "gone.wav", 0.0, 0.5, "frame.jpg")]
    for clip in (None, 0.5):
        pipe = _Pipe()
        r = picks_zip(picks, pipe, clip=clip)
        d = export_picks(picks, tmp_path / f"dir-{clip}", clip=clip)
        with zipfile.ZipFile(io.BytesIO(bytes(pipe.buf))) as zf:
            assert zf.testzip() is None
            names = sorted(zf.namelist())
            assert names == sorted(os.listdir(tmp_path / f"dir-{clip}"))
            for n in names:
                assert zf.read(n) == (tmp_path / f"dir-{clip}" / n).read_bytes(), n
        assert r.skipped == d.skipped and len(r.picks) == 2
