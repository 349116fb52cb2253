"""soundlib command line: Click commands only (parse, call the library, render with Rich).

Heavy imports (torch, chromadb, librosa) happen inside the commands, so ``soundlib --help`` answers fast.
"""

from __future__ import annotations

import click

from soundlib.clikit import (debug_option, handle_errors, json_option, model_option, store_options)

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=110)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="soundlib")
def main() -> None:
    """soundlib: find the sounds that fit a picture or a video.

    \b
    Examples:
      soundlib prepare ./videos --out data/
      soundlib train data/train.csv --val data/val.csv --model m5-attention-linear-infonce --out runs/m5
      soundlib ingest ./sfx
      soundlib query frame.jpg -k 10
      soundlib eval data/test.csv
    """


# --- prepare / train (issue: training) --------------------------------------------------------------------------

@main.command(context_settings=CONTEXT)
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--fps", default=1.0, show_default=True, type=float, help="Frames per second to extract.")
@click.option("--split", "split_text", default="0.8,0.1,0.1", show_default=True, metavar="TRAIN,VAL,TEST",
              help="Fractions of the pairs for train/val/test (assigned per video).")
@click.option("--labels", type=click.Path(dir_okay=False), default=None,
              help="CSV of video (file name, stem or id) -> category; fills the category column.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split.")
@click.option("--frame-size", default=256, show_default=True, type=int,
              help="Save frames with their shorter side scaled down to this (0 = as decoded).")
@json_option
@debug_option
@handle_errors
def prepare(videos, out, fps, split_text, labels, seed, frame_size, as_json, debug):
    """Extract 1-fps frames, 48 kHz audio and train/val/test pair lists (split by video) from VIDEOS.

    VIDEOS are files or folders (searched recursively). Videos without an audio track are skipped and reported;
    videos prepared by an earlier run into the same --out are not decoded again. Exit code 1 if any was skipped.

    \b
    Example:
      soundlib prepare ./videos --out data/ --labels labels.csv
    """
    import sys
    from pathlib import Path

    from soundlib.clikit import EXIT_PARTIAL, print_json, rich_progress, stdout_console
    from train.prepare import parse_split, prepare_videos

    split = parse_split(split_text)
    with rich_progress(enabled=not as_json) as progress:
        report = prepare_videos(videos, out, fps=fps, split=split, labels=labels, seed=seed,
                                frame_size=frame_size or None, progress=progress)
    if as_json:
        print_json(report.to_dict())
    else:
        from rich.table import Table

        table = Table(title=f"prepare -> {report.out}")
        for col in ("video", "status", "split", "seconds", "pairs", "category / reason"):
            table.add_column(col, justify="right" if col in ("seconds", "pairs") else "left")
        for v in report.videos:
            table.add_row(Path(v.path).name, v.status, v.split or "", f"{v.seconds:.1f}", str(v.pairs),
                          v.reason or v.category or "")
        table.add_section()
        table.add_row(f"{len(report.videos)} videos", f"{len(report.skipped)} skipped", "",
                      f"{report.seconds:.1f}", str(report.pairs),
                      "  ".join(f"{s}: {n}" for s, n in report.rows.items()))
        stdout_console().print(table)
        if report.unlabeled:
            click.echo(f"warning: {len(report.unlabeled)} video(s) have no label in {labels}", err=True)
    if report.skipped:
        sys.exit(EXIT_PARTIAL)


@main.command(context_settings=CONTEXT)
@click.argument("train_lists", nargs=-1, required=True, type=click.Path())
@click.option("--val", "val_lists", type=click.Path(), multiple=True,
              help="Validation list; repeat for several, each scored on its own (default: val.csv next to the "
                   "first train list).")
@click.option("--model", "model_name", default="m5-attention-linear-infonce", show_default=True,
              help="Model configuration name (m1-baseline-linear-bce ... m7-attention-linear-ntxent, "
                   "pt-effnet-aisfx-infonce).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--epochs", default=50, show_default=True, type=int, help="Last epoch to run.")
@click.option("--batch", default=None, type=int, help="Pairs per step (default: the model's, 128 or 32).")
@click.option("--lr", default=None, type=float, help="Initial learning rate (default: the model's, 0.01).")
@click.option("--temperature", default=None, type=float,
              help="Temperature of InfoNCE / NT-Xent (default: the model's, 0.5).")
