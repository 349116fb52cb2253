"""Shared pieces of the benchmark scripts: arguments, timing, machine facts, result JSON, Rich and markdown tables.

Every script measures a quantity *and* a baseline in the same process run (load on this shared 2-core machine
changes minute to minute, so only ratios measured side by side are comparable), writes
``bench/results/NAME.json`` and prints a table. A result document looks like::

    {"name": "ingest", "quick": false, "started": "2025-...", "seconds": 81.2,
     "machine": {"cpus": 2, "torch_threads": 2, "loadavg_start": [4.1, 5.0, 5.2], "loadavg_end": [...], ...},
     "params": {...},
     "rows": [{"measure": "...", "value": 31.2, "unit": "windows/s", "baseline": "...", "baseline_value": 40.1,
               "ratio": 0.78, "goal": ">= 0.5", "met": true, "note": "..."}],
     "details": {...}}

``python bench/common.py`` prints the markdown tables of all saved results (for bench/README.md).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = BENCH_DIR / ".cache"
QUICK_RESULTS_DIR = CACHE_DIR / "results-quick"
VENV_BIN = Path(sys.executable).parent

if str(ROOT) not in sys.path:  # run as `python bench/NAME.py` from a plain checkout
    sys.path.insert(0, str(ROOT))

from encoders.atomic import atomic_write  # noqa: E402 (after the path above)


@dataclass
class Row:
    """One line of a benchmark table: a measured value, optionally against a baseline and a goal.

    Attributes:
        measure: what was measured (short).
        value: the measured number.
        unit: its unit (``"windows/s"``, ``"ms"``, ``"s"``, ``""`` for ratios).
        baseline: what the value is compared with (``""``: none).
        baseline_value: the baseline's number, measured in the same run.
        baseline_unit: its unit when it differs from ``unit`` (``None``: the same).
        ratio: ``value / baseline_value`` (or as defined by the script; see ``note``).
        goal: the goal as text (``">= 0.5"``), ``""`` if none.
        met: whether the goal is met (``None`` if no goal).
        note: anything a reader needs to interpret the row.
    """

    measure: str
    value: float
    unit: str = ""
    baseline: str = ""
    baseline_value: float | None = None
    baseline_unit: str | None = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Result:
    """A benchmark run (see the module docstring for its JSON form)."""

    name: str
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: str = field(default_factory=lambda: _dt.datetime.now().isoformat(timespec="seconds"))
    machine: dict[str, Any] = field(default_factory=lambda: machine_facts())
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def add(self, measure: str, value: float, unit: str = "", **kw: Any) -> Row:
        """Append a :class:`Row` (keyword arguments as in :class:`Row`); returns it."""
        row = Row(measure, float(value), unit, **kw)
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        m = dict(self.machine)
        m["loadavg_end"] = loadavg()
        return {"name": self.name, "quick": self.quick, "started": self.started,
                "seconds": round(time.perf_counter() - self._t0, 1), "machine": m, "params": self.params,
                "rows": [_clean(asdict(r)) for r in self.rows], "details": _clean(self.details)}

    def save(self) -> Path:
        """Write ``bench/results/NAME.json`` (atomically) and return its path. ``--quick`` runs go to
        ``bench/.cache/results-quick/NAME.json`` instead, so a smoke run never replaces the latest full result."""
        folder = QUICK_RESULTS_DIR if self.quick else RESULTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def finish(self) -> Path:
        """Save, print the table and where the JSON went; returns the JSON path."""
        path = self.save()
        print_table(self.to_json())
        print(f"wrote {path.relative_to(ROOT)}")
        return path


def _clean(x: Any) -> Any:
    """JSON-safe copy: floats rounded to 4 significant digits, numpy scalars to Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            x = x.item()
        except (ValueError, TypeError):
            pass
    if isinstance(x, float):
        return float(f"{x:.4g}") if x == x else None
    return x


