"""soundlib.ingest on real files and a real Chroma store: counts, metadata, incremental runs, prune, crashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from soundlib.errors import ModelMismatchError, SoundlibError, StoreError
from soundlib.ingest import ingest
from soundlib.locking import exclusive_lock
from soundlib.store import file_key, open_store, window_id
from tests.fixtures_library import BAD, GOOD, TOTAL_WINDOWS, build_library, write_sound


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    return build_library(tmp_path / "lib").resolve()


@pytest.fixture
def counted(tiny_model):
    """The tiny model with its ``embed_audio`` wrapped to record the batch sizes it is called with."""
    calls: list[int] = []
    real = tiny_model.model.embed_audio

    def embed_audio(waves, *a, **k):
        calls.append(int(waves.shape[0]))
        return real(waves, *a, **k)

    tiny_model.model.embed_audio = embed_audio
    return tiny_model, calls


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(db=tmp_path / "db", create=True)
    yield s
    s.close()


def windows_of(store, root: Path, rel: str) -> list[dict]:
    got = store.require().get(where={"file_id": file_key(str(root), rel)}, include=["metadatas"])
    return sorted(got["metadatas"], key=lambda m: m["window"])


def test_first_ingest_counts_metadata_categories_and_skips(lib: Path, store, counted) -> None:
    loaded, calls = counted
    report = ingest([lib], loaded, store)
    assert (report.added, report.updated, report.unchanged, report.removed) == (len(GOOD), 0, 0, 0)
    skipped = {os.path.relpath(p, lib): reason for p, reason in report.skipped}
    assert set(skipped) == set(BAD)
    for rel, word in BAD.items():
        assert word in skipped[rel]
    assert report.windows == TOTAL_WINDOWS == store.count() == sum(calls)
    assert max(calls) <= 64 and report.windows_per_s > 0
    assert report.to_json()["skipped"] == [{"path": p, "reason": r} for p, r in report.skipped]

    records = store.file_records()
    assert len(records) == len(GOOD)
    for rel, exp in GOOD.items():
        rec = records[file_key(str(lib), rel)]
        path = lib / rel
        # the default rule (auto): no UCS names here, so the folder path below the root (the root's name at the root)
        assert (rec.rel, rec.root, rec.category, rec.folder) == (rel, str(lib), exp.folder or "lib", exp.folder)
        assert rec.category_from == "auto"
        assert rec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (rec.size, rec.mtime_ns) == (path.stat().st_size, path.stat().st_mtime_ns)
        assert rec.mtime == pytest.approx(path.stat().st_mtime, abs=1e-5)
        assert rec.sample_rate == exp.sample_rate and rec.n_windows == len(exp.starts)
        metas = windows_of(store, lib, rel)
        assert [m["start"] for m in metas] == list(exp.starts)
        assert [m["window"] for m in metas] == list(range(len(exp.starts)))
        assert [m["last"] for m in metas] == [False] * (len(exp.starts) - 1) + [True]
    assert records[file_key(str(lib), "cars/engine long.wav")].duration == pytest.approx(40.0)
    assert store.stats()["categories"] == {"cars": 2, "dogs": 1, "dogs/nested/deep": 1, "lib": 1, "rain": 2}
    assert store.metadata["model_sha256"] == loaded.sha256


def test_reingest_does_no_embedding_work_and_a_touch_only_refreshes_mtime(lib: Path, store, counted) -> None:
    loaded, calls = counted
    ingest([lib], loaded, store)
    calls.clear()
    report = ingest([lib], loaded, store)
    assert (report.added, report.updated, report.unchanged, report.windows) == (0, 0, len(GOOD), 0)
    assert calls == [] and store.count() == TOTAL_WINDOWS
    assert len(report.skipped) == len(BAD)  # still reported, every run
    touched = lib / "rain" / "drizzle.wav"
    os.utime(touched, (1_600_000_000.0, 1_600_000_000.0))
    report = ingest([lib], loaded, store)
    assert (report.added, report.updated, report.unchanged) == (0, 0, len(GOOD)) and calls == []
    metas = windows_of(store, lib, "rain/drizzle.wav")
    assert {(m["mtime"], m["mtime_ns"]) for m in metas} == {(1_600_000_000.0, 1_600_000_000 * 10**9)}


def test_changed_files_are_replaced_as_a_whole(lib: Path, store, counted) -> None:
    loaded, calls = counted
    ingest([lib], loaded, store)
    calls.clear()
    write_sound(lib / "rain" / "drizzle.wav", 5.0, 48_000, "tone", 11)  # 3 windows -> 5
    write_sound(lib / "cars" / "engine long.wav", 2.0, 8_000, "tone", 12)  # 30 windows -> 2
    report = ingest([lib], loaded, store)
    assert (report.added, report.updated, report.unchanged) == (0, 2, len(GOOD) - 2)
    assert report.windows == sum(calls) == 7
    assert [m["start"] for m in windows_of(store, lib, "rain/drizzle.wav")] == [0.0, 1.0, 2.0, 3.0, 4.0]
    engine = windows_of(store, lib, "cars/engine long.wav")
    assert [m["window"] for m in engine] == [0, 1] and {m["n_windows"] for m in engine} == {2}
    assert store.count() == TOTAL_WINDOWS - 3 + 5 - 30 + 2
    new_sha = hashlib.sha256((lib / "cars" / "engine long.wav").read_bytes()).hexdigest()
    assert {m["sha256"] for m in engine} == {new_sha}


def test_windows_of_another_audio_features_version_are_re_embedded(lib: Path, store, counted) -> None:
    loaded, calls = counted
    ingest([lib], loaded, store)
    assert {m["features"] for m in store.require().get(include=["metadatas"])["metadatas"]} == {1}
    # a soundlib whose front end computes other features for the same checkpoint (e.g. a faster one): the
    # collection must not mix the two kinds of vectors, so every file is embedded again, once
    loaded.model.audio_features_version = 2
    calls.clear()
    report = ingest([lib], loaded, store)
    assert (report.added, report.updated, report.unchanged) == (0, len(GOOD), 0)
    assert report.windows == sum(calls) == TOTAL_WINDOWS == store.count()
    assert {m["features"] for m in store.require().get(include=["metadatas"])["metadatas"]} == {2}
    calls.clear()
    report = ingest([lib], loaded, store)
    assert (report.updated, report.unchanged, calls) == (0, len(GOOD), [])


def test_model_workers_give_the_same_vectors_in_the_same_order(lib: Path, tmp_path: Path, tiny_model) -> None:
    import numpy as np
    import torch

    from soundlib.embedding import embed_windows_batched
    from soundlib.scan import plan_roots, scan

    files = sorted(scan(plan_roots([str(lib)])), key=lambda f: f.rel)
    seen_threads: list[int] = []
    real = tiny_model.model.embed_audio

    def embed_audio(waves, *a, **k):
        seen_threads.append(torch.get_num_threads())
        return real(waves, *a, **k)

    tiny_model.model.embed_audio = embed_audio
    before = torch.get_num_threads()
    one = list(embed_windows_batched(tiny_model.model, files, batch_size=4, workers=1))
    assert set(seen_threads) == {before}
    seen_threads.clear()
    three = list(embed_windows_batched(tiny_model.model, files, batch_size=4, workers=3))
    assert set(seen_threads) == {1} and len(seen_threads) >= 3  # each call on one torch thread
    assert torch.get_num_threads() == before  # restored
    assert [r.sound.rel for r in one] == [r.sound.rel for r in three] == [f.rel for f in files]
    for a, b in zip(one, three):
        assert type(a) is type(b)
        if hasattr(a, "vectors"):
            assert a.starts == b.starts
            np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
    assert sum(len(r.starts) for r in three if hasattr(r, "starts")) == TOTAL_WINDOWS


def test_prune_removes_only_vanished_files_under_the_given_folders(lib: Path, tmp_path: Path, store, counted) -> None:
    loaded, _ = counted
    other = tmp_path / "other"
    write_sound(other / "x" / "keep.wav", 1.0, 16_000, "noise", 20)
    ingest([lib, other], loaded, store)
    (lib / "cars" / "blip.wav").unlink()
    (other / "x" / "keep.wav").unlink()
    report = ingest([lib], loaded, store)
    assert report.removed == 0 and file_key(str(lib), "cars/blip.wav") in store.file_records()
    report = ingest([lib], loaded, store, prune=True)
    assert report.removed == 1 and report.unchanged == len(GOOD) - 1
    records = store.file_records()
    assert file_key(str(lib), "cars/blip.wav") not in records
    assert file_key(str(other.resolve()), "x/keep.wav") in records  # not under the pruned folder
    assert store.count() == TOTAL_WINDOWS - 1 + 1


def test_subfolder_and_cap_changes_and_a_file_turned_corrupt(lib: Path, store, counted) -> None:
    loaded, calls = counted
    ingest([lib], loaded, store, max_windows=10)
    assert len(windows_of(store, lib, "cars/engine long.wav")) == 10
    calls.clear()
    report = ingest([lib / "dogs"], loaded, store, max_windows=10)  # inside the known root: same files, no dupes
    assert (report.added, report.unchanged, calls) == (0, 2, [])
    report = ingest([lib], loaded, store)  # default cap 30: only the long file changes layout
    assert (report.updated, report.unchanged) == (1, len(GOOD) - 1)
    engine = windows_of(store, lib, "cars/engine long.wav")
    assert [m["start"] for m in engine] == list(GOOD["cars/engine long.wav"].starts)
    (lib / "cars" / "blip.wav").write_bytes(b"RIFF garbage")
    report = ingest([lib], loaded, store)
    assert [os.path.relpath(p, lib) for p, _ in report.skipped if "blip" in p] == ["cars/blip.wav"]
    assert windows_of(store, lib, "cars/blip.wav") == []  # no longer recommended
    assert store.count() == TOTAL_WINDOWS - 1


def test_half_written_file_is_redone(lib: Path, store, counted) -> None:
    loaded, calls = counted
    ingest([lib], loaded, store)
    fid = file_key(str(lib), "rain/drizzle.wav")
    store.require().delete(ids=[window_id(fid, 2)])  # as if the run died before the file's last window
    assert fid not in store.file_records() and fid in store.started_file_ids()
    # another file cut the same way, then deleted from disk: garbage, removed even without --prune
    gone = file_key(str(lib), "dogs/bark 1.wav")
    store.require().delete(ids=[window_id(gone, 2)])
    (lib / "dogs" / "bark 1.wav").unlink()
    calls.clear()
    report = ingest([lib], loaded, store)
    assert (report.added, report.unchanged, report.removed, sum(calls)) == (1, len(GOOD) - 2, 0, 3)
    assert [m["window"] for m in windows_of(store, lib, "rain/drizzle.wav")] == [0, 1, 2]
    assert windows_of(store, lib, "dogs/bark 1.wav") == [] and gone not in store.started_file_ids()
    assert store.count() == TOTAL_WINDOWS - 3


def test_interrupt_keeps_the_store_consistent_and_the_next_run_finishes(lib: Path, store, counted) -> None:
    loaded, _ = counted
    stop = threading.Event()

    def progress(task, done, total, **info):
        if task == "embed" and done >= 1:
            stop.set()  # what the first Ctrl-C does

    report = ingest([lib], loaded, store, progress=progress, batch_size=4, stop=stop)
    assert report.interrupted and 1 <= report.added < len(GOOD)
    assert set(store.file_records(complete=False)) == set(store.file_records(complete=True))
    assert store.count() == report.windows
    report2 = ingest([lib], loaded, store)
    assert report2.added == len(GOOD) - report.added and report2.unchanged == report.added
    assert store.count() == TOTAL_WINDOWS


def test_other_model_is_refused_and_bad_folders_touch_nothing(lib: Path, tmp_path: Path, store, counted,
                                                               other_checkpoint) -> None:
    from soundlib.models import load_model

    loaded, _ = counted
    with pytest.raises(SoundlibError, match="no such file or folder"):
        ingest([lib, tmp_path / "nope"], loaded, store)
    assert store.collection is None  # nothing created for a typo
    ingest([lib / "cars"], loaded, store)
    with pytest.raises(ModelMismatchError, match="--collection"):
        ingest([lib], load_model(other_checkpoint), store)
    assert store.count() == 31


def test_first_ctrl_c_sets_the_stop_event_and_the_second_interrupts() -> None:
    import signal
    import time

    from soundlib.ingest import graceful_interrupt

    before = signal.getsignal(signal.SIGINT)
    with graceful_interrupt() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_signal_ignored_at_start_stays_ignored_and_sigterm_still_stops() -> None:
    """`soundlib ingest DIR &` from a script (or under nohup) starts with SIGINT ignored: a Ctrl-C meant for the
    foreground job neither stops nor kills it; SIGTERM still stops it after the batch in flight."""
    import signal
    import time

    from soundlib.ingest import graceful_interrupt

    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with graceful_interrupt() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert not stop.is_set()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert stop.is_set()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)


@contextlib.contextmanager
def lock_held_by_another_process(folder: Path, command: str = "library import"):
    """A real second process holding the store's writer lock for the block (released when it is stopped)."""
    code = ("import sys\nfrom soundlib.locking import exclusive_lock\n"
            f"with exclusive_lock(sys.argv[1], command={command!r}):\n"
            "    print('held', flush=True)\n    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=Path(__file__).resolve().parents[1],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_one_writer_at_a_time_across_processes_and_reentrant_within_one(tmp_path: Path) -> None:
    from soundlib.locking import current_writer

    assert current_writer(tmp_path) is None  # no lock file yet
    with lock_held_by_another_process(tmp_path) as pid:
        with pytest.raises(StoreError, match=rf"another `soundlib library import` \(pid {pid}\)"):
            with exclusive_lock(tmp_path):
                pass
        assert current_writer(tmp_path) == (f"`soundlib library import` (pid {pid}) is writing to it; "
                                            "try again when it has finished")
    assert current_writer(tmp_path) is None
    with exclusive_lock(tmp_path):  # released with the other process
        with exclusive_lock(tmp_path):  # the same process nests without locking again
            pass
        assert current_writer(tmp_path) is None  # this process is not "another" writer
        # still held after the inner block: another process is refused
        code = ("import sys\nfrom soundlib.locking import exclusive_lock\nfrom soundlib.errors import StoreError\n"
                "try:\n    with exclusive_lock(sys.argv[1]): print('got it')\n"
                "except StoreError as e: print('refused', e)\n")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=60).stdout
        assert out.startswith("refused") and f"pid {os.getpid()}" in out


def test_library_writers_take_the_lock_themselves(lib: Path, tmp_path: Path, tiny_model) -> None:
    """ingest() and import_library() called as a library (no CLI around them) refuse a store being written."""
    from soundlib.transfer import export_library, import_library

    db = tmp_path / "db"
    with open_store(db=db, create=True) as store:
        with lock_held_by_another_process(db):
            with pytest.raises(StoreError, match="is writing to this store"):
                ingest([lib], tiny_model, store)
            assert store.collection is None  # refused before anything was created
        report = ingest([lib], tiny_model, store)  # free again
        assert report.windows == TOTAL_WINDOWS
        export_library(store, tmp_path / "lib.zip")
    with open_store(db=tmp_path / "copy", create=True) as copy:
        with lock_held_by_another_process(tmp_path / "copy", command="ingest"):
            with pytest.raises(StoreError, match="another `soundlib ingest`"):
                import_library(tmp_path / "lib.zip", copy)
            assert copy.collection is None
        assert import_library(tmp_path / "lib.zip", copy).windows == TOTAL_WINDOWS
