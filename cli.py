"""soundlib command line: Click commands only (parse, call the library, render with Rich).

Heavy imports (torch, chromadb, librosa) happen inside the commands, so ``soundlib --help`` answers fast.
"""

from __future__ import annotations

import click

from soundlib import config as lib
from soundlib.clikit import (debug_option, export_options, handle_errors, json_option, model_option,
                             norm_stats_option, reference_options, store_options, training_options)
from soundlib.serve.config import ServeConfig
from train import defaults as tr

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=110)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="soundlib")
def main() -> None:
    """soundlib: find the sounds that fit a picture or a video.

    \b
    Examples:
      soundlib prepare ./videos --out data/
      soundlib catalog --sounds ./sfx --images ./photos --out data/catalog
      soundlib train data/train.csv --val data/val.csv --model m5-attention-linear-infonce --out runs/m5
      soundlib adapt ./sfx --out sfx-ear.pt
      soundlib ingest ./sfx
      soundlib query frame.jpg -k 10
      soundlib serve --open
      soundlib eval data/test.csv
      soundlib loso --sounds ./sfx --images ./photos --out runs/loso
    """


# --- prepare / train (issue: training) --------------------------------------------------------------------------

@main.command(context_settings=CONTEXT)
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--fps", default=tr.DEFAULT_FPS, show_default=True, type=float, help="Frames per second to extract.")
@click.option("--split", "split_text", default=",".join(f"{x:g}" for x in tr.DEFAULT_SPLIT), show_default=True, metavar="TRAIN,VAL,TEST",
              help="Fractions of the pairs for train/val/test (assigned per video).")
@click.option("--labels", type=click.Path(dir_okay=False), default=None,
              help="CSV of video (file name, stem or id) -> category; fills the category column.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split.")
@click.option("--frame-size", default=tr.DEFAULT_FRAME_SIZE, show_default=True, type=int,
              help="Save frames with their shorter side scaled down to this (0 = as decoded).")
@click.option("--layout", type=click.Choice(tr.LAYOUTS), default=tr.LAYOUTS[0], show_default=True,
              help="soundlib: frames/, audio/, train/val/test.csv. reference: the paper's reference-code layout "
                   "(10-s clips <video>_<second>: frames_1fps/, audio/, lists/vggsound_*.txt, vid2aud_*.json, "
                   "labels2vid.json, vggsound_train_mean_var.npy, and the same lists as CSV).")
@click.option("--clip-seconds", default=None, type=click.IntRange(min=1),
              help=f"Clip length of the reference layout [default: {tr.DEFAULT_CLIP_SECONDS}].")
@json_option
@debug_option
@handle_errors
def prepare(videos, out, fps, split_text, labels, seed, frame_size, layout, clip_seconds, as_json, debug):
    """Extract 1-fps frames, 48 kHz audio and train/val/test pair lists (split by video) from VIDEOS.

    VIDEOS are files or folders (searched recursively). Videos without an audio track are skipped and reported;
    videos prepared by an earlier run into the same --out are not decoded again. Exit code 1 if any was skipped.

    With --layout reference, each video is cut into clips named <video>_<second> and written as the paper's
    reference code reads them; a clip's label is its video's --labels entry, else the video's subfolder name,
    else "unlabelled".

    \b
    Examples:
      soundlib prepare ./videos --out data/ --labels labels.csv
      soundlib prepare ./videos --out vgg/ --layout reference
      soundlib eval vgg/lists/vggsound_test.txt --model runs/m5    # frames_1fps/ and audio/ found next to lists/
    """
    import sys
    from pathlib import Path

    from soundlib.clikit import EXIT_PARTIAL, print_json, rich_progress, stdout_console
    from train.prepare import parse_split, prepare_videos

    split = parse_split(split_text)
    with rich_progress(enabled=not as_json) as progress:
        report = prepare_videos(videos, out, fps=fps, split=split, labels=labels, seed=seed,
                                frame_size=frame_size or None, progress=progress, layout=layout,
                                clip_seconds=clip_seconds)
    if as_json:
        print_json(report.to_dict())
    else:
        from rich.table import Table

        reference = report.layout == "reference"
        table = Table(title=f"prepare -> {report.out}" + (" (reference layout)" if reference else ""))
        for col in ("video", "status", "split", "seconds", "clips" if reference else "pairs", "category / reason"):
            table.add_column(col, justify="right" if col in ("seconds", "pairs", "clips") else "left")
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
                   "first train list, or <name>_val.txt for <name>_train.txt).")
@click.option("--model", "model_name", default=tr.DEFAULT_MODEL, show_default=True,
              help="Model configuration name (m1-baseline-linear-bce ... m7-attention-linear-ntxent, "
                   "pt-effnet-aisfx-infonce, pt-effnet-aisfx-bridge: the default's).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out (same settings).")
@click.option("--bridge-sounds", type=click.Path(), default=None, metavar="LIST",
              help="Sound list (audio,category: soundlib catalog's catalog_sounds.csv) the concept bridge's sound "
                   "classifier also learns from: every labelled sound, paired or not (pt-effnet-aisfx-bridge).")
@reference_options
@training_options
@json_option
@debug_option
@handle_errors
def train(train_lists, val_lists, model_name, out, resume, bridge_sounds, frames_root, audio_root, training, as_json,
          debug):
    """Train a model on pair lists (several TRAIN_LISTS are pooled); keeps best.pt (by the top-10 sample accuracy
    over all val rows, each ranked among its own list's samples), last.pt and metrics.csv.

    A list may also be in the paper's reference-code format (<video id>_<second>|<label> lines, see `soundlib eval
    --help`).

    \b
    Examples:
      soundlib train data/train.csv --val data/val.csv --model m5-attention-linear-infonce --out runs/m5 \\
        --width 0.25 --image-size 128 --epochs 10
      soundlib train catalog/catalog_train.csv real/train.csv --val catalog/catalog_val.csv \\
        --val real/val.csv --model pt-effnet-aisfx-bridge --bridge-sounds catalog/catalog_sounds.csv \\
        --out runs/default --epochs 6 --seed 1
      soundlib train vgg/lists/vggsound_train.txt --val vgg/lists/vggsound_val.txt --frames-root vgg/frames_1fps \\
        --audio-root vgg/audio --norm-stats vgg/lists/vggsound_train_mean_var.npy --out runs/vgg-m5
    """
    from pathlib import Path

    from soundlib.clikit import print_json, rich_progress, stdout_console
    from soundlib.errors import ListError
    from train.loop import train_model

    for path in train_lists:  # a missing train list is the first thing to say, before guessing a val list
        if not Path(path).is_file():
            raise ListError("list file not found", str(path))
    if not val_lists:
        first = Path(train_lists[0])
        guesses = [first.with_name("val.csv")]
        if first.stem.endswith("_train"):  # the reference layout: vggsound_train.txt -> vggsound_val.txt
            guesses.insert(0, first.with_name(first.stem[:-len("train")] + "val" + first.suffix))
        guess = next((g for g in guesses if g.is_file()), None)
        if guess is None:
            raise ListError(f"no --val given and no {' or '.join(g.name for g in guesses)} next to the train list",
                            str(train_lists[0]))
        val_lists = (str(guess),)
    from soundlib.clikit import reference_roots

    with rich_progress(enabled=not as_json) as progress:
        report = train_model(list(train_lists), list(val_lists), model_name, out, resume=resume, progress=progress,
                             roots=reference_roots(frames_root, audio_root), bridge_sounds=bridge_sounds,
                             **training.values)
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


