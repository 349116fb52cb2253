"""Bad input of every kind, generated here: each gives one clear line naming the file and the reason, the right
exit code (batch: 1 with the rest processed; single item: 2) and never a traceback.

Kinds covered (ingest = batch, query/eval/--model = single item):
audio  zero-byte, truncated, header-only, text named .wav, a picture named .wav, NaN samples, inf samples,
       all-silent, unsupported codec, a video without audio (.mka), corrupt FLAC, RIFF garbage, broken symlink,
       FIFO named .wav, a name that is not UTF-8, a bad file with a newline in its name, unreadable permissions,
       and, processed fine: 10 ms, 8 channels, 192 kHz, 8 kHz, FLAC content named .wav, unicode/space/newline
       in names, a 2-hour file (streamed: bounded memory);
images corrupt JPEG, 1x1, 20000x20000, zero-byte, text named .jpg, a missing file, an unknown extension,
       a folder without images; processed fine: a unicode/newline name;
video  no frames (audio-only .mp4), truncated; processed fine: a video without audio;
lists  missing column, bad number, missing file, duplicate row;
models a foreign torch file, a truncated checkpoint, a pickle with a payload (raw and inside a torch zip).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.cli_process import one_line, peak_rss_mb, run_cli as run, start_cli
from tests.conftest import tone, write_image, write_video
from tests.fixtures_library import write_sound




# --- corpus writers ------------------------------------------------------------------------------------------------

def wav_with_format_tag(path: Path, tag: int, sr: int = 16_000) -> Path:
    """A WAV whose 'fmt ' chunk names codec ``tag`` (e.g. 0x1234: no such codec), with 0.5 s of data."""
    data = np.zeros(sr // 2, "<i2").tobytes()
    fmt = struct.pack("<HHIIHH", tag, 1, sr, sr * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def mka_unknown_codec(path: Path) -> Path:
    """A Matroska file whose audio track has a codec id nobody decodes (PCM written, then its id renamed)."""
    import fractions

    import av

    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("pcm_s16le", rate=16_000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone(440, 1.0, 16_000)[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 16_000, 0, fractions.Fraction(1, 16_000)
        for packet in [*s.encode(frame), *s.encode()]:
            c.mux(packet)
    data = path.read_bytes()
    assert data.count(b"A_PCM/INT/LIT") == 1
    path.write_bytes(data.replace(b"A_PCM/INT/LIT", b"A_QQQ/INT/LIT"))
    return path


def audio_only_mp4(path: Path, seconds: float = 1.0) -> Path:
    """An MP4 with an AAC track and no video stream."""
    import fractions

    import av

    sr = 48_000
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=sr)
        a.layout = "mono"
        y = tone(440, seconds, sr)
        step = a.codec_context.frame_size or 1024
        for s in range(0, len(y), step):
            frame = av.AudioFrame.from_ndarray(y[None, s:s + step], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sr, s, fractions.Fraction(1, sr)
            for packet in a.encode(frame):
                c.mux(packet)
        for packet in a.encode():
            c.mux(packet)
    return path


def png_of_size(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit greyscale PNG of any size (rows compressed on the fly: cheap even at 20000 x 20000)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


#: rel path -> windows stored, for the files that must be processed (durations chosen so the count is obvious:
#: a window every second while one fits, plus one ending at the end when at least half a second is left).
GOOD = {
    "good/ten ms.wav": 1,                 # 10 ms, wrap-padded
    "good/eight channels.wav": 2,         # 2 s, 8 channels averaged
    "good/hires 192k.wav": 2,             # 1.5 s at 192 kHz: 0, 0.5
    "good/low 8k.wav": 3,                 # 3 s at 8 kHz
    "good/flac content.wav": 2,           # FLAC bytes named .wav (wrong extension): decoded by content
    "good/Ünïcödé ✓ and spaces.wav": 1,   # 1 s
    "good/new\nline.wav": 1,              # a newline in the name
}

#: rel path -> words the skip reason must contain.
BAD = {
    "bad/zero.wav": "empty file (0 bytes)",
    "bad/truncated.wav": "truncated",
    "bad/header only.wav": "no audio samples",
    "bad/text.wav": "not an audio file",
    "bad/picture.wav": "not an audio file",
    "bad/nan.wav": "NaN or infinite",
    "bad/inf.wav": "NaN or infinite",
    "bad/silent.wav": "silent",
    "bad/unknown codec.mka": "unsupported audio codec",
    "bad/video only.mka": "no audio stream",
    "bad/corrupt.flac": "truncated or corrupt",
    "bad/riff garbage.wav": "truncated or corrupt",
    "bad/broken link.wav": "broken link",
    "bad/fifo.wav": "not a regular file",
    "bad/silent\nwith newline.wav": "silent",
}
#: a file name that is not valid UTF-8 (bytes), and the words its reason must contain
NOT_UTF8 = (b"bad/caf\xe9 latin-1.wav", "not valid UTF-8")


def build_corpus(root: Path) -> Path:
    """Write every file of :data:`GOOD` and :data:`BAD` (and the non-UTF-8 name) under ``root``."""
    sr = 48_000
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    sf.write(root / "good/ten ms.wav", tone(440, 0.01, sr), sr)
    sf.write(root / "good/eight channels.wav", tone(440, 2.0, sr, channels=8), sr)
    sf.write(root / "good/hires 192k.wav", tone(3000, 1.5, 192_000), 192_000)
    write_sound(root / "good/low 8k.wav", 3.0, 8_000, "tone", 1)
    sf.write(root / "good/flac content.wav", tone(660, 2.0, sr), sr, format="FLAC")
    write_sound(root / "good/Ünïcödé ✓ and spaces.wav", 1.0, 16_000, "chirp", 2)
    write_sound(root / "good/new\nline.wav", 1.0, 16_000, "noise", 3)

    bad = root / "bad"
    (bad / "zero.wav").write_bytes(b"")
    truncate(write_sound(bad / "truncated.wav", 2.0, 16_000, "tone", 4), 0.3)
    sf.write(bad / "header only.wav", np.zeros(0, np.float32), 16_000)
    (bad / "text.wav").write_text("not a sound, just words\n")
    write_image(bad / "picture.png", (32, 32))
    os.replace(bad / "picture.png", bad / "picture.wav")
    y = tone(440, 1.0, 16_000)
    y[500] = np.nan
    sf.write(bad / "nan.wav", y, 16_000, subtype="FLOAT")
    y[500] = np.inf
    sf.write(bad / "inf.wav", y, 16_000, subtype="FLOAT")
    sf.write(bad / "silent.wav", np.zeros(16_000, np.float32), 16_000)
    sf.write(bad / "silent\nwith newline.wav", np.zeros(16_000, np.float32), 16_000)
    mka_unknown_codec(bad / "unknown codec.mka")
    write_video(bad / "video only.mkv", seconds=1.0, audio=False)
    os.replace(bad / "video only.mkv", bad / "video only.mka")
    sf.write(bad / "corrupt.flac", tone(440, 3.0, sr), sr)
    data = bytearray((bad / "corrupt.flac").read_bytes())
    for i in range(2000, len(data) - 100, 7):
        data[i] ^= 0x5A
    (bad / "corrupt.flac").write_bytes(bytes(data))
    (bad / "riff garbage.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVE" + np.random.default_rng(0).bytes(3000))
    os.symlink(root / "nowhere.wav", bad / "broken link.wav")
    os.mkfifo(bad / "fifo.wav")
    write_sound(root / "bad" / "latin-1.wav", 1.0, 16_000, "tone", 5)
    os.rename(os.fsencode(root / "bad" / "latin-1.wav"), os.fsencode(root) + b"/" + NOT_UTF8[0])
    return root


# --- batch: ingest ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint):
    """(corpus root, db, checkpoint, the --json run, the table run) for one ingest of the whole corpus."""
    base = tmp_path_factory.mktemp("bad")
    root = build_corpus(base / "corpus").resolve()
    db = base / "db"
    first = run("ingest", root, "--db", db, "--model", tiny_checkpoint, "--json")
    again = run("ingest", root, "--db", db, "--model", tiny_checkpoint)  # table mode; nothing left to embed
    return root, db, tiny_checkpoint, first, again


def test_ingest_skips_each_bad_file_with_its_reason_and_processes_the_rest(ingested) -> None:
    root, db, _, first, _ = ingested
    assert first.exit_code == 1 and "Traceback" not in first.stdout + first.stderr
    doc = json.loads(first.stdout)
    assert (doc["added"], doc["windows"]) == (len(GOOD), sum(GOOD.values()))
    reasons: dict[str, str] = {}
    for s in doc["skipped"]:
        rel = os.path.relpath(s["path"], root)
        reasons[rel] = s["reason"]
    not_utf8 = [rel for rel, r in reasons.items() if NOT_UTF8[1] in r]
    assert len(not_utf8) == 1 and not_utf8[0].startswith("bad/caf")
    del reasons[not_utf8[0]]
    assert set(reasons) == set(BAD)
    for rel, words in BAD.items():
        assert words in reasons[rel], (rel, reasons[rel])
    lib = json.loads(run("library", "--db", db, "--json").stdout)
    assert (lib["files"], lib["windows"]) == (len(GOOD), sum(GOOD.values()))
    assert lib["categories"] == {"good": len(GOOD)}


def test_ingest_stored_each_good_file_with_its_windows(ingested) -> None:
    from soundlib.store import file_key, open_store

    root, db, _, _, _ = ingested
    with open_store(db=db) as store:
        records = store.file_records()
    for rel, n in GOOD.items():
        rec = records[file_key(str(root), rel)]
        assert rec.n_windows == n, rel
    assert records[file_key(str(root), "good/hires 192k.wav")].sample_rate == 192_000
    assert records[file_key(str(root), "good/low 8k.wav")].sample_rate == 8_000


def test_ingest_prints_one_line_per_skipped_file(ingested) -> None:
    root, _, _, _, again = ingested
    assert again.exit_code == 1 and "Traceback" not in again.stdout + again.stderr
    assert "unchanged" in again.stdout
    lines = [line for line in again.stderr.splitlines() if line.startswith("skipped ")]
    assert len(lines) == len(BAD) + 1
    for rel, words in BAD.items():
        shown = rel.replace("\n", "\\n")  # the newline is escaped: still one line
        match = [line for line in lines if line.startswith(f"skipped {root / shown}: ")]
        assert len(match) == 1 and words in match[0], (rel, lines)


def test_unreadable_file_is_skipped_and_a_two_hour_file_streams(tmp_path: Path, two_hours: Path,
                                                                tiny_checkpoint) -> None:
    """chmod 000 (for root, whom mode bits do not stop, the run drops CAP_DAC_OVERRIDE/READ_SEARCH) and a
    2-hour file in one real process; its peak RSS stays far below one full decode (7200 s x 48 kHz x 4 B = 1.4 GB).
    """
    lib = tmp_path / "lib"
    lib.mkdir()
    write_sound(lib / "good.wav", 2.0, 16_000, "noise", 1)
    secret = write_sound(lib / "secret.wav", 2.0, 16_000, "noise", 2)
    secret.chmod(0)
    os.symlink(two_hours, lib / "two hours.wav")
    preexec = None
    if os.geteuid() == 0:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(23, 1, 0, 0, 0) != 1:  # PR_CAPBSET_READ CAP_DAC_OVERRIDE: nothing to drop otherwise
            pytest.skip("running as root without CAP_DAC_OVERRIDE in the bounding set: cannot test")

        def preexec() -> None:  # PR_CAPBSET_DROP: after exec, root no longer overrides file modes
            for cap in (1, 2):
                if libc.prctl(24, cap, 0, 0, 0) != 0:
                    os._exit(99)
    proc = start_cli(["ingest", lib, "--db", tmp_path / "db", "--model", tiny_checkpoint, "--max-windows", "30",
                      "--json"], tmp_path / "logs", preexec_fn=preexec, measure_rss=True)
    rc, out, err = proc.finish(timeout=300)
    if rc == 99:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here (no CAP_SETPCAP): cannot test unreadable files as root")
    assert "Traceback" not in out + err
    assert rc == 1, err
    doc = json.loads(out)
    assert doc["added"] == 2 and doc["windows"] == 2 + 30
    assert [(Path(s["path"]).name, s["reason"]) for s in doc["skipped"]] == [("secret.wav", "permission denied")]
    assert f"skipped {lib / 'secret.wav'}: permission denied" in err
    peak_mb = peak_rss_mb(err)
    print(f"peak RSS of `soundlib ingest` with a 2-hour file: {peak_mb:.0f} MB")
    assert peak_mb < 1000


# --- the 2-hour file ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-hour 8 kHz 16-bit WAV (115 MB), written in blocks (never in memory as a whole)."""
    path = tmp_path_factory.mktemp("long") / "two hours.wav"
    sr = 8_000
    block = (0.3 * np.random.default_rng(0).standard_normal(sr * 60)).astype(np.float32)  # one minute
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for _ in range(120):
            f.write(block)
    assert sf.info(path).duration == pytest.approx(7200.0)
    return path


