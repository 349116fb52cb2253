"""Shared plumbing for the Click CLI: common options, error handling, Rich output on the right stream.

``cli.py`` holds the commands; this module holds what every command shares, so the commands stay thin.
Exit codes: 0 ok, 1 some items failed (batch commands), 2 usage or bad input.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from soundlib.config import CHROMA_URL_ENV, MODEL_ENV, TOKEN_ENV, StoreConfig
from soundlib.errors import SoundlibError
from train import defaults as tr

EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT = 0, 1, 2


def stdout_console():
    """Rich console for results (stdout)."""
    from rich.console import Console

    return Console(soft_wrap=False)


def stderr_console():
    """Rich console for progress, warnings and errors (stderr)."""
    from rich.console import Console

    return Console(stderr=True)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else.")(f)


def debug_option(f: Callable) -> Callable:
    return click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")(f)


def store_options(f: Callable) -> Callable:
    """--db, --chroma-url, --collection (the token comes from an environment variable, never the command line)."""
    cfg = StoreConfig()
    f = click.option("--collection", default=None, metavar="NAME",
                     help=f"Chroma collection name (default: {cfg.default_collection}).")(f)
    f = click.option("--chroma-url", default=None, metavar="URL", envvar=CHROMA_URL_ENV,
                     help="Use a Chroma server (`chroma run`) at URL instead of the embedded store. "
                          f"Token from ${TOKEN_ENV}.")(f)
    f = click.option("--db", default=None, metavar="PATH", type=click.Path(file_okay=False),
                     help=f"Embedded store folder (default: ${cfg.home_env}/chroma, {cfg.default_home}/chroma).")(f)
    return f


def export_options(f: Callable) -> Callable:
    """--export DIR and --clip SECONDS (the picks of a ranking, :mod:`soundlib.picks`)."""
    f = click.option("--clip", default=None, type=click.FloatRange(min=0), metavar="SECONDS",
                     help="With --export: cut each sound's best 1-s window with SECONDS of handles on each side "
                          "instead of copying the whole file.")(f)
    f = click.option("--export", "export_dir", default=None, metavar="DIR", type=click.Path(),
                     help="Write the results into DIR: the sound files, picks.csv, picks.json, picks.m3u "
                          "(never overwrites: a suffix is added).")(f)
    return f


def reference_options(f: Callable) -> Callable:
    """--frames-root DIR and --audio-root DIR: where a reference-format list's frames and audio are
    (:mod:`soundlib.reference_lists`); ``reference_roots(frames_root, audio_root)`` turns them into its roots."""
    f = click.option("--audio-root", default=None, metavar="DIR", type=click.Path(file_okay=False),
                     help="Reference-format lists (<id>_<second>|<label>): the folder of <id>.<ext> audio files "
                          "(default: audio/ next to the list's folder).")(f)
    f = click.option("--frames-root", default=None, metavar="DIR", type=click.Path(file_okay=False),
                     help="Reference-format lists: the folder of <id>/image_005.jpg frames (default: frames_1fps/ "
                          "next to the list's folder).")(f)
    return f


def reference_roots(frames_root: str | None, audio_root: str | None) -> Any:
    """The :class:`soundlib.reference_lists.ReferenceRoots` of :func:`reference_options`' values."""
    from soundlib.reference_lists import ReferenceRoots

    return ReferenceRoots.of(frames_root, audio_root)


def norm_stats_option(f: Callable) -> Callable:
    """--norm-stats FILE.npy: the reference code's per-band log-mel mean and variance (paper models only)."""
    return click.option("--norm-stats", default=None, metavar="FILE.npy", type=click.Path(dir_okay=False),
                        help="Per-band log-mel mean (row 0) and variance (row 1), shape (2, 64), e.g. the reference "
                             "code's lists/vggsound_train_mean_var.npy: the paper models normalise audio with it "
                             "instead of their own statistics.")(f)


def model_option(f: Callable) -> Callable:
    return click.option("--model", "model_spec", default=None, metavar="CKPT", envvar=MODEL_ENV,
                        help="Model checkpoint (default: the bundled model).")(f)


class TrainingOptions:
    """The training options of a command (:func:`training_options`): ``train.loop.train_model`` keyword arguments.

    Attributes:
        values: every option's value (the default when not given).
        given: the names of the options given on the command line (or by an environment variable).
    """

    def __init__(self, values: dict[str, Any], given: frozenset[str]) -> None:
        self.values, self.given = values, given

    def given_values(self) -> dict[str, Any]:
        """Only the options given (what overrides a recipe)."""
        return {k: v for k, v in self.values.items() if k in self.given}


