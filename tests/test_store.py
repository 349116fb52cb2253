"""soundlib.store on a real embedded Chroma: whole-file writes, crash detection, exact distinct-file search."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from soundlib.errors import ModelMismatchError, StoreError
from soundlib.store import FileVectors, SoundStore, default_db_path, file_key, open_store, window_id

DIM = 8


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fv(rel: str, vectors: np.ndarray, category: str = "cat", root: str = "/lib", sha: str = "s") -> FileVectors:
    n = len(vectors)
    return FileVectors(root=root, rel=rel, category=category, folder=category, size=100 + n, mtime=1.5,
                       mtime_ns=1_500_000_000, sha256=sha,
                       duration=float(n), sample_rate=48_000, starts=[float(i) for i in range(n)], vectors=vectors)


@pytest.fixture
def store(tmp_path: Path, tiny_model) -> SoundStore:
    s = open_store(db=tmp_path / "db", create=True)
    s.prepare(tiny_model)
    yield s
    s.close()


def brute_force(query: np.ndarray, files: dict[str, np.ndarray], k: int) -> list[tuple[str, float, int]]:
    """Ground truth: per file the minimal Euclidean distance and its window, top k."""
    best = []
    for name, vecs in files.items():
        d = np.linalg.norm(vecs - query[None], axis=1)
        best.append((name, float(d.min()), int(d.argmin())))
    return sorted(best, key=lambda t: t[1])[:k]


def test_search_returns_exactly_k_distinct_files_matching_brute_force(store: SoundStore) -> None:
    rng = np.random.default_rng(0)
    files = {f"f{i:02d}.wav": unit(rng, int(rng.integers(1, 12))) for i in range(40)}
    store.write_files([fv(name, v, category="even" if i % 2 == 0 else "odd")
                       for i, (name, v) in enumerate(files.items())])
    queries = unit(rng, 5)
    results = store.search(queries, k=7)
    assert len(results) == 5
    for q, hits in zip(queries, results):
        truth = brute_force(q, files, 7)
        assert [Path(h.path).name for h in hits] == [t[0] for t in truth]
        assert [h.distance for h in hits] == pytest.approx([t[1] for t in truth], abs=1e-5)
        assert [h.start for h in hits] == [float(t[2]) for t in truth]  # start of the best window
        assert all(h.path == os.path.join("/lib", Path(h.path).name) for h in hits)


def test_search_widens_when_one_file_floods_the_candidates(store: SoundStore) -> None:
    rng = np.random.default_rng(1)
    q = unit(rng, 1)[0]
    # one file with 200 windows right around the query: the first k*8 candidates are all from it
    near = q[None] + 0.01 * rng.normal(size=(200, DIM)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    files = {"near.wav": near, **{f"far{i}.wav": unit(rng, 2) for i in range(12)}}
    store.write_files([fv(n, v) for n, v in files.items()])
    hits = store.search(q, k=5)[0]
    assert [Path(h.path).name for h in hits] == [t[0] for t in brute_force(q, files, 5)]
    assert Path(hits[0].path).name == "near.wav"


def test_search_with_category_filter_and_fewer_files_than_k(store: SoundStore) -> None:
    rng = np.random.default_rng(2)
    files = {f"f{i}.wav": unit(rng, 3) for i in range(9)}
    cats = {f"f{i}.wav": ["a", "b", "c"][i % 3] for i in range(9)}
    store.write_files([fv(n, v, category=cats[n]) for n, v in files.items()])
    q = unit(rng, 1)
    hits = store.search(q, k=10, where={"category": {"$in": ["a", "c"]}})[0]
    assert len(hits) == 6 and {h.category for h in hits} == {"a", "c"}
    truth = brute_force(q[0], {n: v for n, v in files.items() if cats[n] != "b"}, 10)
    assert [Path(h.path).name for h in hits] == [t[0] for t in truth]
    assert len(store.search(q, k=20)[0]) == 9  # the whole library, no error
    assert store.search(q, k=3, where={"category": "nope"}) == [[]]


def test_same_relative_path_under_two_roots_are_two_files(store: SoundStore) -> None:
    rng = np.random.default_rng(3)
    v = unit(rng, 2)
    store.write_files([fv("a.wav", v, root="/one"), fv("a.wav", v + 0.001, root="/two")])
    hits = store.search(v[0], k=5)[0]
    assert sorted(h.path for h in hits) == ["/one/a.wav", "/two/a.wav"]


def test_whole_file_replace_and_half_written_detection(store: SoundStore) -> None:
    rng = np.random.default_rng(4)
    store.write_files([fv("x.wav", unit(rng, 5)), fv("y.wav", unit(rng, 2))])
    assert store.count() == 7
    fid = file_key("/lib", "x.wav")
    assert store.file_records()[fid].n_windows == 5
    store.write_files([fv("x.wav", unit(rng, 3), sha="t")], replace={fid})
    col = store.require()
    got = col.get(where={"file_id": fid}, include=["metadatas"])
    assert sorted(got["ids"]) == [window_id(fid, i) for i in range(3)]  # no stale windows 3 and 4
    assert {m["sha256"] for m in got["metadatas"]} == {"t"} and {m["n_windows"] for m in got["metadatas"]} == {3}
    assert [m["last"] for m in sorted(got["metadatas"], key=lambda m: m["window"])] == [False, False, True]
    # a crash after the first windows of a file: present in "started", absent from "complete"
    col.delete(ids=[window_id(fid, 2)])
    assert fid not in store.file_records(complete=True)
    assert fid in store.file_records(complete=False)
    assert store.stats()["files"] == 1
    assert store.delete_files([fid]) == 2 and store.count() == 2


def test_file_vectors_by_id_match_the_filtered_read(store: SoundStore, monkeypatch) -> None:
    """Given the window counts, a file's vectors are read by record id (no metadata filter), in window order; a
    file cut by a crash gives the windows it holds; an unknown file is left out."""
    rng = np.random.default_rng(9)
    x, y = unit(rng, 5), unit(rng, 2)
    store.write_files([fv("x.wav", x), fv("y.wav", y)])
    fx, fy = file_key("/lib", "x.wav"), file_key("/lib", "y.wav")
    calls = _count_calls(monkeypatch, store.require(), "get")
    got = store.file_vectors([fx, fy, "nope"], {fx: 5, fy: 2, "nope": 3})
    assert all("where" not in c or c["where"] is None for c in calls) and calls
    np.testing.assert_allclose(got[fx], x, atol=1e-6)
    np.testing.assert_allclose(got[fy], y, atol=1e-6)
    assert set(got) == {fx, fy}
    store.require().delete(ids=[window_id(fx, 4)])  # a crash before the last window
    cut, filtered = store.file_vectors([fx], {fx: 5}), store.file_vectors([fx])
    np.testing.assert_allclose(cut[fx], x[:4], atol=1e-6)
    np.testing.assert_allclose(filtered[fx], cut[fx], atol=1e-6)


def test_writes_are_chunked_by_the_write_batch(store: SoundStore, monkeypatch) -> None:
    rng = np.random.default_rng(5)
    assert store.max_batch_size == store.client.get_max_batch_size() > 1000
    calls: list[int] = []
    col = store.require()
    real_upsert = col.upsert
    store.write_batch = 4
    # count the writes reaching Chroma (the real upsert still runs)
    monkeypatch.setattr(col, "upsert", lambda **kw: (calls.append(len(kw["ids"])), real_upsert(**kw))[1])
    store.write_files([fv("a.wav", unit(rng, 3)), fv("b.wav", unit(rng, 7))])
    assert calls == [4, 4, 2] and store.count() == 10
    assert len(store.file_records()) == 2


def test_stats_touch_and_model_metadata(store: SoundStore, tiny_model) -> None:
    rng = np.random.default_rng(6)
    store.write_files([fv("a.wav", unit(rng, 2), "dogs"), fv("b.wav", unit(rng, 1), "dogs"),
                       fv("c.wav", unit(rng, 4), "rain")])
    assert store.stats() == {"collection": "sounds", "model": "m5-attention-linear-infonce", "files": 3,
                             "windows": 7, "categories": {"dogs": 2, "rain": 1}}
    rec = store.file_records()[file_key("/lib", "c.wav")]
    store.touch_file(rec, mtime=99.0, mtime_ns=99 * 10**9)
    assert {(m["mtime"], m["mtime_ns"]) for m in store.require().get(where={"file_id": rec.file_id})["metadatas"]} == \
        {(99.0, 99 * 10**9)}
    meta = store.metadata
    assert meta["model_sha256"] == tiny_model.sha256 and meta["dim"] == 128
    assert store.recorded_model_path() == str(Path(tiny_model.info.path).resolve())
    info = store.describe()
    assert info["size_bytes"] > 0 and info["dim"] == 128


def test_model_mismatch_is_refused(tmp_path: Path, tiny_model, other_checkpoint) -> None:
    from soundlib.models import load_model

    other = load_model(other_checkpoint)
    assert other.sha256 != tiny_model.sha256
    with open_store(db=tmp_path / "db", create=True) as s:
        s.prepare(tiny_model)
        with pytest.raises(ModelMismatchError, match="--collection"):
            s.prepare(other)
        with pytest.raises(ModelMismatchError):
            s.check_model(other)
    with open_store(db=tmp_path / "db", collection="other-model") as s:
        s.prepare(other)  # a second collection for the other model is fine
        s.check_model(other)


def test_open_store_errors_and_defaults(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(StoreError, match="no sound library here"):
        open_store(db=tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(StoreError, match="bad collection name"):
        open_store(db=tmp_path, collection="a b")
    with open_store(db=tmp_path / "db", create=True) as s:
        with pytest.raises(StoreError, match="no collection 'sounds'"):
            s.search(np.zeros((1, DIM), np.float32), k=1)
        assert s.count() == 0 and s.file_records() == {}
    monkeypatch.setenv("SOUNDLIB_HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / "chroma"
    with pytest.raises(StoreError, match="cannot reach"):
        open_store(url="http://127.0.0.1:9")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "chroma.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=r"chroma.sqlite3 is damaged or not a database") as info:
        open_store(db=damaged)
    assert info.value.path == str(damaged)


def test_temporary_store_with_distinct_samples() -> None:
    rng = np.random.default_rng(7)
    vecs = unit(rng, 12)
    with SoundStore.temporary(DIM, {"purpose": "test"}) as s:
        folder = s.location
        assert os.path.isdir(folder) and s.metadata["purpose"] == "test"
        s.add_vectors([f"r{i}" for i in range(12)], vecs, [{"sample": f"s{i // 3}"} for i in range(12)])
        hits = s.search(vecs[4], k=4, distinct="sample")[0]
        assert hits[0].id == "r4" and hits[0].distance == pytest.approx(0.0, abs=1e-6)
        assert sorted(h.metadata["sample"] for h in hits) == ["s0", "s1", "s2", "s3"]
        assert hits == sorted(hits, key=lambda h: h.distance)
    assert not os.path.exists(folder)


def _count_calls(monkeypatch, col, name: str) -> list[dict]:
    """Record the keyword arguments of every ``col.<name>`` call (the real call still runs)."""
    calls: list[dict] = []
    real = getattr(col, name)
    monkeypatch.setattr(col, name, lambda **kw: (calls.append(kw), real(**kw))[1])
    return calls


def test_search_reads_metadata_of_the_k_winners_only(store: SoundStore, monkeypatch) -> None:
    import dataclasses

    rng = np.random.default_rng(8)
    files = {f"f{i:02d}.wav": unit(rng, int(rng.integers(1, 6))) for i in range(60)}
    store.write_files([fv(n, v) for n, v in files.items()])
    store.cfg = dataclasses.replace(store.cfg, candidate_factor=10)
    assert store.candidates(5) == 50
    col = store.require()
    queries = _count_calls(monkeypatch, col, "query")
    gets = _count_calls(monkeypatch, col, "get")
    qs = unit(rng, 3)
    results = store.search(qs, k=5)
    for q, hits in zip(qs, results):
        assert [Path(h.path).name for h in hits] == [t[0] for t in brute_force(q, files, 5)]
        assert all(h.metadata["file_id"] == h.id.split(":")[0] for h in hits)
    assert [c["n_results"] for c in queries] == [50] and queries[0]["include"] == ["embeddings"]
    assert len(gets) == 1 and gets[0]["include"] == ["metadatas"]
    # the 15 winners and their files' window 0 (what describes the file), not the 150 candidates
    winners = {h.id for row in results for h in row}
    assert sorted(gets[0]["ids"]) == sorted(winners | {h.id.split(":")[0] + ":0" for row in results for h in row})


def test_search_with_foreign_record_ids_reads_every_candidate(store: SoundStore) -> None:
    rng = np.random.default_rng(9)
    vecs = unit(rng, 30)
    # ids outside the store's "<file_id>:<window>" scheme, three windows per file
    store.add_vectors([f"rec-{i}" for i in range(30)], vecs,
                      [{"path": f"g{i // 3}.wav", "root": "/x", "file_id": f"g{i // 3}", "start": float(i % 3)}
                       for i in range(30)])
    files = {f"g{f}.wav": vecs[3 * f:3 * f + 3] for f in range(10)}
    hits = store.search(vecs[7], k=4)[0]
    assert [Path(h.path).name for h in hits] == [t[0] for t in brute_force(vecs[7], files, 4)]
    assert hits[0].id == "rec-7" and hits[0].start == 1.0


def test_search_trusts_stored_file_ids_over_id_prefixes(store: SoundStore) -> None:
    rng = np.random.default_rng(10)
    vecs = unit(rng, 12)
    # ids look like the store's, but pairs of prefixes share one stored file_id: the metadata decides
    ids = [f"{i:024x}:0" for i in range(12)]
    store.add_vectors(ids, vecs, [{"path": f"h{i // 2}.wav", "root": "/y", "file_id": f"h{i // 2}"}
                                  for i in range(12)])
    hits = store.search(vecs[0], k=3)[0]
    files = {f"h{f}.wav": vecs[2 * f:2 * f + 2] for f in range(6)}
    assert [Path(h.path).name for h in hits] == [t[0] for t in brute_force(vecs[0], files, 3)]
    assert len({h.metadata["file_id"] for h in hits}) == 3


def test_search_skips_a_file_deleted_between_query_and_metadata_read(store: SoundStore, monkeypatch) -> None:
    rng = np.random.default_rng(11)
    files = {f"f{i:02d}.wav": unit(rng, 2) for i in range(20)}
    store.write_files([fv(n, v) for n, v in files.items()])
    q = files["f03.wav"][0]
    col = store.require()
    real_query = col.query
    gone = file_key("/lib", "f03.wav")

    def query_then_delete(**kw):  # an ingest replacing f03 right after Chroma answered
        res = real_query(**kw)
        store.delete_files([gone])
        return res

    monkeypatch.setattr(col, "query", query_then_delete)
    hits = store.search(q, k=4)[0]
    truth = brute_force(q, {n: v for n, v in files.items() if n != "f03.wav"}, 4)
    assert [Path(h.path).name for h in hits] == [t[0] for t in truth]


def test_ingest_raises_the_search_breadth_of_an_older_collection(tmp_path: Path, tiny_model) -> None:
    import dataclasses

    rng = np.random.default_rng(12)
    files = {f"f{i}.wav": unit(rng, 3) for i in range(10)}
    with open_store(db=tmp_path / "db", create=True) as s:
        s.cfg = dataclasses.replace(s.cfg, hnsw_ef_search=100)  # as an older soundlib made it
        s.prepare(tiny_model)
        s.write_files([fv(n, v) for n, v in files.items()])
        assert s.search_breadth() == 100
    with open_store(db=tmp_path / "db") as s:  # the current defaults
        assert s.search_breadth() == 100 < s.cfg.hnsw_ef_search
        s.prepare(tiny_model)  # what ingest does first
        assert s.search_breadth() == s.cfg.hnsw_ef_search
        assert s.tune_search() is False  # already there: no write
    with open_store(db=tmp_path / "db") as s:  # kept, and the library is intact
        assert s.search_breadth() == s.cfg.hnsw_ef_search and s.count() == 30
        q = files["f4.wav"][1]
        assert [Path(h.path).name for h in s.search(q, k=3)[0]] == [t[0] for t in brute_force(q, files, 3)]


@pytest.mark.parametrize("way", ["numpy", "chroma ids", "hnsw filtered"])
def test_search_within_allowed_files_matches_brute_force(store: SoundStore, monkeypatch, way) -> None:
    """Each of search_within's three ways (chosen by size and share; forced here) ranks exactly the allowed files,
    with their descriptions merged in; a file's filter lists live on its last window, found by id only."""
    import soundlib.store as S

    rng = np.random.default_rng(11)
    files = {f"f{i:02d}.wav": unit(rng, int(rng.integers(1, 6))) for i in range(40)}
    store.write_files([dataclasses.replace(fv(n, v), info={"description": f"sound {n}"},
                                           words=("even",) if i % 2 == 0 else ("odd",))
                       for i, (n, v) in enumerate(files.items())])
    allowed = store.files_matching({"words": {"$contains": "even"}})
    by_id = {file_key("/lib", n): n for n in files}
    assert {by_id[f]: n for f, n in allowed.items()} == {n: len(v) for i, (n, v) in enumerate(files.items()) if i % 2 == 0}
    exact, share = {"numpy": (10 ** 9, 2.0), "chroma ids": (0, 2.0), "hnsw filtered": (0, 0.0)}[way]
    monkeypatch.setattr(S, "EXACT_WINDOWS", exact)
    monkeypatch.setattr(S, "HNSW_SHARE", share)
    even = {n: v for i, (n, v) in enumerate(files.items()) if i % 2 == 0}
    qs = unit(rng, 3)
    for q, hits in zip(qs, store.search(qs, k=7, files=allowed)):
        want = brute_force(q, even, 7)
        assert [Path(h.path).name for h in hits] == [t[0] for t in want]
        assert [h.distance for h in hits] == pytest.approx([t[1] for t in want], abs=1e-5)
        assert all(h.metadata["description"] == f"sound {Path(h.path).name}" for h in hits)
    assert store.search(qs[:1], k=50, files=allowed)[0].__len__() == 20  # k above what is allowed: all of it
    assert store.search(qs[:1], k=5, files={}) == [[]]
