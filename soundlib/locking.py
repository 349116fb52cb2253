"""An advisory inter-process lock: one writer (``soundlib ingest`` or ``library import``) at a time per embedded store.

The lock is an ``flock`` on a small file inside the store folder, so the kernel releases it when the holder exits
or is killed (SIGKILL, crash): a stale lock never blocks the next run. The file holds the holder's pid and command,
quoted in the message a second writer gets. Readers (``query``, ``library``, ``export``) do not take it.

The lock is re-entrant within one process: :meth:`soundlib.store.SoundStore.writing` takes it around every library
write (``ingest()``, ``import_library()``), and the CLI takes it earlier still (before loading a model or creating
the store folder), so a nested take by the same process does nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from soundlib.errors import StoreError

LOCK_NAME = "soundlib-ingest.lock"

_held: set[str] = set()  # lock files (real paths) this process holds (the outermost block of each)
_held_guard = threading.Lock()


def _holder(fd: int) -> tuple[str, int | None]:
    """``("`soundlib ingest` (pid 123)", 123)`` from the lock file's content (best effort; pid ``None`` if
    unreadable)."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split("\n")
    except OSError:
        text = []
    pid = int(text[0]) if text and text[0].strip().isdigit() else None
    command = text[1].strip() if len(text) > 1 and text[1].strip() else "ingest"
    return f"`soundlib {command}`" + (f" (pid {pid})" if pid is not None else ""), pid


def _process_state(pid: int) -> str:
    """One-letter Linux process state (``"T"``: stopped, e.g. by Ctrl-Z), or ``""`` if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


def current_writer(folder: str | os.PathLike, name: str = LOCK_NAME) -> str | None:
    """Who holds the writer lock of ``folder`` right now, without waiting or taking it.

    Returns:
        ``None`` when no other soundlib process holds it; else what to tell the user, e.g.
        ``"`soundlib ingest` (pid 123) is writing to it; try again when it has finished"``, or for a suspended
        holder ``"`soundlib ingest` (pid 123) holds it and is stopped (Ctrl-Z?): resume it with `fg` or
        `kill -CONT 123`, or end it"``.
    """
    import fcntl

    path = Path(folder) / name
    if os.path.realpath(path) in _held:
        return None  # this process
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, pid = _holder(fd)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    if pid is not None and _process_state(pid) == "T":
        return f"{holder} holds it and is stopped (Ctrl-Z?): resume it with `fg` or `kill -CONT {pid}`, or end it"
    return f"{holder} is writing to it; try again when it has finished"


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
    if nested:  # this process holds it already: the outer block releases it
        yield path
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot create the store's lock file ({e.strerror or e})", str(folder)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another {_holder(fd)[0]} is writing to this store; wait for it to finish "
                             "(or stop it: what it completed is kept)", str(folder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command}\n".encode(), 0)
        with _held_guard:
            _held.add(key)
        try:
            yield path
        finally:
            with _held_guard:
                _held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
