"""Query at scale: a 200,000-window library -> latency of one image query, recall and speed vs exact search.

The library (``--windows N``, default 200,000) is **synthetic**: building it from real model embeddings of real
audio would take hours on this CPU, so the vectors are random unit vectors with the structure of a sound library
(40 category centres; each file a random point near its category's centre; each of a file's 1-30 windows a random
point near its file's), 128-d and L2-normalised like real embeddings, with the metadata ingest writes (path, root,
category, start, sha256, ...), written through ``SoundStore.write_files`` into an embedded Chroma collection with
the store's HNSW settings. It is built once and cached under ``bench/.cache/query-N`` (~7 min for 200k here).

Measured in one run:

- end to end, one image, model already loaded (``soundlib.recommend.recommend``: load + resize the JPEG, embed it,
  ``SoundStore.search``): p50 / p95 latency with the pretrained default family ``pt-effnet-aisfx-infonce``;
  goal p50 < 50 ms; plus the parts (image load, embedding, search) and the image embedding of m5 at the fast width;
- top-10 recall of ``SoundStore.search`` (Chroma HNSW candidates, re-ranked exactly, best window per file) against
  exact numpy search (all windows, best window per file), goal >= 0.99, for three query sets: "library-like"
  (new windows of random library files, like a sound query), "offset" (the same plus one constant offset, then
  re-normalised: the "modality gap" between image and sound embeddings of contrastive models, so image queries lie
  off the sound manifold) and "uniform" (random unit vectors: far from every cluster, all distances nearly equal,
  the worst case for HNSW); also the recall of Chroma's raw top-10 windows (no re-rank) for comparison, and the
  mean relative distance excess of the returned files over the exact ones (how much worse a miss is);
- search latency vs exact numpy search (brute force over the (N, 128) matrix held in memory);
- cold start: wall time of ``soundlib query IMAGE --json`` as a fresh process vs ``python -c pass``.

Run: ``.venv/bin/python bench/query.py [--quick] [--windows N]`` -> ``bench/results/query.json``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import (CACHE_DIR, FAST_M5, PRETRAINED, VENV_BIN, Result, median, parser, percentile, run_process,
                    saved_model)

GOAL_P50_MS = 50.0
GOAL_RECALL = 0.99
DIM = 128
N_CATEGORIES = 40
MAX_WINDOWS = 30
COLLECTION = "bench"
#: spread of file centres around their category centre, and of windows around their file centre (unit vectors)
FILE_SPREAD, WINDOW_SPREAD = 1.0, 0.5
#: candidate factors (k x factor windows fetched) of the recall/latency sweep; 8 is StoreConfig's default
CANDIDATE_FACTORS = (8, 32, 100)
#: length of the constant offset added to library-like queries for the "offset" set (a cross-modal "modality gap")
GAP = 1.0


@dataclass
class Library:
    """The synthetic library: ``vectors`` (N, D) float32 unit rows; ``file_of`` (N,) file index of each row;
    ``starts`` (N,) window start (s); ``n_files``; ``file_centres`` (F, D); ``categories`` (F,) category index."""

    vectors: np.ndarray
    file_of: np.ndarray
    starts: np.ndarray
    n_files: int
    file_centres: np.ndarray
    categories: np.ndarray


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _spread(centres: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors near ``centres``: centre + ``spread`` x a random unit vector, re-normalised."""
    return _unit(centres + spread * _unit(rng.standard_normal(centres.shape)))


def make_library(n_windows: int, seed: int = 0) -> Library:
    """The deterministic synthetic library of ``n_windows`` windows (see the module docstring)."""
    rng = np.random.default_rng(seed)
    counts = []
    while sum(counts) < n_windows:
        counts.append(int(rng.integers(1, MAX_WINDOWS + 1)))
    counts[-1] -= sum(counts) - n_windows
    counts = [c for c in counts if c > 0]
    n_files = len(counts)
    cat_centres = _unit(rng.standard_normal((N_CATEGORIES, DIM)))
    categories = rng.integers(0, N_CATEGORIES, n_files)
    file_centres = _spread(cat_centres[categories], FILE_SPREAD, rng)
    file_of = np.repeat(np.arange(n_files), counts)
    vectors = _spread(file_centres[file_of], WINDOW_SPREAD, rng)
    starts = np.concatenate([np.arange(c, dtype=np.float64) for c in counts])
    return Library(vectors, file_of, starts, n_files, file_centres, categories)


