"""`soundlib train` for the pretrained family and for whole-file (catalog) rows.

Real files written here: sounds synthesised with numpy and written with soundfile (whole files whose loudness changes
every second, and a "video" track with one pitch per second), pictures drawn with numpy and saved as PNG with
Pillow, in pair lists: a catalog-style list (whole-file rows with categories, several pictures per sound) and a
video-style list (timed rows). The frozen EfficientNet-Lite0 and aisfx backbones run for real (from their wheels);
only the small heads train, on one thread.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from encoders.config import AudioConfig
from soundlib.lists import write_list
from tests.conftest import tone, write_audio, write_image
from train.datasets import load_pairs
from train.features import ClipWindows, LogMelCache, clip_windows, loud_window_starts

NAME = "pt-effnet-aisfx-infonce"
CFG = AudioConfig()
SR = CFG.sample_rate


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _stepped(levels: list[float], freq: float, seed: int = 0) -> np.ndarray:
    """One second per level: a tone of ``freq`` Hz plus a little noise, scaled to ``level``."""
    rng = np.random.default_rng(seed)
    parts = [lv * (tone(freq, 1.0, SR, amplitude=0.8) + 0.05 * rng.standard_normal(SR).astype(np.float32))
             for lv in levels]
    return np.concatenate(parts).astype(np.float32)


def _picture(path: Path, seed: int) -> Path:
    """A 96x80 picture: random blocks of two seed-dependent colours (distinct content per seed)."""
    rng = np.random.default_rng(seed)
    cells = rng.random((5, 6)) < 0.5
    a = np.where(cells[..., None], rng.integers(0, 256, 3), rng.integers(0, 256, 3)).astype(np.uint8)
    return write_image(path, np.kron(a, np.ones((16, 16, 1), np.uint8)))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """catalog train/val (whole files, categories) and video train/val (timed rows, no categories)."""
    root = tmp_path_factory.mktemp("ptpairs")
    kinds = {"low": 220.0, "mid": 880.0, "high": 3520.0}
    rows = {"cat_train": [], "cat_val": []}
    k = 0
    for split, n_sounds, n_pics in (("cat_train", 2, 2), ("cat_val", 1, 2)):
        for cat, hz in kinds.items():
            for s in range(n_sounds):
                # 4 s: quiet, LOUD, quiet, loud -> the loudest windows are at 1 s and 3 s
                audio = write_audio(root / f"{split}_{cat}{s}.wav",
                                    _stepped([0.02, 1.0, 0.02, 0.7], hz * (1 + 0.1 * s), seed=k), SR)
                for p in range(n_pics):
                    k += 1
                    frame = _picture(root / f"{split}_{cat}{s}_{p}.png", seed=k)
                    rows[split].append({"frame": str(frame), "audio": str(audio), "category": cat,
                                        "sample": str(audio)})
    vid = {"vid_train": [], "vid_val": []}
    for split, names in (("vid_train", ["v0", "v1"]), ("vid_val", ["v2"])):
        for v, name in enumerate(names):
            y = np.concatenate([tone(300.0 + 400.0 * t + 150.0 * v, 1.0, SR) for t in range(3)])
            audio = write_audio(root / f"{name}.wav", y, SR)
            for t in range(3):
                k += 1
                frame = _picture(root / f"{name}_{t}.png", seed=k)
                vid[split].append({"frame": str(frame), "audio": str(audio), "start": t, "sample": f"{name}@{t}",
                                   "video": name})
    out = {}
    for name, r in {**rows, **vid}.items():
        write_list(root / f"{name}.csv", r)
        out[name] = root / f"{name}.csv"
    out["root"] = root
    return out


# --- windows of whole files ---------------------------------------------------------------------------------------

def test_loud_window_starts_picks_the_loudest_in_time_order() -> None:
    y = _stepped([0.05, 1.0, 0.3, 0.8, 0.001], 440.0)
    assert loud_window_starts(y, 1, CFG) == [1.0]
    assert loud_window_starts(y, 2, CFG) == [1.0, 3.0]
    assert loud_window_starts(y, 3, CFG) == [1.0, 2.0, 3.0]
    # 0.05 and 0.001 are more than 12 dB below the loudest: never picked, even when more windows are asked for
    assert loud_window_starts(y, 10, CFG) == [1.0, 2.0, 3.0]
    assert loud_window_starts(tone(440.0, 0.6, SR), 3, CFG) == [0.0]  # one (wrap-padded) window


def test_clip_windows_mix_whole_files_and_timed_clips(data: dict[str, Path], tmp_path: Path) -> None:
    from encoders.registry import create_model

    model = create_model("m5-attention-linear-infonce", seed=0, width=0.125, image_size=32)
    pooled = load_pairs([data["cat_train"], data["vid_train"]])
    assert len(pooled) == 12 + 6 and len(pooled.paths) == 2
    whole = [c for c in pooled.clips if c[1] is None]
    assert len(whole) == 6 and len(pooled.clips) == 6 + 6
    assert pooled.has_categories is False  # the video rows have none
    assert (pooled.row_category[:12] >= 0).all() and (pooled.row_category[12:] == -1).all()
    cache = LogMelCache(tmp_path / "c", model.audio_features, CFG)
    w = clip_windows(cache, pooled.clips, n_windows=2)
    assert w.counts.tolist() == [2 if s is None else 1 for _, s in pooled.clips]
    assert all(st == [1.0, 3.0] for st, (_, s) in zip(w.starts, pooled.clips) if s is None)
    assert w.features.shape == (6 * 2 + 6, 64, 100) and w.window_clip.tolist()[:4] == [0, 0, 1, 1]
    computed = cache.computed
    again = clip_windows(LogMelCache(tmp_path / "c", model.audio_features, CFG), pooled.clips, n_windows=2)
    assert np.array_equal(again.features, w.features) and computed == 18
    # the choice of windows is cached too: the second pass decoded nothing
    assert len(list((tmp_path / "c" / "picks").glob("*.json"))) == 6


def test_negatives_of_pooled_lists_respect_categories_where_both_clips_have_one(data: dict[str, Path]) -> None:
    from train.datasets import negative_clips

    d = load_pairs([data["cat_train"], data["vid_train"]])
    rows = np.tile(np.arange(len(d)), 30)
    neg = negative_clips(d, rows, np.random.default_rng(0))
    own = d.row_clip[rows]
    cat_n, cat_o = d.clip_category[neg], d.clip_category[own]
    both = (cat_n >= 0) & (cat_o >= 0)
    assert both.sum() > 100 and (cat_n[both] != cat_o[both]).all()  # never another sound of the same kind
    other = ~both  # a video row, or a catalog row drawing a video clip: another file or >= 2 s away
    same_file = d.clip_file[neg][other] == d.clip_file[own][other]
    assert other.sum() > 50
    assert (np.abs(d.clip_start[neg][other] - d.clip_start[own][other])[same_file] >= 2.0).all()


def test_window_draws_are_seeded_and_cover_the_windows() -> None:
    w = ClipWindows(np.zeros((6, 1), np.float32), [3, 1, 2], [[0.0, 1.0, 2.0], [0.0], [0.0, 5.0]])
    draws = np.stack([w.draw(np.random.default_rng([0, e, 1])) for e in range(60)])
    assert set(draws[:, 0]) == {0, 1, 2} and set(draws[:, 1]) == {3} and set(draws[:, 2]) == {4, 5}
    assert np.array_equal(w.draw(np.random.default_rng([0, 7, 1])), draws[7])


# --- a pretrained run ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from train.loop import train_model

    base = tmp_path_factory.mktemp("ptruns")
    report = train_model([data["cat_train"], data["vid_train"]], [data["cat_val"], data["vid_val"]], NAME,
                         base / "a", epochs=2, batch=6, windows=2, cache_dir=base / "cache", threads=1)
    return report, base


def test_pretrained_run_caches_backbone_features_and_ships_heads_only(run, data: dict[str, Path]) -> None:
    from encoders.checkpoint import load_checkpoint
    from soundlib.images import load_image
    from train.features import ImageFeatureCache, file_sha256, frontend_key

    report, base = run
    cache = base / "cache"
    model, info = load_checkpoint(report.best_path)
    key = model.features_key
    # one image-feature file per distinct frame of every list (6 + 6 train catalog/video... ) and audio keyed by it
    frames = {p for name in ("cat_train", "cat_val", "vid_train", "vid_val") for p in load_pairs(data[name]).frames}
    assert len(list((cache / "images").glob("*.npy"))) == len(frames) == 12 + 6 + 6 + 3
    akey = frontend_key(model.config.audio, key)
    audio_files = {c[0] for name in ("cat_train", "cat_val", "vid_train", "vid_val") for c in load_pairs(data[name]).clips}
    assert {p.name for p in cache.glob("*.npz")} == {f"{file_sha256(a)}-{akey}.npz" for a in audio_files}
    # the cached image features are what a query computes for the same picture
    one = sorted(frames)[0]
    ic = ImageFeatureCache(cache, model.image_features, key, model.picture_size, detail=model.picture_detail)
    cached = np.load(ic.path_for(file_sha256(one)))
    x = load_image(one, model.picture_size, detail=model.picture_detail)
    direct = model.image_features(x[None]).numpy()[0]
    assert cached.shape == direct.shape and np.allclose(cached, direct, atol=1e-5)
    with np.load(next(cache.glob("*.npz"))) as z:
        assert z["mels"].ndim == 2 and z["mels"].shape[1] == model.audio.layout.size
    # heads only (no backbone weights), no band statistics
    state = model.state_dict()
    assert not any(k.startswith(("_", "backbone", "effnet", "aisfx")) for k in state)
    assert torch.equal(model.audio_mean, torch.zeros_like(model.audio_mean))
    assert torch.equal(model.audio_std, torch.ones_like(model.audio_std))
    assert Path(report.best_path).stat().st_size < 20 * 2**20
    assert info.training["data"]["windows_per_file"] == 2 and info.training["data"]["train_windows"] == 6 * 2 + 6
    assert report.settings["image_size"] == 224 and report.train_rows == 18


def test_pretrained_run_scores_each_val_list(run) -> None:
    report, base = run
    assert len(report.val_lists) == 2 and report.val_rows == 6 + 3
    cat, vid = report.val_lists
    assert cat["samples"] == 3 and cat["categories"] == 3 and vid["samples"] == 3
    assert cat["chance_top10"] == 1.0 and cat["top10"] == 1.0  # 3 samples: top-10 holds them all
    assert 0 < cat["chance_top10_category"] <= 1 and cat["top10_category"] == 1.0
    assert np.isnan(vid["chance_top10_category"]) and np.isnan(vid["top10_category"])
    assert 1 / 3 <= cat["mrr"] <= 1 and 1 / 3 <= vid["mrr"] <= 1
    rows = list(csv.DictReader(open(Path(report.metrics_path), newline="")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"val1_top10", "val1_top10_category", "val1_mrr", "val2_top10", "val2_mrr"} <= set(rows[0])
    for r in rows:  # the aggregate columns are over all val rows: the lists weighted by their rows (6 and 3)
        assert float(r["val_mrr"]) == pytest.approx((6 * float(r["val1_mrr"]) + 3 * float(r["val2_mrr"])) / 9,
                                                    abs=1e-5)
        assert float(r["val_top10"]) == pytest.approx((6 * float(r["val1_top10"]) + 3 * float(r["val2_top10"])) / 9,
                                                      abs=1e-5)
        assert float(r["val_top10_category"]) == pytest.approx(float(r["val1_top10_category"]), abs=1e-6)
        assert r["val2_top10_category"] == "nan"
    assert report.history[0].train_loss > 0 and report.history[1].train_loss != report.history[0].train_loss


def test_pretrained_resume_equals_uninterrupted_and_reuses_the_cache(run, data: dict[str, Path]) -> None:
    from encoders.checkpoint import load_checkpoint
    from train.loop import train_model

    report, base = run
    cache = base / "cache"
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    kw = dict(batch=6, windows=2, cache_dir=cache, threads=1)
    lists = ([data["cat_train"], data["vid_train"]], [data["cat_val"], data["vid_val"]])
    first = train_model(*lists, NAME, base / "b", epochs=1, **kw)
    resumed = train_model(*lists, NAME, base / "b", epochs=2, resume=True, **kw)
    assert first.epochs_run == 1 and resumed.resumed_from == 1 and resumed.epochs_run == 2
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == before  # nothing recomputed
    a, _ = load_checkpoint(report.last_path)
    b, _ = load_checkpoint(resumed.last_path)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    key = lambda r: [(h.epoch, h.train_loss, h.val_loss, h.val_top10, h.val_mrr) for h in r.history]  # noqa: E731
    assert key(report) == key(resumed)
    with pytest.raises(Exception, match="settings differ.*windows"):
        train_model(*lists, NAME, base / "b", epochs=3, resume=True, **dict(kw, windows=1))


def test_val_truth_is_the_rows_own_clip(data: dict[str, Path], tmp_path: Path) -> None:
    """A catalog row whose ``sample`` column differs from its clip's first row still has its own sound as truth."""
    from train.validation import val_data

    rows = list(csv.DictReader(open(data["cat_val"], newline="")))
    for r in rows:
        for col in ("frame", "audio"):
            r[col] = str((data["cat_val"].parent / r[col]).resolve())
    rows[1]["sample"] = "another label"  # same audio as row 0
    write_list(tmp_path / "v.csv", rows)
    d = load_pairs(tmp_path / "v.csv")
    w = ClipWindows(np.zeros((len(d.clips), 4), np.float32), [1] * len(d.clips), [[1.0]] * len(d.clips))
    v = val_data(d, w, torch.zeros((len(d.clips), 4)), None, True, 4, 0)
    assert v.query_samples[1] == v.query_samples[0] == d.clip_sample[d.row_clip[0]]
    assert v.query_categories == [r["category"] for r in rows] and v.n_samples == 3
    assert v.chance_category == 1.0  # 3 samples of 3 categories: a top-10 holds them all


