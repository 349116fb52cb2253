"""Crash safety: `soundlib ingest` as a real process killed (SIGKILL) or interrupted (SIGINT) mid-run, embedding
or remixing a library's names in place; an interrupted `library import`; an export that sees the library change.

After a SIGKILL the store opens, passes SQLite's integrity check and holds only whole files (a file cut by the
crash has no ``last`` window and does not count); running the same command again finishes with the exact window
count, no duplicate ids and every file whole. Ctrl-C stops after the batch in flight, keeps what is complete,
exits 130 and says how to resume. An import stopped at any point leaves no file that looks whole without all its
windows, and running it again completes it; an export never leaves a file that looks complete but is not.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from tests.cli_process import check_library, run_in_slices, start_cli, stored_windows, write_library

N_FILES = 16


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = (tmp_path_factory.mktemp("crash") / "lib").resolve()
    return root, write_library(root, N_FILES)


def ingest_args(root: Path, db: Path, ckpt: Path) -> list:
    # small model batches and store writes: many writes, so the run is cut part-way through
    return ["ingest", root, "--db", db, "--model", ckpt, "--json", "--batch-size", "4", "--write-batch", "6"]


def start_and_wait(root: Path, db: Path, ckpt: Path, logs: Path, at_least: int):
    """Start an ingest process and let it run in short slices until it has stored ``at_least`` windows; it is
    returned stopped (SIGSTOP), part-way for certain: a free-running ingest of this small library can store the
    rest between the poll that sees ``at_least`` and the signal (seen on an idle machine)."""
    proc = start_cli(ingest_args(root, db, ckpt), logs)
    try:
        run_in_slices(proc, lambda: stored_windows(db) >= at_least, f"{at_least} stored windows")
    except BaseException:
        proc.kill()
        raise
    return proc


def state(db: Path) -> tuple[int, dict, dict]:
    """(windows, complete files, started files) of the store."""
    from soundlib.store import open_store

    with open_store(db=db) as store:
        complete = store.file_records(complete=True)
        started = store.file_records(complete=False)
        return store.count(), complete, started


def rerun(root: Path, db: Path, ckpt: Path) -> dict:
    result = CliRunner().invoke(main, [str(a) for a in ingest_args(root, db, ckpt)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_ctrl_c_then_sigkill_mid_ingest_then_a_rerun_finishes_exactly(library, tmp_path: Path,
                                                                      tiny_checkpoint) -> None:
    from soundlib.store import open_store

    root, expected = library
    total = sum(expected.values())
    db = tmp_path / "db"

    # 1. Ctrl-C: the batch in flight is finished and written, the run says how to resume, exit 130
    proc = start_and_wait(root, db, tiny_checkpoint, tmp_path / "logs", at_least=6)
    proc.signal(signal.SIGINT)  # delivered when it runs again
    proc.signal(signal.SIGCONT)
    rc, out, err = proc.finish(timeout=60)
    assert rc == 130, err
    assert "Traceback" not in out + err
    assert "interrupted" in err and "run the same command again to finish" in err
    doc = json.loads(out)  # --json still prints its one document
    assert 1 <= doc["added"] < N_FILES
    windows, complete, started = state(db)
    assert set(started) == set(complete)  # nothing half-written
    assert len(complete) == doc["added"] and windows == doc["windows"]

    # 2. the same command resumes; SIGKILL it part-way (no chance to clean up)
    proc = start_and_wait(root, db, tiny_checkpoint, tmp_path / "logs", at_least=windows + 6)
    proc.kill()
    killed_at = stored_windows(db)
    assert windows + 6 <= killed_at < total
    con = sqlite3.connect(db / "chroma.sqlite3")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    windows, complete, started = state(db)
    # Chroma appends each write to its log (embeddings_queue) before applying it to the embeddings table; a kill
    # between the two leaves log entries that the next open applies. So nothing seen before the kill is lost, and
    # the reopened store may hold more than the table showed (CI once saw 27 -> 33).
    assert killed_at <= windows < total and doc["added"] < len(complete) < N_FILES
    assert stored_windows(db) == windows  # the log was applied on open, not left pending
    for rec in complete.values():  # a file that counts is whole
        assert rec.n_windows == expected[rec.rel]
    assert len(set(started) - set(complete)) <= 1  # at most the file in flight was cut
    lib = json.loads(CliRunner().invoke(main, ["library", "--db", str(db), "--json"]).stdout)
    assert lib["files"] == len(complete)

    # 3. and once more: exact counts, no duplicate ids, every file whole
    doc = rerun(root, db, tiny_checkpoint)
    assert (doc["added"], doc["unchanged"]) == (N_FILES - len(complete), len(complete))
    assert doc["windows"] == total - sum(expected[r.rel] for r in complete.values())
    with open_store(db=db) as store:
        check_library(store, root, expected)


@pytest.fixture
def exported(tmp_path: Path, tiny_model):
    """(library root, expected, export file) of a 6-file library exported in chunks of 5 windows."""
    from soundlib.ingest import ingest
    from soundlib.store import open_store
    from soundlib.transfer import export_library

    root = (tmp_path / "lib").resolve()
    expected = write_library(root, 6)
    with open_store(db=tmp_path / "src", create=True) as store:
        ingest([root], tiny_model, store)
        export_library(store, tmp_path / "lib.zip", batch=5)
    return root, expected, tmp_path / "lib.zip"


@pytest.mark.parametrize("stop_after", [5, 15])  # in the first pass (no file whole yet), in the second
def test_an_interrupted_import_leaves_no_false_whole_file_and_a_rerun_completes(exported, tmp_path: Path,
                                                                                stop_after: int) -> None:
    from soundlib.store import open_store
    from soundlib.transfer import import_library

    root, expected, archive = exported

    def progress(task, done, total):
        if done >= stop_after:
            raise KeyboardInterrupt  # Ctrl-C, or a kill, at this point

    with open_store(db=tmp_path / "dst", create=True) as store:
        store.write_batch = 4
        with pytest.raises(KeyboardInterrupt):
            import_library(archive, store, progress=progress)
        assert 0 < store.count() < sum(expected.values())
        for rec in store.file_records(complete=True).values():  # whatever counts as present is whole
            assert rec.n_windows == expected[rec.rel]
        if stop_after <= sum(n - 1 for n in expected.values()):
            assert store.file_records(complete=True) == {}
        report = import_library(archive, store)
        assert report.windows == sum(expected.values()) and report.files == len(expected)
        check_library(store, root, expected)


def test_an_export_that_sees_the_library_change_is_refused_and_leaves_no_file(exported, tmp_path: Path) -> None:
    import numpy as np

    from soundlib.errors import StoreError
    from soundlib.store import open_store
    from soundlib.transfer import export_library

    _, _, archive = exported
    target = tmp_path / "again.zip"
    with open_store(db=tmp_path / "src") as store:
        def progress(task, done, total):  # an ingest writes while the export reads
            store.add_vectors(["intruder:0"], np.ones((1, int(store.metadata["dim"])), np.float32) / 8,
                              [{"path": "x.wav", "window": 0}])

        with pytest.raises(StoreError, match="changed during the export"):
            export_library(store, target, batch=5, progress=progress)
    assert not target.exists() and not list(tmp_path.glob(f".{target.name}.*"))  # no temporary file left


def test_sigterm_stops_an_ingest_like_the_first_ctrl_c() -> None:
    """`kill`, `docker stop` or a service manager send SIGTERM: finish the batch in flight, like Ctrl-C; a second
    SIGTERM is the default again."""
    import os
    import time

    from soundlib.ingest import graceful_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with graceful_interrupt() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.is_set()
        assert signal.getsignal(signal.SIGTERM) is before  # a second SIGTERM terminates as usual
    assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def named_windows(db: Path, version: int) -> int:
    """Windows whose ``named`` is ``version``, read from the store's SQLite file (what Chroma has applied)."""
    path = db / "chroma.sqlite3"
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    try:
        return int(con.execute("SELECT count(*) FROM embedding_metadata WHERE key = 'named' AND int_value = ?",
                               (version,)).fetchone()[0])
    except sqlite3.Error:  # busy
        return 0
    finally:
        con.close()


