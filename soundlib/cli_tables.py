"""Rich tables of the command line's reports (``soundlib eval``, ``soundlib catalog``): used by ``cli.py`` only.

The library returns report objects; turning them into tables is the command line's job, so nothing here is
imported by the library. Rich is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soundlib.evaluation.correlation import CorrelationReport
    from soundlib.evaluation.retrieval import EvalReport

__all__ = ["retrieval_table", "correlation_table"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def retrieval_table(report: EvalReport) -> Any:
    """A Rich table: rows = top-k, chance@k and MRR; one column per model, cells "sample % / category %"."""
    from rich.table import Table

    cats = report.has_categories
    title = (f"{Path(report.list_path).name}: {report.queries} queries, {report.candidates} candidates"
             + (f" (library {report.library})" if report.library else f", file score {report.file_score}"))
    table = Table(title=title, show_lines=False)
    table.add_column("metric", style="bold")
    unit = "sample / category %" if cats else "sample %"
    for m in report.models:
        table.add_column(f"{m.model}\n{unit}", justify="right")

    def cell(pair: tuple[float, float | None]) -> str:
        s, c = pair
        return f"{_pct(s)} / {_pct(c)}" if cats else _pct(s)

    for k in report.ks:
        table.add_row(f"top-{k}", *[cell(m.scores.topk[k]) for m in report.models])
    table.add_section()
    for k in report.ks:
        table.add_row(f"chance@{k}", *[cell(m.scores.chance[k]) for m in report.models], style="dim")
    table.add_section()
    table.add_row("MRR", *[f"{m.scores.mrr:.3f}" for m in report.models])
    return table


def correlation_table(report: CorrelationReport) -> Any:
    """A Rich table of the correlation task: one row per model."""
    from rich.table import Table

    table = Table(title=f"{Path(report.list_path).name}: correlation on {report.pairs} balanced pairs")
    for col in ("model", "method", "threshold", "accuracy %"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for m in report.models:
        table.add_row(m.model, m.method, "-" if m.threshold is None else f"{m.threshold:.3f}", _pct(m.accuracy))
    return table