def training_options(f: Callable) -> Callable:
    """The options of `soundlib train` that say how a model is trained, shared by every command that trains.

    Each option's destination is the ``train.loop.train_model`` keyword it sets; the command receives them all as
    one argument, ``training`` (:class:`TrainingOptions`). A new training option added here reaches `soundlib
    train` and `soundlib loso` alike.
    """
    options = [
        click.option("--epochs", default=tr.DEFAULT_EPOCHS, show_default=True, type=int, help="Last epoch to run."),
        click.option("--batch", default=None, type=int, help="Pairs per step (default: the model's, 128 or 32)."),
        click.option("--lr", default=None, type=float, help="Initial learning rate (default: the model's, 0.01)."),
        click.option("--temperature", default=None, type=float,
                     help="Temperature of InfoNCE / NT-Xent (default: the model's, 0.5)."),
        click.option("--weight-decay", default=tr.DEFAULT_WEIGHT_DECAY, show_default=True,
                     type=click.FloatRange(min=0), help="SGD weight decay (the paper's)."),
        click.option("--width", default=None, type=float,
                     help="Channel multiplier of both streams (paper models; default 1.0; 0.125-0.25 trains in "
                          "minutes on a CPU)."),
        click.option("--image-size", default=None, type=int,
                     help="Side of the input image (paper models; default 224; the pretrained family is fixed at "
                          "224)."),
        click.option("--windows", default=tr.DEFAULT_WINDOWS, show_default=True, type=click.IntRange(min=1),
                     help="Whole-file rows (empty start): cache this many of the file's loudest 1-s windows and "
                          "draw one per epoch."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed of weights, shuffles and negatives."),
        click.option("--patience", default=tr.DEFAULT_PATIENCE, show_default=True, type=int,
                     help="Stop after this many epochs without a better val top-10."),
        click.option("--workers", default=tr.DEFAULT_WORKERS, show_default=True, type=int,
                     help="Frame-decoding worker processes."),
        click.option("--threads", default=0, show_default=True, type=int,
                     help="Torch CPU threads (0 = all cores; 1 is much faster when other jobs share the CPU)."),
        click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False),
                     help="Feature cache folder (log-mels, backbone features; default: <out>/../.cache)."),
        click.option("--precision", default=tr.DEFAULT_PRECISION, show_default=True, type=click.Choice(tr.PRECISIONS),
                     help="bf16 autocast (faster on CPU) or fp32."),
    ]
    names = ["epochs", "batch", "lr", "temperature", "weight_decay", "width", "image_size", "windows", "seed",
             "patience", "workers", "threads", "cache_dir", "precision", "norm_stats"]

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from click.core import ParameterSource

        ctx = click.get_current_context()
        values = {n: kwargs.pop(n) for n in names}
        given = frozenset(n for n in names
                          if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT))
        return f(*args, training=TrainingOptions(values, given), **kwargs)

    wrapper = norm_stats_option(wrapper)
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def print_json(doc: Any) -> None:
    """Write exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print one error line on stderr and exit (control characters, e.g. a newline in a file name, are escaped)."""
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped (``"a\\nb"``), so a message stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def print_skipped(console: Any, where: str, reason: str, label: str = "skipped") -> None:
    """``skipped WHERE: REASON`` (or another ``label``) on one line of ``console`` (stderr), whatever the characters
    or the terminal width."""
    from rich.markup import escape

    console.print(f"[yellow]{label}[/] {escape(one_line(str(where)))}: {escape(one_line(str(reason)))}",
                  highlight=False, soft_wrap=True)


def handle_errors(f: Callable) -> Callable:
    """Turn expected errors into one line on stderr and exit code 2; tracebacks only with ``--debug``."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        try:
            return f(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except SoundlibError as e:
            if debug:
                raise
            fail(str(e))
        except KeyboardInterrupt:
            if debug:
                raise
            fail("interrupted", 130)
        except Exception as e:  # noqa: BLE001 - last-resort guard: never a traceback without --debug
            if debug:
                raise
            fail(f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)")

    return wrapper


@contextlib.contextmanager
def rich_progress(enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A :class:`soundlib.progress.ProgressFn` drawing Rich bars on stderr (one bar per task name)."""
    if not enabled:
        yield lambda *a, **k: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    tasks: dict[str, Any] = {}
    bar = Progress(*columns, console=stderr_console(), transient=False)

    def update(task: str, completed: int, total: int | None, **info: Any) -> None:
        text = "  ".join(f"{k}={_fmt(v)}" for k, v in info.items())
        if not tasks:
            bar.start()  # on the first report: a command that fails before any leaves no blank line behind
        if task not in tasks:
            tasks[task] = bar.add_task(task, total=total, info=text)
        bar.update(tasks[task], completed=completed, total=total, info=text)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


