"""Lines a native library prints on the process's standard error (file descriptor 2), kept off the terminal.

libsndfile decodes MP3 with mpg123, which prints a line for every damaged frame it decodes around or resyncs past
(``[src/libmpg123/layer3.c:INT123_do_layer3():1804] error: dequantization failed!``, ``Note: Trying to resync...``)
straight to descriptor 2: no Python stream sees it and no libsndfile call turns it off. In a batch command such lines
land between the progress bar's redraws and name no file. :func:`captured` points descriptor 2 at a temporary file
while a block runs, hands back the lines a pattern picks out, and writes everything else back to descriptor 2 in the
order it came, so what others wrote meanwhile (a progress bar's redraw) is late, never lost.

Descriptor 2 is shared by every thread, so one block runs at a time in a process (a lock; a block may nest in the
same thread).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

_LOCK = threading.RLock()


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no stderr, or a closed one: nothing buffered to lose
        pass


@contextlib.contextmanager
def captured(pick: re.Pattern[str]) -> Iterator[list[str]]:
    """Keep the lines ``pick`` matches off descriptor 2 while the block runs.

    Args:
        pick: a multi-line pattern; each match (a whole line, its newline included) is taken out of what was
            written to descriptor 2 and listed, stripped.

    Yields:
        The list of picked lines; it is filled when the block ends (read it after the ``with``).
    """
    picked: list[str] = []
    with _LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 (a detached process): nothing reaches a terminal anyway
            yield picked
            return
        try:
            with tempfile.TemporaryFile() as tmp:
                _flush_python_stderr()
                os.dup2(tmp.fileno(), 2)
                try:
                    yield picked
                finally:
                    _flush_python_stderr()
                    os.dup2(saved, 2)
                    tmp.seek(0)
                    text = tmp.read().decode("utf-8", "replace")
                    rest = pick.sub(lambda m: picked.append(m.group(0).strip()) or "", text)
                    data = rest.encode("utf-8")
                    while data:
                        data = data[os.write(2, data):]
        finally:
            os.close(saved)
