"""``soundlib serve``'s HTTP API through Starlette's TestClient: a real store, real uploads, the guards."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from soundlib.errors import ImageError  # noqa: E402
from tests.cli_process import one_line, run_cli  # noqa: E402
from tests.conftest import halves, write_image, write_tone, write_video  # noqa: E402
from tests.fixtures_serve import serve_world  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BASE = "http://127.0.0.1:8765"
LIMITS = dict(max_upload_bytes=2 * 2**20, max_pixels=1_000_000, max_video_seconds=2.5)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint):
    w = serve_world(tmp_path_factory.mktemp("serve"), tiny_checkpoint, **LIMITS)
    yield w
    w.close()


@pytest.fixture(scope="module")
def client(world):
    from soundlib.serve.app import create_app

    with TestClient(create_app(world.engine), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("uploads")
    return {
        "picture": write_image(d / "red-blue.png", halves(80, 60, (255, 0, 0), (0, 0, 255))),
        "video": write_video(d / "clip.mp4", seconds=1.6, fps=10),
        "long": write_video(d / "long.mp4", seconds=3.2, fps=10),
    }


def upload(client, *paths: Path, k: int | str = 3, name: str | None = None, category: str | None = None):
    files = [("files", (name or p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    data = {"k": str(k)} | ({"category": category} if category else {})
    return client.post("/api/query", files=files, data=data)


def files_of(rows) -> list[str]:
    return [r["file"] for r in rows]


# --- rankings ---------------------------------------------------------------------------------------------------

def test_info_lists_the_collection_and_the_limits(client, world) -> None:
    doc = client.get("/api/info").json()
    assert doc["files"] == len(world.engine.files) and doc["categories"] == {"cars": 2, "dogs": 1, "dogs/nested/deep": 1,
                                                                             "lib": 1, "rain": 2}
    assert doc["limits"]["pixels"] == LIMITS["max_pixels"] and doc["explain"] == "attention map"
    assert doc["concepts"] == []  # the tiny model has no concept columns: nothing to offer the words fields
    assert doc["adapted"] is None  # and no ear adapted to a library (soundlib adapt)


def test_a_picture_gives_k_rows_as_the_library_call_does(client, world, media) -> None:
    from soundlib.recommend import recommend

    r = upload(client, media["picture"], k=4)
    assert r.status_code == 200, r.text
    doc = r.json()
    want = recommend([media["picture"]], world.loaded, world.store, k=4).results
    assert files_of(doc["results"]) == [h.metadata["file_id"] for h in want]
    assert [row["start"] for row in doc["results"]] == [round(h.start, 3) for h in want]
    for row, h in zip(doc["results"], want):
        assert row["score"] == pytest.approx(1 - h.distance ** 2 / 2, abs=1e-4)
        assert row["name"] == Path(h.path).name and row["category"] == h.category
    assert len(doc["frames"]) == 1 and doc["frames"][0]["results"] == doc["results"]


def test_words_need_a_model_with_concepts(client, media) -> None:
    """The tiny test model has no concept columns: "it is ..." is refused in one line (the default model's answer
    is in the browser test)."""
    files = [("files", (media["picture"].name, media["picture"].read_bytes(), "image/png"))]
    r = client.post("/api/query", files=files, data={"k": "3", "as": "horse"})
    assert r.status_code == 422 and "needs a model with concept columns" in r.json()["error"]
    ok = client.post("/api/query", files=files, data={"k": "3", "as": "  "})  # an empty field: no words
    assert ok.status_code == 200 and ok.json()["as"] is None
    assert ok.json()["named"] == []  # nothing to mix a picture's name into without concept columns
    alone = client.post("/api/query", data={"k": "3", "as": "rain"})  # words alone
    assert alone.status_code == 422 and "needs a model with concept columns" in alone.json()["error"]


def test_category_filter_and_k(client, media) -> None:
    doc = upload(client, media["picture"], k=2, category="rain").json()
    assert [r["category"] for r in doc["results"]] == ["rain", "rain"] and doc["categories"] == ["rain"]
    assert len(upload(client, media["picture"], k=7).json()["results"]) == 7


def test_a_video_gives_a_ranking_per_frame_and_a_combined_one(client, world, media) -> None:
    from soundlib.recommend import recommend

    doc = upload(client, media["video"], k=3).json()
    assert [f["time"] for f in doc["frames"]] == [0.0, 1.0]
    want = recommend([media["video"]], world.loaded, world.store, k=3, per_frame=True)
    assert files_of(doc["results"]) == [h.metadata["file_id"] for h in want.results]
    for got, frame in zip(doc["frames"], want.frames):
        assert files_of(got["results"]) == [h.metadata["file_id"] for h in frame.results]
    png = client.get(f"/api/frame/{doc['query']}/1.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/frame/{doc['query']}/2.png").status_code == 404


def test_more_like_this_puts_the_file_first_and_filters(client, world) -> None:
    fid = next(f for f in world.engine.files.values() if f.rel == "rain/drizzle.wav").file_id
    doc = client.get(f"/api/like/{fid}?k=3").json()
    assert doc["results"][0]["file"] == fid and doc["results"][0]["distance"] == pytest.approx(0, abs=1e-5)
    cars = client.get(f"/api/like/{fid}?k=2&category=cars").json()["results"]
    assert [r["category"] for r in cars] == ["cars", "cars"]


# --- audio, peaks, heatmaps -------------------------------------------------------------------------------------

def test_audio_by_id_answers_ranges_with_206_and_the_right_bytes(client, world) -> None:
    f = next(f for f in world.engine.files.values() if f.rel == "cars/engine long.wav")
    data = f.path.read_bytes()
    whole = client.get(f"/audio/{f.file_id}")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/audio/{f.file_id}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = client.get(f"/audio/{f.file_id}", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    assert client.get(f"/audio/{f.file_id}", headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416
    down = client.get(f"/audio/{f.file_id}?download=1")
    assert down.headers["content-disposition"].startswith("attachment")


def test_peaks_describe_the_file(client, world) -> None:
    from soundlib.audio import probe_audio

    f = next(f for f in world.engine.files.values() if f.rel == "rain/drizzle.wav")
    doc = client.get(f"/api/peaks/{f.file_id}").json()
    assert doc["duration"] == pytest.approx(probe_audio(f.path).duration, abs=1e-3)
    assert len(doc["mins"]) == len(doc["maxs"]) == 800 and min(doc["mins"]) < 0 < max(doc["maxs"])
    assert doc["preview_gain_db"] <= 0 and doc["loudness_db"] < 0


def test_explain_draws_a_heatmap_for_a_picture_and_a_window(client, media) -> None:
    from PIL import Image

    doc = upload(client, media["picture"], k=2).json()
    row = doc["results"][0]
    r = client.get("/api/explain", params={"query": doc["query"], "frame": 0, "window": row["window"]})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (448, 448)
    gone = client.get("/api/explain", params={"query": doc["query"], "frame": 0, "window": "0" * 24 + ":0"})
    assert gone.status_code == 404
    assert client.get("/api/explain", params={"query": "nope", "frame": 0, "window": row["window"]}).status_code == 404


# --- picks ------------------------------------------------------------------------------------------------------

def test_picks_export_a_zip_of_the_originals_and_the_manifests(client, world) -> None:
    files = [f for f in world.engine.files.values() if f.rel in ("rain/drizzle.wav", "dogs/bark 1.wav")]
    picks = [{"file": f.file_id, "start": 1.0, "score": 0.5, "query": "red-blue.png"} for f in files]
    r = client.post("/api/picks", json={"picks": picks, "clip": None})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = set(z.namelist())
        assert {f.path.name for f in files} | {"picks.csv", "picks.json", "picks.m3u"} == names
        for f in files:
            assert z.read(f.path.name) == f.path.read_bytes()
        rows = json.loads(z.read("picks.json"))
        rows = rows["picks"] if isinstance(rows, dict) else rows
        assert {row["query"] for row in rows} == {"red-blue.png"}
    clipped = client.post("/api/picks", json={"picks": picks[:1], "clip": 0.5})
    with zipfile.ZipFile(io.BytesIO(clipped.content)) as z:
        sound = [n for n in z.namelist() if not n.startswith("picks.")]
        assert len(sound) == 1 and z.read(sound[0]) != files[0].path.read_bytes()
    bad = client.post("/api/picks", json={"picks": [{"file": "f" * 24, "start": 0, "score": 0, "query": ""}]})
    assert bad.status_code == 404 and "no file with id" in bad.json()["error"]
    assert client.post("/api/picks", content=b"not json").status_code == 400
    assert client.post("/api/picks", json={"picks": picks, "clip": -1}).status_code == 400


# --- bad uploads ------------------------------------------------------------------------------------------------

def test_a_text_file_named_jpg_gets_the_cli_reason(client, tmp_path: Path) -> None:
    from soundlib.images import load_image

    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a picture\n")
    with pytest.raises(ImageError) as cli_error:
        load_image(fake)
    r = upload(client, fake)
    assert r.status_code == 422 and r.json() == {"error": f"notes.jpg: {cli_error.value.reason}"}


@pytest.mark.parametrize("case, status, words", [
    ("too many pixels", 413, ["big.png", "1600 x 1000", "limit 1 MP"]),
    ("decompression bomb", 413, ["bomb.png", "decompression bomb"]),
    ("truncated video", 422, ["cut.mp4"]),
    ("too long video", 413, ["long.mp4", "video too long", "limit 2 s"]),
    ("a sound", 415, ["tone.wav", "not a picture or video"]),
    ("empty file", 422, ["empty.png", "empty file"]),
])
def test_bad_uploads_get_4xx_with_one_line(client, media, tmp_path: Path, case, status, words) -> None:
    from PIL import Image

    if case == "too many pixels":
        path = write_image(tmp_path / "big.png", (1600, 1000))
    elif case == "decompression bomb":  # 400 MP of one bit: ~50 kB of PNG
        path = tmp_path / "bomb.png"
        Image.new("1", (20_000, 20_000)).save(path)
        assert path.stat().st_size < 200_000
    elif case == "truncated video":
        data = media["video"].read_bytes()
        path = tmp_path / "cut.mp4"
        path.write_bytes(data[: len(data) // 3])
    elif case == "too long video":
        path = media["long"]
    elif case == "a sound":
        path = write_tone(tmp_path / "tone.wav")
    else:
        path = tmp_path / "empty.png"
        path.write_bytes(b"")
    r = upload(client, path)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert "\n" not in error and all(w in error for w in words), error


def test_oversized_requests_and_bad_fields_are_refused(client, media, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(np.random.default_rng(0).bytes(3 * 2**20))
    r = upload(client, big)
    assert r.status_code == 413 and "upload too large" in r.json()["error"]
    def chunked():  # no Content-Length: the limit counts the bytes as they arrive
        yield b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\n\r\n'
        for _ in range(6):
            yield bytes(2**19)
        yield b"\r\n--xyz--\r\n"

    r = client.post("/api/query", content=chunked(), headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and "upload too large" in r.json()["error"]
    assert upload(client, media["picture"], k=0).status_code == 422
    assert "whole number" in upload(client, media["picture"], k="abc").json()["error"]
    assert client.post("/api/query", data={"k": "3"}).status_code == 422
    many = [media["picture"]] * (17)
    assert upload(client, *many).status_code in (400, 413)
    # the server still answers after every refusal
    assert upload(client, media["picture"]).status_code == 200


# --- the guards -------------------------------------------------------------------------------------------------

def test_a_foreign_host_header_is_refused(client) -> None:
    assert client.get("/api/info", headers={"Host": "evil.example:8765"}).status_code == 400
    assert client.get("/", headers={"Host": "127.0.0.1.evil.example"}).status_code == 400
    assert client.get("/api/info", headers={"Host": "localhost:8765"}).status_code == 200


@pytest.mark.parametrize("path", [
    "/audio/../../etc/passwd", "/audio/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/audio/..%2F..%2Fetc%2Fpasswd",
    "/audio/%2Fetc%2Fpasswd", "/audio/" + "0" * 24, "/audio/DOGS", "/static/..%2F..%2Fstore.py",
    "/static/../app.py", "/api/peaks/..%2F..%2Fetc%2Fpasswd",
])
def test_paths_from_the_request_never_reach_the_disk(client, path) -> None:
    r = client.get(BASE + path)
    assert r.status_code == 404, (path, r.status_code)
    assert b"root:" not in r.content and b"import" not in r.content


def test_no_route_changes_the_collection(client, world, media) -> None:
    from starlette.routing import Route

    from soundlib.serve.app import create_app

    app = create_app(world.engine)
    writes = {r.path for r in app.routes if isinstance(r, Route) and set(r.methods or ()) - {"GET", "HEAD"}}
    assert writes == {"/api/query", "/api/picks"}  # both only read the store
    before = (world.store.count(), world.store.file_records())
    fid = next(iter(world.engine.files))
    for method in ("PUT", "DELETE", "PATCH"):
        assert client.request(method, f"/audio/{fid}").status_code == 405
        assert client.request(method, "/api/query").status_code == 405
    upload(client, media["picture"])
    client.post("/api/picks", json={"picks": [{"file": fid, "start": 0, "score": 0, "query": "q"}]})
    assert (world.store.count(), world.store.file_records()) == before


def test_the_token_is_required_and_checked(world) -> None:
    from soundlib.serve.app import create_app

    with TestClient(create_app(world.engine, token="s3cret-token"), base_url=BASE) as c:
        assert c.get("/api/info").status_code == 401
        assert "token" in c.get("/api/info").json()["error"]
        assert c.get("/api/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/info", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/?token=wrong", follow_redirects=False).status_code == 401
        r = c.get("/?token=s3cret-token", follow_redirects=False)
        assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"]
        assert c.get("/api/info").status_code == 200  # the cookie now carries the token


def test_a_non_loopback_host_without_token_is_refused_at_start(world) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--db", str(world.db), env={"SOUNDLIB_SERVE_TOKEN": ""})
    one_line(result, 2, "--host 0.0.0.0", "SOUNDLIB_SERVE_TOKEN")


def test_a_port_in_use_is_one_line() -> None:
    from soundlib.errors import SoundlibError
    from soundlib.serve.app import listen

    first = listen("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(SoundlibError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)
    finally:
        first.close()