def file_vectors(lib: Library, lo: int, hi: int) -> list[Any]:
    """``FileVectors`` of files ``lo..hi-1`` with the metadata ingest would write."""
    from soundlib.store import FileVectors

    bounds = np.searchsorted(lib.file_of, np.arange(lo, hi + 1))
    out = []
    for f in range(lo, hi):
        a, b = bounds[f - lo], bounds[f - lo + 1]
        cat = f"category-{lib.categories[f]:02d}"
        n = b - a
        out.append(FileVectors(root="/library/sfx", rel=f"{cat}/sound-{f:06d}.wav", category=cat, folder=cat,
                               size=96_000 * n, mtime=1.7e9 + f, mtime_ns=int((1.7e9 + f) * 1e9),
                               sha256=f"{f:064x}", duration=float(n), sample_rate=48_000,
                               starts=list(lib.starts[a:b]), vectors=lib.vectors[a:b]))
    return out


def open_library(n_windows: int, loaded: Any, folder: Path) -> tuple[Library, dict[str, Any]]:
    """The cached collection for ``n_windows`` (built, or rebuilt when the model checkpoint changed)."""
    from soundlib.store import open_store

    lib = make_library(n_windows)
    marker = folder / "built.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("model_sha256") == loaded.sha256 and info.get("windows") == n_windows:
            return lib, info
    if folder.exists():
        shutil.rmtree(folder)
    print(f"building the {n_windows:,}-window collection in {folder} (cached for later runs) ...", flush=True)
    t0 = time.perf_counter()
    with open_store(db=folder / "chroma", collection=COLLECTION, create=True) as store:
        store.prepare(loaded)
        step = max(1, 5000 // 15)  # files per write_files call (~5,000 windows)
        last = t0
        for lo in range(0, lib.n_files, step):
            store.write_files(file_vectors(lib, lo, min(lib.n_files, lo + step)))
            if time.perf_counter() - last > 30:
                last = time.perf_counter()
                n = int(np.searchsorted(lib.file_of, min(lib.n_files, lo + step)))
                print(f"  {n:,} windows, {n / (last - t0):.0f}/s", flush=True)
        count = store.count()
    seconds = time.perf_counter() - t0
    if count != n_windows:
        raise RuntimeError(f"collection holds {count} windows, expected {n_windows}")
    info = {"windows": n_windows, "files": lib.n_files, "model_sha256": loaded.sha256, "build_s": round(seconds, 1),
            "adds_per_s": round(n_windows / seconds, 1)}
    marker.write_text(json.dumps(info, indent=1))
    return lib, info


def exact_top_files(lib: Library, q: np.ndarray, k: int) -> list[list[int]]:
    """Exact search: for each query row, the ``k`` files with the nearest window (numpy, all windows)."""
    sims = q @ lib.vectors.T  # (Q, N); unit vectors: distance order = -similarity order
    m = min(sims.shape[1], k * MAX_WINDOWS)  # a file has <= MAX_WINDOWS windows, so these hold >= k files
    out = []
    for row in sims:
        cand = np.argpartition(-row, m - 1)[:m]
        cand = cand[np.argsort(-row[cand], kind="stable")]
        seen: list[int] = []
        for i in cand:
            f = int(lib.file_of[i])
            if f not in seen:
                seen.append(f)
                if len(seen) == k:
                    break
        out.append(seen)
    return out


def _exact_mean_distance(lib: Library, q: np.ndarray, files: list[int]) -> float:
    """Mean over ``files`` of the Euclidean distance from ``q`` to the file's nearest window."""
    out = []
    for f in files:
        a, b = np.searchsorted(lib.file_of, [f, f + 1])
        out.append(float(np.sqrt(np.maximum(((lib.vectors[a:b] - q) ** 2).sum(axis=1), 0)).min()))
    return float(np.mean(out))


def file_index(hit: Any) -> int:
    return int(Path(hit.path).stem.split("-")[-1])


def recall(got: list[list[int]], want: list[list[int]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want)]))


