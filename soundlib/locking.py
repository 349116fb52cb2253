"""An advisory inter-process lock: one ``soundlib ingest`` at a time per embedded store."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from soundlib.errors import StoreError

LOCK_NAME = "soundlib-ingest.lock"


@contextlib.contextmanager
def exclusive_lock(folder: str | os.PathLike, name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``folder/name`` for the duration of the block (released on exit or crash).

    Raises:
        StoreError: another process holds the lock (e.g. another ingest into the same store).
    """
    import fcntl

    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError("another `soundlib ingest` is writing to this store; wait for it to finish",
                             str(folder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
