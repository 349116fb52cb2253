"""An advisory inter-process lock: one writer (``soundlib ingest`` or ``library import``) at a time per embedded store.

The lock is an ``flock`` on a small file inside the store folder, so the kernel releases it when the holder exits
or is killed (SIGKILL, crash): a stale lock never blocks the next run. The file holds the holder's pid and command,
quoted in the message a second writer gets. Readers (``query``, ``library``, ``export``) do not take it.

The lock is re-entrant within one process: :meth:`soundlib.store.SoundStore.writing` takes it around every library
write (``ingest()``, ``import_library()``), and the CLI takes it earlier still (before loading a model or creating
the store folder), so a nested take by the same process only counts up.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from soundlib.errors import StoreError

LOCK_NAME = "soundlib-ingest.lock"

_held: dict[str, int] = {}  # lock file (real path) -> nesting depth, for the locks this process holds
_held_guard = threading.Lock()


def _holder(fd: int) -> str:
    """``"`soundlib ingest` (pid 123)"`` from the lock file's content (best effort)."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split("\n")
    except OSError:
        text = []
    pid = text[0].strip() if text and text[0].strip().isdigit() else ""
    command = text[1].strip() if len(text) > 1 and text[1].strip() else "ingest"
    return f"`soundlib {command}`" + (f" (pid {pid})" if pid else "")


@contextlib.contextmanager
def exclusive_lock(folder: str | os.PathLike, name: str = LOCK_NAME, command: str = "ingest") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``folder/name`` for the duration of the block (released on exit or crash).

    Args:
        folder: the store folder (created if missing).
        name: lock file name.
        command: what holds the lock (``"ingest"``, ``"library import"``), named in the message a second writer gets.

    A block nested inside another of this process for the same folder does not lock again (re-entrant).

    Raises:
        StoreError: another process holds the lock (e.g. another ingest into the same store); the message names
            the other command and its pid.
    """
    import fcntl

    path = Path(folder) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(path)
    except OSError as e:
        raise StoreError(f"cannot create the store's lock file ({e.strerror or e})", str(folder)) from None
    with _held_guard:
        nested = key in _held
        if nested:
            _held[key] += 1
    if nested:  # this process holds it already (an outer block)
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot create the store's lock file ({e.strerror or e})", str(folder)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another {_holder(fd)} is writing to this store; wait for it to finish "
                             "(or stop it: what it completed is kept)", str(folder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command}\n".encode(), 0)
        with _held_guard:
            _held[key] = 1
        try:
            yield path
        finally:
            with _held_guard:
                del _held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
