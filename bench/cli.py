"""CLI start-up: wall time of ``soundlib --help`` (a fresh process) vs ``python -c pass`` in the same run; cold
``soundlib query IMAGE`` with this tree against today's code.

Goal: ``soundlib --help`` answers in under 0.5 s in total (interpreter start included). The difference to the bare
interpreter is what our imports cost (click, rich, the command modules), so it is reported too, and
``python -X importtime`` names the slowest imports when the goal is missed.

Cold query: ``python -m cli query IMAGE --json`` as a fresh process on a small real library (every 20th file of
``bench/ingest.py``'s real sounds, ingested once with this tree and cached), with this tree and with the code of
``bench/ingest.py``'s ``BASELINE_REF`` (the commit before issue 16), alternated; and a query of a missing picture
(what a typo costs); plus both import profiles (top-level cumulative times from ``-X importtime``).

Run: ``.venv/bin/python bench/cli.py [--quick]`` -> ``bench/results/cli.json``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from common import CACHE_DIR, ROOT, VENV_BIN, Result, median, parser, percentile, run_process

GOAL_S = 0.5


def slowest_imports(cmd: list[str], n: int = 8, cwd: Path | None = None) -> list[dict[str, object]]:
    """The ``n`` top-level imports with the largest cumulative time under ``-X importtime`` (ms)."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=120, cwd=cwd)
    rows = []
    for line in proc.stderr.decode(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 1:  # top-level imports only
            rows.append({"module": m.group(4), "cumulative_ms": int(m.group(2)) / 1000})
    return sorted(rows, key=lambda r: -float(r["cumulative_ms"]))[:n]  # type: ignore[arg-type]


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    repeats = 3 if args.quick else 15
    python = sys.executable
    soundlib = str(VENV_BIN / "soundlib")
    cmd_help = [soundlib, "--help"] if os.path.exists(soundlib) else [python, "-m", "cli", "--help"]
    res = Result("cli", args.quick, params={"repeats": repeats, "command": " ".join(cmd_help)})

    # interleave the two so a load spike hits both alike; one untimed run each warms the page cache
    run_process([python, "-c", "pass"])
    run_process(cmd_help)
    t_pass, t_help = [], []
    for _ in range(repeats):
        t_pass.append(run_process([python, "-c", "pass"]))
        t_help.append(run_process(cmd_help))
    p, h = median(t_pass), median(t_help)
    res.add("soundlib --help (wall, median)", h, "s", baseline="python -c pass", baseline_value=p,
            ratio=h / p, goal=f"< {GOAL_S} s total", met=h < GOAL_S,
            note=f"p95 {percentile(t_help, 95):.3f} s; our imports cost {h - p:.3f} s over the bare interpreter")
    res.details = {"help_s": t_help, "pass_s": t_pass,
                   "slowest_imports_help": slowest_imports([python, "-c", "import cli; cli.main(['--help'])"])}
    bench_cold_query(res, 2 if args.quick else 7)
    res.finish()


def query_store() -> tuple[Path, Path]:
    """A small real library ingested with this tree (cached): ``(store folder, picture)``."""
    from ingest import REAL_SOUNDS, make_library, real_library
    from query import write_image

    folder = CACHE_DIR / "cold-query"
    store, image = folder / "store", folder / "query.jpg"
    if not (folder / ".complete").exists():
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        sounds = real_library(REAL_SOUNDS, 20) if REAL_SOUNDS.is_dir() else CACHE_DIR / "ingest-library-12-20"
        if not REAL_SOUNDS.is_dir():
            make_library(sounds, 12, 20.0)
        proc = subprocess.run([sys.executable, "-m", "cli", "ingest", str(sounds), "--db", str(store), "--json"],
                              cwd=ROOT, capture_output=True, timeout=3600)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"ingest for the cold-query store failed: {proc.stderr.decode()[-500:]}")
        write_image(image)
        (folder / ".complete").write_text("ok")
    return store, image


def bench_cold_query(res: Result, repeats: int) -> None:
    """Cold ``soundlib query IMAGE --json``: this tree vs today's code (alternated), plus a missing picture."""
    from ingest import BASELINE_REF, baseline_tree

    store, image = query_store()
    trees = {"baseline": baseline_tree(BASELINE_REF), "new": ROOT}

    def cmd(tree: Path, picture: Path) -> list[str]:
        return [sys.executable, "-m", "cli", "query", str(picture), "--db", str(store), "--json", "-k", "10",
                "--model", str(tree / "soundlib" / "models" / "default.pt")]

    cpu: dict[str, list[float]] = {}

    def timed(tree: Path, picture: Path, ok: bool = True, key: str = "") -> float:
        """Wall seconds of one query process (its CPU seconds, from ``wait4``, go to ``cpu[key]``)."""
        import time

        t = time.perf_counter()
        proc = subprocess.Popen(cmd(tree, picture), cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        if (code == 0) != ok:
            raise RuntimeError(f"query with {tree} exited {code}")
        cpu.setdefault(key, []).append(usage.ru_utime + usage.ru_stime)
        return wall

    for tree in trees.values():  # warm the page cache
        timed(tree, image)
    t: dict[str, list[float]] = {f"{k}{x}": [] for k in trees for x in ("", "_missing")}
    for _ in range(repeats):
        for k, tree in trees.items():
            t[k].append(timed(tree, image, key=k))
            t[f"{k}_missing"].append(timed(tree, image.with_name("missing.jpg"), ok=False, key=f"{k}_missing"))
    imports = {k: slowest_imports(cmd(tree, image), n=10, cwd=tree) for k, tree in trees.items()}

    def top(k: str) -> str:
        return ", ".join(f"{r['module']} {float(r['cumulative_ms']) / 1000:.2f} s" for r in imports[k][:4])

    new, old = median(t["new"]), median(t["baseline"])
    res.add("cold start: soundlib query IMAGE --json (process, wall median)", new, "s",
            baseline=f"the same with the code of {BASELINE_REF}", baseline_value=old, ratio=new / old,
            note=f"{repeats} alternated runs each: " + ", ".join(f"{x:.2f}" for x in t["new"]) + " s vs "
                 + ", ".join(f"{x:.2f}" for x in t["baseline"]) + f" s; CPU time (median) {median(cpu['new']):.2f} s "
                 f"vs {median(cpu['baseline']):.2f} s; slowest imports now: {top('new')}; "
                 f"before: {top('baseline')}")
    new_m, old_m = median(t["new_missing"]), median(t["baseline_missing"])
    res.add("cold start: soundlib query MISSING.jpg (error, wall median)", new_m, "s",
            baseline=f"the same with the code of {BASELINE_REF}", baseline_value=old_m, ratio=new_m / old_m,
            note=f"inputs are checked before chromadb and torch are imported; CPU time (median) "
                 f"{median(cpu['new_missing']):.2f} s vs {median(cpu['baseline_missing']):.2f} s")
    res.details["cold_query_s"] = t
    res.details["cold_query_cpu_s"] = cpu
    res.details["cold_query_imports"] = imports


if __name__ == "__main__":
    main()
