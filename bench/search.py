"""Words at scale: ``soundlib search`` and the ``--text`` / ``--category`` filters on a 200,000-window library.

The library (``--windows N``, default 200,000) is **synthetic** like bench/query.py's (the same clustered unit
vectors, ~12,900 files of 1-30 windows), with words: each file has a folder path ``vendor-V/CATEGORY/sub``, a name
of three words, a description of 8-15 words and 3-6 keywords drawn from a 3,000-word vocabulary with Zipf
frequencies (so some words are in 10% of the files and most in a handful), written through
``SoundStore.write_files`` with the metadata ingest writes (:func:`soundlib.ingest.labels`: ``levels``, ``words``
and the tags on window 0). Built once and cached under ``bench/.cache/search-N``. No model is involved (the store
layer only; embedding a picture costs the same with or without a filter: see bench/query.py).

Measured in one run, one query at a time, variants interleaved:

- ``search_words`` (Chroma's ``$contains`` on the ``words`` list of the last window, ids only; the matches'
  window-0 metadata read by id; BM25 in Python) p50 for rare, medium and common words and two-word queries;
  baseline: the same BM25 over a plain Python scan of every file's metadata already in memory (what an in-process
  index would cost at best);
- ``--text WORD`` filter (``allowed_files`` + ``SoundStore.search_within``) p50 against the unfiltered
  ``SoundStore.search`` in the same run (the cost the filter adds); the same for ``--category`` (a level name),
  and Chroma's own filtered query (``where={"category": ...}`` on every window) for comparison;
- ``search_within`` by size of the allowed set, its three ways: reading the allowed embeddings and searching them
  in numpy, Chroma's own ``query(ids=allowed window ids)``, HNSW candidates filtered afterwards (to place
  ``soundlib.store.EXACT_WINDOWS`` and ``HNSW_SHARE``); plus the metadata ``get`` of the unfiltered search
  (winners and their window 0, for descriptions) against the winners only.

Run: ``.venv/bin/python bench/search.py [--quick] [--windows N]`` -> ``bench/results/search.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import CACHE_DIR, Result, median, parser, percentile
from query import make_library

COLLECTION = "bench-words"
VOCAB = 3000
N_VENDORS = 6
_SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "da", "ve", "zu", "ho", "bi", "ge", "fa", "ju"]


def vocabulary(n: int = VOCAB) -> list[str]:
    """``n`` distinct pronounceable pseudo-words (2-4 syllables), deterministic."""
    rng = np.random.default_rng(1)
    out: dict[str, None] = {}
    while len(out) < n:
        w = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 5))))
        out.setdefault(w, None)
    return list(out)


def file_texts(n_files: int, categories: np.ndarray, seed: int = 2) -> list[dict[str, str]]:
    """Per file: ``rel`` (folders + name), ``description``, ``keywords`` (Zipf-distributed vocabulary)."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    p /= p.sum()
    out = []
    for f in range(n_files):
        draw = lambda n: [vocab[i] for i in rng.choice(len(vocab), size=n, p=p)]  # noqa: E731
        cat = f"category{int(categories[f]):02d}"
        sub = vocab[int(rng.integers(0, 40))]
        name = " ".join(draw(3)) + f" {f:06d}.wav"
        out.append({"rel": f"vendor-{f % N_VENDORS}/{cat}/{sub}/{name}",
                    "description": " ".join(draw(int(rng.integers(8, 16)))),
                    "keywords": ", ".join(draw(int(rng.integers(3, 7))))})
    return out


def open_library(n_windows: int, folder: Path) -> tuple[Any, list[dict[str, str]], dict[str, Any]]:
    """The cached collection (built on first use)."""
    from soundlib.ingest import labels
    from soundlib.store import FileVectors, open_store

    lib = make_library(n_windows)
    texts = file_texts(lib.n_files, lib.categories)
    marker = folder / "built.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("windows") == n_windows and info.get("format") == 2:
            return lib, texts, info
    if folder.exists():
        shutil.rmtree(folder)
    print(f"building the {n_windows:,}-window collection with words in {folder} (cached) ...", flush=True)
    t0 = time.perf_counter()
    bounds = np.searchsorted(lib.file_of, np.arange(lib.n_files + 1))
    with open_store(db=folder / "chroma", collection=COLLECTION, create=True) as store:
        store.create({"model": "synthetic", "model_sha256": "synthetic", "dim": 128})
        batch: list[Any] = []
        last = t0
        for f in range(lib.n_files):
            a, b = bounds[f], bounds[f + 1]
            t = texts[f]
            lab = labels(t["rel"], "/library/sfx", "auto", {"description": t["description"], "keywords": t["keywords"],
                                                              "channels": 2, "peak_dbfs": -3.0, "loudness_lufs": -20.0})
            batch.append(FileVectors(root="/library/sfx", rel=t["rel"], folder=t["rel"].rsplit("/", 1)[0],
                                     size=96_000 * int(b - a), mtime=1.7e9 + f, mtime_ns=int((1.7e9 + f) * 1e9),
                                     sha256=f"{f:064x}", duration=float(b - a), sample_rate=48_000,
                                     starts=list(lib.starts[a:b]), vectors=lib.vectors[a:b], meta=1, **lab))
            if sum(len(x.starts) for x in batch) >= 5000 or f == lib.n_files - 1:
                store.write_files(batch)
                batch = []
                if time.perf_counter() - last > 30:
                    last = time.perf_counter()
                    print(f"  {int(b):,} windows, {b / (last - t0):.0f}/s", flush=True)
        count = store.count()
    if count != n_windows:
        raise RuntimeError(f"collection holds {count} windows, expected {n_windows}")
    info = {"windows": n_windows, "files": lib.n_files, "build_s": round(time.perf_counter() - t0, 1), "format": 2}
    marker.write_text(json.dumps(info, indent=1))
    return lib, texts, info