@main.command(context_settings=CONTEXT)
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="CKPT",
              help="The adapted checkpoint to write.")
@click.option("--max-windows", type=click.IntRange(min=1), default=None,
              help="Windows read per file (default: the model's, as ingest).")
@click.option("--no-metadata", is_flag=True,
              help="Read only folder and file names, not the embedded title, description, keywords and CatID.")
@model_option
@json_option
@debug_option
@handle_errors
def adapt(folders, out, max_windows, no_metadata, model_spec, as_json, debug):
    """Teach a model's ear a studio's own library: its sound classifier is fitted again with every file whose words
    name a concept (dog_bark_03.wav, rain/heavy.wav, a BWF description "Large dog barking"), so the library's
    sounds, the unnamed ones too, are heard as its words say. Pictures read the same. Needs a bridged model saved
    with its fit set (the default is).

    Then ingest the library with the adapted model into its own collection; its queries use that model.

    \b
    Examples:
      soundlib adapt ./sfx --out sfx-ear.pt
      soundlib ingest ./sfx --model sfx-ear.pt --collection sfx
      soundlib query scene.jpg --collection sfx
    """
    import sys

    from soundlib.clikit import EXIT_PARTIAL, print_json, print_skipped, rich_progress, stderr_console, stdout_console
    from train.adapt import adapt_model

    with rich_progress(enabled=not as_json) as progress:
        report = adapt_model(model_spec, list(folders), out, max_windows=max_windows, progress=progress,
                             metadata=not no_metadata)
    err = stderr_console()
    for path, reason in report.skipped:
        print_skipped(err, path, reason)
    if report.caution:
        print_skipped(err, report.out, report.caution, label="warning")
    if as_json:
        print_json(report.to_json())
    else:
        from rich.table import Table

        table = Table(title=f"adapted to {report.named_files} named files of {report.files} -> {report.out}",
                      caption=f"{report.windows} windows learnt beside the model's {report.base_rows}, "
                              f"{report.seconds:.1f} s", caption_justify="left")
        table.add_column("concept the names name")
        table.add_column("files", justify="right")
        for concept, n in report.concepts.items():
            table.add_row(concept, str(n))
        con = stdout_console()
        con.print(table)
        con.print(f"next: soundlib ingest {' '.join(folders)} --model {report.out} --collection NAME",
                  highlight=False, markup=False, soft_wrap=True)
    if report.skipped:
        sys.exit(EXIT_PARTIAL)


@main.command(context_settings=CONTEXT)
@click.option("--map", "map_csv", default=str(tr.DEFAULT_MAP), show_default="data/catalog/category_map.csv",
              type=click.Path(dir_okay=False), help="Category map (CSV: concept, sound_patterns, image_patterns).")
@click.option("--sounds", "sound_roots", multiple=True, required=True, type=click.Path(), metavar="DIR",
              help="Sound folder, searched recursively; repeat for several.")
@click.option("--images", "image_roots", multiple=True, required=True, type=click.Path(), metavar="DIR",
              help="Image folder, searched recursively; repeat for several.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder of catalog_train.csv and catalog_val.csv.")
@click.option("--val-fraction", default=tr.DEFAULT_VAL_FRACTION, show_default=True,
              type=click.FloatRange(0, 1, max_open=True),
              help="Share of each concept's images and sounds held out for validation (by file).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and the pairing.")
@click.option("--pairs-per-image", default=tr.DEFAULT_PAIRS_PER_IMAGE, show_default=True,
              type=click.IntRange(min=1), help="Wanted uses of each image.")
@click.option("--pairs-per-sound", default=tr.DEFAULT_PAIRS_PER_SOUND, show_default=True,
              type=click.IntRange(min=1), help="Wanted uses of each sound.")
@click.option("--max-pairs", default=tr.DEFAULT_MAX_PAIRS_PER_CONCEPT, show_default=True,
              type=click.IntRange(min=1), help="Cap of a concept's train pairs (validation: scaled by the fraction).")
@click.option("--windows", default=tr.DEFAULT_CATALOG_WINDOWS, show_default=True, type=click.IntRange(min=1),
              help="Distinct 1-s windows per sound (more than 1 decodes every sound to find its loudest).")
@click.option("--min-split-items", default=tr.MIN_SPLIT_ITEMS, show_default=True, type=click.IntRange(min=2),
              help="Hold out files of a concept's modality only when it has this many.")
@click.option("--no-check", is_flag=True, help="Do not open every matched file first.")
@json_option
@debug_option
@handle_errors
def catalog(map_csv, sound_roots, image_roots, out, val_fraction, seed, pairs_per_image, pairs_per_sound,
            max_pairs, windows, min_split_items, no_check, as_json, debug):
    """Pair pictures and sounds of the same kind of thing from a reviewed category map (catalog pairs).

    Writes OUT/catalog_train.csv and OUT/catalog_val.csv (pair lists split by image and by sound file) for
    `soundlib train`. Files that cannot be decoded are left out and listed; map rows without pairs, patterns
    matching no file and the largest groups of unmapped sounds are reported for the map's review.

    \b
    Example:
      soundlib catalog --sounds media/sfx --images imagenet-samples --images cifar10-train --out data/catalog
    """
    from soundlib.cli_tables import catalog_remarks, catalog_summary, catalog_table
    from soundlib.clikit import print_skipped, rich_progress, stderr_console
    from train.catalog import build_catalog

    with rich_progress(enabled=not as_json) as progress:
        report = build_catalog(map_csv, sound_roots, image_roots, out, val_fraction=val_fraction, seed=seed,
                               pairs_per_image=pairs_per_image, pairs_per_sound=pairs_per_sound,
                               max_pairs_per_concept=max_pairs, windows=windows, min_split_items=min_split_items,
                               check_files=not no_check, progress=progress)
    for path, reason in report.skipped:
        print_skipped(stderr_console(), path, reason)
    _data_report(report, catalog_remarks(report), catalog_table, catalog_summary, as_json, width=120)


