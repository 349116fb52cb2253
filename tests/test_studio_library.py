"""A studio-like library end to end: UCS names, BWF metadata, category rules, words, exports (issue 15).

Real files (BWF written byte by byte, FLAC tagged with mutagen), a real Chroma store, the tiny fixture model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from soundlib.ingest import ingest
from tests.cli_process import one_line, run_cli as run
from tests.conftest import tone, write_audio, write_image
from tests.fixtures_tags import ucs_ixml, write_bwf

#: rel path -> category under auto
AUTO = {
    "Vendor/Doors/DOORWood_Creak Long_JD_Foley.wav": "DOORWood",
    "Vendor/Doors/DOORMetl_Slam Heavy_JD_Foley.wav": "DOORMetl",
    "Vendor/Rain/RAINHvy_Tin Roof_JD_Weather.flac": "RAINHvy",
    "Vendor/Odd/QQQZzz_Made Up Code_JD_Lib.wav": "QQQZzz",       # CatID shape, in no UCS list
    "Vendor/Odd/DOORWOOD_not ucs_JD.wav": "Vendor/Odd",          # not a CatID: the folder path
    "widelands/wolf/howl_01.wav": "widelands/wolf",
    "widelands/wolf/take 7.wav": "RAINLite",                     # the CatID comes from its iXML
    "loose.wav": "lib",
}


def build(root: Path) -> Path:
    rng = np.random.default_rng(0)

    def sound(seconds: float, sr: int = 16_000) -> np.ndarray:
        return (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32)

    for rel in AUTO:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    write_bwf(root / "Vendor/Doors/DOORWood_Creak Long_JD_Foley.wav", sound(2.2), 16_000,
              description="Old oak barn door, long slow creak", originator="Jane Doe",
              ixml=ucs_ixml(catid="DOORWood", keywords="hinge; squeak; wood"))
    write_bwf(root / "Vendor/Doors/DOORMetl_Slam Heavy_JD_Foley.wav", sound(1.5), 16_000,
              description="Steel door slammed shut")
    write_audio(root / "Vendor/Rain/RAINHvy_Tin Roof_JD_Weather.flac", sound(3.0), 16_000)
    import mutagen

    f = mutagen.File(root / "Vendor/Rain/RAINHvy_Tin Roof_JD_Weather.flac")
    f["DESCRIPTION"], f["KEYWORDS"] = "Heavy rain on a tin roof", "storm, metal"
    f.save()
    write_bwf(root / "Vendor/Odd/QQQZzz_Made Up Code_JD_Lib.wav", sound(1.0), 16_000, description="unknown code")
    # broken iXML: the sound is still ingested, with one warning, and keeps its bext description
    write_bwf(root / "Vendor/Odd/DOORWOOD_not ucs_JD.wav", sound(1.2), 16_000, description="shouty name",
              ixml=b"<BWFXML><USER><DESCRIPTION>never closed")
    write_audio(root / "widelands/wolf/howl_01.wav", sound(2.0), 16_000)
    write_bwf(root / "widelands/wolf/take 7.wav", sound(1.0), 16_000, ixml=ucs_ixml(catid="RAINLite"))
    write_audio(root / "loose.wav", tone(440, 1.0, 16_000), 16_000)
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_checkpoint):
    from soundlib.models import load_model
    from soundlib.store import open_store

    base = tmp_path_factory.mktemp("studio")
    lib = build(base / "lib").resolve()
    db = base / "db"
    loaded = load_model(tiny_checkpoint)
    with open_store(db=db, create=True) as store:
        report = ingest([lib], loaded, store)
    return lib, db, loaded, report


def test_auto_categories_ucs_and_metadata(world):
    from soundlib.store import open_store

    lib, db, _, report = world
    assert report.added == len(AUTO) and not report.skipped
    assert [(Path(p).name, "iXML" in r) for p, r in report.warnings] == [("DOORWOOD_not ucs_JD.wav", True)]
    with open_store(db=db) as store:
        recs = {r.rel: r for r in store.file_records().values()}
        assert {rel: r.category for rel, r in recs.items()} == AUTO
        assert all(r.category_from == "auto" and r.meta == 1 for r in recs.values())
        heads = {m["path"]: m for m in store.file_heads(r.file_id for r in recs.values()).values()}
        door = heads["Vendor/Doors/DOORWood_Creak Long_JD_Foley.wav"]
        assert (door["description"], door["artist"], door["keywords"], door["cat_id"]) == (
            "Old oak barn door, long slow creak", "Jane Doe", "hinge; squeak; wood", "DOORWood")
        assert (door["ucs_fx_name"], door["ucs_creator"], door["ucs_source"], door["channels"]) == (
            "Creak Long", "JD", "Foley", 1)
        assert -30 < door["peak_dbfs"] < 0 and door["loudness_lufs"] < door["peak_dbfs"]
        assert heads["Vendor/Rain/RAINHvy_Tin Roof_JD_Weather.flac"]["keywords"] == "storm, metal"
        assert heads["Vendor/Odd/DOORWOOD_not ucs_JD.wav"]["description"] == "shouty name"
        assert store.category_rule() == "auto"


def test_relabelling_rewrites_metadata_without_embedding(world, tmp_path):
    import shutil

    from soundlib.store import open_store

    lib, db0, loaded, _ = world
    db = tmp_path / "db"
    shutil.copytree(db0, db)
    with open_store(db=db) as store:
        before = store.require().get(include=["embeddings"])
        report = ingest([lib], loaded, store, category_from="first")
        assert (report.added, report.updated, report.windows, report.described) == (0, 0, 0, 0)
        assert (report.unchanged, report.relabelled) == (len(AUTO), len(AUTO))
        recs = {r.rel: r for r in store.file_records().values()}
        assert {r.category for r in recs.values()} == {"Vendor", "widelands", "lib"}
        assert all(r.category_from == "first" for r in recs.values())
        after = store.require().get(include=["embeddings"])
        order = np.argsort(before["ids"]), np.argsort(after["ids"])
        assert sorted(before["ids"]) == sorted(after["ids"])
        np.testing.assert_array_equal(np.asarray(before["embeddings"])[order[0]], np.asarray(after["embeddings"])[order[1]])
        # the collection remembers the rule: a plain ingest keeps it and does nothing
        again = ingest([lib], loaded, store)
        assert (again.relabelled, again.windows, again.category_from) == (0, 0, "first")
        # the level filter still finds the wolf whatever the rule
        from soundlib.words import allowed_files

        files = allowed_files(store, categories=["wolf"])
        assert sorted(recs[r].rel for r in recs if recs[r].file_id in files) == [
            "widelands/wolf/howl_01.wav", "widelands/wolf/take 7.wav"]


def test_files_ingested_without_metadata_are_described_later(world, tmp_path):
    from soundlib.store import open_store

    lib, _, loaded, _ = world
    with open_store(db=tmp_path / "db", create=True) as store:
        first = ingest([lib / "Vendor" / "Doors"], loaded, store, metadata=False)
        assert first.added == 2 and first.warnings == []
        fid = next(r.file_id for r in store.file_records().values() if r.rel.startswith("DOORWood"))
        assert "description" not in store.file_heads([fid])[fid]
        second = ingest([lib / "Vendor" / "Doors"], loaded, store)
        assert (second.described, second.windows, second.added, second.updated) == (2, 0, 0, 0)
        head = store.file_heads([fid])[fid]
        assert head["description"] == "Old oak barn door, long slow creak" and head["meta"] == 1
        assert ingest([lib / "Vendor" / "Doors"], loaded, store).described == 0


def test_search_command(world):
    lib, db, _, _ = world
    doc = json.loads(run("search", "door", "creak", "--db", db, "--json").stdout)
    paths = [Path(r["path"]).relative_to(lib).as_posix() for r in doc["results"]]
    assert paths[0] == "Vendor/Doors/DOORWood_Creak Long_JD_Foley.wav"
    assert doc["results"][0]["matched"] == ["door", "creak"]
    # "DOORWOOD" is one word (no case change to split at): not a door
    assert set(paths) == {"Vendor/Doors/DOORWood_Creak Long_JD_Foley.wav", "Vendor/Doors/DOORMetl_Slam Heavy_JD_Foley.wav"}
    assert doc["results"][0]["description"].startswith("Old oak") and doc["results"][0]["info"]["artist"] == "Jane Doe"
    assert [r["score"] for r in doc["results"]] == sorted((r["score"] for r in doc["results"]), reverse=True)
    # words of the description and keywords, and a category filter at any level
    doc = json.loads(run("search", "storm", "--db", db, "--json").stdout)
    assert [Path(r["path"]).name for r in doc["results"]] == ["RAINHvy_Tin Roof_JD_Weather.flac"]
    doc = json.loads(run("search", "door", "--category", "doorwood", "--db", db, "--json").stdout)
    assert [Path(r["path"]).name for r in doc["results"]] == ["DOORWood_Creak Long_JD_Foley.wav"]
    table = run("search", "wolf", "--db", db, env={"COLUMNS": "250"})  # wide enough not to fold the temp path
    assert table.exit_code == 0 and "howl_01.wav" in table.stdout and "score" in table.stdout
    assert "description" not in table.stdout  # the howl has none: the column is left out
    described = run("search", "door", "creak", "--db", db, env={"COLUMNS": "250"})
    assert "description" in described.stdout and "Old oak barn door" in described.stdout
    assert json.loads(run("search", "zebra", "--db", db, "--json").stdout)["results"] == []
    one_line(run("search", "!!", "--db", db), 2, "no words")


def test_query_text_filter_and_export(world, tmp_path):
    lib, db, ckpt_loaded, _ = world
    pic = write_image(tmp_path / "pic.png", (64, 48), color=(120, 80, 40))
    doc = json.loads(run("query", pic, "--db", db, "--text", "door", "-k", "10", "--json").stdout)
    names = [Path(r["path"]).name for r in doc["results"]]
    assert sorted(names) == ["DOORMetl_Slam Heavy_JD_Foley.wav", "DOORWood_Creak Long_JD_Foley.wav"]
    assert [r["distance"] for r in doc["results"]] == sorted(r["distance"] for r in doc["results"])
    assert json.loads(run("query", pic, "--db", db, "--text", "door oak", "--json").stdout)["results"][0][
        "description"] == "Old oak barn door, long slow creak"
    out = tmp_path / "picks"
    res = run("query", pic, "--db", db, "--text", "door", "-k", "2", "--export", out, "--clip", "0.5", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["export"]["picks"]) == 2 and doc["export"]["listings"] == ["picks.csv", "picks.json", "picks.m3u"]
    rows = list(csv.DictReader(open(out / "picks.csv", encoding="utf-8")))
    assert [r["path"] for r in rows] == [r["path"] for r in doc["results"]]
    assert all(r["query"] == str(pic) and (out / r["file"]).is_file() for r in rows)
    # the same export again: new names, nothing overwritten
    again = json.loads(run("query", pic, "--db", db, "--text", "door", "-k", "2", "--export", out, "--json").stdout)
    assert {p["file"] for p in again["export"]["picks"]}.isdisjoint({r["file"] for r in rows})
    assert again["export"]["listings"] == ["picks-2.csv", "picks-2.json", "picks-2.m3u"]


def test_bad_export_folders_fail_before_the_work(world, tmp_path):
    lib, db, _, _ = world
    pic = write_image(tmp_path / "pic.png", (64, 48))
    f = tmp_path / "afile"
    f.write_text("keep")
    one_line(run("query", pic, "--db", db, "--export", f), 2, "afile", "is a file")
    one_line(run("search", "door", "--db", db, "--export", f / "sub"), 2, "cannot create the export folder")
    usage = run("search", "door", "--db", db, "--clip", "1")  # a Click usage error
    assert usage.exit_code == 2 and "Error: --clip needs --export DIR" in usage.stderr
    assert f.read_text() == "keep"
    assert json.loads(run("library", "--db", db, "--json").stdout)["files"] == len(AUTO)
    # a picked file that vanished: the rest is exported, exit 1, one line for it
    import shutil

    lib2 = tmp_path / "lib2"
    shutil.copytree(lib / "Vendor" / "Doors", lib2)
    db2 = tmp_path / "db2"
    assert run("ingest", lib2, "--db", db2, "--model", world[2].info.path, "--json").exit_code == 0
    (lib2 / "DOORMetl_Slam Heavy_JD_Foley.wav").unlink()
    res = run("search", "door", "--db", db2, "--export", tmp_path / "out")
    assert res.exit_code == 1 and "DOORMetl_Slam Heavy_JD_Foley.wav" in res.stderr and "file not found" in res.stderr
    assert (tmp_path / "out" / "DOORWood_Creak Long_JD_Foley.wav").is_file()


def test_library_table_shows_the_rule_and_categories(world):
    _, db, _, _ = world
    doc = json.loads(run("library", "--db", db, "--json").stdout)
    assert doc["category_from"] == "auto" and doc["categories"] == {
        "DOORMetl": 1, "DOORWood": 1, "QQQZzz": 1, "RAINHvy": 1, "RAINLite": 1, "Vendor/Odd": 1, "lib": 1,
        "widelands/wolf": 1}
    table = run("library", "--db", db)
    assert "category rule" in table.stdout and "DOORWood" in table.stdout
