"""`soundlib prepare`: real encoded videos (PyAV, written here) -> frames, 48 kHz audio, train/val/test lists."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from tests.conftest import frame_red, write_video
from train.prepare import (parse_split, prepare_videos, read_labels, split_videos, video_id)

SR = 48_000
#: name -> (seconds, tone Hz); all 64x64 at 10 fps with AAC audio, plus one video without audio.
VIDEOS = {"alpha.mp4": (3.0, 300.0), "beta.mp4": (4.0, 500.0), "gamma.mkv": (3.0, 700.0),
          "delta.mp4": (3.0, 900.0), "eps.mp4": (4.0, 1100.0)}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for name, (seconds, freq) in VIDEOS.items():
        write_video(root / name, seconds=seconds, fps=10, size=(64, 64), freq=freq)
    write_video(root / "mute.mp4", seconds=3.0, fps=10, size=(64, 64), audio=False)
    (root / "broken.mp4").write_bytes(b"this is not a video at all\n" * 10)
    return root


@pytest.fixture(scope="module")
def prepared(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("prepared")
    calls: list[tuple] = []
    report = prepare_videos([videos], out, progress=lambda task, done, total, **info: calls.append((task, done)))
    assert calls[-1] == ("prepare", len(VIDEOS) + 2)
    return out, report


def test_skips_videos_without_audio_or_undecodable(prepared: tuple[Path, object]) -> None:
    out, report = prepared
    by_name = {Path(v.path).name: v for v in report.videos}
    assert set(by_name) == set(VIDEOS) | {"mute.mp4", "broken.mp4"}
    assert by_name["mute.mp4"].status == "skipped"
    assert by_name["mute.mp4"].reason == "no audio track"
    assert by_name["broken.mp4"].status == "skipped" and by_name["broken.mp4"].reason
    assert {Path(v.path).name for v in report.skipped} == {"mute.mp4", "broken.mp4"}
    assert not (out / "frames" / video_id(by_name["mute.mp4"].path)).exists()
    for name in VIDEOS:
        assert by_name[name].status == "prepared", by_name[name].reason


def test_lists_rows_match_seconds_and_files_exist(prepared: tuple[Path, object]) -> None:
    out, report = prepared
    rows = {s: read_csv(out / f"{s}.csv") for s in ("train", "val", "test")}
    all_rows = [r for rs in rows.values() for r in rs]
    assert set(all_rows[0]) >= {"frame", "audio", "start", "sample", "video"}
    # one pair per second of each video (1 fps, full 1-s windows)
    assert len(all_rows) == sum(int(s) for s, _ in VIDEOS.values()) == report.pairs
    for v in report.usable:
        mine = [r for r in all_rows if r["video"] == v.video_id]
        assert len(mine) == int(VIDEOS[Path(v.path).name][0]) == v.pairs
        assert sorted(float(r["start"]) for r in mine) == list(range(v.pairs))
        for r in mine:
            assert (out / r["frame"]).is_file() and (out / r["audio"]).is_file()
            assert r["sample"] == f"{v.video_id}@{r['start']}"


def test_frames_are_taken_at_their_second(prepared: tuple[Path, object]) -> None:
    from PIL import Image

    out, report = prepared
    v = next(v for v in report.usable if Path(v.path).name == "beta.mp4")
    frames = sorted((out / "frames" / v.video_id).glob("*.jpg"))
    assert [f.name for f in frames] == ["000000.jpg", "000001.jpg", "000002.jpg", "000003.jpg"]
    for i, f in enumerate(frames):
        red = np.asarray(Image.open(f).convert("RGB"), dtype=np.float64)[..., 0].mean()
        assert abs(red - frame_red(10 * i)) < 6, (f.name, red)  # frame 10*i is the one at i seconds (10 fps)


def test_audio_is_48k_mono_of_the_track_length(prepared: tuple[Path, object]) -> None:
    out, report = prepared
    for v in report.usable:
        seconds, freq = VIDEOS[Path(v.path).name]
        info = sf.info(str(out / "audio" / f"{v.video_id}.wav"))
        assert info.samplerate == SR and info.channels == 1
        if Path(v.path).suffix == ".mp4":  # mp4 knows the track duration: the AAC tail is trimmed exactly
            assert info.frames == int(seconds * SR)
        else:  # Matroska has no per-stream duration; AAC priming may add up to ~2 frames of 1024 samples
            assert abs(info.frames - seconds * SR) <= 2048
        y, _ = sf.read(str(out / "audio" / f"{v.video_id}.wav"), dtype="float32")
        spec = np.abs(np.fft.rfft(y[SR // 2: SR // 2 + SR]))
        assert abs(np.argmax(spec) * SR / SR - freq) <= 2  # 1-Hz bins over one second


def test_split_is_by_video_and_has_val_and_test(prepared: tuple[Path, object]) -> None:
    out, report = prepared
    seen: dict[str, str] = {}
    for s in ("train", "val", "test"):
        for r in read_csv(out / f"{s}.csv"):
            assert seen.setdefault(r["video"], s) == s  # a video's rows all land in one list
    assert len(seen) == len(VIDEOS)
    counts = {s: sum(1 for x in seen.values() if x == s) for s in ("train", "val", "test")}
    assert counts["val"] >= 1 and counts["test"] >= 1 and counts["train"] >= 1
    assert report.rows == {s: len(read_csv(out / f"{s}.csv")) for s in ("train", "val", "test")}


def test_rerun_skips_prepared_videos(prepared: tuple[Path, object], videos: Path) -> None:
    out, first = prepared
    wav = next((out / "audio").glob("*.wav"))
    stamp = wav.stat().st_mtime_ns
    lists_before = {s: (out / f"{s}.csv").read_text() for s in ("train", "val", "test")}
    again = prepare_videos([videos], out)
    status = {Path(v.path).name: v.status for v in again.videos}
    assert all(status[n] == "cached" for n in VIDEOS)
    assert status["mute.mp4"] == "skipped"
    assert wav.stat().st_mtime_ns == stamp  # not decoded or written again
    assert {s: (out / f"{s}.csv").read_text() for s in ("train", "val", "test")} == lists_before


def test_unfinished_video_is_redone(videos: Path, tmp_path: Path) -> None:
    src = videos / "alpha.mp4"
    report = prepare_videos([src], tmp_path)
    vid = report.videos[0].video_id
    (tmp_path / "done" / f"{vid}.json").unlink()  # as if interrupted before the marker was written
    again = prepare_videos([src], tmp_path)
    assert again.videos[0].status == "prepared" and again.videos[0].pairs == 3


def test_labels_fill_the_category_column(videos: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("video,category\nalpha.mp4,birds\nbeta,engines\n", encoding="utf-8")
    assert read_labels(labels) == {"alpha.mp4": "birds", "beta": "engines"}
    report = prepare_videos([videos / "alpha.mp4", videos / "beta.mp4", videos / "delta.mp4"], tmp_path / "o",
                            labels=labels)
    cats = {Path(v.path).name: v.category for v in report.videos}
    assert cats == {"alpha.mp4": "birds", "beta.mp4": "engines", "delta.mp4": None}
    assert report.unlabeled == ["delta.mp4"]
    rows = [r for s in ("train", "val", "test") for r in read_csv(tmp_path / "o" / f"{s}.csv")]
    by_video = {r["video"]: r["category"] for r in rows}
    assert sorted(by_video.values()) == ["", "birds", "engines"]


def test_short_video_gives_one_wrapped_pair(tmp_path: Path) -> None:
    src = write_video(tmp_path / "blip.mp4", seconds=0.6, fps=10, size=(64, 64), freq=600.0)
    report = prepare_videos([src], tmp_path / "o")
    v = report.videos[0]
    assert (v.status, v.pairs, v.split) == ("prepared", 1, "train")
    assert abs(v.seconds - 0.6) < 0.01
    assert [r["start"] for r in read_csv(tmp_path / "o" / "train.csv")] == ["0"]


def test_split_videos_is_deterministic_and_covers_every_split() -> None:
    sizes = {f"v{i}": n for i, n in enumerate([3, 4, 3, 30, 5, 6, 2, 8, 9, 4])}
    a = split_videos(sizes, (0.8, 0.1, 0.1), seed=3)
    assert a == split_videos(sizes, (0.8, 0.1, 0.1), seed=3)
    assert set(a) == set(sizes) and set(a.values()) == {"train", "val", "test"}
    pairs = {s: sum(sizes[v] for v in sizes if a[v] == s) for s in ("train", "val", "test")}
    assert pairs["train"] > pairs["val"] and pairs["train"] > pairs["test"]
    three = split_videos({"a": 10, "b": 1, "c": 1}, (0.8, 0.1, 0.1), seed=0)
    assert sorted(three.values()) == ["test", "train", "val"]
    assert split_videos({"a": 3, "b": 3}, (0.8, 0.1, 0.1)) == {"a": "train", "b": "train"}


def test_parse_split_rejects_bad_fractions() -> None:
    from soundlib.errors import SoundlibError

    assert parse_split("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("0.8,0.2", "a,b,c", "0,0.5,0.5", "0.8,-0.1,0.3"):
        with pytest.raises(SoundlibError):
            parse_split(bad)


def test_cli_prepare_json_and_exit_code(videos: Path, tmp_path: Path) -> None:
    from cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["prepare", str(videos / "alpha.mp4"), str(videos / "mute.mp4"),
                               "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 1, res.output  # one video skipped -> "some items failed"
    doc = json.loads(res.stdout)
    assert doc["usable"] == 1 and doc["skipped"] == 1 and doc["pairs"] == 3
    assert doc["rows"] == {"train": 3, "val": 0, "test": 0}
    ok = runner.invoke(main, ["prepare", str(videos / "alpha.mp4"), "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output
    assert "cached" in ok.stdout
    none = runner.invoke(main, ["prepare", str(videos / "mute.mp4"), "--out", str(tmp_path / "n")])
    assert none.exit_code == 2 and "no usable video" in none.output
    assert os.path.exists(tmp_path / "o" / "train.csv")