@click.option("--weight-decay", default=1e-4, show_default=True, type=click.FloatRange(min=0),
              help="SGD weight decay (the paper's 1e-4).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out (same settings).")
@click.option("--width", default=None, type=float,
              help="Channel multiplier of both streams (paper models; default 1.0; 0.125-0.25 trains in minutes "
                   "on a CPU).")
@click.option("--image-size", default=None, type=int,
              help="Side of the input image (paper models; default 224; the pretrained family is fixed at 224).")
@click.option("--windows", default=3, show_default=True, type=click.IntRange(min=1),
              help="Whole-file rows (empty start): cache this many of the file's loudest 1-s windows and draw one "
                   "per epoch.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of weights, shuffles and negatives.")
@click.option("--patience", default=20, show_default=True, type=int,
              help="Stop after this many epochs without a better val top-10.")
@click.option("--workers", default=1, show_default=True, type=int, help="Frame-decoding worker processes.")
@click.option("--threads", default=0, show_default=True, type=int,
              help="Torch CPU threads (0 = all cores; 1 is much faster when other jobs share the CPU).")
@click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False),
              help="Feature cache folder (log-mels, backbone features; default: <out>/../.cache).")
@click.option("--precision", default="bf16", show_default=True, type=click.Choice(["bf16", "fp32"]),
              help="bf16 autocast (faster on CPU) or fp32.")
@json_option
@debug_option
@handle_errors
def train(train_lists, val_lists, model_name, out, epochs, batch, lr, temperature, weight_decay, resume, width,
          image_size, windows, seed, patience, workers, threads, cache_dir, precision, as_json, debug):
    """Train a model on pair lists (several TRAIN_LISTS are pooled); keeps best.pt (by the top-10 sample accuracy
    over all val rows, each ranked among its own list's samples), last.pt and metrics.csv.

    \b
    Examples:
      soundlib train data/train.csv --val data/val.csv --model m5-attention-linear-infonce --out runs/m5 \\
        --width 0.25 --image-size 128 --epochs 10
      soundlib train catalog/catalog_train.csv real/train.csv --val catalog/catalog_val.csv \\
        --val real/val.csv --model pt-effnet-aisfx-infonce --out runs/default --epochs 60
    """
    from pathlib import Path

    from soundlib.clikit import print_json, rich_progress, stdout_console
    from soundlib.errors import ListError
    from train.loop import train_model

    for path in train_lists:  # a missing train list is the first thing to say, before guessing a val list
        if not Path(path).is_file():
            raise ListError("list file not found", str(path))
    if not val_lists:
        guess = Path(train_lists[0]).with_name("val.csv")
        if not guess.is_file():
            raise ListError("no --val given and no val.csv next to the train list", str(train_lists[0]))
        val_lists = (str(guess),)
    with rich_progress(enabled=not as_json) as progress:
        report = train_model(list(train_lists), list(val_lists), model_name, out, epochs=epochs, batch=batch,
                             lr=lr, resume=resume, width=width, image_size=image_size, seed=seed,
                             patience=patience, workers=workers, threads=threads, cache_dir=cache_dir,
                             precision=precision, windows=windows, temperature=temperature,
                             weight_decay=weight_decay, progress=progress)
    if as_json:
        print_json(report.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"{report.model} -> {report.out_dir}")
    for col in ("epoch", "train loss", "val loss", "val top-10", "cat top-10", "MRR", "lr", "pairs/s", "s"):
        table.add_column(col, justify="right")
    for h in report.history:
        mark = " *" if h.epoch == report.best_epoch else ""
        table.add_row(f"{h.epoch}{mark}", f"{h.train_loss:.4f}", f"{h.val_loss:.4f}", f"{h.val_top10:.3f}",
                      f"{h.val_top10_category:.3f}", f"{h.val_mrr:.3f}", f"{h.lr:.3g}", f"{h.pairs_per_s:.1f}",
                      f"{h.seconds:.1f}")
    con = stdout_console()
    con.print(table)
    for v in report.val_lists:
        con.print(f"  {v['path']}: top-10 sample {v.get('top10', float('nan')):.3f} (chance {v['chance_top10']:.3f}, "
                  f"{v['samples']} samples), category {v.get('top10_category', float('nan')):.3f} "
                  f"(chance {v['chance_top10_category']:.3f}), MRR {v.get('mrr', float('nan')):.3f}")
    how = "early stop" if report.stopped_early else "done"
    con.print(f"{how}: best epoch {report.best_epoch}, val top-10 sample accuracy {report.best_top10:.3f} "
              f"(chance {report.chance:.3f}); {report.pairs_per_s:.1f} pairs/s; features {report.feature_seconds:.0f} s; "
              f"best checkpoint {report.best_path}")