def pick_words(texts: list[dict[str, str]]) -> dict[str, list[str]]:
    """Query words by how many files hold them: rare (< 0.1%), medium (0.5-2%), common (5-15%)."""
    from soundlib.words import file_words

    df: dict[str, int] = {}
    for t in texts:
        for w in file_words(t["rel"], "", t):
            df[w] = df.get(w, 0) + 1
    n = len(texts)
    bands = {"rare": (2, 0.001 * n), "medium": (0.005 * n, 0.02 * n), "common": (0.05 * n, 0.15 * n)}
    out = {}
    for label, (lo, hi) in bands.items():
        words = sorted(w for w, c in df.items() if lo <= c <= hi and not w.startswith(("vendor", "category")))
        out[label] = words[:: max(1, len(words) // 12)][:12]
    return out


def _way(windows: float, library: int) -> str:
    """The way ``SoundStore.search_within`` takes for this many allowed windows of ``library``."""
    from soundlib.store import EXACT_WINDOWS, HNSW_SHARE

    if windows <= EXACT_WINDOWS:
        return "numpy"
    return "Chroma ids" if windows / library < HNSW_SHARE else "HNSW filtered"


def _timed(fn: Any) -> float:
    a = time.perf_counter()
    fn()
    return time.perf_counter() - a


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=200_000, help="library size in windows (default 200,000)")
    args = p.parse_args()
    reps = 1 if args.quick else 3
    res = Result("search", args.quick, params={"windows": args.windows, "k": 10, "repeats": reps,
                                               "library": "synthetic vectors + Zipf words (see bench/search.py)"})
    from soundlib.store import EXACT_WINDOWS, HNSW_SHARE, open_store, window_id
    from soundlib.words import allowed_files, file_words, query_words, rank, search_words

    folder = CACHE_DIR / f"search-{args.windows}"
    lib, texts, built = open_library(args.windows, folder)
    res.details["collection"] = built
    words = pick_words(texts)
    res.details["query_words"] = words
    rng = np.random.default_rng(3)
    k = 10
    with open_store(db=folder / "chroma", collection=COLLECTION) as store:
        store.set_collection_metadata(windows=args.windows)  # what ingest records (sizes filtered fetches)
        counts = store.files_matching()
        heads_all = store.file_heads(counts)  # the in-memory baseline's data (read once, not timed)
        for fid, m in heads_all.items():
            m["words"] = set(file_words(m["path"], m.get("category", ""), m))
        store.search(lib.vectors[:2], k)  # warm-up: loads the HNSW index

        def scan_rank(text: str) -> list[Any]:
            ws = query_words(text)
            hit = {fid: m for fid, m in heads_all.items() if any(w in m.get("words", ()) for w in ws)}
            return rank(hit, ws)[:k]

        # --- search: words only
        queries = {label: ws for label, ws in words.items()}
        queries["two words"] = [f"{a} {b}" for a, b in zip(words["medium"], words["rare"])]
        for label, qs in queries.items():
            if not qs:
                continue
            t_store, t_scan, found = [], [], []
            for _ in range(reps):
                for q in qs:
                    t_store.append(_timed(lambda: found.append(len(search_words(store, q, k)))))
                    t_scan.append(_timed(lambda: scan_rank(q)))
            s50, b50 = median(t_store) * 1000, median(t_scan) * 1000
            n_match = [len(store.files_matching({"$or": [{"words": {"$contains": w}} for w in query_words(q)]}
                                                if len(query_words(q)) > 1 else {"words": {"$contains": q}}))
                       for q in qs]
            res.add(f"search latency p50 ({label} words)", s50, "ms",
                    baseline="BM25 over a Python scan of all files' metadata in memory", baseline_value=b50,
                    ratio=s50 / b50,
                    note=f"{len(qs)} queries x {reps}; p95 {percentile(t_store, 95) * 1000:.1f} ms; matching files "
                         f"per query: median {int(median(n_match))} (of {built['files']:,})")
            res.details[f"search_{label}"] = {"ms": [round(x * 1000, 2) for x in t_store],
                                              "baseline_ms": [round(x * 1000, 2) for x in t_scan],
                                              "matching_files": n_match}

        # --- the unfiltered search: its one metadata get now also reads the winners' window 0 (descriptions)
        t_new, t_old = [], []
        for _ in range(reps):
            for v in lib.vectors[rng.choice(len(lib.vectors), size=20, replace=False)]:
                hits = store.search(v[None, :], k)[0]
                winners = {h.id for h in hits}
                heads = {h.id.split(":")[0] + ":0" for h in hits}
                t_new.append(_timed(lambda: store._metadata_by_id(winners | heads)))
                t_old.append(_timed(lambda: store._metadata_by_id(winners)))
        res.add("unfiltered search: metadata get of winners + their window 0 p50", median(t_new) * 1000, "ms",
                baseline="winners only (before)", baseline_value=median(t_old) * 1000,
                ratio=median(t_new) / median(t_old),
                note="the one extra cost on the unfiltered query path (descriptions in results); "
                     f"{len(t_new)} searches")

        # --- query --text / --category: filter + restricted vector search vs the unfiltered search
        vecs = lib.vectors[rng.choice(len(lib.vectors), size=12, replace=False)]
        filters = {f"--text {label} word": {"text": ws[0]} for label, ws in words.items() if ws}
        if queries["two words"]:
            filters["--text two words"] = {"text": queries["two words"][0]}
        filters["--category (a level: sub folder)"] = {"categories": [texts[0]["rel"].split("/")[2]]}
        filters["--category (a whole category)"] = {"categories": ["category07"]}
        filters["--category vendor-1 (1/6 of the files)"] = {"categories": ["vendor-1"]}
        for label, kw in filters.items():
            t_f, t_u, t_allowed, sizes = [], [], [], []
            for _ in range(reps):
                for v in vecs:
                    t_u.append(_timed(lambda: store.search(v[None, :], k)))

                    def filtered() -> None:
                        a = time.perf_counter()
                        files = allowed_files(store, kw.get("text"), kw.get("categories", ()))
                        t_allowed.append(time.perf_counter() - a)
                        sizes.append(sum(files.values()))
                        store.search(v[None, :], k, files=files)

                    t_f.append(_timed(filtered))
            f50, u50 = median(t_f) * 1000, median(t_u) * 1000
            res.add(f"query {label}: filter + search p50", f50, "ms", baseline="unfiltered SoundStore.search",
                    baseline_value=u50, ratio=f50 / u50,
                    note=f"allowed windows {int(median(sizes)):,} ({_way(median(sizes), args.windows)}"
                         f" path); picking the files {median(t_allowed) * 1000:.1f} ms; p95 "
                         f"{percentile(t_f, 95) * 1000:.1f} ms")
        # Chroma's own filter on every window (the old --category), for comparison
        col = store.require()
        old_cat = texts[0]["rel"].rsplit("/", 1)[0]
        t_w, t_u = [], []
        for _ in range(reps):
            for v in vecs:
                t_w.append(_timed(lambda: col.query(query_embeddings=v[None, :], n_results=k * 8,
                                                    where={"category": old_cat}, include=["embeddings"])))
                t_u.append(_timed(lambda: col.query(query_embeddings=v[None, :], n_results=k * 8,
                                                    include=["embeddings"])))
        res.add("Chroma query with where={category} on every window p50", median(t_w) * 1000, "ms",
                baseline="the same query unfiltered", baseline_value=median(t_u) * 1000,
                ratio=median(t_w) / median(t_u),
                note=f"what `--category` did before (exact category, on every window): '{old_cat}'")

        # --- search_within: its three ways by the size of the allowed set
        import soundlib.store as S

        order = list(counts)
        rng.shuffle(order)
        sizes_out = {}
        for n_files in (50, 150, 300, 600, 1500, 4000):
            files = {f: counts[f] for f in order[:n_files]}
            windows = sum(files.values())
            t: dict[str, list[float]] = {"numpy": [], "Chroma ids": [], "HNSW filtered": []}
            settings = {"numpy": (10 ** 9, 2.0), "Chroma ids": (0, 2.0), "HNSW filtered": (0, 0.0)}
            for v in vecs[:6]:
                for way, (exact, by_ids) in settings.items():
                    if way == "numpy" and windows > 30_000:
                        continue
                    S.EXACT_WINDOWS, S.HNSW_SHARE = exact, by_ids
                    t[way].append(_timed(lambda: store.search_within(v[None, :], k, files)))
            S.EXACT_WINDOWS, S.HNSW_SHARE = EXACT_WINDOWS, HNSW_SHARE
            p50 = {way: median(x) * 1000 for way, x in t.items() if x}
            chosen = _way(windows, args.windows)
            best_other = min((w for w in p50 if w != chosen), key=lambda w: p50[w])
            sizes_out[windows] = p50
            res.add(f"search_within {windows:,} allowed windows ({chosen}) p50", p50[chosen], "ms",
                    baseline=f"fastest other way ({best_other})", baseline_value=p50[best_other],
                    ratio=p50[chosen] / p50[best_other],
                    note=f"{n_files} files; " + ", ".join(f"{w} {x:.1f} ms" for w, x in p50.items()))
        res.details["search_within"] = sizes_out
    res.finish()


if __name__ == "__main__":
    main()
