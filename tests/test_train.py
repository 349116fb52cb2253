"""`soundlib train`: the seven models learn, resume equals an uninterrupted run, caches, sampling, validation metric.

Data are real files written here: flat-colour PNG frames and WAV tones whose pitch changes every second, in pair
lists (train: 4 "videos" x 3 s, val: 2 x 3 s). Models are tiny (width 0.125, 32 px) and run on one thread.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from encoders.registry import MODEL_NAMES, create_model
from soundlib.lists import write_list
from tests.conftest import tone, write_audio, write_image
from train.datasets import FrameStore, bce_epoch, contrastive_epoch, load_pairs, negative_clips
from train.features import LogMelCache, clip_features
from soundlib.evaluation.scoring import score_vectors
from train.epoch import make_optimizer, train_step
from train.loop import train_model

SR = 48_000
#: The paper's seven configurations (the registry may hold more, e.g. pretrained families).
PAPER_MODELS = ("m1-baseline-linear-bce", "m2-attention-linear-bce", "m3-attention-linear-margin",
                "m4-attention-nonlinear-infonce", "m5-attention-linear-infonce", "m6-attention-nonlinear-ntxent",
                "m7-attention-linear-ntxent")
TINY = dict(width=0.125, image_size=32, threads=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _video(root: Path, name: str, base_hz: float, hue: int, seconds: int = 3) -> list[dict]:
    """One "video": a WAV whose pitch steps every second, and one distinct flat frame per second."""
    y = np.concatenate([tone(base_hz + 150.0 * t, 1.0, SR) for t in range(seconds)])
    audio = write_audio(root / f"{name}.wav", y, SR)
    rows = []
    for t in range(seconds):
        color = ((hue + 70 * t) % 256, (40 * t + hue // 2) % 256, (255 - hue) % 256)
        frame = write_image(root / f"{name}_{t}.png", (40, 30), color=color)
        rows.append({"frame": str(frame), "audio": str(audio), "start": t, "sample": f"{name}@{t}", "video": name})
    return rows


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pairs")
    train = [r for i in range(4) for r in _video(root, f"tr{i}", 200.0 + 300.0 * i, 60 * i)]
    val = [r for i in range(2) for r in _video(root, f"va{i}", 350.0 + 300.0 * i, 30 + 60 * i)]
    write_list(root / "train.csv", train)
    write_list(root / "val.csv", val)
    return {"train": root / "train.csv", "val": root / "val.csv", "root": root}


# --- the seven models -----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_MODELS)
def test_each_model_trains_and_overfits_a_tiny_set(name: str, lists: dict[str, Path]) -> None:
    from soundlib.audio import band_stats

    assert name in MODEL_NAMES

    data = load_pairs(lists["train"])
    model = create_model(name, seed=0, width=0.125, image_size=32)
    mels = torch.from_numpy(clip_features(LogMelCache(lists["root"] / "cache", model.audio_features), data.clips))
    model.set_audio_stats(*band_stats(mels))
    frames = FrameStore(data.frames, 32, workers=0)
    pick = np.arange(0, 12, 2)  # six rows from all four videos
    x = frames.cache[torch.from_numpy(data.row_frame[pick])]
    f = mels[torch.from_numpy(data.row_clip[pick])]
    labels = None
    if not model.config.contrastive:  # each frame with its own clip (1) and another video's clip (0)
        other = data.row_clip[np.roll(pick, 3)]
        x, f = torch.cat([x, x]), torch.cat([f, mels[torch.from_numpy(other)]])
        labels = torch.tensor([1] * len(pick) + [0] * len(pick))
    opt = make_optimizer(model, 0.01)
    model.train()
    losses = [train_step(model, opt, x, f, labels, precision="bf16") for _ in range(10)]
    assert all(np.isfinite(losses)), losses
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.02, losses
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.visual.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.audio.parameters())


# --- runs, checkpoints, resume --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def m5_run(lists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs") / "m5"
    calls: list[tuple] = []
    report = train_model(lists["train"], lists["val"], "m5-attention-linear-infonce", out, epochs=2, batch=6,
                         cache_dir=out.parent / "cache", progress=lambda t, d, n, **i: calls.append((t, d, n)),
                         **TINY)
    return report, out, calls


def test_run_writes_checkpoints_metrics_and_facts(m5_run, lists: dict[str, Path]) -> None:
    from encoders.checkpoint import load_checkpoint
    from soundlib.audio import band_stats

    report, out, calls = m5_run
    assert report.epochs_run == 2 and len(report.history) == 2 and not report.stopped_early
    assert ("epochs", 2, 2) in calls and ("steps", 2, 2) in calls  # 12 rows / batch 6
    rows = list(csv.DictReader(open(out / "metrics.csv", newline="")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_top10", "lr", "pairs_per_s", "seconds",
                             "val_top10_category", "val_mrr"]
    assert all(r["val_top10_category"] == "nan" for r in rows)  # the val list has no categories
    assert all(0 < float(r["val_mrr"]) <= 1 for r in rows)
    assert all(np.isfinite(float(r["train_loss"])) and float(r["pairs_per_s"]) > 0 for r in rows)
    # val: 6 samples, so top-10 contains everything: accuracy 1 and chance 1
    assert report.val_samples == 6 and report.chance == 1.0 and report.best_top10 == 1.0
    model, info = load_checkpoint(out / "best.pt")  # weights_only load
    t = info.training
    assert info.name == "m5-attention-linear-infonce" and info.config.width == 0.125
    assert t["data"]["train"]["sha256"] == hashlib.sha256(lists["train"].read_bytes()).hexdigest()
    assert t["data"]["train"]["rows"] == 12 and t["data"]["val"]["rows"] == 6
    assert t["metric"]["name"] == "val_top10_sample" and t["metric"]["value"] == 1.0
    assert t["epochs"] == 1 and t["code_version"].startswith(("0.", "unknown")) and t["date"]
    # the audio stats are the train windows' band stats
    train = load_pairs(lists["train"])
    mels = clip_features(LogMelCache(out.parent / "cache", model.audio_features), train.clips)
    mean, std = band_stats(mels)
    assert torch.allclose(model.audio_mean, mean) and torch.allclose(model.audio_std, std)
    assert float(model.audio_mean.abs().sum()) > 0
    last, _ = load_checkpoint(out / "last.pt")
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), last.state_dict().values()))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["m1-baseline-linear-bce", "m5-attention-linear-infonce"])
def test_resume_equals_uninterrupted(name: str, lists: dict[str, Path], tmp_path: Path) -> None:
    from encoders.checkpoint import load_checkpoint

    kw = dict(batch=6, cache_dir=tmp_path / "cache", **TINY)
    straight = train_model(lists["train"], lists["val"], name, tmp_path / "a", epochs=2, **kw)
    first = train_model(lists["train"], lists["val"], name, tmp_path / "b", epochs=1, **kw)
    assert first.epochs_run == 1 and first.resumed_from is None
    resumed = train_model(lists["train"], lists["val"], name, tmp_path / "b", epochs=2, resume=True, **kw)
    assert resumed.resumed_from == 1 and resumed.epochs_run == 2
    a, _ = load_checkpoint(tmp_path / "a" / "last.pt")
    b, _ = load_checkpoint(tmp_path / "b" / "last.pt")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    key = lambda r: [(h.epoch, h.train_loss, h.val_loss, h.val_top10, h.lr) for h in r.history]  # noqa: E731
    assert key(straight) == key(resumed)
    # and training changed the weights at all
    init = create_model(name, seed=0, width=0.125, image_size=32).state_dict()
    assert not torch.equal(init["visual.stream.blocks.0.layers.0.weight"], sa["visual.stream.blocks.0.layers.0.weight"])


def test_resume_refuses_other_settings(m5_run, lists: dict[str, Path]) -> None:
    from soundlib.errors import SoundlibError

    _, out, _ = m5_run
    with pytest.raises(SoundlibError, match="settings differ.*lr"):
        train_model(lists["train"], lists["val"], "m5-attention-linear-infonce", out, epochs=3, batch=6, lr=0.5,
                    resume=True, cache_dir=out.parent / "cache", **TINY)


def test_early_stopping_after_patience(lists: dict[str, Path], tmp_path: Path) -> None:
    # 6 val samples: top-10 is 1.0 from epoch 1 on, so nothing improves afterwards
    report = train_model(lists["train"], lists["val"], "m7-attention-linear-ntxent", tmp_path / "r", epochs=9,
                         batch=12, patience=2, cache_dir=tmp_path / "cache", **TINY)
    assert report.stopped_early and report.epochs_run == 3 and report.best_epoch == 1


def test_validation_metric_counts_exactly_k() -> None:
    # 12 one-hot-ish audio samples; frame i is nearest to sample i, then i+1, ... (cyclic)
    n = 12
    a = torch.eye(n, dtype=torch.float32)
    v = torch.stack([torch.tensor([0.9 ** ((j - i) % n) for j in range(n)]) for i in range(n)])
    v = torch.nn.functional.normalize(v, dim=1)
    clip_s = [str(i) for i in range(n)]

    def top10(truth: np.ndarray, windows: torch.Tensor = a, window_samples: list[str] = clip_s, k: int = 10) -> float:
        s = score_vectors(v.numpy(), [str(t) for t in truth], None, windows.numpy(), window_samples, None, [k])
        return s.topk[k][0]

    idx = np.arange(n)
    assert top10(idx) == 1.0
    assert top10((idx + 10) % n) == 0.0  # the truth is the 11th nearest of each frame: outside an exact top-10
    assert top10((idx + 9) % n) == 1.0  # 10th nearest: inside
    # two windows for one sample (0 and 11): frames 0 and 11 both have it nearest
    assert top10(np.zeros(n, dtype=int), a, [str(i) for i in range(11)] + ["0"], k=1) == pytest.approx(2 / 12)


# --- caches and sampling ----------------------------------------------------------------------------------------

def test_logmel_cache_computes_once_and_keys_by_content(lists: dict[str, Path], tmp_path: Path) -> None:
    from soundlib.audio import cut_windows, load_audio

    model = create_model("m5-attention-linear-infonce", seed=0, width=0.125, image_size=32)
    src = lists["root"] / "tr1.wav"
    cache = LogMelCache(tmp_path / "c", model.audio_features)
    first = cache.windows(src, [0.0, 2.0])
    assert first.shape == (2, 64, 100) and cache.computed == 2
    direct = model.audio_features(torch.from_numpy(cut_windows(load_audio(src, SR), [0.0, 2.0])))
    assert np.allclose(first, direct.numpy(), atol=1e-5)
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(src.read_bytes())
    again = cache.windows(copy, [2.0, 0.0, 1.0])  # same content: only the new start is computed
    assert cache.computed == 3 and cache.hits == 2
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[1], first[0])
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1
    assert not np.allclose(again[2], again[0])  # the pitch steps every second


def test_bce_epoch_is_balanced_with_valid_negatives(lists: dict[str, Path]) -> None:
    data = load_pairs(lists["train"])
    ep = bce_epoch(data, 8, np.random.default_rng(5))
    assert ep.pairs == 2 * len(data)
    seen_rows = np.concatenate(ep.rows)
    assert sorted(seen_rows.tolist()) == sorted(list(range(len(data))) * 2)
    for rows, clips, labels in zip(ep.rows, ep.clips, ep.labels):
        assert labels.sum() * 2 == len(labels)  # as many positives as negatives in every batch
        for r, c, y in zip(rows, clips, labels):
            own = data.row_clip[r]
            if y == 1:
                assert c == own
            else:
                same_file = data.clip_file[c] == data.clip_file[own]
                assert not same_file or abs(data.clip_start[c] - data.clip_start[own]) >= 2.0
    again = bce_epoch(data, 8, np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(ep.clips, again.clips))


def test_negatives_respect_categories(lists: dict[str, Path], tmp_path: Path) -> None:
    rows = list(csv.DictReader(open(lists["train"], newline="")))
    for r in rows:
        r["category"] = "low" if r["video"] in ("tr0", "tr1") else "high"
        for col in ("frame", "audio"):
            r[col] = str((lists["train"].parent / r[col]).resolve())
    write_list(tmp_path / "cat.csv", rows)
    data = load_pairs(tmp_path / "cat.csv")
    assert data.has_categories
    all_rows = np.arange(len(data))
    neg = negative_clips(data, np.tile(all_rows, 20), np.random.default_rng(0))
    own = np.tile(data.row_clip, 20)
    assert (data.clip_category[neg] != data.clip_category[own]).all()


def test_contrastive_batches_avoid_repeated_samples(tmp_path: Path, lists: dict[str, Path]) -> None:
    rows = list(csv.DictReader(open(lists["train"], newline="")))
    for r in rows:
        for col in ("frame", "audio"):
            r[col] = str((lists["train"].parent / r[col]).resolve())
    # catalog-style list: two pictures for each of six sounds
    dup = [dict(r, sample=f"s{i % 6}", audio=rows[i % 6]["audio"], start=rows[i % 6]["start"])
           for i, r in enumerate(rows)]
    write_list(tmp_path / "dup.csv", dup)
    data = load_pairs(tmp_path / "dup.csv")
    ep = contrastive_epoch(data, 6, np.random.default_rng(1))
    assert sorted(np.concatenate(ep.rows).tolist()) == list(range(12))
    for b in ep.rows:
        labels = [data.samples[i] for i in b]
        assert len(set(labels)) == len(labels)


def test_streamed_frames_equal_preloaded(lists: dict[str, Path]) -> None:
    data = load_pairs(lists["train"])
    pre = FrameStore(data.frames, 32, workers=0)
    streamed = FrameStore(data.frames, 32, workers=1, preload_mb=0)
    assert pre.preloaded and not streamed.preloaded
    idx = [np.array([3, 0, 7]), np.array([11, 1])]
    for a, b in zip(pre.batches(idx), streamed.batches(idx)):
        assert a.dtype == torch.uint8 and a.shape[1:] == (3, 32, 32)
        assert torch.equal(a, b)
    assert not torch.equal(pre.cache[0], pre.cache[1])


# --- CLI --------------------------------------------------------------------------------------------------------

def test_cli_train_json_and_errors(lists: dict[str, Path], tmp_path: Path) -> None:
    from cli import main

    runner = CliRunner()
    args = ["train", str(lists["train"]), "--model", "m2-attention-linear-bce", "--out", str(tmp_path / "run"),
            "--epochs", "1", "--batch", "8", "--width", "0.125", "--image-size", "32", "--threads", "1",
            "--cache", str(tmp_path / "cache"), "--json"]
    res = runner.invoke(main, args)  # --val defaults to val.csv next to the train list
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["epochs_run"] == 1 and doc["train_rows"] == 12 and doc["val_rows"] == 6
    assert Path(doc["best_path"]).is_file() and doc["settings"]["batch"] == 8
    bad = runner.invoke(main, ["train", str(lists["train"]), "--model", "m9-nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown model 'm9-nope'" in bad.output
    missing = runner.invoke(main, ["train", str(tmp_path / "none.csv"), "--val", str(lists["val"]),
                                   "--out", str(tmp_path / "y")])
    assert missing.exit_code == 2 and "list file not found" in missing.output
