"""Gap probe: can picture ("offset") queries reach recall 0.99 at a small HNSW ef_search by moving them onto the
sound manifold first?

Picture queries lie off the sound manifold (the modality gap; the "offset" set of ``bench/query.py``), and HNSW
needs ``ef_search`` 1600 for recall@10 >= 0.99 on them at 1M windows (``bench/scale.py``). The idea measured here:
ask Chroma with a *probe*, the query moved by the gap between the library's mean and the pictures' mean
(``unit(q + shift)``, ``shift = mean(library sample) - mean(calibration pictures)``: 500 other "pictures" with the
same offset, never the test queries), then re-rank the probe's candidates exactly by the real query and keep the
best window per file, as ``SoundStore.search`` does. Reported per ``ef_search``: top-10 file recall against exact
numpy search of the query as is (``SoundStore.search``) and of the probe path, 200 offset queries.

Needs the cached 1M library and a server store of ``bench/scale.py`` (``--config``, default ``m48``: build it with
``bench/scale.py --configs m48 --skip-embedded``). Recall only: the probe costs one Chroma query, like the query
as is, so the time at equal ef is the same.

Run: ``.venv/bin/python bench/gap_probe.py [--ef 100,200,400] [--config m48]`` -> ``bench/results/gap-probe.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common import CACHE_DIR, Result, parser
from query import (COLLECTION, GAP, WINDOW_SPREAD, _spread, _unit, first_distinct, query_sets_and_offset,
                   recall)
from scale import Server, exact_wants, free_port, load_library, set_ef

N_QUERIES = 200
N_CALIBRATION = 500
LIBRARY_SAMPLE = 50_000


def probe_recall(store, q: np.ndarray, probe: np.ndarray, k: int = 10) -> list[list[int]]:  # noqa: ANN001
    """Top-``k`` files per query: Chroma candidates of ``probe``, re-ranked by their distance to ``q``."""
    col = store.require()
    res = col.query(query_embeddings=probe, n_results=store.candidates(k), include=["embeddings"])
    ids = sorted({i for row in res["ids"] for i in row})
    meta = col.get(ids=ids, include=["metadatas"])
    file_of = {i: int(Path(m["path"]).stem.split("-")[-1]) for i, m in zip(meta["ids"], meta["metadatas"])}
    out = []
    for j in range(len(q)):
        e = np.asarray(res["embeddings"][j], dtype=np.float32)
        order = np.argsort(((e - q[j]) ** 2).sum(1), kind="stable")
        out.append(first_distinct((file_of[res["ids"][j][i]] for i in order), k))
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ef", default="100,200,400", help="ef_search values, comma-separated")
    p.add_argument("--config", default="m48", help="the server store of bench/scale.py to probe")
    p.add_argument("--windows", type=int, default=1_000_000)
    args = p.parse_args()
    from soundlib.store import open_store

    work = CACHE_DIR / f"scale-{args.windows}"
    lib_dir, db = work / "library", work / f"server-{args.config}" / "chroma"
    if not (lib_dir / "done.json").exists() or not (work / f"server-{args.config}" / "built.json").exists():
        raise SystemExit(f"{work}: no cached library and server-{args.config} store (run bench/scale.py first)")
    lib = load_library(lib_dir)
    if not (lib_dir / f"exact-{N_QUERIES}.json").exists():
        exact_wants(lib_dir, N_QUERIES)
    wants = json.loads((lib_dir / f"exact-{N_QUERIES}.json").read_text())["offset"]
    sets, direction = query_sets_and_offset(lib, N_QUERIES)
    q = sets["offset"]
    rng = np.random.default_rng(999)  # calibration "pictures": other files, the same offset
    files = rng.integers(0, lib.n_files, N_CALIBRATION)
    calibration = _unit(_spread(lib.file_centres[files], WINDOW_SPREAD, rng) + GAP * direction)
    sample = np.sort(np.random.default_rng(5).choice(len(lib.vectors), LIBRARY_SAMPLE, replace=False))
    shift = np.asarray(lib.vectors[sample]).mean(0) - calibration.mean(0)
    probe = _unit(q + shift)
    res = Result("gap-probe", args.quick, params={"windows": args.windows, "config": args.config,
                                                  "queries": N_QUERIES, "calibration": N_CALIBRATION})
    res.details["shift_norm"] = float(np.linalg.norm(shift))
    res.details["shift_cos_offset"] = float(-(shift @ direction[0]) / np.linalg.norm(shift))
    server = Server(db, free_port())
    try:
        for ef in (int(x) for x in args.ef.split(",")):
            server.start()
            set_ef({"url": server.url}, ef)
            server.stop()
            server.start()
            with open_store(url=server.url, collection=COLLECTION) as store:
                got = [[int(Path(h.path).stem.split("-")[-1]) for h in row] for row in store.search(q, 10)]
                as_is = recall(got, wants)
                moved = recall(probe_recall(store, q, probe), wants)
            server.stop()
            res.add(f"recall@10 files, offset queries, ef_search {ef}: gap-corrected probe", moved, "",
                    baseline="the query as is (SoundStore.search)", baseline_value=as_is, ratio=moved / as_is,
                    note=f"shift norm {res.details['shift_norm']:.3f} (cosine with minus the offset "
                         f"{res.details['shift_cos_offset']:.3f})")
            print(f"ef {ef}: as is {as_is:.3f}, probe {moved:.3f}", flush=True)
    finally:
        server.stop()
    res.finish()


if __name__ == "__main__":
    main()