@main.command(context_settings=CONTEXT)
@click.option("--rcc", "rcc_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder holding the GCompris package's <activity>.rcc files.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder (gcompris_pairs.csv, gcompris_sounds.csv, gcompris_pictures.csv).")
@click.option("--concepts", default=str(tr.DEFAULT_GCOMPRIS_CONCEPTS), show_default="data/gcompris/sound_concepts.csv",
              type=click.Path(dir_okay=False), help="Reviewed table of the sounds' concepts.")
@click.option("--map", "map_csv", default=str(tr.DEFAULT_MAP), show_default="data/catalog/category_map.csv",
              type=click.Path(dir_okay=False), help="Catalog map (its concept names are the ones reused).")
@click.option("--no-check", is_flag=True, help="Do not open every sound and picture first.")
@json_option
@debug_option
@handle_errors
def gcompris(rcc_dir, out, concepts, map_csv, no_check, as_json, debug):
    """Build the GCompris evaluation set: pictures and sounds the activities show together, as pair lists.

    Extracts the activities named in the reviewed table from their .rcc archives, pairs pictures with sounds from
    the activities' own data files and renders the drawings. tools/get-gcompris.sh fetches the Debian package and
    runs this.

    \b
    Example:
      soundlib gcompris --rcc /tmp/gc/usr/share/gcompris-qt/rcc --out media/gcompris
    """
    from soundlib.cli_tables import gcompris_remarks, gcompris_summary, gcompris_table
    from soundlib.clikit import rich_progress
    from train.gcompris import build_gcompris

    with rich_progress(enabled=not as_json) as progress:
        report = build_gcompris(rcc_dir, out, concepts, map_csv, check_files=not no_check, progress=progress)
    _data_report(report, gcompris_remarks(report), gcompris_table, gcompris_summary, as_json)


@main.command(context_settings=CONTEXT)
@click.option("--svg", "svg_root", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="The SVG tree of the openclipart-svg package (usr/share/openclipart/svg).")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="DEST",
              help="Output folder (DEST/openclipart/<concept>/*.png and DEST/openclipart.csv).")
@click.option("--folders", default=str(tr.DEFAULT_DRAWING_FOLDERS),
              show_default="data/concepts/openclipart_folders.csv", type=click.Path(dir_okay=False),
              help="Which folders hold which concepts.")
@click.option("--words", default=str(tr.DEFAULT_DRAWING_WORDS), show_default="data/concepts/drawing_words.csv",
              type=click.Path(dir_okay=False), help="Words naming a concept in file names.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Torch CPU threads.")
@json_option
@debug_option
@handle_errors
def drawings(svg_root, out, folders, words, threads, as_json, debug):
    """Keep the openclipart drawings whose ImageNet concept agrees with their folder's concepts (catalog pictures).

    Renders each drawing of a listed folder, classifies it with EfficientNet-Lite0 and keeps it under its concept.
    tools/get-openclipart.sh fetches the Debian package and runs this.

    \b
    Example:
      soundlib drawings --svg /tmp/oc/usr/share/openclipart/svg --out media/drawings
    """
    import torch

    from soundlib.cli_tables import drawings_remarks, drawings_summary
    from soundlib.clikit import rich_progress
    from train.concept_images import keep_drawings

    torch.set_num_threads(threads)
    with rich_progress(enabled=not as_json) as progress:
        report = keep_drawings(svg_root, out, folders, words, progress=progress)
    _data_report(report, drawings_remarks(report), drawings_summary, lambda r: "", as_json)


def _data_report(report, remarks, table, summary, as_json, width=None):
    """A data builder's output: remarks on stderr, then its JSON document or its table and totals on stdout (at
    least ``width`` columns wide when stdout is a file or a pipe)."""
    from soundlib.clikit import print_json, stderr_console, stdout_console

    err = stderr_console()
    for line in remarks:
        err.print(line, highlight=False, soft_wrap=True)
    if as_json:
        print_json(report.to_dict())
        return
    con = stdout_console()
    if width and not con.is_terminal:
        from rich.console import Console

        con = Console(soft_wrap=False, width=width)
    con.print(table(report))
    if summary(report):
        con.print(summary(report), highlight=False, soft_wrap=True)


@main.command(context_settings=CONTEXT)
@click.option("--sounds", "sound_roots", multiple=True, required=True, type=click.Path(), metavar="DIR",
              help="Sound folder; each folder directly under it is a source (a package); repeat for several.")
@click.option("--images", "image_roots", multiple=True, required=True, type=click.Path(), metavar="DIR",
              help="Picture folder: one source when it holds pictures directly or in class folders, else each "
                   "folder under it is one; repeat for several.")
@click.option("--gcompris", "gcompris_dir", default=None, type=click.Path(file_okay=False), metavar="DEST",
              help="GCompris's lists (tools/get-gcompris.sh DEST): the source 'gcompris', a training source of the "
                   "folds that do not hold it out.")
@click.option("--folds", "folds_csv", default=str(tr.DEFAULT_FOLDS), show_default="data/loso/folds.csv",
              type=click.Path(dir_okay=False), help="Fold table (CSV: fold, pictures, sounds, note).")
@click.option("--fold", "fold_names", multiple=True, metavar="NAME",
              help="Run only this fold of the table; repeat for several (default: every fold).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: <fold>/ lists and <fold>/<model>/ runs (resumable).")
@click.option("--model", "models", multiple=True, default=tr.DEFAULT_LOSO_MODELS, show_default=True,
              metavar="NAME", help="Model configuration to train in every fold, with its recipe "
                                   "(train.defaults.RECIPES); repeat to compare models side by side.")
@click.option("--map", "map_csv", default=str(tr.DEFAULT_MAP), show_default="data/catalog/category_map.csv",
              type=click.Path(dir_okay=False), help="Category map of the catalog pairs.")
