"""Several soundlib processes on one embedded store: writers exclude each other, readers keep working.

- Two `soundlib ingest` processes started together on the same (new) store: one runs, the other is refused at
  once with one line naming the running one (its pid); the store ends exact and uncorrupted.
- Queries while an ingest process writes: queries from this process in a loop during the whole run, and a
  `soundlib query` process while the ingest is paused part-way (SIGSTOP) with its store open and half written.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from tests.cli_process import check_library, start_cli, stored_windows, wait_for, write_library
from tests.conftest import write_image


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
    total = sum(expected.values())

    proc = start_cli(["ingest", root, "--db", db, "--model", tiny_checkpoint, "--json", "--batch-size", "4",
                      "--write-batch", "3"], tmp_path / "logs")
    seen: list[int] = []
    try:
        while proc.alive():  # queries from this process for the whole run
            with open_store(db=db) as store:
                hits = recommend([pic], tiny_model, store, k=3).results
                seen.append(store.count())
            assert len(hits) == 3 and len({h.path for h in hits}) == 3
            if sum(first.values()) < seen[-1] < total - 3:
                # part-way: pause the writer with its store open and run a real `soundlib query` process
                proc.signal(signal.SIGSTOP)
                try:
                    q = start_cli(["query", pic, "--db", db, "-k", "3", "--json"], tmp_path / "logs")
                    rc, out, err = q.finish(timeout=120)
                finally:
                    proc.signal(signal.SIGCONT)
                assert rc == 0, err
                doc = json.loads(out)
                assert len({r["path"] for r in doc["results"]}) == 3
                break
            time.sleep(0.3)
    finally:
        rc, out, err = proc.finish(timeout=180)
    assert rc == 0, err
    assert len(seen) >= 2 and seen == sorted(seen)  # the queries saw the library grow
    assert json.loads(out)["added"] == len(expected) - len(first)
    with open_store(db=db) as store:
        check_library(store, root, expected)
    assert wait_for(lambda: stored_windows(db) == total, timeout=5)