# --- the sound library (issue: library) --------------------------------------------------------------------------

@main.command(context_settings=CONTEXT)
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@click.option("--max-windows", default=None, type=click.IntRange(min=0), metavar="N",
              help="1-second windows per file at most, sampled evenly over longer files (default 30; 0 = all).")
@click.option("--prune", is_flag=True, help="Remove stored files under FOLDERS that are gone from disk.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Windows per model call.")
@click.option("--write-batch", default=None, type=click.IntRange(min=1), metavar="N",
              help="Windows per store write (default: the store's maximum). Completed files are also written "
                   "every few seconds, so a crash loses little work.")
@model_option
@store_options
@json_option
@debug_option
@handle_errors
def ingest(folders, max_windows, prune, batch_size, write_batch, model_spec, db, chroma_url, collection, as_json,
           debug):
    """Embed every sound file under FOLDERS into a persistent Chroma collection.

    The category of a sound is the first folder under its root. Incremental: unchanged files are not decoded
    again, changed files are replaced as a whole. Files that cannot be read are listed; exit code 1 if any.
    Ctrl-C stops after the batch in flight (what is complete is kept; run again to finish).

    \b
    Examples:
      soundlib ingest ./sfx
      soundlib ingest ./sfx --prune --model runs/m5/best.pt --db ./sfx.chroma
    """
    import sys

    from soundlib.clikit import EXIT_PARTIAL, print_json, rich_progress, stderr_console, stdout_console
    from soundlib.ingest import graceful_interrupt
    from soundlib.ingest import ingest as run_ingest
    from soundlib.models import load_model
    from soundlib.scan import plan_roots
    from soundlib.store import open_store, writer_lock

    plan_roots(folders)  # a typo in FOLDERS fails before anything is created
    # the lock comes first: a second ingest is refused at once, and two first runs never create one store together
    with writer_lock(db, chroma_url, "ingest"):
        loaded = load_model(model_spec)
        with open_store(db=db, url=chroma_url, collection=collection, create=True) as store:
            store.write_batch = write_batch
            with graceful_interrupt() as stop, rich_progress(enabled=not as_json) as progress:
                report = run_ingest(folders, loaded, store, max_windows=max_windows, prune=prune,
                                    progress=progress, batch_size=batch_size, stop=stop)

    from soundlib.clikit import print_skipped

    err = stderr_console()
    for path, reason in report.skipped:
        print_skipped(err, path, reason)
    if report.interrupted:
        err.print("interrupted: the files completed so far are stored; run the same command again to finish",
                  highlight=False, markup=False, soft_wrap=True)
    if as_json:
        print_json(report.to_json())
    else:
        from rich.table import Table

        table = Table(title=f"ingest -> {store.location} [{store.name}]")
        table.add_column("files", justify="left")
        table.add_column("count", justify="right")
        for label, n in (("added", report.added), ("updated", report.updated), ("unchanged", report.unchanged),
                         ("removed", report.removed), ("skipped", len(report.skipped))):
            table.add_row(label, str(n))
        table.add_section()
        table.add_row("windows written", str(report.windows))
        table.add_row("time", f"{report.seconds:.1f} s")
        table.add_row("windows/s", f"{report.windows_per_s:.1f}")
        stdout_console().print(table)
    if report.interrupted:
        sys.exit(130)
    if report.skipped:
        sys.exit(EXIT_PARTIAL)


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1),
              help="Number of sounds (distinct files).")
@click.option("--category", "categories", multiple=True, metavar="NAME",
              help="Only sounds of this category (repeat for several).")