def loadavg() -> list[float]:
    """1, 5 and 15-minute load averages (``os.getloadavg``)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return []


def machine_facts() -> dict[str, Any]:
    """CPU count, torch threads and versions, load average at the start (torch imported here if needed)."""
    facts: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "python": platform.python_version(), "loadavg_start": loadavg()}
    try:
        import torch

        facts["torch"] = torch.__version__.split("+")[0]
        facts["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    return facts


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` (a small run for development)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run, ~1 min)")
    return p


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``xs``, linear interpolation (numpy's default)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def fmt(x: float | None, unit: str = "") -> str:
    """A number with 3 significant digits (thousands separated), ``""`` for ``None``."""
    if x is None:
        return ""
    ax = abs(x)
    if ax >= 1000:
        s = f"{x:,.0f}"
    elif ax >= 100:
        s = f"{x:.0f}"
    elif ax >= 10:
        s = f"{x:.1f}"
    elif ax >= 1:
        s = f"{x:.2f}"
    else:
        s = f"{x:.3g}"
    return f"{s} {unit}".strip()


def _cells(row: dict[str, Any]) -> list[str]:
    met = row.get("met")
    return [row["measure"], fmt(row["value"], row.get("unit", "")), row.get("baseline", ""),
            fmt(row.get("baseline_value"), row.get("baseline_unit") if row.get("baseline_unit") is not None
                else row.get("unit", "")),
            fmt(row.get("ratio")), row.get("goal", ""), "" if met is None else ("yes" if met else "NO")]


HEADERS = ["measure", "value", "baseline (same run)", "baseline value", "ratio", "goal", "met"]


def print_table(doc: dict[str, Any]) -> None:
    """Render a result document as a Rich table (plus its notes) on stdout."""
    from rich.console import Console
    from rich.table import Table

    m = doc["machine"]
    title = (f"bench/{doc['name']}.py{' --quick' if doc['quick'] else ''} - load {m.get('loadavg_start')} -> "
             f"{m.get('loadavg_end')}, {m.get('cpus')} CPUs, {doc['seconds']} s")
    table = Table(title=title, title_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("measure", "baseline (same run)", "goal") else "right",
                         overflow="fold")
    for row in doc["rows"]:
        cells = _cells(row)
        if row.get("met") is False:
            cells[-1] = "[bold red]NO[/]"
        elif row.get("met"):
            cells[-1] = "[green]yes[/]"
        table.add_row(*cells)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    for row in doc["rows"]:
        if row.get("note"):
            console.print(f"  [dim]{row['measure']}: {row['note']}[/]")


def markdown_table(doc: dict[str, Any], notes: bool = False) -> str:
    """A result document as a GitHub markdown table (for README files)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    for row in doc["rows"]:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    if notes:
        lines += [""] + [f"- {r['measure']}: {r['note']}" for r in doc["rows"] if r.get("note")]
    return "\n".join(lines)


def load_results() -> dict[str, dict[str, Any]]:
    """Every saved ``bench/results/*.json``, by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS_DIR.glob("*.json"))}


def run_process(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600) -> float:
    """Wall seconds of a subprocess (stdout/stderr discarded); raises ``RuntimeError`` if it fails."""
    import subprocess

    t = time.perf_counter()
    proc = subprocess.run(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=timeout)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    return dt


#: The models the benchmarks run: the paper's best family at the fast width, and the pretrained default family.
FAST_M5 = ("m5-attention-linear-infonce", {"width": 0.25, "image_size": 112})
PRETRAINED = ("pt-effnet-aisfx-infonce", {})
#: The shipped default checkpoint (soundlib/models/default.pt: its concept bridge and 244-d embedding), for the
#: benchmarks' ``--shipped`` option.
SHIPPED = ("default", {})


def model_label(name: str, overrides: dict[str, Any]) -> str:
    """``"m5 w0.25@112"`` style short label of a model and its overrides."""
    if name == SHIPPED[0]:
        return "shipped default"
    short = name.split("-")[0]
    if "width" in overrides:
        short += f" w{overrides['width']}@{overrides.get('image_size', 224)}"
    return short


def saved_model(name: str, folder: Path, seed: int = 0, **overrides: Any) -> Any:
    """A :class:`soundlib.models.LoadedModel` of an untrained seeded model, saved as a real checkpoint in
    ``folder`` (reused when it is already there, so its sha256 stays the same across runs) and loaded back.

    Weights do not change the speed of anything measured here, so untrained models are fine. ``name`` "default"
    (:data:`SHIPPED`) loads the shipped default checkpoint instead.
    """
    from encoders.checkpoint import save_checkpoint
    from encoders.registry import create_model
    from soundlib.models import load_model

    if name == SHIPPED[0]:
        return load_model(None)
    tag = "-".join([name] + [f"{k}{v}" for k, v in sorted(overrides.items())] + [f"s{seed}"])
    path = Path(folder) / f"{tag}.pt"
    if not path.exists():
        model = create_model(name, seed=seed, **overrides)
        save_checkpoint(path, model, training={"data": "none (benchmark: untrained)", "epochs": 0})
    return load_model(path)


def main() -> None:
    """Print the markdown table of every saved result (paste into bench/README.md)."""
    for name, doc in load_results().items():
        m = doc["machine"]
        print(f"### {name}\n")
        print(f"`.venv/bin/python bench/{name}.py{' --quick' if doc['quick'] else ''}` — {doc['started']}, "
              f"{doc['seconds']} s, load average {m.get('loadavg_start')} -> {m.get('loadavg_end')} "
              f"({m.get('cpus')} CPUs, torch threads {m.get('torch_threads')})\n")
        print(markdown_table(doc, notes=True))
        print()


if __name__ == "__main__":
    main()
