"""Scale: a 1,000,000-window library in the embedded store and in a ``chroma run`` server, against exact search.

The library is the synthetic one of ``bench/query.py`` (clustered 128-d unit vectors, 1-30 windows per file, the
metadata ingest writes), at ``--windows`` (default 1,000,000). Measured in one run, for each store kind
("embedded": ``chromadb.PersistentClient``; "server": ``chroma run`` on 127.0.0.1, reached over HTTP) and each
HNSW creation setting (``--configs``; default: the shipped ``StoreConfig``):

- **build**: windows/s written through ``SoundStore.write_files`` in Chroma's max batch (5,461), in a child
  process; the rate curve as the index grows; disk (``du`` of the store folder); memory: peak RSS of the process
  that holds the index (the builder for the embedded store, the ``chroma run`` process for the server, read from
  ``/proc/PID/status``), and its anonymous RSS (the index and caches, not the mapped library file);
- **query**, for each HNSW ``ef_search`` (each in a fresh process, and a restarted server, since Chroma keeps the
  value an index was loaded with): top-10 recall of distinct files of ``SoundStore.search`` (the real path:
  Chroma candidates, exact re-rank, best window per file) against exact numpy search over all windows (best window
  per file), for the three query sets of ``bench/query.py`` (library-like, offset = image-like, uniform); latency
  p50/p95 of one query, interleaved with the exact numpy search of the same query in the same process (so the
  ratio compares like with like); the time to load the index (first query) and the RSS after it.

Goal: ``SoundStore.search`` >= 5x faster than exact numpy at recall@10 >= 0.99 (offset queries: pictures) at 1M.

Run: ``.venv/bin/python bench/scale.py [--quick] [--windows N] [--configs default,m16] [--skip-server]
[--work DIR] [--name NAME]`` -> ``bench/results/scale.json`` (``NAME.json``). The stores are built once and cached in ``--work`` (default
``bench/.cache/scale-N``; ~3 GB per store at 1M): delete it when done. A full run takes ~1-2 h here (building
1M windows is most of it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from common import CACHE_DIR, PRETRAINED, Result, median, parser, percentile, saved_model
from query import COLLECTION, Library, exact_top_files, file_index, file_vectors, make_library, query_sets, recall

GOAL_RECALL = 0.99
GOAL_SPEEDUP = 5.0
#: HNSW creation settings that can be compared (``--configs``): name -> (max_neighbors, ef_construction).
CONFIGS: dict[str, tuple[int, int]] = {"default": (0, 0), "m16": (16, 100), "m48": (48, 200)}
SETS = ("library-like", "offset", "uniform")


# --- the library on disk (so every child process maps the same vectors) ------------------------------------------

def library_files(work: Path, n_windows: int) -> Path:
    """Generate the library once and keep its arrays in ``work/library`` (``vectors.npy`` is memory-mapped)."""
    folder = work / "library"
    done = folder / "done.json"
    if done.exists() and json.loads(done.read_text()).get("windows") == n_windows:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    lib = make_library(n_windows)
    for name in ("vectors", "file_of", "starts", "file_centres", "categories"):
        np.save(folder / f"{name}.npy", getattr(lib, name))
    done.write_text(json.dumps({"windows": n_windows, "files": lib.n_files}))
    return folder


def load_library(folder: Path, in_memory: bool = False) -> Library:
    """The library arrays; ``vectors`` memory-mapped unless ``in_memory``."""
    arr = {n: np.load(folder / f"{n}.npy", mmap_mode=None if (in_memory or n != "vectors") else "r")
           for n in ("vectors", "file_of", "starts", "file_centres", "categories")}
    n_files = int(json.loads((folder / "done.json").read_text())["files"])
    return Library(arr["vectors"], arr["file_of"], arr["starts"], n_files, arr["file_centres"], arr["categories"])


def proc_memory(pid: int | str = "self") -> dict[str, float]:
    """``VmHWM`` (peak RSS), ``VmRSS``, ``RssAnon`` and ``RssFile`` of a process, in MB (from ``/proc``)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) / 1024
    return out


def du_mb(path: Path) -> float:
    """Disk usage of a folder in MB (``du -sk``: blocks actually allocated)."""
    got = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(got.split()[0]) / 1024


# --- a chroma run server ------------------------------------------------------------------------------------------

