"""soundlib against a real Chroma server (`chroma run` on 127.0.0.1, a free port), and moving a library to one.

- ingest, library, query and eval through ``--chroma-url``;
- the server killed (SIGKILL) in the middle of an ingest process: one clear line, exit 2, no traceback; after a
  restart the same command finishes with exact counts;
- authentication: `chroma run` of chromadb 1.5.9 has none (it ignores the old CHROMA_SERVER_AUTHN_* settings),
  so it binds to 127.0.0.1 and a reachable deployment puts an authenticating proxy in front; soundlib sends
  ``$SOUNDLIB_CHROMA_TOKEN`` as a bearer token (never a command-line option), and a refused token is one line;
- `soundlib library export` from an embedded store and `library import` into the server: identical library and
  rankings, idempotent re-import, another model's collection refused, roots rewritten so a re-ingest at the new
  place embeds nothing.
"""

from __future__ import annotations

import json
import shutil
import signal
import urllib.request
from pathlib import Path

import pytest

from cli import main
from tests.chroma_server import ChromaServer, TokenProxy
from tests.cli_process import (check_library, one_line, run_cli as run, run_in_slices, start_cli, stored_windows,
                               write_library)
from tests.conftest import write_image

pytestmark = pytest.mark.server




@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory):
    """(library root, {rel: windows}, a picture, a pair list over the library for eval)."""
    base = tmp_path_factory.mktemp("server")
    root = (base / "lib").resolve()
    expected = write_library(root, 6)
    pic = write_image(base / "scene.png", (64, 48), color=(200, 120, 20))
    (base / "frames").mkdir()
    for i in range(3):
        write_image(base / "frames" / f"f{i}.png", (48, 40), color=(70 * i, 90, 200 - 60 * i))
    rows = "".join(f"frames/f{i}.png,lib/{rel}\n" for i, rel in enumerate(sorted(expected)[:3]))
    (base / "lib.csv").write_text("frame,audio\n" + rows, encoding="utf-8")
    return root, expected, pic, base / "lib.csv"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One `chroma run` shared by the tests of this module that do not kill it."""
    with ChromaServer(tmp_path_factory.mktemp("srv") / "data") as s:
        yield s


def test_ingest_library_query_and_eval_through_the_server(media, server, tiny_checkpoint) -> None:
    from soundlib.store import open_store

    root, expected, pic, pairs = media
    url, ck = server.url, tiny_checkpoint
    result = run("ingest", root, "--chroma-url", url, "--collection", "direct", "--model", ck, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["windows"] == sum(expected.values())
    doc = json.loads(run("library", "--chroma-url", url, "--collection", "direct", "--json").stdout)
    assert (doc["files"], doc["windows"]) == (len(expected), sum(expected.values()))
    assert doc["categories"] == {"cars": 2, "dogs": 2, "rain": 2}
    doc = json.loads(run("query", pic, "--chroma-url", url, "--collection", "direct", "--model", ck, "-k", "4",
                         "--json").stdout)
    assert len({r["path"] for r in doc["results"]}) == 4
    sound = root / sorted(expected)[0]
    doc = json.loads(run("query", sound, "--chroma-url", url, "--collection", "direct", "--model", ck, "-k", "2",
                         "--json").stdout)
    assert doc["results"][0]["path"] == str(sound) and doc["results"][0]["distance"] < 1e-3
    result = run("eval", pairs, "--library", "direct", "--chroma-url", url, "--model", ck, "-k", "1,6", "--json")
    assert result.exit_code == 0, result.stderr
    ev = json.loads(result.stdout)
    assert (ev["queries"], ev["candidates"]) == (3, len(expected))
    assert ev["models"][0]["topk"]["6"]["sample"] == 1.0  # every file is among all six
    with open_store(url=url, collection="direct") as store:
        check_library(store, root, expected)


@pytest.mark.slow
def test_server_killed_mid_ingest_then_restarted_finishes_exactly(media, tmp_path: Path,
                                                                  tiny_checkpoint) -> None:
    from soundlib.store import open_store

    root, expected, _, _ = media
    total = sum(expected.values())
    server = ChromaServer(tmp_path / "srv")
    try:
        server.start()
        args = ["ingest", root, "--chroma-url", server.url, "--model", tiny_checkpoint, "--json", "--batch-size", "3",
                "--write-batch", "3"]
        proc = start_cli(args, tmp_path / "logs")
        try:
            # the server dies while the ingest is stopped part-way for certain: a free-running ingest writes all
            # 18 windows within ~0.1-0.3 s, so one stalled poll (busy machine) saw them all stored, or even the
            # ingest done, before the kill (assert 18 < 18, or rc 0 with its JSON)
            run_in_slices(proc, lambda: stored_windows(server.path) >= 3, "3 stored windows")
            server.kill()
        finally:
            proc.signal(signal.SIGCONT)
            rc, out, err = proc.finish(timeout=120)
        assert rc == 2 and out == "" and "Traceback" not in err, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"error: {server.url}: ") and "the Chroma server does not answer" in lines[0]
        assert "run the same command again" in lines[0]

        server.start()  # same folder, same port: what was written before the crash is there
        with open_store(url=server.url) as store:
            kept = store.count()
            complete = store.file_records()
        assert 3 <= kept < total
        result = run(*args)
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert (doc["added"], doc["unchanged"]) == (len(expected) - len(complete), len(complete))
        with open_store(url=server.url) as store:
            check_library(store, root, expected)
    finally:
        server.stop()


def test_token_comes_from_the_environment_and_a_wrong_one_is_refused(media, server,
                                                                     tiny_checkpoint) -> None:
    # chroma run itself takes any request: authentication is the proxy's job (see the module docstring)
    with urllib.request.urlopen(f"{server.url}/api/v2/tenants/default_tenant", timeout=5) as r:
        assert r.status == 200
    library = main.commands["library"]
    for command in [main.commands[n] for n in ("ingest", "query", "eval")] + [library, *library.commands.values()]:
        # the token is never a command-line option
        assert not [o for p in command.params for o in p.opts if "token" in o.lower()], command.name
    root, expected, _, _ = media
    with TokenProxy(server.url, token="s3cret") as proxy:
        ok = run("ingest", root / "rain", "--chroma-url", proxy.url, "--collection", "behind-proxy", "--model",
                 tiny_checkpoint, "--json", env={"SOUNDLIB_CHROMA_TOKEN": "s3cret"})
        assert ok.exit_code == 0, ok.stderr
        assert json.loads(ok.stdout)["added"] == 2
        wrong = run("library", "--chroma-url", proxy.url, "--collection", "behind-proxy", "--json",
                    env={"SOUNDLIB_CHROMA_TOKEN": "guess"})
        one_line(wrong, 2, proxy.url, "refused access (HTTP 403)", "wrong token in $SOUNDLIB_CHROMA_TOKEN")
        none = run("library", "--chroma-url", proxy.url, "--json", env={"SOUNDLIB_CHROMA_TOKEN": ""})
        one_line(none, 2, "refused access (HTTP 401)", "set $SOUNDLIB_CHROMA_TOKEN")
        assert 401 in proxy.refused and 403 in proxy.refused
    doc = json.loads(run("library", "--chroma-url", server.url, "--collection", "behind-proxy", "--json").stdout)
    assert doc["files"] == 2


def test_export_embedded_import_into_the_server(media, server, tmp_path: Path, tiny_checkpoint,
                                                other_checkpoint) -> None:
    from soundlib.store import open_store

    root, expected, pic, _ = media
    db, url, ck = tmp_path / "db", server.url, tiny_checkpoint
    assert run("ingest", root, "--db", db, "--model", ck, "--json").exit_code == 0
    archive = tmp_path / "sfx.soundlib.zip"
    result = run("library", "export", archive, "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    exported = json.loads(result.stdout)
    assert (exported["windows"], exported["files"]) == (sum(expected.values()), len(expected))
    assert not list(tmp_path.glob(f".{archive.name}.*"))  # no temporary file left

    result = run("library", "import", archive, "--chroma-url", url, "--collection", "moved", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["windows"], doc["new_windows"], doc["created"]) == (sum(expected.values()),) * 2 + (True,)
    here = json.loads(run("library", "--db", db, "--json").stdout)
    there = json.loads(run("library", "--chroma-url", url, "--collection", "moved", "--json").stdout)
    assert {**here, "collection": "moved"} == there
    q_here = json.loads(run("query", pic, "--db", db, "--model", ck, "-k", "5", "--json").stdout)["results"]
    q_there = json.loads(run("query", pic, "--chroma-url", url, "--collection", "moved", "--model", ck, "-k", "5",
                             "--json").stdout)["results"]
    assert [r["path"] for r in q_here] == [r["path"] for r in q_there]
    assert [r["distance"] for r in q_here] == pytest.approx([r["distance"] for r in q_there], abs=1e-6)
    with open_store(db=db) as a, open_store(url=url, collection="moved") as b:
        ids_a = {i: (v.tobytes(), m) for ids, vecs, metas in a.iter_records() for i, v, m in zip(ids, vecs, metas)}
        ids_b = {i: (v.tobytes(), m) for ids, vecs, metas in b.iter_records() for i, v, m in zip(ids, vecs, metas)}
        assert ids_a == ids_b  # bit-exact vectors, same metadata, same ids
        assert b.metadata["model_sha256"] == a.metadata["model_sha256"]

    again = json.loads(run("library", "import", archive, "--chroma-url", url, "--collection", "moved",
                           "--json").stdout)
    assert (again["new_windows"], again["created"]) == (0, False)  # idempotent
    with open_store(url=url, collection="moved") as store:
        check_library(store, root, expected)

    # a collection built by another model is never mixed with this one
    assert run("ingest", root / "cars", "--chroma-url", url, "--collection", "other-model", "--model",
               other_checkpoint, "--json").exit_code == 0
    one_line(run("library", "import", archive, "--chroma-url", url, "--collection", "other-model", "--json"), 2,
             "other-model", "built with model", "another --collection")
    assert json.loads(run("library", "--chroma-url", url, "--collection", "other-model", "--json").stdout)["windows"] \
        == sum(n for rel, n in expected.items() if rel.startswith("cars/"))
    # a damaged file is refused before anything is written
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    one_line(run("library", "import", damaged, "--chroma-url", url, "--collection", "never", "--json"), 2,
             str(damaged), "not a soundlib library export")

    # moved files: --root rewrites where they live; a re-ingest at the new place embeds nothing
    new_root = tmp_path / "srv-sfx"
    shutil.copytree(root, new_root)  # copy2: same bytes, same mtimes
    result = run("library", "import", archive, "--chroma-url", url, "--collection", "rerooted",
                 "--root", f"{root}={new_root}", "--json")
    assert result.exit_code == 0, result.stderr
    result = run("ingest", new_root, "--chroma-url", url, "--collection", "rerooted", "--model", ck, "--json")
    doc = json.loads(result.stdout)
    assert (doc["unchanged"], doc["added"], doc["windows"]) == (len(expected), 0, 0), doc
    with open_store(url=url, collection="rerooted") as store:
        check_library(store, new_root, expected)


def test_ingest_raises_an_older_collections_search_breadth_on_the_server(media, server,
                                                                         tiny_checkpoint) -> None:
    import dataclasses

    from soundlib.config import StoreConfig
    from soundlib.models import load_model
    from soundlib.store import open_store

    root, expected, _, _ = media
    with open_store(url=server.url, collection="older") as store:
        store.cfg = dataclasses.replace(store.cfg, hnsw_ef_search=100)  # as an older soundlib created it
        store.prepare(load_model(tiny_checkpoint))
        assert store.search_breadth() == 100
    result = run("ingest", root, "--chroma-url", server.url, "--collection", "older", "--model", tiny_checkpoint,
                 "--json")
    assert result.exit_code == 0, result.stderr
    with open_store(url=server.url, collection="older") as store:
        assert store.search_breadth() == StoreConfig().hnsw_ef_search
        check_library(store, root, expected)
