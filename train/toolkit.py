"""What the ``python -m train.<tool>`` data tools share: run a build with a progress bar, print its report."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, Protocol

from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn


class Report(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def run_report(build: Callable[[ProgressFn], Report], summary: Callable[[Any], None], as_json: bool = False,
               debug: bool = False) -> int:
    """Run ``build(progress)`` under a Rich progress bar (stderr) and print its report.

    Args:
        build: does the work; receives the progress callback; returns a report with ``to_dict()``.
        summary: prints the report for people (used without ``as_json``).
        as_json: print ``report.to_dict()`` as exactly one JSON document on stdout (no progress bar).
        debug: let a :class:`SoundlibError` propagate with its traceback.

    Returns:
        The exit code: 0, or 2 after printing ``error: <one line>`` on stderr for a :class:`SoundlibError` or a
        ``ValueError`` (bad input).
    """
    from soundlib.clikit import rich_progress

    try:
        with rich_progress(enabled=not as_json) as prog:
            report = build(prog)
    except (SoundlibError, ValueError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        summary(report)
    return 0
