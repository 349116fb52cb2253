"""The scale benchmark still runs end to end (a tiny library, the embedded store): a refactor that breaks a bench
script (an import moved, a renamed setting) fails here instead of at the next hour-long run. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scale_bench_builds_and_queries_a_small_library(tmp_path: Path) -> None:
    name = "scale-smoke-test"
    out = ROOT / "bench" / ".cache" / "results-quick" / f"{name}.json"
    out.unlink(missing_ok=True)
    try:
        proc = subprocess.run([sys.executable, "bench/scale.py", "--quick", "--windows", "3000", "--skip-server",
                               "--configs", "m16", "--ef", "100", "--name", name, "--work", str(tmp_path / "work")],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        doc = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    run = doc["details"]["embedded-m16"]
    assert run["build"]["windows"] == 3000 and doc["params"]["configs"] == ["m16"]
    got = run["sweep"]["100"]
    for key in ("recall_offset", "recall_library-like", "recall_uniform"):
        assert 0.0 <= got[key] <= 1.0
    assert got["recall_library-like"] > 0.5  # a working index finds most of the true neighbours of library queries
    assert got["store_p50_ms"] > 0 and got["exact_p50_ms"] > 0
