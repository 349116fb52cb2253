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
    from train.catalog import CatalogReport
    from train.concept_images import DrawingsReport
    from train.gcompris import GcomprisReport
    from train.loso import LosoReport

__all__ = ["retrieval_table", "correlation_table", "catalog_table", "catalog_summary", "catalog_remarks",
           "gcompris_table", "gcompris_summary", "gcompris_remarks",
           "drawings_summary", "drawings_remarks", "loso_table", "loso_concepts_table", "loso_comparison",
           "loso_remarks"]


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
    if any(m.concepts is not None for m in report.models):  # bridged models: which side names the concept
        table.add_section()
        for label, part, count in (("concept right: pictures", "pictures", "pictures_counted"),
                                   ("concept right: sound windows", "sound_windows", "windows_counted"),
                                   ("concept right: sound files", "sound_files", "files_counted")):
            table.add_row(label, *["" if m.concepts is None else
                                   f"{_pct(getattr(m.concepts, part))} % of {getattr(m.concepts, count)}"
                                   for m in report.models])
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


def catalog_table(report: CatalogReport) -> Any:
    """A Rich table of ``soundlib catalog``: one row per concept, most pairs first."""
    from rich.table import Table

    t = Table(title="catalog pairs per concept (images/sounds matched and used per split)", show_lines=False)
    for c, j in (("concept", "left"), ("images", "right"), ("sounds", "right"), ("train i/s", "right"),
                 ("val i/s", "right"), ("train pairs", "right"), ("val pairs", "right"), ("status", "left")):
        t.add_column(c, justify=j, no_wrap=True)  # type: ignore[arg-type]
    for c in sorted(report.concepts, key=lambda c: (-(c.train_pairs + c.val_pairs), c.concept)):
        t.add_row(c.concept, str(c.images), str(c.sounds), f"{c.train_images}/{c.train_sounds}",
                  f"{c.val_images}/{c.val_sounds}", str(c.train_pairs), str(c.val_pairs),
                  c.status if c.status == "ok" else f"[red]{c.status}[/red]")
    return t


def catalog_summary(report: CatalogReport) -> str:
    """The totals line under the table (Rich markup)."""
    d = report.to_dict()["totals"]
    return (f"[bold]{d['concepts_with_pairs']}[/bold] of {d['concepts']} concepts have pairs; "
            f"images used {d['used_images']} (of {d['scanned_images']} scanned), sounds used {d['used_sounds']} "
            f"(of {d['scanned_sounds']}); pairs: train [bold]{d['train_pairs']}[/bold], val "
            f"[bold]{d['val_pairs']}[/bold]; files in several concepts: {d['shared_files']}; labelled sounds for "
            f"the concept bridge (paired or not, validation side left out): {d['labelled_sounds']}\n"
            f"lists: {report.lists.get('train')}  {report.lists.get('val')}  {report.lists.get('sounds')}")


def catalog_remarks(report: CatalogReport, top: int = 25) -> list[str]:
    """What a map maintainer should look at (Rich markup, one line each): rows without pairs, patterns matching
    nothing, ambiguous names, undecodable files (by reason), and the largest groups of sounds no row maps."""
    from collections import Counter

    from rich.markup import escape

    lines = []
    if report.unmatched:
        lines.append("[yellow]unmatched map rows:[/yellow] "
                     + escape("; ".join(f"{c.concept} (line {c.line}: {c.status})" for c in report.unmatched)))
    if report.dead_patterns:
        lines.append(f"[yellow]patterns matching no file ({len(report.dead_patterns)}):[/yellow] "
                     + escape("; ".join(f"{c}/{m}: {p}" for c, m, p in report.dead_patterns)))
    lines += [f"[yellow]warning:[/yellow] {escape(w)}" for w in report.warnings]
    if report.skipped:
        reasons = Counter(r.split(" (")[0] for _, r in report.skipped)
        lines.append(f"[yellow]skipped {len(report.skipped)} undecodable files:[/yellow] "
                     + escape(", ".join(f"{n} {r}" for r, n in reasons.most_common())))
    um = list(report.unmapped_sounds.items())
    lines.append(f"unmapped sounds: {sum(n for _, n in um)} files in {len(um)} groups; largest: "
                 + escape(", ".join(f"{g} ({n})" for g, n in um[:top])))
    return lines