class Server:
    """One ``chroma run --path DIR --host 127.0.0.1 --port PORT`` (own process group; restartable)."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port
        self.proc: subprocess.Popen | None = None
        self.exe = str(Path(sys.executable).parent / "chroma")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> "Server":
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / f"chroma-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen([self.exe, "run", "--path", str(self.path), "--host", "127.0.0.1",
                                          "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma run exited at startup (log: {self.path.parent}/chroma-{self.port}.log)")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma run did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def memory(self) -> dict[str, float]:
        assert self.proc is not None
        return proc_memory(self.proc.pid)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- child roles ------------------------------------------------------------------------------------------------

def store_config(config: str) -> Any:
    """The :class:`StoreConfig` of a named creation setting (``default``: the shipped one)."""
    from soundlib.config import StoreConfig

    m, efc = CONFIGS[config]
    cfg = StoreConfig()
    return cfg if not m else dataclasses.replace(cfg, hnsw_max_neighbors=m, hnsw_ef_construction=efc)


def open_target(args: argparse.Namespace) -> Any:
    from soundlib.store import open_store

    if args.url:
        return open_store(url=args.url, collection=COLLECTION)
    return open_store(db=args.db, collection=COLLECTION, create=True)


def role_build(args: argparse.Namespace) -> dict[str, Any]:
    """Write the whole library into a new collection; one JSON line: rate curve, seconds, memory."""
    lib = load_library(Path(args.library))
    loaded = saved_model(PRETRAINED[0], CACHE_DIR / "models", **PRETRAINED[1])
    store = open_target(args)
    store.cfg = store_config(args.config)
    store.prepare(loaded)
    batch = store.max_batch_size
    bounds = np.searchsorted(lib.file_of, np.arange(lib.n_files + 1))
    curve: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    lo = 0
    last = t0
    while lo < lib.n_files:
        hi = int(np.searchsorted(bounds, bounds[lo] + batch, side="right")) - 1  # whole files, <= batch windows
        hi = max(hi, lo + 1)
        store.write_files(file_vectors(lib, lo, hi))
        lo = hi
        now = time.perf_counter()
        if now - last >= 30 or lo >= lib.n_files:
            curve.append((int(bounds[lo]), round(now - t0, 1)))
            last = now
            print(f"  {bounds[lo]:,} windows, {bounds[lo] / (now - t0):.0f}/s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    count = store.count()
    store.close()
    return {"windows": count, "seconds": seconds, "curve": curve, "memory": proc_memory(),
            "max_batch": batch}


def role_probe(args: argparse.Namespace) -> dict[str, Any]:
    """Recall and latency at the collection's current ef_search; one JSON line."""
    folder = Path(args.library)
    lib = load_library(folder)
    wants = json.loads((folder / f"exact-{args.queries}.json").read_text())
    sets = query_sets(lib, args.queries)
    mem0 = proc_memory()
    store = open_target(args)
    t = time.perf_counter()
    store.search(sets["library-like"][:1], 10)  # loads the index
    load_s = time.perf_counter() - t
    mem_loaded = proc_memory()
    out: dict[str, Any] = {"ef_search": store.search_breadth(), "index_load_s": load_s, "memory_before": mem0,
                           "memory_loaded": mem_loaded}
    for label in SETS:
        got = [[file_index(h) for h in row] for row in store.search(sets[label], 10)]
        out[f"recall_{label}"] = recall(got, wants[label])
    lib_mem = load_library(folder, in_memory=True)  # exact search reads every vector from RAM
    col = store.require()
    times: dict[str, list[float]] = {"store": [], "exact": [], "raw": []}
    for label in ("offset", "library-like"):
        q = sets[label][:args.latency]
        for i in range(len(q)):
            qi = q[i:i + 1]
            a = time.perf_counter(); store.search(qi, 10); times["store"].append(time.perf_counter() - a)
            a = time.perf_counter(); exact_top_files(lib_mem, qi, 10); times["exact"].append(time.perf_counter() - a)
            a = time.perf_counter(); col.query(query_embeddings=qi, n_results=10, include=[])
            times["raw"].append(time.perf_counter() - a)
    store.close()
    for key, v in times.items():
        out[f"{key}_p50_ms"] = median(v) * 1000
        out[f"{key}_p95_ms"] = percentile(v, 95) * 1000
    return out


