"""Files written whole or not at all: :func:`atomic_write` (torch-free; used by every layer).

A reader (or a crash) sees the old file or the new one, never a part of the new one: the content goes to a
temporary file in the same folder, which is renamed over the target only once it is complete.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Write ``path`` atomically: yields a temporary path to write to, renamed over ``path`` when the block ends.

    The temporary file is ``.<name>.<pid>-<random>.tmp<suffix>`` in ``path``'s folder (created if needed), so it
    keeps the suffix that numpy, soundfile or Pillow choose a format by, two processes writing the same target
    never share one, and it gets the usual permissions (the caller creates it). If the block raises (or is
    interrupted), the temporary file is removed and ``path`` is untouched.

    Args:
        path: the file to write.
        fsync: flush the temporary file to disk before the rename (checkpoints: the rename then never exposes a
            file whose data is still only in the page cache).

    Yields:
        The temporary path (nothing there yet; write it with any library).

    Example:
        >>> with atomic_write("runs/metrics.csv") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("epoch,loss\\n")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