@click.option("--per-frame", is_flag=True, help="Also rank every picture / video frame / sound window on its own.")
@model_option
@store_options
@json_option
@debug_option
@handle_errors
def query(inputs, k, categories, per_frame, model_spec, db, chroma_url, collection, as_json, debug):
    """Recommend sounds for images, a folder of images, a video, or a sound.

    Several pictures (or the 1-fps frames of a video) give one ranking for the whole scene. A sound gives
    "more like this" (the sound itself first when it is in the library). Without --model, the model the
    collection was built with is used when its checkpoint is still where it was.

    \b
    Examples:
      soundlib query frame.jpg -k 10
      soundlib query clip.mp4 --category rain --category wind --json
      soundlib query ./sfx/dogs/bark.wav -k 5
    """
    from soundlib.clikit import print_json, rich_progress, stdout_console
    from soundlib.models import load_model
    from soundlib.recommend import classify_inputs, recommend
    from soundlib.store import open_store

    classify_inputs(inputs)  # a missing or unknown input fails here, before chromadb and torch are imported
    with open_store(db=db, url=chroma_url, collection=collection) as store:
        loaded = load_model(model_spec or store.recorded_model_path())
        with rich_progress(enabled=not as_json) as progress:
            result = recommend(inputs, loaded, store, k=k, categories=categories, per_frame=per_frame,
                               progress=progress)
    if as_json:
        print_json(result.to_json())
        return
    from rich.table import Table

    def ranking(title, hits):
        table = Table(title=title)
        table.add_column("rank", justify="right")
        table.add_column("file", overflow="fold")
        table.add_column("category")
        table.add_column("start (s)", justify="right")
        table.add_column("distance", justify="right")
        for i, h in enumerate(hits, 1):
            table.add_row(str(i), _display_path(h.path), h.category, f"{h.start:.1f}", f"{h.distance:.4f}")
        return table

    from soundlib.media import media_kind

    out = stdout_console()
    for f in result.frames or []:
        where = f" @ {f.time:.1f} s" if media_kind(f.input) in ("video", "audio") else ""
        out.print(ranking(f"{f.input}{where}", f.results))
    combined = "combined ranking: " if result.frames else ""
    out.print(ranking(combined + ", ".join(result.inputs), result.results))


def _display_path(path: str) -> str:
    """A result path for a table: relative to the current folder when it lies below it (JSON keeps it absolute)."""
    import os

    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@main.group(context_settings=CONTEXT, invoke_without_command=True)