@pytest.mark.slow
def test_two_hour_file_ingests_in_bounded_memory(tmp_path: Path, two_hours: Path, tiny_model) -> None:
    """Python-side peak allocation (numpy included) while ingesting the 2-hour file with --max-windows 30."""
    import tracemalloc

    from soundlib.ingest import ingest
    from soundlib.store import open_store

    lib = tmp_path / "lib"
    lib.mkdir()
    os.symlink(two_hours, lib / "two hours.wav")
    with open_store(db=tmp_path / "db", create=True) as store:
        tracemalloc.start()
        try:
            report = ingest([lib], tiny_model, store, max_windows=30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (report.added, report.windows, store.count()) == (1, 30, 30)
        starts = sorted(m["start"] for m in store.require().get(include=["metadatas"])["metadatas"])
    assert starts[0] == 0.0 and starts[-1] == 7199.0  # sampled evenly over the whole two hours
    print(f"peak traced allocation while ingesting a 2-hour file: {peak / 2**20:.1f} MiB")
    assert peak < 64 * 2**20  # a full decode at 48 kHz would be 1,318 MiB


# --- single items: query ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """name -> (path, words the error must contain) for pictures and videos that cannot be used."""
    d = tmp_path_factory.mktemp("pics")
    corrupt = write_image(d / "corrupt.jpg", (64, 48), quality=90)
    truncate(corrupt, 0.5)
    cases = {
        "corrupt jpeg": (corrupt, "truncated or corrupt"),
        "1x1": (write_image(d / "one pixel.png", (1, 1)), "too small"),
        "20000x20000": (png_of_size(d / "huge.png", 20_000, 20_000), "too large"),
        "zero-byte": ((d / "empty.png"), "empty file (0 bytes)"),
        "text as jpeg": ((d / "words.jpg"), "not an image"),
        "missing": ((d / "missing.png"), "file not found"),
        "unknown extension": ((d / "notes.txt"), "not an image, video or sound file"),
        "video without frames": (audio_only_mp4(d / "sound only.mp4"), "no video stream"),
        "truncated video": (truncate(write_video(d / "cut.mp4", seconds=2.0), 0.4), "not a video file, or damaged"),
        "folder without images": ((d / "empty folder"), "no images in this folder"),
    }
    (d / "empty.png").write_bytes(b"")
    (d / "words.jpg").write_text("hello")
    (d / "notes.txt").write_text("hello")
    (d / "empty folder").mkdir()
    (d / "empty folder" / "readme.md").write_text("no pictures here")
    return cases


CASES = ["corrupt jpeg", "1x1", "20000x20000", "zero-byte", "text as jpeg", "missing", "unknown extension",
         "video without frames", "truncated video", "folder without images"]


@pytest.mark.parametrize("case", CASES)
def test_query_refuses_a_bad_picture_with_one_line(case: str, pictures, ingested) -> None:
    _, db, ckpt, _, _ = ingested
    path, words = pictures[case]
    result = run("query", path, "--db", db, "--model", ckpt, "--json")
    line = one_line(result, 2, str(path), words)
    assert line.startswith("error: ") and result.stdout == ""


def test_query_takes_a_video_without_audio_and_odd_names(ingested, tmp_path: Path) -> None:
    _, db, ckpt, _, _ = ingested
    mute = write_video(tmp_path / "mute ü.mp4", seconds=2.0, audio=False)
    result = run("query", mute, "--db", db, "--model", ckpt, "-k", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["results"]) == 3
    odd = write_image(tmp_path / "new\nline ✓.png", (64, 48))
    result = run("query", odd, "--db", db, "--model", ckpt, "-k", "2", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["inputs"] == [str(odd)]


# --- single items: checkpoints ------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates a folder: the proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint):
    import torch

    d = tmp_path_factory.mktemp("ckpt")
    marker = d / "payload-ran"
    torch.save({"weights": torch.zeros(3), "note": "someone else's file"}, d / "foreign.pt")
    (d / "truncated.pt").write_bytes(Path(tiny_checkpoint).read_bytes()[:20_000])
    (d / "payload.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    torch.save({"state_dict": _Payload(marker)}, d / "payload.pt")
    cases = {
        "foreign": (d / "foreign.pt", "not a soundlib checkpoint"),
        "truncated": (d / "truncated.pt", "truncated or corrupt"),
        "raw pickle payload": (d / "payload.pkl", "refused"),
        "torch pickle payload": (d / "payload.pt", "not a soundlib checkpoint"),
    }
    return cases, marker


@pytest.mark.parametrize("case", ["foreign", "truncated", "raw pickle payload", "torch pickle payload"])
def test_bad_checkpoint_is_refused_by_query_and_ingest(case: str, bad_checkpoints, ingested, tmp_path: Path) -> None:
    cases, marker = bad_checkpoints
    root, db, _, _, _ = ingested
    path, words = cases[case]
    pic = write_image(tmp_path / "p.png", (64, 48))
    one_line(run("query", pic, "--db", db, "--model", path, "--json"), 2, str(path), words)
    one_line(run("ingest", root / "good", "--db", tmp_path / "db", "--model", path, "--json"), 2, str(path), words)
    assert not marker.exists()  # nothing in the file was executed
    assert not (tmp_path / "db" / "chroma.sqlite3").exists()  # and no store was created for it


# --- pair lists (eval) --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lists")
    (d / "frames").mkdir()
    for i, kind in enumerate(("tone", "noise", "chirp")):
        write_sound(d / "audio" / f"{kind}.wav", 2.0, 16_000, kind, i)
        write_image(d / "frames" / f"f{i}.png", (48, 40), color=(60 * i, 200 - 50 * i, 90))
    (d / "missing column.csv").write_text("frame,start\nframes/f0.png,0\n", encoding="utf-8")
    (d / "rows.csv").write_text(
        "frame,audio,start,category\n"
        "frames/f0.png,audio/tone.wav,0,tone\n"          # 2 good
        "frames/f1.png,audio/noise.wav,1,noise\n"        # 3 good
        "frames/f2.png,audio/chirp.wav,0,chirp\n"        # 4 good
        "frames/f1.png,audio/noise.wav,one,noise\n"      # 5 bad number
        "frames/f2.png,audio/gone.wav,0,chirp\n"         # 6 missing file
        "frames/f0.png,audio/tone.wav,0,tone\n"          # 7 duplicate of line 2
        "frames/f0.png,audio/tone.wav,-3,tone\n",        # 8 negative start
        encoding="utf-8")
    return d


def test_list_reader_reports_each_bad_row_with_its_line(lists: Path) -> None:
    from soundlib.errors import ListError
    from soundlib.lists import read_list

    with pytest.raises(ListError, match="missing column.*audio"):
        read_list(lists / "missing column.csv")
    parsed = read_list(lists / "rows.csv")
    assert [r.line for r in parsed.rows] == [2, 3, 4]
    got = {e.line: e.reason for e in parsed.errors}
    assert set(got) == {5, 6, 7, 8}
    assert "bad number" in got[5] and "not found" in got[6] and "duplicate" in got[7] and "start" in got[8]


def test_eval_on_malformed_lists(lists: Path, tiny_checkpoint) -> None:
    result = run("eval", lists / "missing column.csv", "--model", tiny_checkpoint, "--json")
    one_line(result, 2, "missing column.csv", "missing column(s) audio")
    result = run("eval", lists / "rows.csv", "--model", tiny_checkpoint, "--json", "-k", "1,3")
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["queries"] == 3 and doc["candidates"] == 3  # the rest was processed
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    for line_no, words in ((5, "bad number"), (6, "not found"), (7, "duplicate"), (8, "start")):
        match = [s for s in skipped if f"rows.csv:{line_no}: " in s]
        assert len(match) == 1 and words in match[0], (line_no, skipped)


# --- defects found by this suite, since fixed -----------------------------------------------------------------------

def test_wav_with_an_unknown_codec_is_called_unsupported(tmp_path: Path) -> None:
    from soundlib.audio import load_windows
    from soundlib.errors import AudioError

    with pytest.raises(AudioError, match="unsupported audio codec"):
        load_windows(wav_with_format_tag(tmp_path / "codec.wav", 0x1234))


def test_a_bad_picture_with_a_newline_in_its_name_gives_one_line(ingested, tmp_path: Path) -> None:
    _, db, ckpt, _, _ = ingested
    bad = tmp_path / "bad\nname.png"
    bad.write_text("not a picture")
    one_line(run("query", bad, "--db", db, "--model", ckpt), 2, "not an image")



def test_a_non_mp3_named_mp3_gives_exactly_one_line_on_the_process_stderr(ingested, tmp_path: Path) -> None:
    """libsndfile decodes `.mp3` by the name, and its mpg123 prints "Note: ..." lines to file descriptor 2 (which
    CliRunner does not see): such files go to FFmpeg, so a real process prints only our error line."""
    _, db, ckpt, _, _ = ingested
    text = tmp_path / "notes.mp3"
    text.write_text("these are my session notes, not a sound\n" * 20)
    picture = tmp_path / "photo.mp3"
    write_image(picture.with_suffix(".jpg"), (64, 48), color=(10, 200, 30)).rename(picture)
    for path in (text, picture):
        rc, out, err = start_cli(["query", path, "--db", db, "--model", ckpt], tmp_path / "logs").finish()
        assert rc == 2 and out == ""
        assert err.splitlines() == [f"error: {path}: not an audio file (format not recognised)"], err


def test_train_names_a_missing_train_list_first(tmp_path: Path) -> None:
    missing = tmp_path / "nolist.csv"
    line = one_line(run("train", missing, "--out", tmp_path / "run"), 2, str(missing), "list file not found")
    assert line.startswith("error: ") and not (tmp_path / "run").exists()
