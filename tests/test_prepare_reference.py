"""`soundlib prepare --layout reference` on real encoded videos, then `eval` (and `train`) on the lists it writes,
in the reference format and as CSV: the same rows, the same figures."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from soundlib.lists import read_list
from tests.cli_process import one_line, run_cli
from tests.conftest import frame_red, write_video
from train.prepare import prepare_videos

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: folder/name -> (seconds, tone Hz); names with leading dashes and underscores as VGG-Sound's YouTube ids.
VIDEOS = {"horse/-0jeONf82dE.mp4": (14.0, 300.0), "horse/--x_Y-1.mp4": (6.0, 500.0),
          "dog/_a-B_c.mp4": (12.0, 700.0), "dog/-Q_UX-w.mkv": (7.0, 900.0),
          "cat/zz_9.mp4": (5.0, 1100.0), "cat/-k-1.mp4": (8.0, 1300.0)}
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    src = tmp_path_factory.mktemp("videos")
    for name, (seconds, freq) in VIDEOS.items():
        (src / name).parent.mkdir(exist_ok=True)
        write_video(src / name, seconds=seconds, fps=10, size=(48, 48), freq=freq)
    write_video(src / "mute.mp4", seconds=3.0, fps=10, size=(48, 48), audio=False)
    out = tmp_path_factory.mktemp("ref")
    report = prepare_videos([src], out, layout="reference", split=(0.5, 0.25, 0.25), seed=1, frame_size=None)
    return out, report


def _clips(out: Path, split: str) -> list[tuple[str, str]]:
    lines = (out / "lists" / f"vggsound_{split}.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("|")) for line in lines]  # type: ignore[misc]


def test_layout_clips_frames_and_audio(prepared: tuple[Path, object]) -> None:
    import soundfile as sf
    from PIL import Image

    out, report = prepared
    status = {Path(v.path).name: v for v in report.videos}
    assert status["mute.mp4"].status == "skipped" and status["mute.mp4"].reason == "no audio track"
    clips = {c: label for s in SPLITS for c, label in _clips(out, s)}
    # 10-s clips named <video>_<second>; a clip's label is its video's folder
    assert clips == {"-0jeONf82dE_0": "horse", "-0jeONf82dE_10": "horse", "--x_Y-1_0": "horse",
                     "_a-B_c_0": "dog", "_a-B_c_10": "dog", "-Q_UX-w_0": "dog", "zz_9_0": "cat", "-k-1_0": "cat"}
    assert report.rows == {s: len(_clips(out, s)) for s in SPLITS} and sum(report.rows.values()) == 8
    # frame N of a clip is at its second N - 1: clip -0jeONf82dE_10 holds seconds 10..13 of a 14-s video
    frames = sorted((out / "frames_1fps" / "-0jeONf82dE_10").iterdir())
    assert [f.name for f in frames] == ["image_001.jpg", "image_002.jpg", "image_003.jpg", "image_004.jpg"]
    for n, f in enumerate(frames, start=1):
        red = np.asarray(Image.open(f).convert("RGB"), dtype=np.float64)[..., 0].mean()
        assert abs(red - frame_red(10 * (10 + n - 1))) < 6, (f.name, red)
    assert len(list((out / "frames_1fps" / "-0jeONf82dE_0").iterdir())) == 10
    info = sf.info(str(out / "audio" / "-0jeONf82dE_10.wav"))
    assert info.samplerate == 48_000 and info.channels == 1 and abs(info.frames - 4 * 48_000) <= 2048
    assert sf.info(str(out / "audio" / "-0jeONf82dE_0.wav")).frames == 10 * 48_000


def test_split_by_video_and_the_side_files(prepared: tuple[Path, object]) -> None:
    out, _ = prepared
    where: dict[str, str] = {}
    for s in SPLITS:
        for c, _ in _clips(out, s):
            assert where.setdefault(c.rpartition("_")[0], s) == s  # both clips of a video in one split
        table = json.loads((out / "lists" / f"vid2aud_{s}.json").read_text(encoding="utf-8"))
        ids = dict(_clips(out, s))
        assert set(table) == set(ids)
        for c, entry in table.items():
            assert entry["label"] == ids[c]
            assert set(entry["pos_aud"]) == {x for x, lab in ids.items() if lab == ids[c]}
            assert set(entry["neg_aud"]) == set(ids) - set(entry["pos_aud"])
    labels = json.loads((out / "lists" / "labels2vid.json").read_text(encoding="utf-8"))
    assert sorted(labels) == ["cat", "dog", "horse"] and sum(map(len, labels.values())) == 8
    stats = np.load(out / "lists" / "vggsound_train_mean_var.npy")
    assert stats.shape == (2, 64) and np.isfinite(stats).all() and (stats[1] > 0).all()


def test_train_mean_var_is_that_of_the_train_clips(prepared: tuple[Path, object]) -> None:
    from soundlib.audio import load_audio, log_mel_batch

    out, _ = prepared
    mels = []
    for c, _ in _clips(out, "train"):
        y = load_audio(out / "audio" / f"{c}.wav")
        n = max(1, y.size // 48_000)
        windows = np.stack([np.resize(y[i * 48_000:(i + 1) * 48_000], 48_000) for i in range(n)])
        mels.append(log_mel_batch(windows).numpy())
    m = np.concatenate(mels).astype(np.float64)  # (windows, 64, 100)
    stats = np.load(out / "lists" / "vggsound_train_mean_var.npy")
    np.testing.assert_allclose(stats[0], m.mean(axis=(0, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats[1], m.var(axis=(0, 2)), rtol=1e-3, atol=1e-4)


def test_csv_twin_holds_the_rows_the_reference_reader_makes(prepared: tuple[Path, object]) -> None:
    out, _ = prepared
    for s in SPLITS:
        with open(out / "lists" / f"{s}.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        expected = []
        for c, label in _clips(out, s):  # the reference evaluation's choice, computed here by hand
            five = out / "frames_1fps" / c / "image_005.jpg"
            frame, start = (five, "4") if five.is_file() else (out / "frames_1fps" / c / "image_001.jpg", "0")
            expected.append({"frame": f"../{frame.relative_to(out).as_posix()}",
                             "audio": f"../audio/{c}.wav", "start": start, "sample": c, "category": label,
                             "video": c.rpartition("_")[0]})
        assert rows == expected
        def fields(path: Path) -> list[tuple]:
            return [(r.frame, r.audio, r.start, r.sample, r.category, r.video) for r in read_list(path).rows]

        assert fields(out / "lists" / f"{s}.csv") == fields(out / "lists" / f"vggsound_{s}.txt")
    # a short clip (the 4-s tail of a 14-s video) falls back to image_001 and second 0
    assert any(r["sample"] == "-0jeONf82dE_10" and r["frame"].endswith("image_001.jpg") and r["start"] == "0"
               for s in SPLITS for r in csv.DictReader(open(out / "lists" / f"{s}.csv", encoding="utf-8")))


def _biggest_split(out: Path) -> str:
    return max(SPLITS, key=lambda s: len(_clips(out, s)))


def test_eval_same_figures_in_both_formats(prepared: tuple[Path, object], tiny_checkpoint: Path) -> None:
    out, _ = prepared
    s = _biggest_split(out)
    docs = []
    for path in (out / "lists" / f"vggsound_{s}.txt", out / "lists" / f"{s}.csv"):
        r = run_cli("eval", path, "--model", tiny_checkpoint, "-k", "1,2,5", "--json")
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc.pop("list") == str(path)
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["queries"] == docs[0]["candidates"] == len(_clips(out, s)) >= 3
    assert docs[0]["models"][0]["topk"]["5"]["category"] is not None
    # the correlation task with the pairs of vid2aud_<split>.json: the same figures too
    pairs = out / "lists" / f"vid2aud_{s}.json"
    got = []
    for path in (out / "lists" / f"vggsound_{s}.txt", out / "lists" / f"{s}.csv"):
        r = run_cli("eval", path, "--correlation", "--pairs", pairs, "--val", path, "--val-pairs", pairs,
                    "--model", tiny_checkpoint, "--json")
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        doc.pop("list")
        got.append(doc)
    assert got[0] == got[1] and got[0]["pairs"] == 2 * len(_clips(out, s))


def test_eval_explicit_roots_and_skipped_rows(prepared: tuple[Path, object], tiny_checkpoint: Path,
                                              tmp_path: Path) -> None:
    out, _ = prepared
    s = _biggest_split(out)
    frames, audio = tmp_path / "f", tmp_path / "a"
    shutil.copytree(out / "frames_1fps", frames)
    shutil.copytree(out / "audio", audio)
    clips = _clips(out, s)
    (audio / f"{clips[0][0]}.wav").rename(audio / f"{clips[0][0]}.flac.bak")  # no audio for line 1
    shutil.rmtree(frames / clips[1][0])                                     # no frames for line 2
    lst = tmp_path / "test.txt"  # no frames_1fps/ or audio/ next to it: the roots must be given
    lst.write_text((out / "lists" / f"vggsound_{s}.txt").read_text(encoding="utf-8") + "bad line\n",
                   encoding="utf-8")
    one_line(run_cli("eval", lst, "--model", tiny_checkpoint), 2, "needs --frames-root DIR", str(lst))
    r = run_cli("eval", lst, "--frames-root", frames, "--audio-root", audio, "--model", tiny_checkpoint, "--json")
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["queries"] == len(clips) - 2
    err = r.stderr
    assert f"{lst}:1: audio file not found" in err and f"{lst}:2: frame file not found" in err
    assert f"{lst}:{len(clips) + 1}: expected <video id>_<second>|<label>" in err


def test_norm_stats_wrong_shape_is_one_line(prepared: tuple[Path, object], tiny_checkpoint: Path,
                                            tmp_path: Path) -> None:
    out, _ = prepared
    bad = tmp_path / "mv.npy"
    np.save(bad, np.zeros((3, 64), np.float32))
    lst = out / "lists" / f"vggsound_{_biggest_split(out)}.txt"
    one_line(run_cli("eval", lst, "--model", tiny_checkpoint, "--norm-stats", bad), 2, str(bad),
             "expected shape (2, 64)", "got (3, 64)")
    one_line(run_cli("train", lst, "--out", tmp_path / "run", "--norm-stats", bad, "--width", "0.125"), 2,
             str(bad), "expected shape (2, 64)")
    one_line(run_cli("train", lst, "--out", tmp_path / "run", "--model", "pt-effnet-aisfx-infonce",
                     "--norm-stats", out / "lists" / "vggsound_train_mean_var.npy"), 2, "paper models")
    one_line(run_cli("eval", lst, "--pairs", out / "lists" / "vid2aud_test.json"), 2, "--pairs", "--correlation")


def test_train_on_reference_lists_with_their_norm_stats(prepared: tuple[Path, object], tmp_path: Path) -> None:
    from encoders.checkpoint import load_checkpoint

    out, _ = prepared
    stats = out / "lists" / "vggsound_train_mean_var.npy"
    r = run_cli("train", out / "lists" / "vggsound_train.txt", "--out", tmp_path / "run", "--epochs", "1",
                "--batch", "4", "--width", "0.125", "--image-size", "32", "--threads", "1", "--workers", "0",
                "--cache", tmp_path / "cache", "--norm-stats", stats, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # --val defaulted to vggsound_val.txt next to vggsound_train.txt
    assert doc["train_rows"] == len(_clips(out, "train")) and doc["val_rows"] == len(_clips(out, "val"))
    assert doc["val_lists"][0]["path"].endswith("vggsound_val.txt")
    model, _ = load_checkpoint(Path(doc["best_path"]))
    mv = np.load(stats).astype(np.float64)
    np.testing.assert_allclose(model.audio_mean.numpy(), mv[0], rtol=1e-6)
    np.testing.assert_allclose(model.audio_std.numpy(), np.sqrt(mv[1]) + 1e-8, rtol=1e-6)


def test_rerun_reuses_the_clips(prepared: tuple[Path, object]) -> None:
    out, first = prepared
    src = Path(next(v.path for v in first.videos if v.status != "skipped")).parent.parent
    wav = out / "audio" / "-0jeONf82dE_0.wav"
    stamp = wav.stat().st_mtime_ns
    before = {p.name: p.read_bytes() for p in (out / "lists").iterdir()}
    again = prepare_videos([src], out, layout="reference", split=(0.5, 0.25, 0.25), seed=1, frame_size=None)
    assert {v.status for v in again.videos if Path(v.path).name != "mute.mp4"} == {"cached"}
    assert wav.stat().st_mtime_ns == stamp
    assert {p.name: p.read_bytes() for p in (out / "lists").iterdir()} == before


def test_prepare_layout_options_refused(tmp_path: Path) -> None:
    one_line(run_cli("prepare", tmp_path, "--out", tmp_path / "o", "--layout", "reference", "--fps", "2"), 2,
             "1 fps")
    one_line(run_cli("prepare", tmp_path, "--out", tmp_path / "o", "--clip-seconds", "5"), 2,
             "reference layout only")