@click.option("-k", "ks", default=",".join(map(str, lib.DEFAULT_KS)), show_default=True, metavar="K[,K...]",
              help="Cut-offs.")
@training_options
@json_option
@debug_option
@handle_errors
def loso(sound_roots, image_roots, gcompris_dir, folds_csv, fold_names, out, models, map_csv, ks, training, as_json,
         debug):
    """Leave-one-source-out evaluation: for each fold, train on every source but the fold's and test on its
    held-out pictures and sounds; one table per model (folds, mean, chance).

    Each model trains with its recipe (train.defaults.RECIPES: the default model's recipe of
    tools/train_default.sh, the paper's m5 and m1 at width 0.25, 96 px, 4 epochs); a training option given here
    overrides it for every model. The catalog's own validation split (training sources only) picks the
    checkpoint. A second run with the same --out reuses the lists, continues interrupted runs and does not
    redo finished ones. Exit 1 if some fold or run failed.

    \b
    Examples:
      soundlib loso --sounds media/sfx --sounds media2/sfx --images imagenet-samples --images cifar10-train \\
        --images media/images --images media2/images --gcompris gcompris --out runs/loso --threads 1
      soundlib loso ... --out runs/loso --model pt-effnet-aisfx-bridge --model m5-attention-linear-infonce \\
        --model m1-baseline-linear-bce --fold scratch --json
    """
    import sys

    from soundlib.cli_tables import loso_comparison, loso_concepts_table, loso_remarks, loso_table
    from soundlib.clikit import EXIT_PARTIAL, fail, print_json, rich_progress, stderr_console, stdout_console
    from soundlib.metrics import parse_ks
    from train.loso import LosoMedia, read_folds, recipe, run_loso, select_folds

    try:
        k_list = parse_ks(ks)
    except ValueError as e:
        fail(f"-k: {e}")
    folds = select_folds(read_folds(folds_csv), fold_names)
    media = LosoMedia.of(sound_roots, image_roots, gcompris_dir)
    recipes = [recipe(m, training.given_values(), defaults=training.values) for m in dict.fromkeys(models)]
    with rich_progress(enabled=not as_json) as progress:
        report = run_loso(folds, media, out, recipes, map_csv=map_csv, ks=k_list, progress=progress)
    err = stderr_console()
    for line in loso_remarks(report):
        err.print(line, highlight=False, soft_wrap=True)
    if as_json:
        print_json(report.to_dict())
    else:
        con = stdout_console()
        if not con.is_terminal:  # a file or a pipe: wide enough for the figures
            from rich.console import Console

            con = Console(soft_wrap=False, width=150)
        for r in report.recipes:
            con.print(loso_table(report, r.model))
            named = loso_concepts_table(report, r.model)
            if named is not None:
                con.print(named)
        if len(report.recipes) > 1:
            con.print(loso_comparison(report))
    if report.failed:
        sys.exit(EXIT_PARTIAL)


# --- the sound library (issue: library) --------------------------------------------------------------------------

@main.command(context_settings=CONTEXT)
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@click.option("--max-windows", default=None, type=click.IntRange(min=0), metavar="N",
              help="1-second windows per file at most, sampled evenly over longer files (default 30; 0 = all).")
@click.option("--prune", is_flag=True, help="Remove stored files under FOLDERS that are gone from disk.")
@click.option("--batch-size", default=lib.INFERENCE_BATCH, show_default=True, type=click.IntRange(min=1), help="Windows per model call.")
@click.option("--write-batch", default=None, type=click.IntRange(min=1), metavar="N",
              help="Windows per store write (default: the store's maximum). Completed files are also written "
                   "every few seconds, so a crash loses little work.")
@click.option("--category-from", type=click.Choice(["auto", "first", "parent", "path", "ucs"]), default=None,
              help="How a sound's category is named: auto = the UCS CatID of the file name (DOORWood_...), else "
                   "the folder path below the root; first / parent folder; path; ucs. Default: the rule the "
                   "collection was built with, else auto. Changing it rewrites metadata only (no embedding).")
@click.option("--no-metadata", is_flag=True,
              help="Do not read embedded tags (BWF bext, iXML, RIFF INFO, ID3, Vorbis, MP4) nor measure loudness.")
@click.option("--no-names", is_flag=True,
              help="Embed the audio alone: do not mix the concepts a file's name, folders and embedded description "
                   "name (dog, rain, piano...) into its vector. Files stored under the other choice are embedded "
                   "again.")