def write_image(path: Path) -> Path:
    """A 640x480 JPEG with some structure (gradients, shapes, noise)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:480, 0:640]
    arr = np.stack([x / 640 * 255, y / 480 * 255, (x + y) % 256], axis=-1) + rng.normal(0, 12, (480, 640, 3))
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, 600)), int(rng.integers(0, 440))
        draw.ellipse([x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))],
                     fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=90)
    return path


_WINDOW_ID = re.compile(r"^[0-9a-f]{24}:[0-9]+$")


def proposed_search(self: Any, vectors: np.ndarray, k: int, where: dict[str, Any] | None = None,
                    distinct: str = "path") -> list[list[Any]]:
    """The fix proposed for ``SoundStore.search`` (same contract, same results), installed by monkeypatch.

    Two costs of the current search go away:

    1. ``col.count()`` on every call (~60 ms at 200k windows here: Chroma counts linearly). It only capped the
       fetch size and detected an exhausted collection; Chroma accepts ``n_results`` above the count (returns what
       there is, ``[]`` on an empty collection), so "fewer ids than asked for" is the exhaustion test.
    2. The metadata of every candidate (``k * candidate_factor`` = 80 windows, x4 each time the candidates hold
       fewer than ``k`` distinct files): reading metadata costs ~0.4 ms per record here, several times the
       embeddings. Record ids written by the store are ``"<file_id>:<window>"``, so for ``distinct="path"`` the
       candidates are fetched with embeddings only, re-ranked and reduced to one window per file id *from the ids*,
       and only the ``k`` winners' metadata is read, with one ``get``. A winner whose stored ``file_id`` differs from
       its id prefix (a foreign id scheme), and any other ``distinct`` key, fall back to reading every candidate's
       metadata as before.
    """
    col = self.require()
    q = np.asarray(vectors, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if k < 1:
        raise ValueError("k must be >= 1")
    results: list[list[Any]] = [[] for _ in range(len(q))]
    if len(q) == 0:
        return results
    pending = list(range(len(q)))
    fetch = max(k, k * self.cfg.candidate_factor)
    while pending:
        res = col.query(query_embeddings=q[pending], n_results=fetch, where=where, include=["embeddings"])
        still, picks = [], {}
        for j, qi in enumerate(pending):
            ids = res["ids"][j]
            exhausted = len(ids) < fetch
            if not ids:
                continue
            e = np.asarray(res["embeddings"][j], dtype=np.float32).reshape(len(ids), -1)
            d = ((e - q[qi][None, :]) ** 2).sum(axis=1)
            if distinct != "path" or not all(_WINDOW_ID.match(i) for i in ids):
                picks[qi] = None  # fall back: metadata of every candidate
                continue
            seen: set[str] = set()
            chosen = []
            for i in np.argsort(d, kind="stable"):
                key = ids[i].rsplit(":", 1)[0]
                if key not in seen:
                    seen.add(key)
                    chosen.append(int(i))
                    if len(chosen) == k:
                        break
            if len(chosen) >= k or exhausted:
                picks[qi] = ([ids[i] for i in chosen], e[chosen])
            else:
                still.append(qi)
        want = sorted({i for p in picks.values() if p is not None for i in p[0]})
        metas: dict[str, dict[str, Any]] = {}
        if want:
            got = col.get(ids=want, include=["metadatas"])
            metas = {i: dict(m or {}) for i, m in zip(got["ids"], got["metadatas"])}
        for j, qi in enumerate(pending):
            if qi not in picks:
                continue
            p = picks[qi]
            if p is not None and all(metas.get(i, {}).get("file_id") == i.rsplit(":", 1)[0] for i in p[0]):
                results[qi] = self._rerank(q[qi], p[0], [metas[i] for i in p[0]], p[1], distinct)[:k]
                continue
            ids = res["ids"][j]  # fallback: as the current search does
            full = col.get(ids=ids, include=["metadatas"])
            by_id = {i: m for i, m in zip(full["ids"], full["metadatas"])}
            hits = self._rerank(q[qi], ids, [by_id.get(i) or {} for i in ids], res["embeddings"][j], distinct)
            if len(hits) >= k or len(ids) < fetch:
                results[qi] = hits[:k]
            else:
                still.append(qi)
        pending = sorted(set(still))
        fetch *= 4
    return results


@contextlib.contextmanager
def patched_search() -> Any:
    """``SoundStore.search`` replaced by :func:`proposed_search` inside the block."""
    from soundlib.store import SoundStore

    original = SoundStore.search
    SoundStore.search = proposed_search  # type: ignore[method-assign]
    try:
        yield
    finally:
        SoundStore.search = original  # type: ignore[method-assign]


def same_hits(a: list[list[Any]], b: list[list[Any]]) -> bool:
    """Same ids and (to float precision) distances, in the same order."""
    return all(len(x) == len(y) and all(h.id == g.id and abs(h.distance - g.distance) < 1e-5 for h, g in zip(x, y))
               for x, y in zip(a, b))


def _ms(xs: list[float]) -> list[float]:
    return [x * 1000 for x in xs]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=200_000, help="library size in windows (default 200,000)")
    args = p.parse_args()
    n_queries, n_latency, n_e2e, n_cold = (50, 20, 10, 1) if args.quick else (300, 100, 40, 3)
    res = Result("query", args.quick, params={"windows": args.windows, "dim": DIM, "k": 10,
                                              "recall_queries": n_queries, "latency_queries": n_latency,
                                              "end_to_end_queries": n_e2e, "cold_starts": n_cold,
                                              "vectors": "synthetic clustered unit vectors (see bench/query.py)"})
    from soundlib.store import open_store

    models_dir = CACHE_DIR / "models"
    loaded = saved_model(PRETRAINED[0], models_dir, **PRETRAINED[1])
    folder = CACHE_DIR / f"query-{args.windows}"
    lib, built = open_library(args.windows, loaded, folder)
    res.details["collection"] = built
    image = write_image(CACHE_DIR / "query-image.jpg")
    k = 10
    with open_store(db=folder / "chroma", collection=COLLECTION) as store:
        rng = np.random.default_rng(123)
        # query sets: new windows of random library files ("library-like"), and uniform random unit vectors
        files = rng.integers(0, lib.n_files, n_queries)
        q_lib = _spread(lib.file_centres[files], WINDOW_SPREAD, rng)
        q_gap = _unit(q_lib + GAP * _unit(rng.standard_normal((1, DIM))))
        q_uni = _unit(rng.standard_normal((n_queries, DIM)))
        store.search(q_lib[:2], k)  # warm-up: loads the HNSW index
        bench_recall(res, store, lib, {"library-like": q_lib, "offset": q_gap, "uniform": q_uni}, k)
        e50 = bench_search_latency(res, store, lib, q_lib[:n_latency], k)
        bench_candidates(res, store, lib, {"offset": q_gap[:n_latency], "uniform": q_uni[:n_latency]}, k)
        bench_end_to_end(res, store, loaded, image, models_dir, n_e2e, e50, k)
    bench_cold_start(res, image, folder, loaded, n_cold, k)  # the store is closed first
    res.finish()


def bench_recall(res: Result, store: Any, lib: Library, sets: dict[str, np.ndarray], k: int) -> None:
    col = store.require()
    for label, q in sets.items():
        want = exact_top_files(lib, q, k)
        hits = store.search(q, k)
        with patched_search():
            hits_fix = store.search(q, k)
        r = recall([[file_index(h) for h in row] for row in hits], want)
        raw = col.query(query_embeddings=q, n_results=k, include=[])
        exact_w = [set(np.argpartition(-s, k - 1)[:k].tolist()) for s in q @ lib.vectors.T]
        raw_rows = [[_row_of(lib, i) for i in ids] for ids in raw["ids"]]
        r_raw = float(np.mean([len(set(g) & w) / k for g, w in zip(raw_rows, exact_w)]))
        same = same_hits(hits, hits_fix)
        excess = float(np.mean([np.mean([h.distance for h in row]) / _exact_mean_distance(lib, qv, w) - 1
                                for row, qv, w in zip(hits, q, want)]))
        res.add(f"recall@10 files, SoundStore.search ({label} queries)", r, "",
                baseline="exact numpy search (all windows)", goal=f">= {GOAL_RECALL}", met=r >= GOAL_RECALL,
                note=f"{len(q)} queries; Chroma's raw top-10 windows (no re-rank) recall {r_raw:.3f}; mean distance "
                     f"of the returned files {excess:+.2%} vs the exact ones; proposed search returns identical "
                     f"hits: {'yes' if same else 'NO'}")
        res.details[f"recall_{label}"] = {"store_search": r, "chroma_raw_windows": r_raw, "distance_excess": excess,
                                          "proposed_identical": same}


def bench_search_latency(res: Result, store: Any, lib: Library, queries: np.ndarray, k: int) -> float:
    """One query at a time, the variants interleaved (so load spikes hit all alike). Returns exact p50 (ms)."""
    col = store.require()
    calls: list[int] = []
    query = col.query

    def counting_query(**kw: Any) -> Any:
        calls.append(int(kw.get("n_results", 0)))
        return query(**kw)

    t: dict[str, list[float]] = {"store": [], "proposed": [], "exact": [], "raw": []}
    rounds = []
    for i in range(len(queries)):
        qi = queries[i:i + 1]
        a = time.perf_counter(); store.search(qi, k); t["store"].append(time.perf_counter() - a)
        with patched_search():
            a = time.perf_counter(); store.search(qi, k); t["proposed"].append(time.perf_counter() - a)
        a = time.perf_counter(); exact_top_files(lib, qi, k); t["exact"].append(time.perf_counter() - a)
        a = time.perf_counter(); col.query(query_embeddings=qi, n_results=k, include=["metadatas"])
        t["raw"].append(time.perf_counter() - a)
        calls.clear()
        col.query = counting_query  # type: ignore[method-assign]
        try:
            store.search(qi, k)
        finally:
            col.query = query  # type: ignore[method-assign]
        rounds.append(len(calls))
    s50, f50, e50 = (median(t[x]) * 1000 for x in ("store", "proposed", "exact"))
    widened = sum(r > 1 for r in rounds) / len(rounds)
    res.add("search latency p50 (SoundStore.search, 1 query)", s50, "ms", baseline="exact numpy search",
            baseline_value=e50, ratio=s50 / e50,
            note=f"p95 {percentile(t['store'], 95) * 1000:.1f} ms vs exact p95 {percentile(t['exact'], 95) * 1000:.1f}"
                 f" ms; {widened:.0%} of queries needed a wider second fetch (fewer than 10 files among the first "
                 f"80 windows); Chroma raw top-10 query p50 {median(t['raw']) * 1000:.1f} ms")
    res.add("search latency p50, proposed fix (metadata of the k winners only)", f50, "ms",
            baseline="exact numpy search", baseline_value=e50, ratio=f50 / e50,
            note=f"p95 {percentile(t['proposed'], 95) * 1000:.1f} ms; same hits as SoundStore.search "
                 f"(bench/query.py proposed_search, monkeypatched)")
    res.details["search_ms"] = {x: _ms(v) for x, v in t.items()}
    res.details["search_rounds"] = rounds
    return e50


def bench_candidates(res: Result, store: Any, lib: Library, sets: dict[str, np.ndarray], k: int) -> None:
    """Recall and latency of the proposed search as the candidate set grows (``StoreConfig.candidate_factor``;
    Chroma searches with ``ef = max(ef_search, n_results)``, so more candidates also means a wider HNSW search)."""
    import dataclasses

    base = store.cfg
    sweep = {}
    try:
        for label, q in sets.items():
            want = exact_top_files(lib, q, k)
            for factor in CANDIDATE_FACTORS:
                store.cfg = dataclasses.replace(base, candidate_factor=factor)
                times, got = [], []
                with patched_search():
                    for i in range(len(q)):
                        a = time.perf_counter()
                        got.append([file_index(h) for h in store.search(q[i:i + 1], k)[0]])
                        times.append(time.perf_counter() - a)
                sweep[f"{label} x{factor}"] = {"recall": recall(got, want), "p50_ms": median(times) * 1000}
    finally:
        store.cfg = base
    for label in sets:
        top = sweep[f"{label} x{CANDIDATE_FACTORS[-1]}"]["recall"]
        steps = "; ".join(f"x{f}: {sweep[f'{label} x{f}']['recall']:.3f} / {sweep[f'{label} x{f}']['p50_ms']:.1f} ms"
                          for f in CANDIDATE_FACTORS)
        res.add(f"recall@10 ({label} queries), proposed search, candidate_factor {CANDIDATE_FACTORS[-1]}", top, "",
                baseline="exact numpy search (all windows)", goal=f">= {GOAL_RECALL}", met=top >= GOAL_RECALL,
                note=f"k x factor candidates -> recall / search p50: {steps} ({len(sets[label])} queries)")
    res.details["candidate_sweep"] = sweep


def bench_end_to_end(res: Result, store: Any, loaded: Any, image: Path, models_dir: Path, n: int, e50: float,
                     k: int) -> None:
    import torch

    from soundlib.images import load_image
    from soundlib.recommend import recommend

    fast = saved_model(FAST_M5[0], models_dir, **FAST_M5[1]).model
    size = loaded.model.config.image_size
    recommend([image], loaded, store, k=k)  # warm-up
    fast.embed_images(load_image(image, fast.config.image_size)[None])
    t: dict[str, list[float]] = {"e2e": [], "e2e_fix": [], "e2e_fix_1thread": [], "load_image": [], "embed_pt": [],
                                 "embed_pt_1thread": [], "search": [], "search_fix": [], "embed_m5_fast": []}
    threads = torch.get_num_threads()
    cpu_1thread: list[float] = []
    def timed(key: str, fn: Any) -> Any:
        a = time.perf_counter()
        out = fn()
        t[key].append(time.perf_counter() - a)
        return out

    def one_thread(fn: Any) -> Any:
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    def query() -> Any:
        return recommend([image], loaded, store, k=k)

    for _ in range(n):  # interleaved, so load spikes hit the variants alike
        assert len(timed("e2e", query).results) == k
        with patched_search():
            timed("e2e_fix", query)
            c = time.process_time()
            one_thread(lambda: timed("e2e_fix_1thread", query))
            cpu_1thread.append(time.process_time() - c)
        x = timed("load_image", lambda: load_image(image, size))
        v = timed("embed_pt", lambda: loaded.model.embed_images(x[None]).numpy())
        one_thread(lambda: timed("embed_pt_1thread", lambda: loaded.model.embed_images(x[None])))
        timed("search", lambda: store.search(v, k))
        with patched_search():
            timed("search_fix", lambda: store.search(v, k))
        xf = load_image(image, fast.config.image_size)
        timed("embed_m5_fast", lambda: fast.embed_images(xf[None]))
    med = {name: median(v) * 1000 for name, v in t.items()}
    parts = (f"parts (p50): image load {med['load_image']:.1f} ms, pt embedding {med['embed_pt']:.1f} ms "
             f"({med['embed_pt_1thread']:.1f} ms with 1 torch thread), search {med['search']:.1f} ms "
             f"(proposed {med['search_fix']:.1f} ms); m5 w0.25@112 image embedding {med['embed_m5_fast']:.1f} ms")
    res.add("query 1 image end to end p50 (pt, model loaded)", med["e2e"], "ms", baseline="exact numpy search",
            baseline_value=e50, ratio=med["e2e"] / e50, goal=f"< {GOAL_P50_MS:g} ms", met=med["e2e"] < GOAL_P50_MS,
            note=f"p95 {percentile(t['e2e'], 95) * 1000:.1f} ms; {parts}")
    res.add("query 1 image end to end p50, proposed search fix", med["e2e_fix"], "ms", baseline="exact numpy search",
            baseline_value=e50, ratio=med["e2e_fix"] / e50, goal=f"< {GOAL_P50_MS:g} ms",
            met=med["e2e_fix"] < GOAL_P50_MS,
            note=f"p95 {percentile(t['e2e_fix'], 95) * 1000:.1f} ms; best {min(t['e2e_fix']) * 1000:.1f} ms "
                 f"(current search: best {min(t['e2e']) * 1000:.1f} ms)")
    res.add("query 1 image end to end p50, search fix + 1 torch thread", med["e2e_fix_1thread"], "ms",
            baseline="exact numpy search", baseline_value=e50, ratio=med["e2e_fix_1thread"] / e50,
            goal=f"< {GOAL_P50_MS:g} ms", met=med["e2e_fix_1thread"] < GOAL_P50_MS,
            note=f"p95 {percentile(t['e2e_fix_1thread'], 95) * 1000:.1f} ms; best "
                 f"{min(t['e2e_fix_1thread']) * 1000:.1f} ms; CPU time per query p50 {median(cpu_1thread) * 1000:.1f} "
                 f"ms (all threads of the process: the latency on an idle core); "
                 f"torch.set_num_threads(1) around the query (default "
                 f"{threads} threads): on a CPU shared with other jobs, 2-thread OpenMP regions wait for a descheduled "
                 f"thread")
    res.details["end_to_end_ms"] = {name: _ms(v) for name, v in t.items()}
    res.details["end_to_end_fix_1thread_cpu_ms"] = _ms(cpu_1thread)
    res.details["torch_threads"] = threads


def bench_cold_start(res: Result, image: Path, folder: Path, loaded: Any, n: int, k: int) -> None:
    soundlib = str(VENV_BIN / "soundlib")
    cmd = [soundlib, "query", str(image), "--db", str(folder / "chroma"), "--collection", COLLECTION,
           "--model", str(loaded.info.path), "--json", "-k", str(k)]
    run_process([sys.executable, "-c", "pass"])
    t_cold, t_pass = [], []
    for _ in range(n):
        t_pass.append(run_process([sys.executable, "-c", "pass"]))
        t_cold.append(run_process(cmd))
    c, pz = median(t_cold), median(t_pass)
    parts = {what: run_process([sys.executable, "-c", code]) for what, code in (
        ("import torch", "import torch"), ("import chromadb", "import chromadb"),
        ("open store + first search", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
         f"import numpy as np; from soundlib.store import open_store; "
         f"s = open_store(db={str(folder / 'chroma')!r}, collection={COLLECTION!r}); "
         f"s.search(np.ones({DIM}, np.float32) / {DIM ** 0.5}, {k})"))}
    res.add("cold start: soundlib query IMAGE --json (process)", c, "s", baseline="python -c pass",
            baseline_value=pz, ratio=c / pz,
            note=f"{n} runs: " + ", ".join(f"{x:.2f}" for x in t_cold) + " s; separate processes: "
                 + ", ".join(f"{w} {x:.2f} s" for w, x in parts.items()))
    res.details["cold_start_s"] = t_cold
    res.details["cold_start_parts_s"] = parts


_ROW_CACHE: dict[str, int] = {}


def _row_of(lib: Library, record_id: str) -> int:
    """Row of ``lib.vectors`` stored under a record id ``"<file_key>:<window>"``."""
    if not _ROW_CACHE:
        from soundlib.store import file_key

        first = np.searchsorted(lib.file_of, np.arange(lib.n_files))
        for f in range(lib.n_files):
            cat = f"category-{lib.categories[f]:02d}"
            _ROW_CACHE[file_key("/library/sfx", f"{cat}/sound-{f:06d}.wav")] = int(first[f])
    fid, window = record_id.rsplit(":", 1)
    return _ROW_CACHE[fid] + int(window)


if __name__ == "__main__":
    main()
