"""An advisory inter-process lock: one writer (``soundlib ingest`` or ``library import``) at a time per embedded store.

The lock is an ``flock`` on a small file inside the store folder, so the kernel releases it when the holder exits
or is killed (SIGKILL, crash): a stale lock never blocks the next run. Readers (``query``, ``library``, ``export``)
do not take it.

Who holds it: the kernel knows (``/proc/locks`` lists each flock with its owner's pid), so a refused writer names
the holder's pid every time, even in the instant between the holder's ``flock`` and its writing of the file. The
file holds the holder's pid and command; the command is quoted when the file's pid is the kernel's (a refused writer
waits up to :data:`HOLDER_WAIT` seconds for the holder to write it).

The lock is re-entrant within one process: :meth:`soundlib.store.SoundStore.writing` takes it around every library
write (``ingest()``, ``import_library()``), and the CLI takes it earlier still (before loading a model or creating
the store folder), so a nested take by the same process does nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from soundlib.errors import StoreError

LOCK_NAME = "soundlib-ingest.lock"

_held: set[str] = set()  # lock files (real paths) this process holds (the outermost block of each)
_held_guard = threading.Lock()


#: How long a refused writer waits for the lock holder to write its identity into the lock file (seconds). The
#: holder writes it right after taking the lock; the wait only matters on a machine too busy to schedule it.
HOLDER_WAIT = 5.0


def _identity(fd: int) -> tuple[int | None, str | None]:
    """``(pid, command)`` as written in the lock file (each ``None`` if missing or unreadable)."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split("\n")
    except OSError:
        return None, None
    pid = int(text[0]) if text and text[0].strip().isdigit() else None
    command = text[1].strip() if len(text) > 1 and text[1].strip() else None
    return pid, command


def flock_owners(fd: int) -> set[int] | None:
    """Pids of the processes holding an exclusive ``flock`` on the file open as ``fd``, from ``/proc/locks``.

    Returns ``None`` where ``/proc/locks`` cannot be read (not Linux), else a set (empty if nobody holds it).
    """
    st = os.fstat(fd)
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return None
    owners = set()
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 2487 fe:00:2147888 0 EOF"; waiters are listed as "1: -> FLOCK ..."
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[3] != "WRITE":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == want:
                owners.add(int(parts[4]))
        except ValueError:
            continue
    return owners


def _holder(fd: int, wait: float | None = None) -> tuple[str, int | None]:
    """``("`soundlib ingest` (pid 123)", 123)``: who holds the lock on ``fd`` (another process does).

    The pid comes from the kernel; the command from the lock file once it names that pid (waiting up to ``wait``
    seconds, default :data:`HOLDER_WAIT`, for the holder to write it). Without ``/proc/locks`` the file's pid is used
    as it is.
    """
    deadline = time.monotonic() + (HOLDER_WAIT if wait is None else wait)
    while True:
        pid, command = _identity(fd)
        owners = flock_owners(fd)
        if (pid in owners) if owners is not None else pid is not None:
            return f"`soundlib {command or 'ingest'}` (pid {pid})", pid
        if owners == set() or time.monotonic() >= deadline:
            break  # released meanwhile, or the holder never wrote its identity
        time.sleep(0.01)
    if owners:  # the kernel's holder, whose command the file does not tell
        pid = min(owners)
        return f"`soundlib` (pid {pid})", pid
    return "`soundlib ingest`", None


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
        for attempt in range(3):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder, pid = _holder(fd)
                if pid is None and flock_owners(fd) == set() and attempt < 2:
                    continue  # the holder let go while we asked who it was: try again
                raise StoreError(f"another {holder} is writing to this store; wait for it to finish "
                                 "(or stop it: what it completed is kept)", str(folder)) from None
        identity = f"{os.getpid()}\n{command}\n".encode()
        os.pwrite(fd, identity, 0)  # written, then the old tail cut: the file is never empty while held
        os.ftruncate(fd, len(identity))
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