def gcompris_table(report: GcomprisReport) -> Any:
    """A Rich table of ``soundlib gcompris``: pairs and sounds per concept, most pairs first."""
    from rich.table import Table

    d = report.to_dict()
    t = Table(title="GCompris pairs and sounds per concept")
    for c in ("concept", "pairs", "sounds", "new"):
        t.add_column(c, justify="left" if c == "concept" else "right")
    for concept in sorted(d["sounds_per_concept"], key=lambda c: (-d["pairs_per_concept"].get(c, 0), c)):
        t.add_row(concept, str(d["pairs_per_concept"].get(concept, 0)), str(d["sounds_per_concept"][concept]),
                  "new" if concept in report.new_concepts else "")
    return t


def gcompris_summary(report: GcomprisReport) -> str:
    """The totals line under the table (Rich markup)."""
    d = report.to_dict()
    s = d["seconds"]
    return (f"pairs [bold]{d['pairs']}[/bold] ({d['photos']} photos, {d['drawings']} drawings; "
            f"{d['paired_sounds']} sounds, {d['pair_concepts']} concepts); sounds with a concept "
            f"[bold]{d['sounds']}[/bold] ({d['sound_concepts']} concepts; {s['total']} s, median {s['median']} s, "
            f"{s['min']}-{s['max']} s)")


def gcompris_remarks(report: GcomprisReport) -> list[str]:
    """Sounds and pictures left out, and files skipped (Rich markup, one line each)."""
    from rich.markup import escape

    d = report.to_dict()
    lines = [f"[yellow]left out[/yellow] {escape(str(row['sound']))}: {escape(str(row['why']))}"
             for row in d["left_out"]]
    lines += [f"[yellow]left out[/yellow] {escape(str(picture))}: shown with {n} different sounds (an icon, not "
              "the thing)" for picture, n in d["icons"].items()]
    lines += [f"[red]skipped[/red] {escape(str(line))}" for line in d["skipped"]]
    return lines


def drawings_summary(report: DrawingsReport) -> str:
    """``soundlib drawings``: what was kept, and per concept how many."""
    from rich.markup import escape

    d = report.to_dict()
    return escape(f"{d['kept']} of {d['candidates']} drawings kept ({d['unnamed']} unnamed in folders of several "
                  f"concepts, {d['duplicates']} duplicates, {len(d['skipped'])} skipped) -> {report.out}/openclipart\n"
                  + ", ".join(f"{c} {n}" for c, n in d["kept_by_concept"].items()))


def drawings_remarks(report: DrawingsReport) -> list[str]:
    """The drawings that could not be rendered or read (Rich markup, one line each)."""
    from rich.markup import escape

    return [f"[yellow]skipped[/yellow] {escape(str(s['file']))}: {escape(str(s['reason']))}"
            for s in report.to_dict()["skipped"]]


def _sc(d: dict[str, float | None] | None) -> str:
    """A ``{"sample", "category"}`` pair as "sample / category" (percent)."""
    return "-" if d is None else f"{_pct(d['sample'])} / {_pct(d['category'])}"


def loso_table(report: LosoReport, model: str) -> Any:
    """A Rich table of one model's LOSO figures: one row per fold, then the mean, the mean chance and (with more than
    one fold) every query pooled (:meth:`LosoReport.pooled`).

    Cells are "sample % / category %"; each fold's chance at the largest k sits beside its figures.
    """
    from rich.table import Table

    ks = [str(k) for k in report.ks]
    kmax = ks[-1]
    t = Table(title=f"{model}: leave-one-source-out (held-out pictures and sounds; sample % / category %)")
    t.add_column("fold", no_wrap=True)
    for c in ("queries", "candidates", *(f"top-{k}" for k in ks), "MRR", f"chance@{kmax}", "val top-10", "epoch"):
        t.add_column(c, justify="right", no_wrap=True)
    res = report.model_results(model)
    for r in res:
        t.add_row(r.fold, str(r.queries), str(r.candidates), *(_sc(r.topk[k]) for k in ks), f"{r.mrr:.3f}",
                  _sc(r.chance[kmax]), _pct(r.val_top10), f"{r.best_epoch}/{r.epochs_run}")
    failed = [f for f, m, _ in report.failed if m in (None, model)]
    for f in failed:
        t.add_row(f, "", "", *["[red]failed[/red]"] * len(ks), "", "", "", "")
    mean = report.mean(model)
    if mean is not None:
        t.add_section()
        t.add_row(f"[bold]mean ({mean['folds']} folds)[/bold]", f"{mean['queries']:.0f}", f"{mean['candidates']:.0f}",
                  *(f"[bold]{_sc(mean['topk'][k])}[/bold]" for k in ks), f"{mean['mrr']:.3f}",
                  _sc(mean["chance"][kmax]), "", "")
        t.add_row("chance", "", "", *(_sc(mean["chance"][k]) for k in ks), "", "", "", "", style="dim")
    pooled = report.pooled(model)
    if pooled is not None and len(res) > 1:
        t.add_row(f"all {pooled['queries']} queries pooled", str(pooled["queries"]), "",
                  *(_sc(pooled["topk"][k]) for k in ks), f"{pooled['mrr']:.3f}", _sc(pooled["chance"][kmax]), "", "")
    return t