@pytest.mark.parametrize("names_now", [True, False], ids=["names-mixed-in", "names-taken-out"])
def test_a_remix_killed_part_way_then_rerun_ends_as_a_fresh_ingest(tmp_path: Path, names_now: bool) -> None:
    """The bundled default: a library stored under one name mixing (without names, or with them), then `ingest`
    remixing it under the other is SIGKILLed part-way; the next run finishes it, and every window equals what a
    fresh ingest under the new mixing stores (names taken out: each mix undone in place)."""
    import numpy as np

    from soundlib.config import NAMES_VERSION
    from soundlib.store import open_store

    root = (tmp_path / "lib").resolve()
    expected = write_library(root, 40)  # dogs/, rain/, cars/: every file's folder names a concept
    total = sum(expected.values())
    now, before = ([], ["--no-names"]) if names_now else (["--no-names"], [])
    target = NAMES_VERSION if names_now else 0

    def vectors(db: Path) -> dict[str, np.ndarray]:
        with open_store(db=db) as store:
            return {i: v for ids, vecs, _ in store.iter_records() for i, v in zip(ids, vecs)}

    runner = CliRunner()
    assert runner.invoke(main, ["ingest", str(root), "--db", str(tmp_path / "fresh"), *now]).exit_code == 0
    want = vectors(tmp_path / "fresh")
    db = tmp_path / "db"
    assert runner.invoke(main, ["ingest", str(root), "--db", str(db), *before]).exit_code == 0
    assert named_windows(db, target) == 0

    # one window per store update: the remix makes ~120 writes, so a 20 ms slice sees it part-way
    proc = start_cli(["ingest", root, "--db", db, "--json", "--write-batch", "1", *now], tmp_path / "logs")
    try:
        run_in_slices(proc, lambda: named_windows(db, target) >= 1, "a remixed window")
    finally:
        proc.kill()
    con = sqlite3.connect(db / "chroma.sqlite3")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    windows, complete, _ = state(db)  # the open applies what the log still held
    assert windows == total and len(complete) == len(expected)  # a remix deletes and adds nothing
    done = sum(1 for rec in complete.values() if rec.named == target)
    assert 1 <= named_windows(db, target) < total and done < len(expected)

    doc = rerun_names(root, db, *now)
    assert doc["unchanged"] == done and doc["added"] == 0
    assert doc["updated"] <= 1 and doc["remixed"] + doc["updated"] == len(expected) - done  # at most the cut file
    got = vectors(db)
    assert got.keys() == want.keys()
    assert max(float(np.abs(got[i] - want[i]).max()) for i in want) < 1e-5
    with open_store(db=db) as store:
        check_library(store, root, expected)
        assert {r.named for r in store.file_records(complete=False).values()} == {target}


def rerun_names(root: Path, db: Path, *flags: str) -> dict:
    result = CliRunner().invoke(main, ["ingest", str(root), "--db", str(db), "--json", *flags],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)