@model_option
@store_options
@json_option
@debug_option
@handle_errors
def ingest(folders, max_windows, prune, batch_size, write_batch, category_from, no_metadata, no_names, model_spec,
           db, chroma_url, collection, as_json, debug):
    """Embed every sound file under FOLDERS into a persistent Chroma collection.

    A sound's category follows --category-from; its embedded description, keywords, title, artist, library,
    channels, peak (dBFS) and loudness (LUFS) are stored with it. With the default (bridged) model, the concepts
    its name, folders, title, description, keywords and CatID name (Dog_Bark_03.wav: dog) count for half of its
    concept part, the audio for the rest. Incremental: unchanged files are not decoded
    again, changed files are replaced as a whole; an existing collection is ingested with the model it was built
    with unless --model is given. Files that cannot be read are listed; exit code 1 if any
    (a file whose tags cannot be read is still ingested, with a warning). Ctrl-C stops after the batch in flight
    (what is complete is kept; run again to finish).

    \b
    Examples:
      soundlib ingest ./sfx
      soundlib ingest ./sfx --category-from first      # relabel an existing library: no embedding
      soundlib ingest ./sfx --no-names                 # the audio alone: names and tags do not count
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
        loaded = load_model(model_spec) if model_spec else None  # a bad --model fails before a store is made
        with open_store(db=db, url=chroma_url, collection=collection, create=True) as store:
            # an existing collection keeps its model (an adapted one too) unless --model says otherwise
            loaded = loaded or load_model(store.recorded_model_path())
            store.write_batch = write_batch
            with graceful_interrupt() as stop, rich_progress(enabled=not as_json) as progress:
                report = run_ingest(folders, loaded, store, max_windows=max_windows, prune=prune,
                                    progress=progress, batch_size=batch_size, stop=stop,
                                    category_from=category_from, metadata=not no_metadata, names=not no_names)

    from soundlib.clikit import print_skipped

    err = stderr_console()
    for path, reason in report.skipped:
        print_skipped(err, path, reason)
    for path, reason in report.warnings:
        print_skipped(err, path, reason, label="warning")
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
                         ("removed", report.removed), ("skipped", len(report.skipped)),
                         ("relabelled (metadata only)", report.relabelled),
                         ("described (metadata only)", report.described),
                         ("remixed (names, no decoding)", report.remixed)):
            table.add_row(label, str(n))
        table.add_section()
        table.add_row("windows written", str(report.windows))
        table.add_row("time", f"{report.seconds:.1f} s")
        table.add_row("windows/s", f"{report.windows_per_s:.1f}")
        table.add_row("category rule", report.category_from)
        stdout_console().print(table)
    if report.interrupted:
        sys.exit(130)
    if report.skipped:
        sys.exit(EXIT_PARTIAL)


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("-k", "k", default=lib.DEFAULT_K, show_default=True, type=click.IntRange(min=1),
              help="Number of sounds (distinct files).")
@click.option("--as", "as_words", default=None, metavar="WORDS",
              help="Say what the picture (or sound) is, e.g. --as horse when it was read as something else: the "
                   "concepts these words name replace what the model read. Without INPUTS the words alone rank "
                   "the library.")
@click.option("--category", "categories", multiple=True, metavar="NAME",
              help="Only sounds of this category, at any level (`wolf` finds widelands/wolf; repeat for several).")
@click.option("--text", default=None, metavar="WORDS",
              help="Only sounds that have all these words (name, folders, description, keywords), ranked by the picture.")
@click.option("--per-frame", is_flag=True, help="Also rank every picture / video frame / sound window on its own.")
@click.option("--no-names", is_flag=True,
              help="Ignore what the inputs' file names say. By default a name that names a concept (horse.png, "
                   "thunder.mp4) gets half of the query's concepts, as ingest does for the library's names.")
@export_options
@click.option("--explain", "explain_out", default=None, type=click.Path(dir_okay=False), metavar="OUT.png",
              help="Write a heatmap of where the top sound is in the picture (one picture only).")
@model_option
@store_options
@json_option
@debug_option
@handle_errors
def query(inputs, k, as_words, categories, text, per_frame, no_names, export_dir, clip, explain_out, model_spec, db,
          chroma_url, collection, as_json, debug):
    """Recommend sounds for images, a folder of images, a video, or a sound.

    Several pictures (or the 1-fps frames of a video) give one ranking for the whole scene. A sound gives
    "more like this" (the sound itself first when it is in the library). Under each ranking, what the picture
    was read as; when that is wrong (a cartoon horse read as a book), --as says what it is. What an input's file
    name names (horse.png) counts for half of its concepts, as for the library's sounds; --no-names ignores it.
    The "is it" column marks the results named or heard as what the ranking looked for, and the caption says
    when none is: the library may lack it. Without --model, the model the collection was built with is used when
    its checkpoint is still where it was.

    \b
    Examples:
      soundlib query frame.jpg -k 10
      soundlib query clip.mp4 --category rain --category wind --json
      soundlib query frame.jpg --text "wood" --export picks/ --clip 2
      soundlib query ./sfx/dogs/bark.wav -k 5
      soundlib query dog.jpg --explain dog-heat.png
      soundlib query cartoon-horse.png --as horse
      soundlib query --as "dog" -k 20
      soundlib query horse.png --no-names        # the picture alone, not what its name says
    """
    from soundlib.clikit import fail, print_json, rich_progress, stdout_console
    from soundlib.media import media_kind
    from soundlib.models import load_model
    from soundlib.recommend import classify_inputs, recommend
    from soundlib.store import open_store

    if not inputs and as_words is None:
        raise click.UsageError("give pictures, a video or sounds (INPUTS), or --as WORDS")
    classify_inputs(inputs)  # a missing or unknown input fails here, before chromadb and torch are imported
    _check_export(export_dir, clip)
    if explain_out and (len(inputs) != 1 or media_kind(inputs[0]) != "image"):
        fail("--explain takes exactly one picture")
    if explain_out:
        from pathlib import Path

        folder = Path(explain_out).expanduser().absolute().parent
        if not folder.is_dir():  # before the model loads
            fail(f"{explain_out}: cannot write (no folder {folder})")
    explained = None
    with open_store(db=db, url=chroma_url, collection=collection) as store:
        loaded = load_model(model_spec or store.recorded_model_path())
        with rich_progress(enabled=not as_json) as progress:
            result = recommend(inputs, loaded, store, k=k, categories=categories, per_frame=per_frame,
                               progress=progress, text=text, as_words=as_words,
                               names=not no_names)
        if explain_out and result.results:
            from soundlib.explain import explain_file

            top = result.results[0]
            _, vectors, _ = store.windows(ids=[top.id])
            exp = explain_file(loaded, inputs[0], vectors[0] if len(vectors) else None, explain_out)
            explained = {"path": str(explain_out), "sound": top.path, "start": round(top.start, 3),
                         "method": exp.method}
    doc = result.to_json()
    label = " ".join(map(str, inputs)) or f"--as {as_words}"
    report = _export(result.results, label, export_dir, clip, as_json) if export_dir else None
    if as_json:
        if report is not None:
            doc["export"] = report.to_json()
        if explained:
            doc["explain"] = explained
        print_json(doc)
        _export_exit(report)
        return
    from soundlib.read_as import read_as_text

    out = stdout_console()
    for f in result.frames or []:
        where = f" @ {f.time:.1f} s" if media_kind(f.input) in ("video", "audio") else ""
        out.print(_ranking(f"{f.input}{where}", f.results, caption=read_as_text(f.read_as)))
    combined = "combined ranking: " if result.frames else ""
    out.print(_ranking(combined + (", ".join(result.inputs) or f"--as {as_words}"), result.results,
                       caption=result.caption(), fits=result.fits))
    if explained:
        out.print(f"heatmap of {_display_path(explained['sound'])} @ {explained['start']:.1f} s "
                  f"({explained['method']}) -> {explained['path']}", highlight=False, markup=False)
    _export_exit(report)


def _ranking(title, hits, score="distance", caption="", fits=None):
    """A Rich table of a ranking (``Hit`` or ``WordHit``): file, category, start, score, and when any result has
    them its description and the concepts its words named (``named``: ingest mixed them into its vector);
    ``caption`` under it (what the query was read as); ``fits`` (one bool per hit): an "is it" column marking the
    results named or heard as what the ranking looked for (what the user said, or what the query was read as)."""
    from rich.table import Table

    table = Table(title=title, caption=caption or None, caption_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("file", overflow="fold")
    table.add_column("category")
    table.add_column("start (s)", justify="right")
    table.add_column(score, justify="right")
    # the description and named columns only where some result has one (a narrow terminal keeps the paths)
    extra = [(key, title, width) for key, title, width in (("description", "description", 50),
                                                            ("named_concepts", "named", 24))
             if any(h.metadata.get(key) for h in hits)]
    for _, title, width in extra:
        table.add_column(title, overflow="fold", max_width=width)
    if fits is not None:
        table.add_column("is it", justify="center")
    for i, h in enumerate(hits, 1):
        value = getattr(h, "distance", None)
        value = f"{value:.4f}" if value is not None else f"{h.score:.3f}"
        table.add_row(str(i), _display_path(h.path), h.category, f"{h.start:.1f}", value,
                      *(str(h.metadata.get(key, "")) for key, _, _ in extra),
                      *(("✓" if fits[i - 1] else "",) if fits is not None else ()))
    return table


def _check_export(export_dir, clip):
    """--clip needs --export; a bad export folder fails before the work."""
    if clip is not None and export_dir is None:
        raise click.UsageError("--clip needs --export DIR")
    if export_dir is not None:
        from soundlib.picks import check_export_dir

        check_export_dir(export_dir)


def _export(hits, query_text, export_dir, clip, as_json):
    """Export a ranking's files (soundlib.picks); prints one line per skipped pick and a summary on stderr."""
    from pathlib import Path

    from soundlib.clikit import print_skipped, stderr_console
    from soundlib.picks import Pick, export_picks

    picks = [Pick(Path(h.path), float(h.start), float(h.distance if hasattr(h, "distance") else h.score),
                  query_text, h.category or None, str(h.metadata.get("description", "")) or None) for h in hits]
    report = export_picks(picks, export_dir, clip=clip)
    err = stderr_console()
    for path, reason in report.skipped:
        print_skipped(err, path, reason)
    if not as_json:
        err.print(f"exported {len({e.file for e in report.picks})} file(s) to {report.dest}: "
                  f"{', '.join(report.listings)}", highlight=False, markup=False, soft_wrap=True)
    return report