def role_main() -> bool:
    """Run a child role if asked (``--role``); returns True when one ran."""
    p = argparse.ArgumentParser()
    p.add_argument("--role", required=True)
    p.add_argument("--library")
    p.add_argument("--db")
    p.add_argument("--url")
    p.add_argument("--config", default="default")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--latency", type=int, default=50)
    args, _ = p.parse_known_args()
    fn = {"build": role_build, "probe": role_probe}[args.role]
    print(json.dumps(fn(args)))
    return True


def child(args: list[str], timeout: float = 4 * 3600) -> dict[str, Any]:
    """Run this script as a child role; its last stdout line is its JSON result."""
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/scale.py {' '.join(args)} exited {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the parent ---------------------------------------------------------------------------------------------------

def exact_wants(folder: Path, n_queries: int) -> float:
    """Exact top-10 files for every query set (saved for the probes); returns ms per query of exact search."""
    path = folder / f"exact-{n_queries}.json"
    lib = load_library(folder, in_memory=True)
    sets = query_sets(lib, n_queries)
    t = time.perf_counter()
    wants = {label: [w for lo in range(0, n_queries, 25) for w in exact_top_files(lib, q[lo:lo + 25], 10)]
             for label, q in sets.items()}
    ms = (time.perf_counter() - t) / (len(sets) * n_queries) * 1000
    path.write_text(json.dumps(wants))
    return ms


def set_ef(target: dict[str, Any], ef: int) -> None:
    from soundlib.store import open_store

    kw = {"url": target["url"]} if target.get("url") else {"db": target["db"]}
    with open_store(collection=COLLECTION, **kw) as store:
        store.require().modify(configuration={"hnsw": {"ef_search": int(ef)}})


def bench_target(res: Result, kind: str, config: str, work: Path, lib_dir: Path, n_windows: int,
                 breadths: tuple[int, ...], n_queries: int, n_latency: int) -> None:
    """Build (or reuse) one store, then probe each ef_search; adds rows and details to ``res``."""
    folder = work / f"{kind}-{config}"
    marker = folder / "built.json"
    server = Server(folder / "chroma", free_port()) if kind == "server" else None
    target: dict[str, Any] = {"db": str(folder / "chroma")}
    try:
        if server is not None:
            server.start()
            target = {"url": server.url}
        if marker.exists():
            built = json.loads(marker.read_text())
        else:
            if folder.exists() and server is None:
                shutil.rmtree(folder)
            if server is not None:  # a half-built server store: start again from an empty folder
                server.stop()
                shutil.rmtree(folder, ignore_errors=True)
                server.start()
            print(f"building {kind} store ({config}) with {n_windows:,} windows in {folder} ...", flush=True)
            loadavg0 = os.getloadavg()
            built = child(["--role", "build", "--library", str(lib_dir), "--config", config,
                           *(["--url", target["url"]] if server else ["--db", target["db"]])])
            built["loadavg"] = [round(x, 2) for x in (*loadavg0, *os.getloadavg())]
            if server is not None:
                built["server_memory"] = server.memory()
                server.stop()  # flush; disk is measured on a stopped store
            built["disk_mb"] = du_mb(folder / "chroma")
            marker.write_text(json.dumps(built, indent=1))
        sweep: dict[int, dict[str, Any]] = {}
        for ef in breadths:
            if server is not None and server.proc is None:
                server.start()
            set_ef(target, ef)
            if server is not None:  # the server loads the index with the new ef_search
                server.stop()
                server.start()
            got = child(["--role", "probe", "--library", str(lib_dir), "--queries", str(n_queries),
                         "--latency", str(n_latency),
                         *(["--url", target["url"]] if server else ["--db", target["db"]])])
            if server is not None:
                got["server_memory"] = server.memory()
            got["loadavg"] = [round(x, 2) for x in os.getloadavg()]
            sweep[ef] = got
            print(f"  {kind}/{config} ef {ef}: recall offset {got['recall_offset']:.3f}, "
                  f"p50 {got['store_p50_ms']:.1f} ms vs exact {got['exact_p50_ms']:.1f} ms", flush=True)
    finally:
        if server is not None:
            server.stop()
    from soundlib.config import StoreConfig

    set_ef_back = StoreConfig().hnsw_ef_search
    if server is None:
        set_ef(target, set_ef_back)
    add_rows(res, kind, config, built, sweep, n_windows)


def add_rows(res: Result, kind: str, config: str, built: dict[str, Any], sweep: dict[int, dict[str, Any]],
             n_windows: int) -> None:
    cfg = store_config(config)
    label = f"{kind}, M {cfg.hnsw_max_neighbors} / ef_construction {cfg.hnsw_ef_construction}"
    mem = built.get("server_memory") or built["memory"]
    rate = built["windows"] / built["seconds"]
    per_m = 1e6 / n_windows
    res.add(f"build {label}", rate, "windows/s",
            note=f"{built['windows']:,} windows in {built['seconds'] / 60:.1f} min (batches of {built['max_batch']}); "
                 f"disk {built['disk_mb'] / 1024:.2f} GB ({built['disk_mb'] * per_m / 1024:.2f} GB per million "
                 f"windows); peak RSS {mem['VmHWM'] / 1024:.2f} GB, anonymous {mem.get('RssAnon', 0) / 1024:.2f} GB "
                 f"({'server process' if kind == 'server' else 'builder process'}); load {built.get('loadavg')}")
    for ef, got in sorted(sweep.items()):
        ratio = got["exact_p50_ms"] / got["store_p50_ms"]
        ok = got["recall_offset"] >= GOAL_RECALL and ratio >= GOAL_SPEEDUP
        m = got.get("server_memory") or got["memory_loaded"]
        res.add(f"query {label}, ef_search {ef}: SoundStore.search p50", got["store_p50_ms"], "ms",
                baseline="exact numpy search (all windows, same process)", baseline_value=got["exact_p50_ms"],
                ratio=ratio, goal=f"exact/ANN >= {GOAL_SPEEDUP:g} at recall >= {GOAL_RECALL}", met=ok,
                note=f"recall@10 files: offset (pictures) {got['recall_offset']:.3f}, library-like "
                     f"{got['recall_library-like']:.3f}, uniform {got['recall_uniform']:.3f}; p95 "
                     f"{got['store_p95_ms']:.1f} ms vs exact p95 {got['exact_p95_ms']:.1f} ms; Chroma alone (ids) "
                     f"p50 {got['raw_p50_ms']:.1f} ms; index load {got['index_load_s']:.1f} s; RSS "
                     f"{m['VmRSS'] / 1024:.2f} GB ({'server' if kind == 'server' else 'query process, index loaded'});"
                     f" load {got.get('loadavg')}")
    res.details[f"{kind}-{config}"] = {"build": built, "sweep": {str(k): v for k, v in sweep.items()}}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=0, help="library size (default 1,000,000; --quick 50,000)")
    p.add_argument("--configs", default="default", help=f"HNSW creation settings, comma-separated: {list(CONFIGS)}")
    p.add_argument("--server-configs", default="", help="creation settings for the server (default: --configs)")
    p.add_argument("--ef", default="", help="ef_search values, comma-separated (default 100,200,400,800,1600)")
    p.add_argument("--skip-server", action="store_true", help="only the embedded store")
    p.add_argument("--skip-embedded", action="store_true", help="only the server")
    p.add_argument("--work", default="", help="where the stores are built (default bench/.cache/scale-N)")
    p.add_argument("--name", default="scale",
                   help="result name: bench/results/NAME.json (e.g. scale-m48 for a run of other settings)")
    args = p.parse_args()
    n_windows = args.windows or (50_000 if args.quick else 1_000_000)
    breadths = tuple(int(x) for x in args.ef.split(",")) if args.ef else \
        ((100, 400, 800) if args.quick else (100, 200, 400, 800, 1600))
    n_queries, n_latency = (50, 20) if args.quick else (200, 50)
    work = Path(args.work) if args.work else CACHE_DIR / f"scale-{n_windows}"
    work.mkdir(parents=True, exist_ok=True)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    res = Result(args.name, args.quick, params={"windows": n_windows, "configs": configs, "ef_search": breadths,
                                              "recall_queries": n_queries, "latency_queries_per_set": n_latency,
                                              "k": 10, "vectors": "synthetic clustered unit vectors (bench/query.py)"})
    lib_dir = library_files(work, n_windows)
    res.details["exact_batch_ms_per_query"] = exact_wants(lib_dir, n_queries)
    server_configs = [c.strip() for c in (args.server_configs or args.configs).split(",") if c.strip()]
    kinds = [k for k, skip in (("embedded", args.skip_embedded), ("server", args.skip_server)) if not skip]
    for kind in kinds:
        for config in (server_configs if kind == "server" else configs):
            bench_target(res, kind, config, work, lib_dir, n_windows, breadths, n_queries, n_latency)
    res.finish()


if __name__ == "__main__":
    if "--role" in sys.argv:
        role_main()
    else:
        main()
