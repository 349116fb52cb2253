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


def _not_built(name: str) -> None:
    from soundlib.errors import SoundlibError

    raise SoundlibError(f"`soundlib {name}` is not built yet")


# --- prepare / train (issue: training) --------------------------------------------------------------------------

@main.command(context_settings=CONTEXT)
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@json_option
@debug_option
@handle_errors
def prepare(videos, out, as_json, debug):
    """Extract 1-fps frames, 1-s audio and pair lists from VIDEOS.

    \b
    Example:
      soundlib prepare ./videos --out data/
    """
    _not_built("prepare")


@main.command(context_settings=CONTEXT)
@click.argument("train_list", type=click.Path())
@click.option("--val", "val_list", type=click.Path(), help="Validation list.")
@click.option("--model", "model_name", default="m5-attention-linear-infonce", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@json_option
@debug_option
@handle_errors
def train(train_list, val_list, model_name, out, as_json, debug):
    """Train a model on a pair list.

    \b
    Example:
      soundlib train data/train.csv --val data/val.csv --model m5-attention-linear-infonce --out runs/m5
    """
    _not_built("train")


# --- the sound library (issue: library) --------------------------------------------------------------------------

@main.command(context_settings=CONTEXT)
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@model_option
@store_options
@json_option
@debug_option
@handle_errors
def ingest(folders, model_spec, db, chroma_url, collection, as_json, debug):
    """Embed every sound file under FOLDERS into a persistent Chroma collection.

    \b
    Example:
      soundlib ingest ./sfx
    """
    _not_built("ingest")


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-k", "k", default=10, show_default=True, help="Number of sounds.")
@model_option
@store_options
@json_option
@debug_option
@handle_errors
def query(inputs, k, model_spec, db, chroma_url, collection, as_json, debug):
    """Recommend sounds for images, a folder of images, a video, or a sound.

    \b
    Example:
      soundlib query frame.jpg -k 10
    """
    _not_built("query")


@main.command(context_settings=CONTEXT)
@store_options
@json_option
@debug_option
@handle_errors
def library(db, chroma_url, collection, as_json, debug):
    """Show what a collection holds.

    \b
    Example:
      soundlib library --json
    """
    _not_built("library")


# --- evaluation (issue: eval) ------------------------------------------------------------------------------------

@main.command(name="eval", context_settings=CONTEXT)
@click.argument("list_path", type=click.Path())
@model_option
@json_option
@debug_option
@handle_errors
def eval_cmd(list_path, model_spec, as_json, debug):
    """Top-k sample- and category-level accuracy on a pair list.

    \b
    Example:
      soundlib eval data/test.csv -k 1,5,10
    """
    _not_built("eval")


if __name__ == "__main__":
    main()