def _export_exit(report):
    import sys

    from soundlib.clikit import EXIT_PARTIAL

    if report is not None and report.skipped:
        sys.exit(EXIT_PARTIAL)


@main.command(context_settings=CONTEXT)
@click.argument("words", nargs=-1, required=True)
@click.option("-k", "k", default=lib.DEFAULT_K, show_default=True, type=click.IntRange(min=1), help="Number of sounds.")
@click.option("--category", "categories", multiple=True, metavar="NAME",
              help="Only sounds of this category, at any level (repeat for several).")
@export_options
@store_options
@json_option
@debug_option
@handle_errors
def search(words, k, categories, export_dir, clip, db, chroma_url, collection, as_json, debug):
    """Find sounds by words: in their names, folders, description and keywords (BM25 ranking; no model needed).

    Files with more of the words come first. Words are matched whole, ignoring case and a plural s
    (`doors` finds `door`); camel case is split (`DOORWood` is `door` + `wood`).

    \b
    Examples:
      soundlib search door creak
      soundlib search "wolf howl" -k 20 --category widelands --json
      soundlib search rain --export picks/
    """
    from soundlib.clikit import print_json, stdout_console
    from soundlib.store import open_store
    from soundlib.words import search_words

    text = " ".join(words)
    _check_export(export_dir, clip)
    with open_store(db=db, url=chroma_url, collection=collection) as store:
        hits = search_words(store, text, k=k, categories=categories)
    report = _export(hits, text, export_dir, clip, as_json) if export_dir else None
    if as_json:
        from soundlib.recommend import file_info

        doc = {"query": text, "k": k, "results": [
            {"rank": i + 1, "path": h.path, "category": h.category, "score": round(h.score, 6), "matched": h.matched,
             "description": str(h.metadata.get("description", "")), "info": file_info(h.metadata)}
            for i, h in enumerate(hits)]}
        if report is not None:
            doc["export"] = report.to_json()
        print_json(doc)
    else:
        stdout_console().print(_ranking(f"search: {text}", hits, score="score"))
    _export_exit(report)


@main.command(context_settings=CONTEXT)
@click.option("--host", default=ServeConfig.host, show_default=True,
              help="Address to listen on. Anything but loopback needs $SOUNDLIB_SERVE_TOKEN (the page asks for it).")
