"""What the ``python -m train.<module>`` scripts share: their work's summary printed, or one error line."""

from __future__ import annotations

import sys
from typing import Callable

from soundlib.errors import SoundlibError


def run_script(work: Callable[[], str]) -> int:
    """Run a script's work and give its exit code: 0 after printing the summary it returns, or 1 after printing
    ``error: <file>: <reason>`` (one line on stderr, no traceback) for a :class:`SoundlibError`."""
    try:
        summary = work()
    except SoundlibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary)
    return 0
