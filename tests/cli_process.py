"""Helpers for tests that run ``soundlib`` as real processes (crash, concurrency, server tests).

- :func:`start_cli` runs ``python -m cli ARGS`` (this interpreter, the repository as working folder) with its
  output captured in files (a pipe could fill up and stall a long run); :class:`CliProcess` waits and reads them.
- :func:`stored_windows` counts the records of an embedded store straight from its SQLite file (read-only, safe
  while another process writes), so a test can act when a run is part-way through.
- :func:`check_library` reads a whole collection and checks the invariants a crash must not break.
- :func:`write_library` writes a small library of ``n`` sound files with a known number of windows each.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class CliProcess:
    """A running ``soundlib`` process; ``finish()`` waits and returns ``(exit code, stdout, stderr)``."""

    def __init__(self, proc: subprocess.Popen, out: Path, err: Path) -> None:
        self.proc, self.out, self.err = proc, out, err

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        """Wait for the exit (SIGKILL after ``timeout`` s) and return ``(returncode, stdout, stderr)``."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return (self.proc.returncode, self.out.read_text(encoding="utf-8", errors="replace"),
                self.err.read_text(encoding="utf-8", errors="replace"))

    def kill(self) -> None:
        """SIGKILL and reap (idempotent)."""
        self.signal(signal.SIGKILL)
        self.proc.wait()


#: Runs the CLI like ``python -m cli`` and then prints ``PEAK_RSS_KB <n>`` (the process's peak RSS) on stderr.
_RSS_WRAPPER = (
    "import resource, runpy, sys\n"
    "sys.argv = ['soundlib', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('cli', run_name='__main__')\n"
    "finally:\n"
    "    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr, flush=True)\n"
)


def peak_rss_mb(stderr: str) -> float:
    """The peak RSS (MiB) printed by a run started with ``measure_rss=True``."""
    return int(stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024


def start_cli(args: list[str], logs: Path, env: dict[str, str] | None = None,
              preexec_fn: Callable[[], None] | None = None, measure_rss: bool = False) -> CliProcess:
    """Start ``python -m cli ARGS`` with stdout/stderr in files under ``logs``.

    ``measure_rss``: print the peak RSS on stderr at exit (read it with :func:`peak_rss_mb`).
    """
    logs.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    out, err = logs / f"{stamp}.out", logs / f"{stamp}.err"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(out, "wb") as fo, open(err, "wb") as fe:
        launcher = ["-c", _RSS_WRAPPER] if measure_rss else ["-m", "cli"]
        cmd = [sys.executable, *launcher, *map(str, args)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=full_env,
                                preexec_fn=preexec_fn)
    return CliProcess(proc, out, err)


def stored_windows(db: Path) -> int:
    """Records in an embedded Chroma store, read from its SQLite file (0 while there is none yet).

    These are the records Chroma has applied from its write log to the ``embeddings`` table. Right after a
    crash the log may hold a few more, which the next open of the store applies.
    """
    path = Path(db) / "chroma.sqlite3"
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT count(*) FROM embeddings").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:  # created but not migrated yet, or busy
        return 0


def run_in_slices(proc: CliProcess, done: Callable[[], Any], what: str, slice_s: float = 0.02,
                  timeout: float = 180.0) -> None:
    """Let ``proc`` run in short slices (SIGCONT, ``slice_s`` s, SIGSTOP) until ``done()`` holds while it is
    stopped; it is left stopped, part-way for certain. (A free-running process can finish between a poll that sees
    it part-way and the signal meant for that moment; a stopped one cannot.) AssertionError if it ends first or
    ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.alive(), f"the process ended before {what}: {proc.finish()}"
        proc.signal(signal.SIGCONT)
        time.sleep(slice_s)
        proc.signal(signal.SIGSTOP)
        time.sleep(0.005)
        if done():
            return
    raise AssertionError(f"the process did not reach {what} in {timeout:.0f} s")


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


def write_library(root: Path, n: int, seconds: float = 3.0, sr: int = 16_000) -> dict[str, int]:
    """``n`` distinct sounds under ``root/<category>/`` (3 categories); returns ``{rel path: windows}``.

    A ``seconds``-long file with an integer number of seconds has exactly ``seconds`` windows (hop 1 s).
    """
    from tests.fixtures_library import write_sound

    kinds = ("noise", "tone", "chirp", "clicks")
    expected = {}
    for i in range(n):
        rel = f"{('dogs', 'rain', 'cars')[i % 3]}/sound {i:03d}.wav"
        write_sound(root / rel, seconds, sr, kinds[i % len(kinds)], seed=i)
        expected[rel] = int(round(seconds))
    return expected


def check_library(store: Any, root: Path, expected: dict[str, int]) -> None:
    """Assert the collection holds exactly ``expected`` (rel path under ``root`` -> windows), each file whole.

    Checks: no duplicate ids; ids are ``<file_id>:<window>``; every file has windows ``0..n-1``, exactly one
    flagged ``last`` (the highest); nothing else is stored.
    """
    from soundlib.store import file_key, window_id

    ids: list[str] = []
    per_file: dict[str, list[dict]] = {}
    for page_ids, vecs, metas in store.iter_records(batch=1000):
        assert vecs.shape[0] == len(page_ids)
        ids += page_ids
        for rid, m in zip(page_ids, metas):
            assert rid == window_id(m["file_id"], m["window"])
            per_file.setdefault(m["path"], []).append(m)
    dupes = [i for i, c in Counter(ids).items() if c > 1]
    assert not dupes, f"duplicate ids: {dupes[:5]}"
    assert set(per_file) == set(expected), (sorted(set(per_file) ^ set(expected)))[:5]
    for rel, metas in per_file.items():
        n = expected[rel]
        metas.sort(key=lambda m: m["window"])
        assert [m["window"] for m in metas] == list(range(n)), rel
        assert [m["last"] for m in metas] == [False] * (n - 1) + [True], rel
        assert {m["file_id"] for m in metas} == {file_key(str(root), rel)}
    assert len(ids) == sum(expected.values()) == store.count()


def run_cli(*args: object, env: dict[str, str] | None = None) -> Any:
    """``soundlib ARGS`` in this process (Click's CliRunner; stdout and stderr apart), exceptions not caught."""
    from click.testing import CliRunner

    from cli import main

    return CliRunner(env=env).invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line(result, code: int, *words: str) -> str:
    """Assert the exit code, no traceback, and exactly one line on stderr holding every word; return that line."""
    everything = result.stdout + result.stderr
    assert result.exit_code == code, everything
    assert "Traceback" not in everything
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]
