"""Zero-shot sounds-for-a-picture with SoundNet's ImageNet head (a measurement; nothing here ships in a model).

For every picture of a pair list (a query) the list's distinct sounds (candidates) are ranked by the Pearson
correlation between the sound's SoundNet object log-probabilities (1000 ImageNet classes; :mod:`encoders.soundnet`)
and the picture's EfficientNet-Lite0 ImageNet log-probabilities (:class:`encoders.backbones.EffNetTaps`, fp32). Two
ways to score a whole file from its windows (as ``soundlib eval`` cuts them, up to 30):

- ``mean``: correlate with the file's mean log-probability over its windows;
- ``best``: correlate with every window and keep the best (``soundlib eval``'s default ``--file-score best``).

Metrics and chance come from :mod:`soundlib.metrics` (ties broken in expectation). A second report, "concept
accuracy", asks the object head alone: for catalog sounds of concepts whose category-map row names ImageNet classes
(``imagenet:``/``wnid:`` image patterns, applied to the 1000 files of ``--imagenet``), how often the top-1 (top-5)
class of the file's mean probabilities is one of the concept's classes.

Example::

    python tools/soundnet_zeroshot.py WORK/catalog/catalog_val.csv --map data/catalog/category_map.csv \\
        --imagenet ../shared/data/imagenet-samples --concept-list WORK/catalog/catalog_train.csv --out zs.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def picture_log_probs(paths: list[Path], batch: int = 32) -> np.ndarray:
    """EfficientNet-Lite0 ImageNet log-probabilities ``(len(paths), 1000)`` of pictures read as the pretrained
    family reads them (short side 256, centre 224)."""
    import torch

    from encoders.backbones import EffNetTaps, effnet_input
    from soundlib.images import load_image

    taps = EffNetTaps()
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            x = torch.stack([load_image(p, 256, detail=224) for p in paths[i:i + batch]])
            out.append(torch.log_softmax(taps(effnet_input(x)).logits, dim=1).numpy())
    return np.concatenate(out)


def sound_log_probs(path: Path, start: float | None, max_windows: int) -> np.ndarray:
    """SoundNet object log-probabilities ``(windows, 1000)`` of a file's windows (or of the window at ``start``)."""
    import torch

    from encoders.config import AudioConfig
    from encoders.soundnet import SoundNetFrontend, soundnet_net
    from soundlib.audio import load_windows

    cfg = AudioConfig()
    _, w = load_windows(path, cfg, max_windows=max_windows, starts=None if start is None else [start])
    front, net = SoundNetFrontend(cfg.sample_rate, cfg.window_samples), soundnet_net()
    with torch.inference_mode():
        return torch.cat([net(front(torch.from_numpy(w[i:i + 16])), keep=()).objects
                          for i in range(0, len(w), 16)]).numpy()