def loso_concepts_table(report: LosoReport, model: str) -> Any:
    """A Rich table of which side of ``model``'s concept bridge names the right concept, per fold and the mean
    (% of the held-out pictures, sound windows and sound files whose category is a concept column); ``None`` for a
    model without a bridge (or results written before it was measured)."""
    from rich.table import Table

    res = [r for r in report.model_results(model) if r.concept_accuracy]
    if not res:
        return None
    parts = (("pictures", "pictures_counted"), ("sound_windows", "windows_counted"), ("sound_files", "files_counted"))
    t = Table(title=f"{model}: right concept named, %")
    t.add_column("fold", no_wrap=True)
    for c in ("pictures", "sound windows", "sound files"):
        t.add_column(c, justify="right", no_wrap=True)
    for r in res:
        d = r.concept_accuracy or {}
        t.add_row(r.fold, *(f"{_pct(d.get(part))} of {d.get(count, 0)}" for part, count in parts))
    mean = (report.mean(model) or {}).get("concept_accuracy")
    if mean:
        t.add_section()
        t.add_row(f"[bold]mean ({len(res)} folds)[/bold]", *(f"[bold]{_pct(mean.get(p))}[/bold]" for p, _ in parts))
    return t


def loso_comparison(report: LosoReport) -> Any:
    """A Rich table of the models side by side: top-k (largest k) per fold and the mean, with chance."""
    from rich.table import Table

    kmax = str(report.ks[-1])
    t = Table(title=f"top-{kmax} sample % / category % per fold, models side by side")
    t.add_column("fold", no_wrap=True)
    for r in report.recipes:
        t.add_column(r.model, justify="right", no_wrap=True)
    t.add_column(f"chance@{kmax}", justify="right", no_wrap=True)
    for f in report.folds:
        cells, chance = [], None
        for r in report.recipes:
            got = [x for x in report.model_results(r.model) if x.fold == f.fold]
            cells.append(_sc(got[0].topk[kmax]) if got else "-")
            chance = chance or (got[0].chance[kmax] if got else None)
        t.add_row(f.fold, *cells, _sc(chance), )
    t.add_section()
    means = [report.mean(r.model) for r in report.recipes]
    chance = next((m["chance"][kmax] for m in means if m is not None), None)
    t.add_row("[bold]mean[/bold]", *(f"[bold]{_sc(m['topk'][kmax])}[/bold]" if m else "-" for m in means),
              _sc(chance))
    return t


def loso_remarks(report: LosoReport) -> list[str]:
    """Lines for stderr (Rich markup): the sources found, each fold's test, what was reused and what failed."""
    from rich.markup import escape

    lines = []
    for modality, label in (("image", "picture"), ("sound", "sound")):
        got = report.sources.get(modality, {})
        lines.append(f"{label} sources: " + escape(", ".join(f"{s} ({n})" for s, n in got.items())))
    for f in report.folds:
        lines.append(escape(f"fold {f.fold}: held out pictures {'; '.join(f.pictures)} / sounds {'; '.join(f.sounds)}"
                            f" ({f.held_out_files.get('image', 0)} pictures, {f.held_out_files.get('sound', 0)} "
                            f"sounds); train {f.train_pairs} / val {f.val_pairs} pairs; test {f.queries} queries in "
                            f"{len(f.test_concepts)} concepts, {f.candidates_count} candidates"))
    if report.reused:
        lines.append(f"{report.reused} result(s) read back from {escape(report.out_dir)} (not redone)")
    for fold, model, why in report.failed:
        lines.append(f"[red]failed[/red] {escape(fold)}{' / ' + escape(model) if model else ''}: {escape(why)}")
    return lines