@click.option("--port", default=ServeConfig.port, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@model_option
@store_options
@debug_option
@handle_errors
def serve(host, port, open_browser, model_spec, db, chroma_url, collection, debug):
    """Serve a web page to search the library by picture or video: waveforms, audition, heatmaps, picks.

    One process: the model is loaded once and queries are answered warm. The page only reads the collection.
    Binds 127.0.0.1 by default; any other --host needs $SOUNDLIB_SERVE_TOKEN (open /?token=... once).

    \b
    Examples:
      soundlib serve --db .demo-store --collection demo --open
      SOUNDLIB_SERVE_TOKEN=$(openssl rand -hex 16) soundlib serve --host 0.0.0.0 --port 8765
    """
    import os

    from soundlib.clikit import stderr_console
    from soundlib.serve.config import TOKEN_ENV, ServeConfig
    from soundlib.serve.security import check_bind

    token = os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)  # before anything loads
    from soundlib.models import load_model
    from soundlib.serve.app import create_app, listen, run
    from soundlib.serve.engine import Engine
    from soundlib.store import open_store

    sock = listen(host, port)
    with open_store(db=db, url=chroma_url, collection=collection) as store:
        loaded = load_model(model_spec or store.recorded_model_path())
        engine = Engine(loaded, store, ServeConfig(host=host, port=port))
        app = create_app(engine, token=token)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound}/"
        info = engine.info()
        stderr_console().print(f"soundlib serve: {url} ({info['collection']}: {info['files']} sounds, model "
                               f"{info['model']}{'; token required' if token else ''}); Ctrl-C stops",
                               highlight=False, markup=False, soft_wrap=True)
        if open_browser:
            import threading
            import webbrowser

            threading.Timer(0.5, webbrowser.open, args=(url,)).start()
        run(app, sock)


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
    """Show what a collection holds: files, windows, categories with counts, model, size on disk, and how many
    files their words named (dog, rain...: those words count in picture queries).

    With a subcommand: `words` lists the words of the files whose words named nothing (to add to your own words
    table); `concepts` which concepts the library holds, by name and by ear; `export` writes a collection to one
    file, `import` loads such a file into an embedded store or a Chroma server.

    \b
    Examples:
      soundlib library --json
      soundlib library words
      soundlib library concepts
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
        print_json({key: info[key] for key in ("collection", "model", "model_sha256", "model_path", "files",
                                               "windows", "categories", "category_from", "names") if key in info})
        return
    from rich.table import Table

    table = Table(title=f"library {info['collection']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("store", str(info["location"]))
    table.add_row("model", f"{info['model']} (sha256 {info['model_sha256'][:12]}, dim {info['dim']})")
    if info.get("model_path"):  # the checkpoint later queries load (the bundled default, or an adapted model)
        table.add_row("model file", _display_path(str(info["model_path"])))
    table.add_row("files", str(info["files"]))
    table.add_row("windows", str(info["windows"]))
    table.add_row("category rule", str(info.get("category_from") or "first (before rules existed)"))
    if "names" in info:  # files whose words name a concept count it in picture queries
        names = info["names"]
        unnamed = names["mixed_files"] - names["named_files"]
        table.add_row("named by their words", f"{names['named_files']} of {names['mixed_files']} files"
                      + (" (`soundlib library words`: what the others say)" if unnamed else ""))
    if info.get("size_bytes") is not None:
        table.add_row("size on disk", f"{info['size_bytes'] / 2**20:.1f} MiB")
    cats = Table(title="categories")
    cats.add_column("category")
    cats.add_column("files", justify="right")
    for name, n in sorted(info["categories"].items(), key=lambda kv: (-kv[1], kv[0])):
        cats.add_row(name or "(none)", str(n))
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


@library.command(name="words", context_settings=CONTEXT)
@click.option("-n", "limit", default=40, show_default=True, type=click.IntRange(min=1), help="Words listed at most.")
@store_options
@json_option
@debug_option
@click.pass_context
@handle_errors
def library_words(ctx, limit, db, chroma_url, collection, as_json, debug):
    """List the words of the files whose words named no concept (dog, rain...), by how many such files carry them.

    Those files keep the audio alone in picture queries. Put the words that mean a concept into a words table of
    your own (`concept,words` rows, named by $SOUNDLIB_WORDS; see README) and ingest again: those files are then
    remixed from the store in seconds, without decoding.

    \b
    Examples:
      soundlib library words
      soundlib library words -n 100 --json --db ./sfx.chroma
    """
    from soundlib.clikit import print_json, stdout_console
    from soundlib.name_coverage import unnamed_words
    from soundlib.store import open_store

    db, chroma_url, collection, as_json, debug = _library_store_args(ctx, db, chroma_url, collection, as_json, debug)
    with open_store(db=db, url=chroma_url, collection=collection) as store:
        report = unnamed_words(store, limit)
    if as_json:
        print_json(report.to_json())
        return
    from rich.table import Table

    out = stdout_console()
    if not report.mixed_files:
        out.print("no file of this collection was mixed with its words (ingest --no-names, or a model without a "
                  "concept bridge)", highlight=False, markup=False, soft_wrap=True)
        return
    if not report.words:
        out.print(f"{report.unnamed_files} of {report.mixed_files} files named no concept"
                  + (", and their words are none worth listing" if report.unnamed_files else
                     ": every file's words named one"), highlight=False, markup=False, soft_wrap=True)
        return
    table = Table(title=f"words of the {report.unnamed_files} of {report.mixed_files} files whose words named "
                        f"no concept")
    table.add_column("word")
    table.add_column("files", justify="right")
    table.add_column("for example", overflow="fold")
    for w in report.words:
        table.add_row(w.word, str(w.files), w.example)
    out.print(table)


@library.command(name="concepts", context_settings=CONTEXT)
@click.option("-n", "limit", default=40, show_default=True, type=click.IntRange(min=1),
              help="Concepts listed at most (--json lists all).")
@model_option
@store_options
@json_option
@debug_option
@click.pass_context
@handle_errors
def library_concepts(ctx, limit, model_spec, db, chroma_url, collection, as_json, debug):
    """List which concepts the library holds: how many files their words named each (dog, rain...), and how many
    the audio alone is heard as (the model's ear, its name's half taken back out), and which concepts it has none of.

    `query --as WORDS` finds what the library holds; for a concept it lacks (no file named or heard as it), the
    ranking is made of other concepts' leftovers. Nothing is decoded: the stored vectors are read.

    \b
    Examples:
      soundlib library concepts
      soundlib library concepts -n 200 --json --db ./sfx.chroma
    """
    from soundlib.clikit import print_json, rich_progress, stdout_console
    from soundlib.concept_coverage import concept_coverage
    from soundlib.models import load_model
    from soundlib.store import open_store

    db, chroma_url, collection, as_json, debug = _library_store_args(ctx, db, chroma_url, collection, as_json, debug)
    with open_store(db=db, url=chroma_url, collection=collection) as store:
        store.require()
        loaded = load_model(model_spec or store.recorded_model_path())
        store.check_model(loaded)
        with rich_progress(enabled=not as_json) as progress:
            report = concept_coverage(store, loaded.model, progress)
    if as_json:
        print_json(report.to_json())
        return
    from rich.table import Table

    absent = report.absent
    listed = [c for c in report.concepts if c.named or c.heard][:limit]
    caption = (f"none named or heard ({len(absent)}): " + ", ".join(absent)) if absent else "every concept is here"
    table = Table(title=f"concepts of {report.files} files", caption=caption, caption_justify="left")
    table.add_column("concept")
    table.add_column("named", justify="right")
    table.add_column("heard (audio alone)", justify="right")
    table.add_column("for example", overflow="fold")
    for c in listed:
        table.add_row(c.concept, str(c.named), str(c.heard), c.example)
    stdout_console().print(table)


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
@click.option("--model", "model_specs", multiple=True, metavar="CKPT", envvar=lib.MODEL_ENV,
              help="Model checkpoint; repeat to compare models side by side (default: the bundled model).")
@click.option("-k", "ks", default=",".join(map(str, lib.DEFAULT_KS)), show_default=True, metavar="K[,K...]", help="Cut-offs.")
@click.option("--library", default=None, metavar="NAME",
              help="Rank the files of this ingested collection instead of the list's own clips "
                   "(a row's own sample is the library file at its audio path).")
@click.option("--file-score", type=click.Choice(lib.FILE_SCORES), default=None,
              help="How a whole-file row (no start) is scored: its best window, or the mean of its windows "
                   f"[default: {lib.DEFAULT_FILE_SCORE}].")
@click.option("--max-windows", type=click.IntRange(min=1), default=None,
              help="Windows embedded per whole file (default: the audio config's cap).")
@click.option("--candidates", "candidates", type=click.Path(), default=None, metavar="SOUNDS.csv",
              help="More candidates: a CSV with an audio column and an optional category column (paths relative "
                   "to it) whose sound files are ranked with the list's clips (chance counts them too).")
@click.option("--names", is_flag=True,
              help="Mix the concepts each sound's path names into it, as ingest does (bridged models; the path "
                   "below the sounds' common folder). Default: the audio alone, the model's own figures.")
@click.option("--as-category", is_flag=True,
              help="Tell each picture its row's category, as `query --as CATEGORY` does (bridged models): what a "
                   "user who says what each picture is gets, not the model's own figures.")
@click.option("--picture-names", is_flag=True,
              help="Mix what each picture's file name names into it, as `query` does (bridged models): what a user "
                   "whose pictures are well named gets, not the model's own figures.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the recommendations per frame as JSON (knn, knn_dist, labels, ground truth; "
                   "with several models, one such object per model name).")
@click.option("--correlation", is_flag=True,
              help="Run the correlation task instead: balanced correlated/uncorrelated pairs from the list.")
@click.option("--val", "val_list", type=click.Path(), default=None,
              help="Validation list to fit the distance threshold of --correlation for models without a BCE head.")
@click.option("--pairs", "pairs_json", type=click.Path(dir_okay=False), default=None, metavar="VID2AUD.json",
              help="With --correlation: take the pairs from the reference code's vid2aud_<split>.json (a positive "
                   "from pos_aud and a negative from neg_aud per clip id) instead of building them.")
@click.option("--val-pairs", "val_pairs_json", type=click.Path(dir_okay=False), default=None,
              metavar="VID2AUD.json", help="The same for the --val list.")
@click.option("--seed", default=0, show_default=True, help="Seed of the negatives of --correlation.")
@reference_options
@norm_stats_option
@store_options
@json_option
@debug_option
@handle_errors
def eval_cmd(list_path, model_specs, ks, library, file_score, max_windows, candidates, names, as_category,
             picture_names, out,
             correlation, val_list, pairs_json, val_pairs_json, seed, frames_root, audio_root, norm_stats, db,
             chroma_url, collection, as_json, debug):
    """Top-k sample- and category-level accuracy (and chance, MRR) on a pair list.

    Each row's frame is a query; its own clip (sample) and category are the ground truth; the candidates are
    the list's distinct (audio, start) clips, plus the sounds of --candidates. Exit 1 if some rows (or
    candidates) were skipped, 2 if none could be scored.

    The list is CSV, or the paper's reference-code format (one <video id>_<second>|<label> per line, no header):
    its frame is frames_1fps/<id>/image_005.jpg (image_001.jpg when there is none), its clip the 1-s window of
    <audio root>/<id>.<ext> at that frame's second.

    \b
    Examples:
      soundlib eval data/test.csv -k 1,5,10
      soundlib eval data/test.csv --model runs/m5/best.pt --model runs/m7/best.pt --json
      soundlib eval data/test.csv --correlation --val data/val.csv
      soundlib eval loso/scratch/test.csv --candidates loso/scratch/candidates.csv
      soundlib eval loso/scratch/test.csv --candidates loso/scratch/candidates.csv --names
      soundlib eval loso/scratch/test.csv --candidates loso/scratch/candidates.csv --as-category
      soundlib eval loso/scratch/test.csv --candidates loso/scratch/candidates.csv --picture-names --names
      soundlib eval vgg/lists/vggsound_test.txt --frames-root vgg/frames_1fps --audio-root vgg/audio \\
        --model runs/m5 --norm-stats vgg/lists/vggsound_train_mean_var.npy
      soundlib eval vgg/lists/vggsound_test.txt --correlation --pairs vgg/lists/vid2aud_test.json \\
        --val vgg/lists/vggsound_val.txt --val-pairs vgg/lists/vid2aud_val.json --model runs/m5
    """
    import json
    import sys
    from pathlib import Path

    from soundlib.cli_tables import correlation_table, retrieval_table
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
    if (pairs_json or val_pairs_json) and not correlation:
        fail("--pairs and --val-pairs go with --correlation")
    from soundlib.clikit import reference_roots

    roots = reference_roots(frames_root, audio_root)
    err = stderr_console()
    with rich_progress(enabled=sys.stderr.isatty()) as progress:
        if correlation:
            if library or out or candidates or names or as_category or picture_names:
                fail("--correlation does not take --library, --candidates, --names, --as-category, "
                     "--picture-names or --out")
            from soundlib.evaluation.correlation import evaluate_correlation

            report = evaluate_correlation(list_path, list(model_specs), val_path=val_list, seed=seed,
                                          file_score=file_score, max_windows=max_windows, progress=progress,
                                          roots=roots, norm_stats=norm_stats, pairs_json=pairs_json,
                                          val_pairs_json=val_pairs_json)
        else:
            from soundlib.evaluation.retrieval import evaluate_list

            report = evaluate_list(list_path, list(model_specs), k_list,
                                   file_score=file_score, max_windows=max_windows,
                                   library=library, db=db, url=chroma_url, progress=progress,
                                   roots=roots, norm_stats=norm_stats, candidates=candidates, names=names,
                                   as_category=as_category, picture_names=picture_names)
    from soundlib.clikit import print_skipped

    for p in report.problems:
        print_skipped(err, f"{list_path}:{p.line}" if p.line else str(list_path), p.reason)
    scored = report.queries
    summary = f"{scored} of {report.rows} rows scored" + (f", {len(report.problems)} skipped" if report.problems else "")
    if getattr(report, "told", None) is not None:
        summary += f"; {report.told} pictures told their category (--as-category)"
    if getattr(report, "picture_names", None) is not None:
        summary += f"; {report.picture_names} pictures named a concept (--picture-names)"
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
        con.print(correlation_table(report) if correlation else retrieval_table(report))
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