@store_options
@json_option
@debug_option
@click.pass_context
@handle_errors
def library(ctx, db, chroma_url, collection, as_json, debug):
    """Show what a collection holds: files, windows, categories with counts, model, size on disk.

    With a subcommand, move a library between stores: `export` writes a collection to one file, `import` loads
    such a file into an embedded store or a Chroma server.

    \b
    Examples:
      soundlib library --json
      soundlib library export sfx.soundlib.zip --db ./sfx.chroma
      soundlib library import sfx.soundlib.zip --chroma-url http://127.0.0.1:8000
    """
    if ctx.invoked_subcommand is not None:
        return
    from soundlib.clikit import print_json, stdout_console
    from soundlib.store import open_store

    with open_store(db=db, url=chroma_url, collection=collection) as store:
        info = store.describe()
    if as_json:
        print_json({key: info[key] for key in ("collection", "model", "files", "windows", "categories")})
        return
    from rich.table import Table

    table = Table(title=f"library {info['collection']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("store", str(info["location"]))
    table.add_row("model", f"{info['model']} (sha256 {info['model_sha256'][:12]}, dim {info['dim']})")
    table.add_row("files", str(info["files"]))
    table.add_row("windows", str(info["windows"]))
    if info.get("size_bytes") is not None:
        table.add_row("size on disk", f"{info['size_bytes'] / 2**20:.1f} MiB")
    cats = Table(title="categories")
    cats.add_column("category")
    cats.add_column("files", justify="right")
    for name, n in sorted(info["categories"].items(), key=lambda kv: (-kv[1], kv[0])):
        cats.add_row(name, str(n))
    out = stdout_console()
    out.print(table)
    out.print(cats)


def _library_store_args(ctx, db, chroma_url, collection, as_json, debug):
    """A subcommand's store options, falling back to those given to `soundlib library` itself."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    return (db or parent.get("db"), chroma_url or parent.get("chroma_url"), collection or parent.get("collection"),
            as_json or bool(parent.get("as_json")), debug or bool(parent.get("debug")))


def _transfer_table(title, report):
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    rows = [("collection", report.collection), ("store", report.location), ("file", report.file),
            ("windows", str(report.windows)), ("files", str(report.files))]
    if report.new_windows is not None:
        rows += [("new windows", str(report.new_windows)), ("collection created", "yes" if report.created else "no")]
    rows += [("file size", f"{report.bytes / 2**20:.1f} MiB"), ("time", f"{report.seconds:.1f} s")]
    for row in rows:
        table.add_row(*row)
    return table


@library.command(name="export", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@store_options
@json_option
@debug_option
@click.pass_context
@handle_errors
def library_export(ctx, file, db, chroma_url, collection, as_json, debug):
    """Write a whole collection (embeddings, metadata, model) to FILE, to import elsewhere.

    Reads in batches (a 200k-window library never sits in memory); FILE appears only once complete.

    \b
    Examples:
      soundlib library export sfx.soundlib.zip
      soundlib library export sfx.soundlib.zip --db ./sfx.chroma --collection sounds
    """
    from soundlib.clikit import print_json, rich_progress, stdout_console
    from soundlib.store import open_store
    from soundlib.transfer import export_library

    db, chroma_url, collection, as_json, debug = _library_store_args(ctx, db, chroma_url, collection, as_json, debug)
    with open_store(db=db, url=chroma_url, collection=collection) as store:
        with rich_progress(enabled=not as_json) as progress:
            report = export_library(store, file, progress=progress)
    if as_json:
        print_json(report.to_json())
    else:
        stdout_console().print(_transfer_table(f"exported {report.collection}", report))


@library.command(name="import", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--root", "roots", multiple=True, metavar="OLD=NEW",
              help="Library root OLD is now at NEW (repeat for several), so a later `soundlib ingest NEW` "
                   "finds every file already there.")
@store_options
@json_option
@debug_option
@click.pass_context
@handle_errors
def library_import(ctx, file, roots, db, chroma_url, collection, as_json, debug):
    """Load an export FILE into a store: a new collection, or one built with the same model.

    The collection keeps its exported name unless --collection is given. Importing the same file again changes
    nothing; an interrupted import finishes when run again. A collection built with another model is refused.

    \b
    Examples:
      soundlib library import sfx.soundlib.zip --chroma-url http://127.0.0.1:8000
      soundlib library import sfx.soundlib.zip --db ./copy.chroma --root /home/me/sfx=/srv/sfx
    """
    from soundlib.clikit import print_json, rich_progress, stdout_console
    from soundlib.store import open_store, writer_lock
    from soundlib.transfer import import_library, parse_roots, read_manifest

    db, chroma_url, collection, as_json, debug = _library_store_args(ctx, db, chroma_url, collection, as_json, debug)
    rewrite = parse_roots(roots)
    manifest = read_manifest(file)  # a bad file fails before a store is touched
    with writer_lock(db, chroma_url, "library import"), \
            open_store(db=db, url=chroma_url, collection=collection or manifest["collection"], create=True) as store:
        with rich_progress(enabled=not as_json) as progress:
            report = import_library(file, store, roots=rewrite, progress=progress)
    if as_json:
        print_json(report.to_json())
    else:
        stdout_console().print(_transfer_table(f"imported into {report.collection}", report))


# --- evaluation (issue: eval) ------------------------------------------------------------------------------------

@main.command(name="eval", context_settings=CONTEXT)
@click.argument("list_path", type=click.Path())
@click.option("--model", "model_specs", multiple=True, metavar="CKPT", envvar="SOUNDLIB_MODEL",
              help="Model checkpoint; repeat to compare models side by side (default: the bundled model).")
@click.option("-k", "ks", default="1,5,10", show_default=True, metavar="K[,K...]", help="Cut-offs.")
@click.option("--library", default=None, metavar="NAME",
              help="Rank the files of this ingested collection instead of the list's own clips "
                   "(a row's own sample is the library file at its audio path).")
@click.option("--file-score", type=click.Choice(["best", "mean"]), default=None,
              help="How a whole-file row (no start) is scored: its best window, or the mean of its windows "
                   "[default: best].")
@click.option("--max-windows", type=click.IntRange(min=1), default=None,
              help="Windows embedded per whole file (default: the audio config's cap).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the recommendations per frame as JSON (knn, knn_dist, labels, ground truth; "
                   "with several models, one such object per model name).")
@click.option("--correlation", is_flag=True,
              help="Run the correlation task instead: balanced correlated/uncorrelated pairs from the list.")
@click.option("--val", "val_list", type=click.Path(), default=None,
              help="Validation list to fit the distance threshold of --correlation for models without a BCE head.")
@click.option("--seed", default=0, show_default=True, help="Seed of the negatives of --correlation.")
@store_options
@json_option
@debug_option
@handle_errors
def eval_cmd(list_path, model_specs, ks, library, file_score, max_windows, out, correlation, val_list, seed,
             db, chroma_url, collection, as_json, debug):
    """Top-k sample- and category-level accuracy (and chance, MRR) on a pair list.

    Each row's frame is a query; its own clip (sample) and category are the ground truth; the candidates are
    the list's distinct (audio, start) clips. Exit 1 if some rows were skipped, 2 if none could be scored.

    \b
    Examples:
      soundlib eval data/test.csv -k 1,5,10
      soundlib eval data/test.csv --model runs/m5/best.pt --model runs/m7/best.pt --json
      soundlib eval data/test.csv --correlation --val data/val.csv
    """
    import json
    import sys
    from pathlib import Path

    from soundlib import evaluate as ev
    from soundlib.clikit import (EXIT_BAD_INPUT, EXIT_PARTIAL, fail, print_json, rich_progress, stderr_console,
                                 stdout_console)
    from soundlib.metrics import parse_ks

    try:
        k_list = parse_ks(ks)
    except ValueError as e:
        fail(f"-k: {e}")
    if library and collection and library != collection:
        fail("--library and --collection name different collections; give one")
    library = library or collection
    err = stderr_console()
    with rich_progress(enabled=sys.stderr.isatty()) as progress:
        if correlation:
            if library or out:
                fail("--correlation does not take --library or --out")
            report = ev.evaluate_correlation(list_path, list(model_specs), val_path=val_list, seed=seed,
                                             file_score=file_score,
                                             max_windows=max_windows, progress=progress)
        else:
            report = ev.evaluate_list(list_path, list(model_specs), k_list,
                                      file_score=file_score, max_windows=max_windows,
                                      library=library, db=db, url=chroma_url, progress=progress)
    from soundlib.clikit import print_skipped

    for p in report.problems:
        print_skipped(err, f"{list_path}:{p.line}" if p.line else str(list_path), p.reason)
    scored = report.queries
    summary = f"{scored} of {report.rows} rows scored" + (f", {len(report.problems)} skipped" if report.problems else "")
    if scored == 0 or not report.models:
        why = ("no correlated/uncorrelated pairs can be built (each row needs a partner from another video and "
               "category)" if correlation and scored else "nothing could be scored")
        err.print(f"error: {why} ({summary})", highlight=False, markup=False)
        sys.exit(EXIT_BAD_INPUT)
    if out:
        try:
            Path(out).write_text(json.dumps(report.recommendations_json(), indent=2, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
        except OSError as e:
            fail(f"{out}: cannot write ({e.strerror or e})")
    if as_json:
        print_json(report.to_json())
    else:
        con = stdout_console()
        con.print(ev.correlation_table(report) if correlation else ev.retrieval_table(report))
        con.print(summary, highlight=False)
        if not correlation:
            low = [m for m in report.models if m.scores.agreement < 1.0]
            for m in low:
                con.print(f"note: {m.model}: Chroma's top-{k_list[-1]} matched the exact search on "
                          f"{100 * m.scores.agreement:.1f}% of results", highlight=False)
        if out:
            con.print(f"recommendations written to {out}", highlight=False)
    if report.problems:
        if as_json:
            err.print(summary, highlight=False)
        sys.exit(EXIT_PARTIAL)


if __name__ == "__main__":
    main()
