"""soundlib eval: the scoring core on known vectors, Chroma vs exact search, pairs, and the CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from soundlib.evaluation import correlation, inputs, retrieval, scoring
from soundlib import metrics as M


def unit(deg: float) -> list[float]:
    """A 2-D unit vector at ``deg`` degrees (distances between these are easy to order by hand)."""
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


# Candidates A (10 deg), B (5 deg), C (60 deg), D (180 deg); queries whose own samples are A, B, C, D.
CANDS = np.array([unit(10), unit(5), unit(60), unit(180)], dtype=np.float32)
CAND_SAMPLES = ["A", "B", "C", "D"]
CAND_CATS = ["x", "x", "y", "z"]
QUERIES = np.array([unit(0), unit(320), unit(90), unit(200)], dtype=np.float32)
Q_SAMPLES = ["A", "B", "C", "D"]
Q_CATS = ["x", "x", "y", "z"]
# By hand: q0 ranks B, A, C, D (own rank 2); q1 B, A, C, D (1); q2 C, A, B, D (1); q3 D, C, B, A (1).


def test_score_vectors_known_embeddings():
    s = scoring.score_vectors(QUERIES, Q_SAMPLES, Q_CATS, CANDS, CAND_SAMPLES, CAND_CATS, [1, 2, 10])
    assert s.n_queries == 4 and s.n_candidates == 4
    assert s.ranks.tolist() == [2, 1, 1, 1]
    assert s.mrr == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert s.topk[1] == (0.75, 1.0)  # q0's nearest is B: wrong sample, right category
    assert s.topk[2] == (1.0, 1.0)
    assert s.topk[10] == (1.0, 1.0)  # k > N: all 4 candidates count
    assert [[s.samples[i] for i in r] for r in s.ranked] == [
        ["B", "A", "C", "D"], ["B", "A", "C", "D"], ["C", "A", "B", "D"], ["D", "C", "B", "A"]]
    assert all(len(r) == 4 for r in s.ranked)  # exactly min(k, N), never k + 1
    # chance: sample k/N; category 1 - C(N - n_c, k) / C(N, k), n_x = 2, n_y = n_z = 1, averaged over queries
    assert s.chance[1] == (0.25, pytest.approx((0.5 + 0.5 + 0.25 + 0.25) / 4))
    assert s.chance[2] == (0.5, pytest.approx((5 / 6 + 5 / 6 + 0.5 + 0.5) / 4))
    assert s.chance[10] == (1.0, 1.0)
    doc = s.to_json("m")
    assert doc == {"model": "m", "topk": {"1": {"sample": 0.75, "category": 1.0}, "2": {"sample": 1.0, "category": 1.0},
                                          "10": {"sample": 1.0, "category": 1.0}},
                   "chance": {"1": {"sample": 0.25, "category": pytest.approx(0.375)},
                              "2": {"sample": 0.5, "category": pytest.approx(2 / 3)},
                              "10": {"sample": 1.0, "category": 1.0}},
                   "mrr": 0.875}


def test_score_vectors_without_categories_gives_null_category():
    s = scoring.score_vectors(QUERIES, Q_SAMPLES, [None] * 4, CANDS, CAND_SAMPLES, None, [1])
    assert s.topk[1] == (0.75, None) and s.chance[1] == (0.25, None)
    s = scoring.score_vectors(QUERIES, Q_SAMPLES, ["x", None, "y", "z"], CANDS, CAND_SAMPLES, CAND_CATS, [1])
    assert s.topk[1][1] is None  # only when every query has a category


def test_windows_of_one_sample_score_by_their_best():
    # A gets a second window at 250 deg: now nearer to q3 (200 deg) than C is, so q3 ranks D, A, C, B.
    cands = np.vstack([CANDS, [unit(250)]]).astype(np.float32)
    s = scoring.score_vectors(QUERIES, Q_SAMPLES, Q_CATS, cands, CAND_SAMPLES + ["A"], CAND_CATS + ["x"], [2])
    assert s.n_candidates == 4
    assert [s.samples[i] for i in s.ranked[3]] == ["D", "A"]
    np.testing.assert_allclose(s.distances[3][1], 2 * math.sin(math.radians(50) / 2), rtol=1e-5)


def test_given_ranking_is_used_for_topk_and_agreement_is_measured():
    wrong = [["A", "B"], ["A", "B"], ["A", "C"], ["A", "D"]]  # a deliberately bad "Chroma" ranking
    s = scoring.score_vectors(QUERIES, Q_SAMPLES, Q_CATS, CANDS, CAND_SAMPLES, CAND_CATS, [1, 2], ranked=wrong)
    assert s.topk[1][0] == 0.25 and s.topk[2][0] == 1.0
    assert s.mrr == pytest.approx(0.875)  # MRR always from the exact ranking
    assert s.agreement == pytest.approx((1 + 1 + 1 + 0.5) / 4)  # exact top-2 of q3 is D, C
    with pytest.raises(ValueError):
        scoring.score_vectors(QUERIES, Q_SAMPLES, Q_CATS, CANDS, CAND_SAMPLES, CAND_CATS, [2], ranked=[["A"]] * 4)
    with pytest.raises(ValueError):
        scoring.score_vectors(QUERIES, ["A", "B", "C", "E"], Q_CATS, CANDS, CAND_SAMPLES, CAND_CATS, [1])


def test_chroma_ranking_agrees_with_exact_search():
    """The product's search (temporary Chroma collection, distinct samples) returns the exact top-k."""
    rng = np.random.default_rng(3)
    n_samples, dim = 300, 16
    groups = np.repeat(np.arange(n_samples), rng.integers(1, 4, size=n_samples))
    vecs = rng.normal(size=(len(groups), dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = rng.normal(size=(40, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    samples = [f"s{g}" for g in groups]
    ranked, dists, which = retrieval.chroma_ranking(queries, vecs, samples, [None] * len(samples), 10)
    exact_idx, exact_dist = M.exact_topk(M.group_min(queries, vecs, groups, n_samples), 10)
    assert ranked == [[f"s{i}" for i in row] for row in exact_idx.tolist()]
    np.testing.assert_allclose(np.array(dists), exact_dist, atol=1e-5)
    assert all(groups[w] == int(lab[1:]) for row_w, row_l in zip(which, ranked) for w, lab in zip(row_w, row_l))
    s = scoring.score_vectors(queries, [f"s{groups[i]}" for i in range(40)], None, vecs, samples, None, [10],
                         ranked=ranked, ranked_distances=dists)
    assert s.agreement == 1.0
    # k larger than the number of samples: all of them, each once
    small = retrieval.chroma_ranking(queries[:2], vecs[:5], samples[:5], [None] * 5, 50)[0]
    assert all(sorted(r) == sorted(set(samples[:5])) for r in small)


def test_make_pairs_is_balanced_and_respects_video_and_category():
    samples = ["a", "b", "c", "d", "e"]
    cats = ["dog", "dog", "cat", "cat", None]
    videos = ["v1", "v2", "v1", "v3", "v3"]
    pairs = correlation.make_pairs(samples, cats, videos, samples, seed=1)
    pos = [p for p in pairs if p[2] == 1]
    neg = [p for p in pairs if p[2] == 0]
    assert len(pos) == len(neg) == 5
    assert all(i == j for i, j, _ in pos)
    for i, j, _ in neg:
        assert j != i and videos[j] != videos[i]
        assert cats[i] is None or cats[j] is None or cats[i] != cats[j]
    assert pairs == correlation.make_pairs(samples, cats, videos, samples, seed=1)  # seeded
    # a row with no acceptable partner is left out entirely
    assert correlation.make_pairs(["a", "b"], ["x", "x"], [None, None], ["a", "b"]) == []


def test_fit_threshold():
    t, acc = correlation.fit_threshold([0.1, 0.2, 0.3, 0.9, 1.0, 0.25], [1, 1, 1, 0, 0, 0])
    assert 0.3 < t < 0.9 or 0.2 < t < 0.25
    assert acc == pytest.approx(5 / 6)
    t, acc = correlation.fit_threshold([0.1, 0.5], [1, 0])
    assert 0.1 < t < 0.5 and acc == 1.0


def test_model_labels_unique():
    assert inputs.model_labels(["m5", "m7"], ["a.pt", "b.pt"]) == ["m5", "m7"]
    assert inputs.model_labels(["m5", "m5"], ["x/a.pt", "y/b.pt"]) == ["m5 (a.pt)", "m5 (b.pt)"]
    labs = inputs.model_labels(["m5", "m5"], ["x/a.pt", "y/a.pt"])
    assert len(set(labs)) == 2


# ------------------------------------------------------------------------------------------------------------------
# End to end: the CLI on real small files with tiny fixture models
# ------------------------------------------------------------------------------------------------------------------

KS = ("1", "5", "10")


def _write_media(root):
    """Real files: 4 sound files (tones, noise, a chirp), 7 frames (PNG/JPEG), one corrupt image."""
    import soundfile as sf
    from PIL import Image

    from encoders.config import AudioConfig

    sr = AudioConfig().sample_rate
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    (root / "frames").mkdir()
    t = np.arange(int(3.0 * sr)) / sr
    sounds = {
        "tone.wav": 0.3 * np.sin(2 * np.pi * 440 * t),
        "noise.flac": 0.2 * rng.standard_normal(len(t)),
        "chirp.wav": 0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t),
        "low.wav": 0.3 * np.sin(2 * np.pi * 110 * t[: int(1.5 * sr)]),
    }
    for name, y in sounds.items():
        sf.write(root / "audio" / name, y.astype(np.float32), sr)
    for i in range(7):
        arr = (rng.random((40 + 3 * i, 48, 3)) * 255).astype(np.uint8)
        arr[:, : 8 * i] = (30 * i, 200 - 20 * i, 90)
        Image.fromarray(arr).save(root / "frames" / (f"f{i}.png" if i % 2 else f"f{i}.jpg"))
    (root / "frames" / "broken.png").write_bytes(b"not an image at all")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    """Media, two tiny checkpoints (m5 InfoNCE and m2 BCE), and several lists (paths relative to the list)."""
    from encoders.checkpoint import save_checkpoint
    from encoders.registry import create_model

    root = tmp_path_factory.mktemp("eval")
    _write_media(root / "data")
    for name, ckpt in (("m5-attention-linear-infonce", "m5.pt"), ("m2-attention-linear-bce", "m2.pt")):
        save_checkpoint(root / ckpt, create_model(name, seed=0, width=0.125, image_size=64))
    lists = root / "data" / "lists"
    lists.mkdir()
    # line 2..: good rows; duplicate clip (tone@0 twice), a whole-file row (chirp), then bad rows
    (lists / "test.csv").write_text(
        "frame,audio,start,category,video\n"
        "../frames/f0.jpg,../audio/tone.wav,0,tone,v1\n"        # 2
        "../frames/f1.png,../audio/tone.wav,1,tone,v1\n"        # 3
        "../frames/f2.jpg,../audio/noise.flac,0,noise,v2\n"     # 4
        "../frames/f3.png,../audio/tone.wav,0,tone,v1\n"        # 5 duplicate clip (tone@0)
        "../frames/f4.jpg,../audio/chirp.wav,,chirp,v3\n"       # 6 whole file
        "../frames/f5.png,../audio/low.wav,0.5,low,v4\n"        # 7
        "../frames/f6.jpg,../audio/noise.flac,2,noise,v2\n"     # 8
        "../frames/broken.png,../audio/low.wav,0,low,v4\n"      # 9 unreadable image
        "../frames/f1.png,../audio/missing.wav,0,tone,v1\n"     # 10 missing audio file
        "../frames/f2.jpg,../audio/low.wav,9,low,v4\n",         # 11 start past the end
        encoding="utf-8")
    (lists / "nocat.csv").write_text(
        "frame,audio,start\n"
        "../frames/f0.jpg,../audio/tone.wav,0\n"
        "../frames/f2.jpg,../audio/noise.flac,0\n"
        "../frames/f5.png,../audio/low.wav,\n", encoding="utf-8")
    (lists / "val.csv").write_text(
        "frame,audio,start,category,video\n"
        "../frames/f1.png,../audio/tone.wav,2,tone,v1\n"
        "../frames/f3.png,../audio/noise.flac,1,noise,v2\n"
        "../frames/f6.jpg,../audio/low.wav,0,low,v4\n"
        "../frames/f0.jpg,../audio/chirp.wav,1,chirp,v3\n", encoding="utf-8")
    (lists / "allbad.csv").write_text(
        "frame,audio,start\n"
        "../frames/broken.png,../audio/tone.wav,0\n"
        "../frames/f0.jpg,../audio/nothere.wav,0\n", encoding="utf-8")
    return root


def _run(*args):
    from tests.cli_process import run_cli

    return run_cli("eval", *args)


def _check_schema(doc, n_models, categories=True):
    assert set(doc) == {"list", "queries", "candidates", "models"}
    assert isinstance(doc["queries"], int) and isinstance(doc["candidates"], int)
    assert len(doc["models"]) == n_models
    for m in doc["models"]:
        assert set(m) == {"model", "topk", "chance", "mrr"}
        assert isinstance(m["model"], str) and 0 < m["mrr"] <= 1
        for part in ("topk", "chance"):
            assert set(m[part]) == set(KS)
            for k, v in m[part].items():
                assert set(v) == {"sample", "category"}
                assert 0 <= v["sample"] <= 1
                if categories:
                    assert 0 <= v["category"] <= 1
                else:
                    assert v["category"] is None
        for k in KS:  # chance of the sample level is k / N
            assert m["chance"][k]["sample"] == pytest.approx(min(1.0, int(k) / doc["candidates"]))
        assert m["topk"]["1"]["sample"] <= m["topk"]["5"]["sample"] <= m["topk"]["10"]["sample"]


@pytest.fixture(scope="module")
def two_model_run(fixture_dir):
    """One CLI run of the main list with both models, --json and --out (shared by two tests)."""
    out = fixture_dir / "recs.json"
    r = _run(fixture_dir / "data" / "lists" / "test.csv", "--model", fixture_dir / "m5.pt",
             "--model", fixture_dir / "m2.pt", "--json", "--out", out)
    return r, out


def test_cli_eval_json_two_models_bad_rows_and_out(two_model_run):
    r, out = two_model_run
    assert r.exit_code == 1, r.stderr  # rows were skipped
    doc = json.loads(r.stdout)  # stdout holds exactly one JSON document
    _check_schema(doc, 2)
    # 7 good rows; clips: tone@0 (twice), tone@1, noise@0, chirp (whole), low@0.5, noise@2 -> 6 distinct
    assert doc["queries"] == 7 and doc["candidates"] == 6
    assert [m["model"] for m in doc["models"]] == ["m5-attention-linear-infonce", "m2-attention-linear-bce"]
    for line in (9, 10, 11):
        assert f"test.csv:{line}: " in r.stderr
    assert "broken.png" in r.stderr and "missing.wav" in r.stderr and "past the end" in r.stderr
    assert "7 of 10 rows scored, 3 skipped" in r.stderr

    recs = json.loads(out.read_text())
    assert set(recs) == {"m5-attention-linear-infonce", "m2-attention-linear-bce"}
    for model_doc, per_frame in zip(doc["models"], recs.values()):
        assert len(per_frame) == 7
        assert {v["line"] for v in per_frame.values()} == {2, 3, 4, 5, 6, 7, 8}
        for frame, rec in per_frame.items():
            assert len(rec["knn"]) == len(rec["knn_dist"]) == len(rec["knn_samples"]) == 6  # min(10, N), not k+1
            assert len(set(rec["knn_samples"])) == 6
            assert rec["knn_dist"] == sorted(rec["knn_dist"])
            assert rec["gt_rank"] == rec["knn_samples"].index(rec["gt_sample"]) + 1
            assert rec["aud_labels"][0] in {"tone", "noise", "chirp", "low"}
        # the reported figures follow from the per-frame lists
        top1 = np.mean([v["knn_samples"][0] == v["gt_sample"] for v in per_frame.values()])
        cat1 = np.mean([v["aud_labels"][0] == v["gt_label"] for v in per_frame.values()])
        assert model_doc["topk"]["1"] == {"sample": pytest.approx(top1), "category": pytest.approx(cat1)}
        # MRR: exact ties (tone@0 and tone@1 hold the same samples) count as a random order among the tied
        rr = []
        for v in per_frame.values():
            d = np.array(v["knn_dist"])
            own = d[v["gt_rank"] - 1]
            a, t = 1 + int((d < own - 1e-6).sum()), int((abs(d - own) <= 1e-6).sum()) - 1
            rr.append(np.mean([1 / r for r in range(a, a + t + 1)]))
        assert model_doc["mrr"] == pytest.approx(np.mean(rr))
        # duplicate clip: frames f0 and f3 share tone@0 as ground truth; chirp is a whole-file sample
        assert per_frame["../frames/f0.jpg"]["gt_sample"] == per_frame["../frames/f3.png"]["gt_sample"]
        assert per_frame["../frames/f4.jpg"]["gt_sample"] == "../audio/chirp.wav"
        # category chance: exact, from the counts (tone 2, noise 2, chirp 1, low 1 of 6 candidates)
        cats = {"tone": 2, "noise": 2, "chirp": 1, "low": 1}
        q_cats = [v["gt_label"] for v in per_frame.values()]
        for k in KS:
            want = np.mean([M.hit_probability(int(k), 6, cats[c]) for c in q_cats])
            assert model_doc["chance"][k]["category"] == pytest.approx(want)


def test_cli_eval_distances_match_direct_embedding(fixture_dir, two_model_run):
    """Recompute the m5 distances outside the pipeline: frames and clips embedded directly with the model."""
    import torch

    from soundlib.audio import load_windows
    from soundlib.images import load_image
    from soundlib.models import load_model

    data = fixture_dir / "data"
    recs = json.loads(two_model_run[1].read_text())["m5-attention-linear-infonce"]
    model = load_model(fixture_dir / "m5.pt").model
    model.inference_bf16 = False
    cfg = model.config.audio

    def audio_vectors(rel, start):
        path = data / "lists" / rel
        if start is None:
            _, w = load_windows(path, cfg)
        else:
            _, w = load_windows(path, cfg, starts=[start])
        return model.embed_audio(torch.as_tensor(w)).numpy()

    samples = {"../audio/tone.wav@0": ("../audio/tone.wav", 0.0), "../audio/tone.wav@1": ("../audio/tone.wav", 1.0),
               "../audio/noise.flac@0": ("../audio/noise.flac", 0.0),
               "../audio/chirp.wav": ("../audio/chirp.wav", None),
               "../audio/low.wav@0.5": ("../audio/low.wav", 0.5), "../audio/noise.flac@2": ("../audio/noise.flac", 2.0)}
    vecs = {s: audio_vectors(*a) for s, a in samples.items()}
    for frame, rec in recs.items():
        img = load_image(data / "lists" / frame, size=model.config.image_size)
        v = model.embed_images(torch.as_tensor(img)[None]).numpy()[0]
        d = {s: float(np.linalg.norm(w - v, axis=1).min()) for s, w in vecs.items()}
        assert set(rec["knn_samples"]) == set(d)
        for s, dist in zip(rec["knn_samples"], rec["knn_dist"]):
            assert dist == pytest.approx(d[s], abs=0.02)  # the CLI runs in bf16


def test_cli_eval_table_k_beyond_candidates_and_no_categories(fixture_dir):
    lists = fixture_dir / "data" / "lists"
    out = fixture_dir / "nocat_recs.json"
    r = _run(lists / "nocat.csv", "--model", fixture_dir / "m5.pt", "-k", "1,50", "--json", "--out", out)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    recs = json.loads(out.read_text())  # one model: the reference shape, frame -> record
    assert set(recs) == {"../frames/f0.jpg", "../frames/f2.jpg", "../frames/f5.png"}
    assert all(len(v["knn"]) == 3 and v["gt_label"] is None and v["aud_labels"] == [None] * 3 for v in recs.values())
    assert recs["../frames/f5.png"]["gt_sample"] == "../audio/low.wav"
    assert doc["queries"] == 3 and doc["candidates"] == 3
    m = doc["models"][0]
    assert set(m["topk"]) == {"1", "50"}
    assert m["topk"]["50"] == {"sample": 1.0, "category": None}  # all 3 candidates returned
    assert m["chance"]["50"] == {"sample": 1.0, "category": None}
    assert m["chance"]["1"]["sample"] == pytest.approx(1 / 3)
    # text mode: a Rich table with the model's column group, chance and MRR rows
    assert any(c.startswith("../audio/low.wav@") for c in recs["../frames/f0.jpg"]["knn"])  # best window's start
    out_mean = fixture_dir / "nocat_mean.json"
    r = _run(lists / "nocat.csv", "--model", fixture_dir / "m5.pt", "-k", "1,50", "--file-score", "mean",
             "--out", out_mean)
    assert r.exit_code == 0
    assert "../audio/low.wav" in json.loads(out_mean.read_text())["../frames/f0.jpg"]["knn"]  # one mean vector
    text = " ".join(r.stdout.split())
    for want in ("top-1", "top-50", "chance@50", "MRR", "sample %", "3 of 3 rows scored", "file score mean"):
        assert want in text
    assert "category" not in text


def test_cli_eval_errors(fixture_dir):
    lists = fixture_dir / "data" / "lists"
    r = _run(lists / "allbad.csv", "--model", fixture_dir / "m5.pt", "--json")
    assert r.exit_code == 2 and r.stdout == ""
    assert "allbad.csv:2: " in r.stderr and "allbad.csv:3: " in r.stderr and "nothing could be scored" in r.stderr
    r = _run(lists / "nocat.csv", "--model", fixture_dir / "m5.pt", "-k", "0")
    assert r.exit_code == 2 and "-k" in r.stderr
    r = _run(lists / "nothere.csv", "--model", fixture_dir / "m5.pt")
    assert r.exit_code == 2 and "not found" in r.stderr


def test_cli_eval_correlation(fixture_dir):
    lists = fixture_dir / "data" / "lists"
    # the InfoNCE model has no BCE head: it needs --val for its threshold
    r = _run(lists / "test.csv", "--correlation", "--model", fixture_dir / "m5.pt")
    assert r.exit_code == 2 and "--val" in r.stderr
    r = _run(lists / "test.csv", "--correlation", "--model", fixture_dir / "m2.pt", "--model", fixture_dir / "m5.pt",
             "--val", lists / "val.csv", "--json")
    assert r.exit_code == 1, r.stderr  # the three bad rows
    doc = json.loads(r.stdout)
    assert set(doc) == {"list", "pairs", "models"}
    assert doc["pairs"] == 14  # 7 good rows, each with a partner from another video and category
    m2, m5 = doc["models"]
    assert m2["method"] == "head" and m2["threshold"] is None
    assert m5["method"] == "threshold" and 0 <= m5["threshold"] <= 2
    for m in doc["models"]:
        assert 0 <= m["accuracy"] <= 1 and (m["accuracy"] * doc["pairs"]) == pytest.approx(
            round(m["accuracy"] * doc["pairs"]))


def test_cli_eval_library_collection(fixture_dir):
    """--library: the candidates are an ingested collection's files; a row's own sample is the file at its path."""
    import shutil

    from soundlib.ingest import ingest
    from soundlib.models import load_model
    from soundlib.store import open_store

    data = fixture_dir / "data"
    lib = fixture_dir / "lib"
    for rel, src in (("tones/tone.wav", "tone.wav"), ("tones/low.wav", "low.wav"), ("noise/noise.flac", "noise.flac"),
                     ("sweeps/chirp.wav", "chirp.wav")):
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data / "audio" / src, lib / rel)
    db = fixture_dir / "db"
    with open_store(db=db, collection="testlib", create=True) as store:
        report = ingest([str(lib)], load_model(fixture_dir / "m5.pt"), store)
        assert store.stats()["files"] == 4, report
    (fixture_dir / "lib.csv").write_text(
        "frame,audio,start,category\n"
        "data/frames/f0.jpg,lib/tones/tone.wav,,\n"
        "data/frames/f2.jpg,lib/noise/noise.flac,1,\n"   # start is ignored: the file is the sample
        "data/frames/f4.jpg,lib/sweeps/chirp.wav,,\n"
        "data/frames/f5.png,lib/tones/low.wav,,\n"
        "data/frames/f6.jpg,data/audio/tone.wav,,\n",    # 6: a file that is not in the library
        encoding="utf-8")
    r = _run(fixture_dir / "lib.csv", "--library", "testlib", "--db", db, "--model", fixture_dir / "m5.pt",
             "--json", "--out", fixture_dir / "lib_recs.json")
    assert r.exit_code == 1, r.stderr
    assert "lib.csv:6: " in r.stderr and "not in library 'testlib'" in r.stderr
    doc = json.loads(r.stdout)
    _check_schema(doc, 1)
    assert doc["queries"] == 4 and doc["candidates"] == 4
    recs = json.loads((fixture_dir / "lib_recs.json").read_text())
    assert recs["data/frames/f2.jpg"]["gt_sample"] == "lib/noise/noise.flac"
    assert recs["data/frames/f2.jpg"]["gt_label"] == "noise"  # the library's category (first folder)
    for rec in recs.values():
        assert sorted(rec["knn_samples"]) == sorted(["lib/tones/tone.wav", "lib/tones/low.wav",
                                                     "lib/noise/noise.flac", "lib/sweeps/chirp.wav"])
    m = doc["models"][0]
    want = np.mean([M.hit_probability(1, 4, n) for n in (2, 1, 1, 2)])  # tones 2, noise 1, sweeps 1
    assert m["chance"]["1"]["category"] == pytest.approx(want)
    # a model other than the collection's is refused with one clear line
    r = _run(fixture_dir / "lib.csv", "--library", "testlib", "--db", db, "--model", fixture_dir / "m2.pt")
    assert r.exit_code == 2 and "testlib" in r.stderr
    r = _run(fixture_dir / "lib.csv", "--library", "testlib", "--db", db, "--model", fixture_dir / "m5.pt",
             "--file-score", "mean")
    assert r.exit_code == 2 and "best window" in r.stderr


def test_eval_candidates_join_the_ranking_and_the_chance(fixture_dir):
    """--candidates: extra whole-file sounds are ranked with the list's clips; chance counts them; bad rows reported."""
    import shutil

    import soundfile as sf

    from soundlib.evaluation.retrieval import evaluate_list

    cands = fixture_dir / "data" / "cands"
    (cands / "extra").mkdir(parents=True)
    sr = 48_000
    t = np.arange(2 * sr) / sr
    sf.write(cands / "extra" / "buzz.wav", (0.3 * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.float32), sr)
    shutil.copy(fixture_dir / "data" / "audio" / "noise.flac", cands / "extra" / "hum.flac")
    (cands / "extra" / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    (cands / "cands.csv").write_text(
        "audio,category\n"
        "../audio/chirp.wav,chirp\n"      # 2: the list's own file: a candidate already, not added again
        "extra/buzz.wav,tone\n"           # 3: a distractor of a queried category
        "extra/hum.flac,\n"               # 4: no category
        "extra/buzz.wav,tone\n"           # 5: listed twice: kept once
        "missing.wav,tone\n"              # 6: no such file
        "extra/bad.wav,tone\n",           # 7: not decodable
        encoding="utf-8")
    rep = evaluate_list(fixture_dir / "data" / "lists" / "test.csv", [str(fixture_dir / "m5.pt")], (1, 10),
                        candidates=cands / "cands.csv")
    assert rep.queries == 7 and rep.extra_candidates == 2 and rep.candidates == 6 + 2
    reasons = " ".join(p.reason for p in rep.problems)
    assert "cands.csv:6: audio file not found" in reasons and "bad.wav" in reasons
    sc = rep.models[0].scores
    assert sc.chance[1][0] == pytest.approx(1 / 8)
    # queries: tone, tone, noise, tone, chirp, low, noise; candidates: 3 tone (2 clips + buzz), 2 noise, 1 chirp,
    # 1 low, 1 without category
    assert sc.chance[1][1] == pytest.approx((3 + 3 + 2 + 3 + 1 + 1 + 2) / 7 / 8)
    for rec in rep.models[0].recommendations.values():  # k=10 > 8: every candidate is ranked for every query
        assert {"../cands/extra/buzz.wav", "../cands/extra/hum.flac"} <= set(rec["knn_samples"])
    doc = rep.to_json()
    assert doc["candidates"] == 8 and doc["extra_candidates"] == 2 and doc["candidates_list"].endswith("cands.csv")

    r = _run(fixture_dir / "data" / "lists" / "test.csv", "--model", fixture_dir / "m5.pt", "--candidates",
             cands / "cands.csv", "--json")
    assert r.exit_code == 1, r.stderr  # skipped rows and candidates
    assert json.loads(r.stdout)["candidates"] == 8 and "cands.csv:6" in r.stderr
    r = _run(fixture_dir / "data" / "lists" / "test.csv", "--model", fixture_dir / "m5.pt", "--candidates",
             cands / "nothere.csv")
    assert r.exit_code == 2 and "nothere.csv" in r.stderr and "not found" in r.stderr
