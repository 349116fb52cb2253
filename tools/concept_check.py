"""Picture-side check of the concept layer on real pictures, per image source.

For every picture of the catalog's image folders, EfficientNet-Lite0's ImageNet softmax is summed into concepts
(:func:`soundlib.concepts.concept_probabilities`). A picture that the category map gives a concept (its row's image
patterns: CIFAR folders, Scratch sprites, widelands icons, ImageNet classes through ``concept:NAME``) is *right*
when the most probable column is that concept. Reported per source:

- ``coverable``: pictures whose catalog concept has ImageNet classes (a concept with none, such as ``deer`` or
  ``helicopter``, cannot be named by the classifier and is counted apart);
- ``acc``: argmax over the concepts and "other"; ``acc_concepts``: argmax over the concepts only; ``top5``: the
  concept among the 5 most probable concepts; ``chance``: 1 / (C + 1), 5 / C;
- ``new``: pictures the map gives no concept whose argmax is a concept with catalog sounds (candidates for more
  pairs; not reviewed), and how many ImageNet classes sit in a concept with catalog sounds, before and after.

    python tools/concept_check.py --sounds /work/work/media/sfx /work/work/media2/sfx \\
        --images /work/shared/data/imagenet-samples /work/shared/data/cifar10-train /work/work/media/images \\
                 /work/work/media2/images --cache /tmp/probs.npz --out data/concepts/picture_check.json

The ImageNet probabilities are cached in ``--cache`` (by path), so a second run classifies nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python tools/concept_check.py` from a plain checkout
    sys.path.insert(0, str(ROOT))


def source_of(rooted: str) -> str:
    """``imagenet-samples/n01..`` -> ``imagenet-samples``; ``images/scratch/animals/x`` -> ``scratch``."""
    parts = rooted.split("/")
    return parts[1] if parts[0] == "images" and len(parts) > 2 else parts[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--map", default=str(ROOT / "data" / "catalog" / "category_map.csv"))
    ap.add_argument("--sounds", nargs="+", required=True)
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--cache", required=True, help="npz of ImageNet probabilities by path (read and written)")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from soundlib.concepts import concept_names, concept_probabilities, load_concepts
    from train.catalog import read_category_map, scan_media
    from train.concept_images import picture_concepts

    table = load_concepts()
    names = concept_names(table)
    rules = read_category_map(a.map)
    images = scan_media(a.images, "image")
    sounds = scan_media(a.sounds, "audio")
    with_sounds = {r.concept for r in rules if r.select(sounds, "sound")}
    concepts_of: dict[Path, set[str]] = defaultdict(set)
    for r in rules:
        for it in r.select(images, "image"):
            concepts_of[it.path].add(r.concept)

    cache = Path(a.cache)
    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        z = np.load(cache)
        known = dict(zip(z["paths"].tolist(), z["probs"]))
    todo = [it for it in images if str(it.path) not in known]
    if todo:
        print(f"classifying {len(todo)} pictures", file=sys.stderr)
        probs, _, errors = picture_concepts([it.path for it in todo])
        for it, p in zip(todo, probs):
            known[str(it.path)] = p
        for e in errors:
            print(f"skipped: {e}", file=sys.stderr)
        np.savez_compressed(cache, paths=np.array(list(known)), probs=np.stack(list(known.values())))
    inet = np.stack([known[str(it.path)] for it in images])
    ok = np.isfinite(inet).all(axis=1)
    cp = np.zeros((len(images), len(names)), dtype=np.float32)
    cp[ok] = concept_probabilities(inet[ok], table)

    stats: dict[str, Counter] = defaultdict(Counter)
    new_by: dict[str, Counter] = defaultdict(Counter)
    confusions: dict[str, Counter] = defaultdict(Counter)
    for k, it in enumerate(images):
        src = source_of(it.rooted)
        s = stats[src]
        s["pictures"] += 1
        if not ok[k]:
            s["unreadable"] += 1
            continue
        mine = concepts_of.get(it.path, set())
        best_all = names[int(np.argmax(cp[k]))]
        order = np.argsort(-cp[k, :-1])
        best = names[int(order[0])]
        if mine:
            s["with_concept"] += 1
            cover = mine & set(table.names)
            if not cover:
                s["not_coverable"] += 1
                continue
            s["coverable"] += 1
            s["acc"] += best_all in cover
            s["acc_concepts"] += best in cover
            s["top5"] += bool(cover & {names[int(i)] for i in order[:5]})
            if best_all not in cover:
                confusions[src][f"{'/'.join(sorted(cover))} -> {best_all}"] += 1
        elif best_all in with_sounds:
            s["new"] += 1
            new_by[src][best_all] += 1

    n_c = len(table.names)
    report: dict[str, object] = {"concepts": n_c, "chance_acc": round(1 / (n_c + 1), 4),
                                 "chance_top5": round(5 / n_c, 4), "sources": {}}
    for src, s in sorted(stats.items()):
        cov = s["coverable"]
        report["sources"][src] = {  # type: ignore[index]
            **{k: s[k] for k in ("pictures", "unreadable", "with_concept", "not_coverable", "coverable", "new")},
            **{m: round(s[m] / cov, 4) if cov else None for m in ("acc", "acc_concepts", "top5")},
            "new_by_concept": dict(new_by[src].most_common(15)),
            "top_confusions": dict(confusions[src].most_common(8)),
        }
    classes_with_sounds = sum(1 for c in table.class_concept if c >= 0 and table.names[c] in with_sounds)
    report["imagenet_classes_in_a_concept_with_sounds"] = classes_with_sounds
    report["concepts_without_catalog_sounds"] = sorted(set(table.names) - with_sounds)
    text = json.dumps(report, ensure_ascii=False, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
