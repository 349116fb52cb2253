"""soundlib.recommend on a real library in a real Chroma store: pictures, videos and sounds as queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soundlib.errors import AudioError, ImageError, ModelMismatchError, SoundlibError
from soundlib.recommend import recommend
from tests.conftest import halves, write_image, write_video
from tests.fixtures_library import GOOD, build_library


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint):
    """(library root, loaded model, store holding the ingested library, pictures folder) shared by the module."""
    from soundlib.ingest import ingest
    from soundlib.models import load_model
    from soundlib.store import open_store

    base = tmp_path_factory.mktemp("query")
    lib = build_library(base / "lib").resolve()
    loaded = load_model(tiny_checkpoint)
    store = open_store(db=base / "db", create=True)
    report = ingest([lib], loaded, store)
    assert report.added == len(GOOD)
    pics = base / "pics"
    pics.mkdir()
    write_image(pics / "red-blue.png", halves(80, 60, (255, 0, 0), (0, 0, 255)))
    write_image(pics / "green.jpg", (64, 64), color=(20, 200, 40))
    write_image(pics / "noise.png", (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8))
    (pics / "notes.txt").write_text("not a picture")
    yield lib, loaded, store, pics
    store.close()


def brute_force_files(store, query: np.ndarray, k: int, categories=None) -> list[tuple[str, float]]:
    """Ground truth from every stored embedding: files by their closest window to ``query``."""
    got = store.require().get(include=["embeddings", "metadatas"])
    best: dict[str, float] = {}
    for e, m in zip(got["embeddings"], got["metadatas"]):
        if categories and m["category"] not in categories:
            continue
        d = float(np.linalg.norm(np.asarray(e) - query))
        path = str(Path(m["root"]) / m["path"])
        best[path] = min(best.get(path, np.inf), d)
    return sorted(best.items(), key=lambda t: t[1])[:k]


def check_ranking(hits, k: int) -> None:
    assert len(hits) == k
    assert len({h.path for h in hits}) == k
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_a_sound_finds_itself_first(world) -> None:
    lib, loaded, store, _ = world
    for rel in ("dogs/bark 1.wav", "rain/Sturm über Nacht (ß).wav", "cars/engine long.wav", "cars/blip.wav"):
        res = recommend([lib / rel], loaded, store, k=4)
        check_ranking(res.results, 4)
        assert res.results[0].path == str(lib / rel)
        assert res.results[0].distance < 1e-3


def test_an_image_ranking_matches_exact_search_over_all_windows(world) -> None:
    from soundlib.images import load_image

    lib, loaded, store, pics = world
    img = pics / "red-blue.png"
    res = recommend([img], loaded, store, k=5)
    check_ranking(res.results, 5)
    q = loaded.model.embed_images(load_image(img, loaded.model.picture_size)[None]).numpy()[0]
    truth = brute_force_files(store, q, 5)
    assert [h.path for h in res.results] == [p for p, _ in truth]
    assert [h.distance for h in res.results] == pytest.approx([d for _, d in truth], abs=1e-4)
    assert res.frames is None
    doc = res.to_json()
    assert set(doc) == {"inputs", "k", "results"} and doc["k"] == 5 and doc["inputs"] == [str(img)]
    assert [set(r) for r in doc["results"]] == [{"rank", "path", "category", "start", "distance", "description", "info"}] * 5
    assert [r["rank"] for r in doc["results"]] == [1, 2, 3, 4, 5]


def test_folder_of_images_per_frame_and_category_filter(world) -> None:
    lib, loaded, store, pics = world
    res = recommend([pics], loaded, store, k=3, per_frame=True)
    check_ranking(res.results, 3)
    assert [Path(f.input).name for f in res.frames] == ["green.jpg", "noise.png", "red-blue.png"]
    assert all(f.time == 0.0 for f in res.frames)
    for f in res.frames:
        check_ranking(f.results, 3)
    doc = res.to_json()
    assert len(doc["frames"]) == 3 and set(doc["frames"][0]) == {"input", "time", "results"}
    # the filter holds, and k larger than what matches returns all matching files
    res = recommend([pics / "green.jpg"], loaded, store, k=10, categories=["rain", "lib"])
    assert sorted(h.category for h in res.results) == ["lib", "rain", "rain"]
    res = recommend([pics / "green.jpg"], loaded, store, k=2, categories=["cars"])
    assert {h.category for h in res.results} == {"cars"} and len(res.results) == 2
    assert len(recommend([pics / "green.jpg"], loaded, store, k=50).results) == len(GOOD)
    # any level: "deep" is the third folder of dogs/nested/deep/growl.flac, "dogs" finds both dogs files
    res = recommend([pics / "green.jpg"], loaded, store, k=10, categories=["deep"])
    assert [Path(h.path).name for h in res.results] == ["growl.flac"]
    res = recommend([pics / "green.jpg"], loaded, store, k=10, categories=["DOGS"])
    assert sorted(Path(h.path).name for h in res.results) == ["bark 1.wav", "growl.flac"]
    # the filtered ranking is the unfiltered one restricted to the allowed files (same distances)
    full = {h.path: h.distance for h in recommend([pics / "green.jpg"], loaded, store, k=50).results}
    want = sorted((d, p) for p, d in full.items() if "/rain/" in p or p.endswith("loose.wav"))
    res = recommend([pics / "green.jpg"], loaded, store, k=10, categories=["rain", "lib"])
    assert [(round(h.distance, 5), h.path) for h in res.results] == [(round(d, 5), p) for d, p in want]


def test_a_video_gives_one_ranking_and_one_per_second(world, tmp_path: Path) -> None:
    _, loaded, store, _ = world
    video = write_video(tmp_path / "clip.mp4", seconds=3.2, fps=10, size=(64, 48))
    res = recommend([video], loaded, store, k=4, per_frame=True)
    check_ranking(res.results, 4)
    assert [round(f.time) for f in res.frames] == [0, 1, 2, 3]
    for f in res.frames:
        check_ranking(f.results, 4)
    # the scene ranking is exact search with the frames' mean embedding, re-normalised
    import torch

    from soundlib.images import video_frames

    frames = torch.stack([f for _, f in video_frames(video, every=1.0, size=loaded.model.picture_size)])
    mean = loaded.model.embed_images(frames).numpy().mean(axis=0)
    truth = brute_force_files(store, mean / np.linalg.norm(mean), 4)
    assert [h.path for h in res.results] == [p for p, _ in truth]
    assert [h.distance for h in res.results] == pytest.approx([d for _, d in truth], abs=1e-4)


def test_bad_inputs_are_typed_errors(world, tmp_path: Path) -> None:
    lib, loaded, store, pics = world
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing useful")
    with pytest.raises(ImageError):
        recommend([tmp_path / "bad.png"], loaded, store, k=3)
    with pytest.raises(ImageError, match="file not found"):
        recommend([tmp_path / "missing.jpg"], loaded, store, k=3)
    with pytest.raises(AudioError, match="truncated"):
        recommend([lib / "rain" / "broken.wav"], loaded, store, k=3)
    with pytest.raises(SoundlibError, match="not an image, video or sound"):
        recommend([pics / "notes.txt"], loaded, store, k=3)
    with pytest.raises(SoundlibError, match="not both"):
        recommend([pics / "green.jpg", lib / "loose.wav"], loaded, store, k=3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no images"):
        recommend([tmp_path / "empty"], loaded, store, k=3)


def test_another_model_is_refused(world, other_checkpoint) -> None:
    from soundlib.models import load_model

    _, _, store, pics = world
    with pytest.raises(ModelMismatchError, match="--collection"):
        recommend([pics / "green.jpg"], load_model(other_checkpoint), store, k=3)


def test_one_picture_is_embedded_on_one_thread_and_a_batch_on_all(world, monkeypatch) -> None:
    import torch

    from soundlib import recommend as rec

    _, loaded, store, pics = world
    seen: list[tuple[int, int]] = []
    real = loaded.model.embed_images

    def recording(images, *a, **kw):  # the real model still runs
        seen.append((len(images), torch.get_num_threads()))
        return real(images, *a, **kw)

    monkeypatch.setattr(loaded.model, "embed_images", recording)
    monkeypatch.setattr(rec, "ONE_THREAD_BELOW", 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        recommend([pics / "green.jpg"], loaded, store, k=2)
        recommend([pics], loaded, store, k=2)  # three pictures in one call
        assert seen == [(1, 1), (3, 2)] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_bad_query_input_fails_before_torch_and_chromadb_are_imported(tmp_path: Path) -> None:
    """Cold start: the inputs are checked first, so a typo costs a fraction of a second, not the heavy imports."""
    import subprocess
    import sys

    (tmp_path / "notes.txt").write_text("not a picture")
    code = ("import sys, cli\n"
            "try:\n    cli.main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, 'torch' in sys.modules, 'chromadb' in sys.modules, 'librosa' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    for arg, reason in ((tmp_path / "missing.jpg", "file not found"), (tmp_path / "notes.txt", "not an image")):
        proc = subprocess.run([sys.executable, "-c", code, "query", str(arg), "--db", str(tmp_path / "db")],
                              cwd=root, capture_output=True, text=True, timeout=120)
        assert proc.stdout.split() == ["2", "False", "False", "False"], (proc.stdout, proc.stderr)
        assert reason in proc.stderr and str(arg) in proc.stderr