def _zscore(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def mean_log_prob(lp: np.ndarray) -> np.ndarray:
    """Log of the mean probability over windows: ``(W, K) -> (K,)``."""
    m = lp.max(axis=0)
    return m + np.log(np.exp(lp - m).mean(axis=0))


def rank_report(queries: np.ndarray, truth: np.ndarray, cands: list[np.ndarray], qcats: list, ccats: list,
                ks: list[int], how: str) -> dict:
    """Scores of ranking ``cands`` (per candidate ``(W, 1000)`` log-probs) for ``queries`` ``(Q, 1000)``."""
    from soundlib.metrics import category_chance, reciprocal_ranks, sample_chance

    q = _zscore(queries)
    if how == "mean":
        c = _zscore(np.stack([mean_log_prob(lp) for lp in cands]))
        corr = q @ c.T
    else:
        corr = np.stack([(q @ _zscore(lp).T).max(axis=1) for lp in cands], axis=1)
    dist = -corr
    order = np.argsort(dist, axis=1, kind="stable")
    out = {"queries": len(queries), "candidates": len(cands), "mrr": float(reciprocal_ranks(dist, truth).mean())}
    for k in ks:
        top = order[:, :k]
        out[f"top{k}_sample"] = float(np.mean([truth[i] in top[i] for i in range(len(truth))]))
        out[f"top{k}_category"] = float(np.mean([qcats[i] in {ccats[j] for j in top[i]} for i in range(len(truth))]))
        out[f"chance{k}_sample"] = sample_chance(k, len(cands))
        out[f"chance{k}_category"] = category_chance(k, qcats, ccats)
    return out


def concept_classes(map_path: Path, imagenet: Path) -> dict[str, set[int]]:
    """Concept -> indices of the ImageNet classes its image patterns select among the 1000 class files."""
    from train.catalog import read_category_map, scan_media

    files = [f for f in scan_media([imagenet], "image") if f.wnid]
    files.sort(key=lambda f: f.wnid)  # standard ImageNet-1k order = sorted WordNet ids
    if len(files) != 1000:
        raise SystemExit(f"{imagenet}: expected one file per ImageNet class (1000), found {len(files)}")
    index = {f.path: i for i, f in enumerate(files)}
    out = {}
    for rule in read_category_map(map_path):
        sel = {index[f.path] for f in rule.select(files, "image")}
        if sel:
            out[rule.concept] = sel
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("list", type=Path, help="pair list (CSV) to rank: its pictures are the queries")
    ap.add_argument("--map", type=Path, required=True, help="category map (concept -> ImageNet classes)")
    ap.add_argument("--imagenet", type=Path, required=True, help="folder of the 1000 <wnid>_<class> files")
    ap.add_argument("--concept-list", type=Path, action="append", default=[],
                    help="more lists whose sounds enter the concept accuracy (besides LIST)")
    ap.add_argument("--max-windows", type=int, default=30)
    ap.add_argument("--concept-windows", type=int, default=5, help="windows per file for the concept accuracy")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    import torch

    from encoders.backbones import imagenet_labels
    from soundlib.lists import read_list

    torch.set_num_threads(1)
    pl = read_list(a.list)
    rows = pl.rows
    keys = sorted({(r.audio, r.start) for r in rows}, key=lambda t: (str(t[0]), t[1] or 0.0))
    cidx = {k: i for i, k in enumerate(keys)}
    ccat: dict[int, str | None] = {}
    for r in rows:
        ccat[cidx[(r.audio, r.start)]] = r.category
    pics = sorted({r.frame for r in rows})
    pidx = {p: i for i, p in enumerate(pics)}
    print(f"{len(rows)} queries, {len(pics)} pictures, {len(keys)} candidate sounds", file=sys.stderr)
    plp = picture_log_probs(pics)
    slp = [sound_log_probs(p, s, a.max_windows) for p, s in keys]
    queries = plp[[pidx[r.frame] for r in rows]]
    truth = np.array([cidx[(r.audio, r.start)] for r in rows])
    qcats = [r.category for r in rows]
    ccats = [ccat[i] for i in range(len(keys))]
    ks = [1, 5, 10]
    report = {"list": str(a.list), "zero_shot": {how: rank_report(queries, truth, slp, qcats, ccats, ks, how)
                                                 for how in ("mean", "best")}}

    # concept accuracy of the object head
    classes = concept_classes(a.map, a.imagenet)
    labels = imagenet_labels()
    sounds: dict[Path, str] = {}
    for lst in [a.list, *a.concept_list]:
        for r in read_list(lst).rows:
            if r.category in classes and r.start is None:
                sounds.setdefault(r.audio, r.category)
    val_sounds = {k[0] for k in keys}
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    hits = {"all": [0, 0, 0, 0.0], "val": [0, 0, 0, 0.0]}
    examples: dict[str, list] = defaultdict(list)
    for path, concept in sorted(sounds.items(), key=lambda t: str(t[0])):
        lp = slp[cidx[(path, None)]] if (path, None) in cidx else sound_log_probs(path, None, a.concept_windows)
        top = np.argsort(-mean_log_prob(lp))[:5]
        ok1, ok5 = int(top[0] in classes[concept]), int(bool(set(top.tolist()) & classes[concept]))
        chance = len(classes[concept]) / 1000
        for part in ("all", "val") if path in val_sounds else ("all",):
            h = hits[part]
            h[0] += 1
            h[1] += ok1
            h[2] += ok5
            h[3] += chance
        p = per[concept]
        p[0] += 1
        p[1] += ok1
        p[2] += ok5
        if len(examples[concept]) < 3:
            examples[concept].append(labels[top[0]])
    report["concept_accuracy"] = {
        part: {"sounds": h[0], "top1": h[1] / max(h[0], 1), "top5": h[2] / max(h[0], 1),
               "chance_top1": h[3] / max(h[0], 1)} for part, h in hits.items()}
    report["concept_accuracy"]["per_concept"] = {
        c: {"sounds": p[0], "top1": p[1], "top5": p[2], "classes": len(classes[c]), "first_top1": examples[c]}
        for c, p in sorted(per.items())}
    text = json.dumps(report, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
