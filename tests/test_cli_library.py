"""The `ingest`, `query` and `library` commands end to end (Click runner, real files, real Chroma)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chroma_server import chroma_server  # noqa: F401 (fixture)
from tests.cli_process import run_cli as run
from tests.conftest import write_image
from tests.fixtures_library import BAD, GOOD, TOTAL_WINDOWS, build_library


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint):
    """(library, db folder, checkpoint, picture) with the library ingested once through the CLI."""
    base = tmp_path_factory.mktemp("cli")
    lib = build_library(base / "lib").resolve()
    db = base / "db"
    pic = write_image(base / "pic.png", (64, 48), color=(10, 90, 200))
    result = run("ingest", str(lib), "--db", str(db), "--model", str(tiny_checkpoint), "--json")
    return lib, db, tiny_checkpoint, pic, result


def test_ingest_json_summary_and_exit_code(setup) -> None:
    lib, db, ckpt, _, first = setup
    assert first.exit_code == 1  # some files were skipped
    doc = json.loads(first.stdout)  # nothing but the one document on stdout
    assert set(doc) == {"added", "updated", "unchanged", "removed", "skipped", "windows", "seconds", "relabelled",
                        "described", "remixed", "warnings", "category_from"}
    assert (doc["relabelled"], doc["described"], doc["remixed"], doc["warnings"], doc["category_from"]) == (
        0, 0, 0, [], "auto")
    assert (doc["added"], doc["updated"], doc["unchanged"], doc["removed"]) == (len(GOOD), 0, 0, 0)
    assert doc["windows"] == TOTAL_WINDOWS and isinstance(doc["seconds"], float)
    reasons = {Path(s["path"]).relative_to(lib).as_posix(): s["reason"] for s in doc["skipped"]}
    assert set(reasons) == set(BAD) and all(word in reasons[rel] for rel, word in BAD.items())
    again = run("ingest", str(lib), "--db", str(db), "--model", str(ckpt), "--json")
    doc = json.loads(again.stdout)
    assert again.exit_code == 1 and (doc["unchanged"], doc["added"], doc["windows"]) == (len(GOOD), 0, 0)


def test_clean_ingest_exits_0_with_a_table(setup, tmp_path: Path) -> None:
    lib, _, ckpt, _, _ = setup
    result = run("ingest", str(lib / "cars"), "--db", str(tmp_path / "db"), "--model", str(ckpt),
                 "--max-windows", "5")
    assert result.exit_code == 0, result.output
    assert "added" in result.stdout and "windows/s" in result.stdout and "skipped" in result.stdout
    lib_doc = json.loads(run("library", "--db", str(tmp_path / "db"), "--json").stdout)
    assert lib_doc["windows"] == 5 + 1 and lib_doc["categories"] == {"cars": 2}


def test_query_json_table_category_and_sound(setup) -> None:
    lib, db, ckpt, pic, _ = setup
    result = run("query", str(pic), "--db", str(db), "--model", str(ckpt), "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"inputs", "k", "results"} and doc["k"] == 3 and doc["inputs"] == [str(pic)]
    assert [r["rank"] for r in doc["results"]] == [1, 2, 3]
    assert len({r["path"] for r in doc["results"]}) == 3
    assert [r["distance"] for r in doc["results"]] == sorted(r["distance"] for r in doc["results"])
    assert all(set(r) == {"rank", "path", "category", "start", "distance", "description", "info"} for r in doc["results"])
    # the category filter (and no --model: the collection's own checkpoint is found)
    doc = json.loads(run("query", str(pic), "--db", str(db), "--category", "rain", "--category", "lib",
                         "-k", "10", "--json").stdout)
    assert sorted(r["category"] for r in doc["results"]) == ["lib", "rain", "rain"]
    sound = lib / "rain" / "Sturm über Nacht (ß).wav"
    doc = json.loads(run("query", str(sound), "--db", str(db), "-k", "2", "--per-frame", "--json").stdout)
    assert doc["results"][0]["path"] == str(sound) and doc["results"][0]["distance"] < 1e-3
    assert [f["time"] for f in doc["frames"]] == [0.0, 1.0]
    table = run("query", str(pic), "--db", str(db), "-k", "2")
    assert table.exit_code == 0 and "distance" in table.stdout and "rank" in table.stdout


def test_library_json_and_table(setup, tiny_checkpoint) -> None:
    _, db, _, _, _ = setup
    result = run("library", "--db", str(db), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    from encoders.checkpoint import file_sha256

    assert (doc.pop("model_path"), doc.pop("model_sha256")) == (str(tiny_checkpoint), file_sha256(tiny_checkpoint))
    assert doc == {"collection": "sounds", "model": "m5-attention-linear-infonce", "files": len(GOOD),
                   "windows": TOTAL_WINDOWS, "category_from": "auto",
                   "categories": {"cars": 2, "dogs": 1, "dogs/nested/deep": 1, "lib": 1, "rain": 2}}
    table = run("library", "--db", str(db))
    assert table.exit_code == 0 and "m5-attention-linear-infonce" in table.stdout and "rain" in table.stdout


def test_errors_exit_2_with_one_line(setup, other_checkpoint, tmp_path: Path) -> None:
    lib, db, ckpt, pic, _ = setup
    result = run("ingest", str(lib), "--db", str(db), "--model", str(other_checkpoint), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "built with model" in result.stderr and "--collection" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run("query", str(pic), "--db", str(db), "--model", str(other_checkpoint))
    assert result.exit_code == 2 and "--collection" in result.stderr
    result = run("ingest", str(lib / "cars"), "--db", str(db), "--model", str(other_checkpoint),
                 "--collection", "other-model", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["added"] == 2
    result = run("query", str(pic), "--db", str(tmp_path / "nothing"), "--model", str(ckpt))
    assert result.exit_code == 2 and "no sound library here" in result.stderr
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    result = run("query", str(tmp_path / "bad.jpg"), "--db", str(db), "--model", str(ckpt), "--json")
    assert result.exit_code == 2 and result.stdout == "" and "bad.jpg" in result.stderr
    result = run("ingest", str(tmp_path / "nope"), "--db", str(db), "--model", str(ckpt))
    assert result.exit_code == 2 and "no such file or folder" in result.stderr


@pytest.mark.server
def test_server_mode_against_chroma_run(setup, chroma_server) -> None:
    """The same commands against a real `chroma run` server (HttpClient, --chroma-url)."""
    lib, _, ckpt, pic, _ = setup
    url = chroma_server.url
    result = run("ingest", str(lib / "cars"), "--chroma-url", url, "--model", str(ckpt), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["windows"] == 31
    doc = json.loads(run("library", "--chroma-url", url, "--json").stdout)
    assert (doc["files"], doc["windows"], doc["categories"]) == (2, 31, {"cars": 2})
    sound = lib / "cars" / "blip.wav"
    doc = json.loads(run("query", str(sound), "--chroma-url", url, "--model", str(ckpt), "-k", "2",
                         "--json").stdout)
    assert [r["path"] for r in doc["results"]][0] == str(sound) and len(doc["results"]) == 2