# --- CLI ----------------------------------------------------------------------------------------------------------

def test_cli_trains_several_lists_and_refuses_image_size(data: dict[str, Path], run) -> None:
    from cli import main

    _, base = run
    runner = CliRunner()
    args = ["train", str(data["cat_train"]), str(data["vid_train"]), "--val", str(data["cat_val"]), "--val",
            str(data["vid_val"]), "--model", NAME, "--out", str(base / "cli"), "--epochs", "1", "--batch", "6",
            "--windows", "2", "--temperature", "0.2", "--weight-decay", "0.001", "--threads", "1", "--cache", str(base / "cache"), "--json"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["train_rows"] == 18 and len(doc["val_lists"]) == 2 and doc["settings"]["temperature"] == 0.2
    assert doc["settings"]["weight_decay"] == 0.001 and doc["settings"]["windows"] == 2
    from encoders.checkpoint import load_checkpoint

    _, info = load_checkpoint(doc["best_path"])
    assert info.config.temperature == 0.2
    bad = runner.invoke(main, args[:-1] + ["--image-size", "96"])
    assert bad.exit_code == 2 and "leave --width and --image-size out" in bad.output


# --- the concept bridge (encoders/bridge.py, train/bridge.py) ------------------------------------------------------

@pytest.fixture(scope="module")
def bridge_run(run, data: dict[str, Path]):
    """The catalog lists trained with the bridged configuration (the backbone features are cached by ``run``)."""
    from train.loop import train_model

    _, base = run
    return train_model([data["cat_train"], data["vid_train"]], [data["cat_val"]], "pt-effnet-aisfx-bridge",
                       base / "bridge", epochs=1, batch=6, windows=2, cache_dir=base / "cache", threads=1)


def test_bridge_run_fits_its_sound_classifier_and_round_trips(bridge_run, data: dict[str, Path]) -> None:
    from encoders.checkpoint import load_checkpoint
    from soundlib.concepts import load_concepts
    from train.features import LogMelCache, clip_windows

    table = load_concepts()
    model, info = load_checkpoint(bridge_run.best_path)
    model.eval()
    # columns: the concept table's, then the train categories it lacks (the tones' "high", "low", "mid")
    assert model.config.concepts == tuple(table.names) + ("high", "low", "mid")
    assert model.embed_dim == model.config.embed_dim + len(table.names) + 3
    assert torch.equal(model.bridge.class_concept, torch.tensor(np.array(table.class_concept), dtype=torch.int64))
    assert not any(n.startswith("bridge.") for n, _ in model.named_parameters())  # buffers: never trained
    # the fitted classifier tells the three tones apart on the train windows (pitch: 220, 880, 3520 Hz)
    pairs = load_pairs(data["cat_train"])
    cache = LogMelCache(Path(bridge_run.out_dir).parent / "cache", model.audio_features, model.config.audio,
                        extra_key=model.features_key)
    windows = clip_windows(cache, pairs.clips, 2)
    probs = model.sound_concepts(torch.from_numpy(windows.features))
    want = [model.config.concepts.index(pairs.categories[c]) for c in pairs.clip_category[windows.window_clip]]
    assert (probs.argmax(1).numpy() == np.array(want)).mean() == 1.0
    # the embedding is the blend; the loss sees the heads' part only
    feats = torch.from_numpy(windows.features[:4])
    emb = model.encode_audio(feats)
    heads = model.audio(feats)
    w = model.config.bridge_weight
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(model.heads_part(emb), heads, atol=1e-5)
    assert torch.allclose(emb[:, heads.shape[1]:] / w ** 0.5, torch.nn.functional.normalize(probs[:4], dim=1),
                          atol=1e-5)


def test_bridge_image_side_sums_the_imagenet_softmax_into_concepts() -> None:
    from encoders.bridge import ConceptBridge, blend

    bridge = ConceptBridge(3, 5)
    cc = torch.full((1000,), -1, dtype=torch.int64)
    cc[[0, 1]], cc[7] = 0, 2
    bridge.set_classes(cc)
    logits = torch.zeros(2, 1000)
    logits[0, 0], logits[1, 7] = 10.0, 10.0
    p = torch.softmax(logits, dim=1)
    got = bridge.image_probs(logits)
    assert torch.allclose(got[:, 0], p[:, 0] + p[:, 1]) and torch.allclose(got[:, 2], p[:, 7])
    assert torch.equal(got[:, 1], torch.zeros(2))
    with pytest.raises(ValueError):
        bridge.set_classes(torch.full((1000,), 3))  # column out of range
    # the blend's dot product is the weighted sum of the two cosines
    v = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    a = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    c1, c2 = torch.rand(2, 3), torch.rand(2, 3)
    bv, ba = blend(v, c1, 0.7), blend(a, c2, 0.7)
    cos_c = (torch.nn.functional.normalize(c1, dim=1) * torch.nn.functional.normalize(c2, dim=1)).sum(1)
    assert torch.allclose((bv * ba).sum(1), 0.3 * (v * a).sum(1) + 0.7 * cos_c, atol=1e-6)


def test_bridge_max_pool_scores_a_concept_by_its_best_class_not_by_its_class_count() -> None:
    """A picture the classifier is unsure of: 0.3 on one class of concept 1, ~0.5 spread over 50 classes of concept
    0 (a many-class concept such as dog). The sum names concept 0; the max names concept 1."""
    from encoders.bridge import ConceptBridge

    cc = torch.full((1000,), -1, dtype=torch.int64)
    cc[:50], cc[100] = 0, 1
    p = torch.full((1, 1000), 0.2 / 949)
    p[0, :50], p[0, 100] = 0.01, 0.3
    logits = p.log()
    summed, best = ConceptBridge(2, 5, "sum"), ConceptBridge(2, 5, "max")
    summed.set_classes(cc)
    best.set_classes(cc)
    s, m = summed.image_probs(logits), best.image_probs(logits)
    assert s[0].argmax() == 0 and torch.allclose(s[0], torch.tensor([0.5, 0.3]), atol=1e-5)
    assert m[0].argmax() == 1 and torch.allclose(m[0], torch.tensor([0.01, 0.3]), atol=1e-5)
    with pytest.raises(ValueError, match="picture_pool"):
        ConceptBridge(2, 5, "mean")


def test_bridge_picture_pool_config_default_registry_and_validation() -> None:
    from encoders.config import ModelConfig
    from encoders.errors import ConfigError
    from encoders.registry import get_config, validate_config

    assert get_config("pt-effnet-aisfx-bridge").bridge_picture_pool == "max"
    # a checkpoint saved before the field existed has no key: it keeps the sum it was evaluated with
    old = get_config("pt-effnet-aisfx-bridge").to_dict()
    del old["bridge_picture_pool"]
    assert ModelConfig.from_dict(old).bridge_picture_pool == "sum"
    bad = dataclasses.replace(get_config("pt-effnet-aisfx-bridge"), bridge_picture_pool="mean")
    with pytest.raises(ConfigError, match="bridge_picture_pool must be one of sum, max"):
        validate_config(bad)


def test_softmax_regression_fits_separable_classes_and_refuses_one() -> None:
    from soundlib.errors import SoundlibError
    from train.bridge import bridge_concepts, fit_softmax_regression

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 5
    y = np.repeat([0, 2, 2, 2, 2], 20)  # class 1 absent, class 2 four times as frequent
    x = centres[y] + rng.normal(size=(len(y), 6))
    mean, std, w, b = fit_softmax_regression(torch.from_numpy(x).float(), y, 3)
    pred = (((torch.from_numpy(x).float() - mean) / std) @ w + b).argmax(1).numpy()
    assert (pred == y).mean() == 1.0
    with pytest.raises(SoundlibError, match="at least two categories"):
        fit_softmax_regression(torch.zeros(4, 2), np.zeros(4, dtype=np.int64), 3)
    assert bridge_concepts(["Dog", "magic", " ", "Zebra"], ["cat", "dog"]) == ["cat", "dog", "Zebra", "magic"]


def test_bridge_sounds_teach_the_sound_classifier_concepts_no_pair_has(run, data: dict[str, Path]) -> None:
    """A sound list (catalog_sounds.csv) adds labelled sounds to the bridge's fit: a category only the list has
    becomes a column, and the classifier names it for those sounds; a file already among the pairs counts once."""
    from soundlib.errors import SoundlibError
    from soundlib.lists import write_sound_list
    from train.loop import train_model

    _, base = run
    root = data["root"]
    buzz = [write_audio(root / f"buzz{i}.wav", _stepped([1.0, 0.8], 12000.0 + 300 * i, seed=90 + i), SR)
            for i in range(2)]
    paired = load_pairs(data["cat_train"]).clips[0][0]
    sounds = root / "bridge_sounds.csv"
    write_sound_list(sounds, [(buzz[0], "buzz"), (buzz[1], "buzz"), (paired, "low")])
    r = train_model([data["cat_train"]], [data["cat_val"]], "pt-effnet-aisfx-bridge", base / "bridge_sounds",
                    epochs=1, batch=6, windows=2, cache_dir=base / "cache", threads=1, bridge_sounds=sounds)
    from encoders.checkpoint import load_checkpoint

    model, _ = load_checkpoint(r.best_path)
    model.eval()
    assert model.config.concepts[-4:] == ("buzz", "high", "low", "mid")
    cache = LogMelCache(base / "cache", model.audio_features, model.config.audio, extra_key=model.features_key)
    w = clip_windows(cache, [(p, None) for p in buzz], 2)
    probs = model.sound_concepts(torch.from_numpy(w.features))
    assert (probs.argmax(1) == model.config.concepts.index("buzz")).all()
    # refused in one line: a model without a bridge; a row without a category
    with pytest.raises(SoundlibError, match="needs a model with a concept bridge"):
        train_model([data["cat_train"]], [data["cat_val"]], "pt-effnet-aisfx-infonce", base / "no_bridge",
                    epochs=1, cache_dir=base / "cache", bridge_sounds=sounds)
    bad = root / "bad_sounds.csv"
    bad.write_text(f"audio,category\n{buzz[0]},buzz\n{buzz[1]},\n")
    with pytest.raises(SoundlibError, match="line 3: no category") as e:
        train_model([data["cat_train"]], [data["cat_val"]], "pt-effnet-aisfx-bridge", base / "bad", epochs=1,
                    cache_dir=base / "cache", bridge_sounds=bad)
    assert "bad_sounds.csv" in str(e.value)


def test_concept_accuracy_counts_what_each_side_names(bridge_run) -> None:
    """Crafted embeddings through the real blend: a picture naming its concept, one naming another, one naming
    nothing, one whose category is no column; sounds right per window and per file mean."""
    from encoders.bridge import blend
    from encoders.checkpoint import load_checkpoint
    from soundlib.evaluation.concepts import concept_accuracy

    model, _ = load_checkpoint(bridge_run.best_path)
    cols = model.config.concepts
    n, w = len(cols), model.config.bridge_weight
    heads = torch.nn.functional.normalize(torch.randn(4, model.config.embed_dim), dim=1)

    def onehot(*weights: tuple[str, float]) -> torch.Tensor:
        c = torch.zeros(n)
        for name, x in weights:
            c[cols.index(name)] = x
        return c

    pics = blend(heads, torch.stack([onehot(("low", 0.9)), onehot(("high", 0.6), ("low", 0.3)), torch.zeros(n),
                                     onehot(("mid", 1.0))]), w).numpy()
    got = concept_accuracy(model, pics, ["low", "low", "mid", "no such concept"], [
        (blend(heads[:3], torch.stack([onehot(("mid", 1.0)), onehot(("mid", 0.8)), onehot(("high", 0.9))]),
               w).numpy(), "mid"),  # 2 of 3 windows right; the file's mean names mid
        (blend(heads[:2], torch.stack([onehot(("low", 1.0)), onehot(("high", 1.0))]), w).numpy(), "MID "),
        (blend(heads[:1], onehot(("low", 1.0))[None], w).numpy(), None),  # no category: not counted
    ])
    assert got is not None
    assert (got.pictures, got.pictures_counted) == (pytest.approx(1 / 3), 3)
    assert (got.sound_windows, got.windows_counted) == (pytest.approx(2 / 5), 5)
    assert (got.sound_files, got.files_counted) == (pytest.approx(1 / 2), 2)


def test_eval_reports_concept_accuracy_of_bridged_models_only(run, bridge_run, data: dict[str, Path]) -> None:
    from soundlib.evaluation.retrieval import evaluate_list

    rep = evaluate_list(data["cat_val"], [str(bridge_run.best_path), str(run[0].best_path)], [1, 5])
    bridged, heads_only = rep.models
    named = bridged.concepts
    assert named is not None and heads_only.concepts is None
    # 6 pictures and 3 sounds of the tones' categories; the sound classifier was fitted on these pitches
    assert (named.pictures_counted, named.files_counted, named.windows_counted) == (6, 3, 12)
    assert named.sound_files == 1.0 and named.sound_windows == 1.0
    # no ImageNet class belongs to "low", "mid" or "high": the picture side can never name them
    assert named.pictures == 0.0
    doc = rep.to_json()
    assert doc["models"][0]["concept_accuracy"]["sound_files"] == 1.0
    assert "concept_accuracy" not in doc["models"][1]
    from rich.console import Console

    from soundlib.cli_tables import retrieval_table

    con = Console(record=True, width=200)
    con.print(retrieval_table(rep))
    text = con.export_text()
    assert "concept right: pictures" in text and "0.0 % of 6" in text and "100.0 % of 12" in text
