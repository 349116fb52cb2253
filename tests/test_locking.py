"""The store's writer lock names its holder every time: the pid comes from the kernel (``/proc/locks``), the
command from the lock file once the holder has written it.

Each test holds the lock from a real second process that takes the ``flock`` itself and writes (or never writes,
or writes late) its identity, so the moments between "locked" and "identity written" are reproduced exactly
instead of hoped for under load.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from soundlib import locking
from soundlib.errors import StoreError
from soundlib.locking import LOCK_NAME, current_writer, exclusive_lock

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def raw_holder(folder: Path, write: str | None, delay: float = 0.0, stale: str | None = None) -> Iterator[int]:
    """A second process that ``flock``s ``folder``'s lock file like a writer would, then (after ``delay`` s)
    writes ``write`` into it (``None``: never writes). ``stale`` is put in the file before the lock is taken
    (what a killed holder leaves behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    if stale is not None:
        (folder / LOCK_NAME).write_text(stale)
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "if sys.argv[2] != '-':\n"
            "    time.sleep(float(sys.argv[3]))\n"
            "    data = sys.argv[2].replace('|', '\\n').replace('PID', str(os.getpid())).encode()\n"
            "    os.pwrite(fd, data, 0); os.ftruncate(fd, len(data))\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / LOCK_NAME), write or "-", str(delay)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def refusal(folder: Path) -> str:
    with pytest.raises(StoreError) as e:
        with exclusive_lock(folder):
            pass
    return str(e.value)


def test_a_writer_refused_before_the_holder_wrote_its_identity_still_names_it(tmp_path: Path) -> None:
    # the holder writes its pid and command 0.5 s after taking the lock: the refused writer waits for it
    with raw_holder(tmp_path, "PID|library import|", delay=0.5) as pid:
        assert refusal(tmp_path) == (f"{tmp_path}: another `soundlib library import` (pid {pid}) is writing to this "
                                     "store; wait for it to finish (or stop it: what it completed is kept)")


def test_a_stale_pid_left_by_a_killed_holder_is_never_named(tmp_path: Path) -> None:
    # pid 1 is alive but does not hold the lock: the file's pid only counts when the kernel says it is the holder
    with raw_holder(tmp_path, "PID|ingest|", delay=0.5, stale="1\nlibrary import\n") as pid:
        message = refusal(tmp_path)
    assert f"another `soundlib ingest` (pid {pid})" in message and "pid 1)" not in message


def test_a_holder_that_never_writes_its_identity_is_named_by_its_pid(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locking, "HOLDER_WAIT", 0.3)
    with raw_holder(tmp_path, None, stale="1\nlibrary import\n") as pid:
        assert f"another `soundlib` (pid {pid}) is writing to this store" in refusal(tmp_path)
        assert current_writer(tmp_path) == f"`soundlib` (pid {pid}) is writing to it; try again when it has finished"


def test_flock_owners_reads_the_kernel_table(tmp_path: Path) -> None:
    import os

    with raw_holder(tmp_path, "PID|ingest|") as pid:
        fd = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
        try:
            assert locking.flock_owners(fd) == {pid}
        finally:
            os.close(fd)
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
    try:
        assert locking.flock_owners(fd) == set()  # released when the holder exited
        with exclusive_lock(tmp_path):
            assert locking.flock_owners(fd) == {os.getpid()}
            assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\ningest\n"  # the holder's old text is gone
        assert locking.flock_owners(fd) == set()
    finally:
        os.close(fd)
