"""Several soundlib processes on one embedded store: writers exclude each other, readers keep working.

- Two `soundlib ingest` processes started together on the same (new) store: one runs, the other is refused at
  once with one line naming the running one (its pid); the store ends exact and uncorrupted.
- Queries while an ingest process writes: queries from this process before, during and after the run, and a
  `soundlib query` process while the ingest is paused part-way (SIGSTOP, after it was let run in short slices
  until its first new windows were stored) with its store open and half written.
- An ingest suspended in the middle of a write (or any process stopped in a read: the journal is a rollback one)
  holds a lock Chroma waits for without end when it opens a store: `soundlib query` gives up after
  ``$SOUNDLIB_STORE_WAIT`` seconds with one line naming the stopped process and how to resume it.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from tests.cli_process import check_library, run_in_slices, start_cli, stored_windows, wait_for, write_library
from tests.conftest import write_image


def write_locked(db: Path) -> bool:
    """True while another process holds a lock on the store's SQLite database that a write must wait for: a write
    transaction, or a read one (the journal is a rollback journal, so a writer waits for readers too)."""
    con = sqlite3.connect(db / "chroma.sqlite3", timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        con.close()


@pytest.mark.slow
def test_two_ingests_at_once_one_is_refused_and_the_store_is_exact(tmp_path: Path,
                                                                    tiny_checkpoint) -> None:
    from soundlib.store import open_store

    root = (tmp_path / "lib").resolve()
    expected = write_library(root, 4)
    db = tmp_path / "db"
    args = ["ingest", root, "--db", db, "--model", tiny_checkpoint, "--json"]
    a = start_cli(args, tmp_path / "logs")
    b = start_cli(args, tmp_path / "logs")
    (rc_a, out_a, err_a), (rc_b, out_b, err_b) = a.finish(), b.finish()
    assert sorted([rc_a, rc_b]) == [0, 2], (err_a, err_b)
    (winner, w_out), (loser, l_out, l_err) = ((a, out_a), (b, out_b, err_b)) if rc_a == 0 else \
        ((b, out_b), (a, out_a, err_a))
    assert "Traceback" not in l_out + l_err and l_out == ""
    lines = l_err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {db}: another `soundlib ingest` (pid ")
    assert int(re.search(r"pid (\d+)", lines[0]).group(1)) == winner.pid
    doc = json.loads(w_out)
    assert (doc["added"], doc["windows"]) == (4, sum(expected.values()))
    with open_store(db=db) as store:
        check_library(store, root, expected)


@pytest.mark.slow
def test_queries_keep_working_while_an_ingest_process_writes(tmp_path: Path, tiny_checkpoint,
                                                             tiny_model) -> None:
    from soundlib.recommend import recommend
    from soundlib.store import open_store

    root = (tmp_path / "lib").resolve()
    first = write_library(root, 3)  # a library to query from the start...
    db = tmp_path / "db"
    result = CliRunner().invoke(main, ["ingest", str(root), "--db", str(db), "--model", str(tiny_checkpoint),
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    expected = write_library(root, 9)  # ...then more sounds arrive (the first three are unchanged)
    pic = write_image(tmp_path / "scene.png", (64, 48), color=(20, 120, 200))
    before, total = sum(first.values()), sum(expected.values())
    seen: list[int] = []

    def query_here() -> None:
        with open_store(db=db) as store:
            hits = recommend([pic], tiny_model, store, k=3).results
            seen.append(store.count())
        assert len(hits) == 3 and len({h.path for h in hits}) == 3

    proc = start_cli(["ingest", root, "--db", db, "--model", tiny_checkpoint, "--json", "--batch-size", "4",
                      "--write-batch", "3"], tmp_path / "logs")
    try:
        proc.signal(signal.SIGSTOP)  # held until this test lets it run
        query_here()
        # part-way, for certain: the ingest runs in 20 ms slices until its first new windows are stored, and is
        # stopped between two writes with its store open and half written (18 new windows, written 3 at a time)
        run_in_slices(proc, lambda: stored_windows(db) > before and not write_locked(db),
                      "its first new windows, outside a write")
        assert before < stored_windows(db) < total
        try:
            query_here()
            q = start_cli(["query", pic, "--db", db, "-k", "3", "--json"], tmp_path / "logs")
            rc, out, err = q.finish(timeout=120)
        finally:
            proc.signal(signal.SIGCONT)
        assert rc == 0, err
        assert len({r["path"] for r in json.loads(out)["results"]}) == 3
        while proc.alive():  # and queries from this process until the end of the run
            query_here()
            time.sleep(0.3)
    finally:
        proc.signal(signal.SIGCONT)
        rc, out, err = proc.finish(timeout=180)
    assert rc == 0, err
    assert seen[0] == before < seen[1] < total and seen == sorted(seen)  # the queries saw the library grow
    assert json.loads(out)["added"] == len(expected) - len(first)
    with open_store(db=db) as store:
        check_library(store, root, expected)
    assert wait_for(lambda: stored_windows(db) == total, timeout=5)


def query_giving_up_after_2_s(pic: Path, db: Path, logs: Path) -> tuple[int, str, str, float]:
    """`soundlib query` with ``$SOUNDLIB_STORE_WAIT=2``: ``(exit code, stdout, stderr, seconds it took)``."""
    started = time.monotonic()
    q = start_cli(["query", pic, "--db", db, "-k", "3", "--json"], logs, env={"SOUNDLIB_STORE_WAIT": "2"})
    rc, out, err = q.finish(timeout=120)
    return rc, out, err, time.monotonic() - started


@pytest.mark.slow
def test_a_query_gives_up_on_a_store_locked_by_a_stopped_ingest(tmp_path: Path, tiny_checkpoint) -> None:
    root = (tmp_path / "lib").resolve()
    write_library(root, 12)
    db = tmp_path / "db"
    pic = write_image(tmp_path / "scene.png", (64, 48), color=(20, 120, 200))
    proc = start_cli(["ingest", root, "--db", db, "--model", tiny_checkpoint, "--json", "--batch-size", "4",
                      "--write-batch", "3"], tmp_path / "logs")
    try:
        run_in_slices(proc, lambda: stored_windows(db) > 0, "its first windows")
        # then stopped while it holds the database (inside a write, or a read of its own): 5 ms slices
        run_in_slices(proc, lambda: write_locked(db), "a moment inside a write", slice_s=0.005)
        rc, out, err, took = query_giving_up_after_2_s(pic, db, tmp_path / "logs")
    finally:
        proc.signal(signal.SIGCONT)
        rc_ingest, _, err_ingest = proc.finish(timeout=180)
    assert rc == 2 and out == "" and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0] == (f"error: {db}: the store stayed locked for 2 s: `soundlib ingest` (pid {proc.pid}) holds it "
                        f"and is stopped (Ctrl-Z?): resume it with `fg` or `kill -CONT {proc.pid}`, or end it")
    assert took < 60  # gave up (it used to wait for as long as the ingest stayed stopped)
    assert rc_ingest == 0, err_ingest  # resumed, the ingest finishes
    q = start_cli(["query", pic, "--db", db, "-k", "3", "--json"], tmp_path / "logs")
    rc, out, err = q.finish(timeout=120)
    assert rc == 0 and len(json.loads(out)["results"]) == 3, err


@pytest.mark.slow
def test_a_query_gives_up_on_a_store_held_by_a_stopped_reader(tmp_path: Path, tiny_checkpoint) -> None:
    """Chroma writes when it opens a store, and the journal is a rollback one: a process stopped in the middle of a
    read (here a plain sqlite3 reader, as a backup tool or an inspecting shell would be) blocks that write as a
    stopped writer does. The query gives up with one line instead of waiting for as long as the reader stays
    stopped (the check before Chroma opens the store used to ask for the write lock only, which readers allow)."""
    import subprocess
    import sys

    root = (tmp_path / "lib").resolve()
    write_library(root, 3)
    db = tmp_path / "db"
    result = CliRunner().invoke(main, ["ingest", str(root), "--db", str(db), "--model", str(tiny_checkpoint),
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pic = write_image(tmp_path / "scene.png", (64, 48), color=(20, 120, 200))
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "con.execute('BEGIN')\n"
         "print(con.execute('SELECT count(*) FROM embeddings').fetchone()[0], flush=True)\n"
         "sys.stdin.read()\n", str(db / "chroma.sqlite3")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert int(reader.stdout.readline()) > 0  # its read transaction is open
        reader.send_signal(signal.SIGSTOP)
        assert write_locked(db)
        rc, out, err, took = query_giving_up_after_2_s(pic, db, tmp_path / "logs")
    finally:
        reader.send_signal(signal.SIGCONT)
        reader.kill()
        reader.wait()
    assert rc == 2 and out == "" and "Traceback" not in err, err
    assert err.strip().splitlines() == [f"error: {db}: the store stayed locked for 2 s: another process holds its "
                                        f"database; try again when it has finished"]
    assert took < 60
    q = start_cli(["query", pic, "--db", db, "-k", "3", "--json"], tmp_path / "logs")
    rc, out, err = q.finish(timeout=120)
    assert rc == 0 and len(json.loads(out)["results"]) == 3, err
