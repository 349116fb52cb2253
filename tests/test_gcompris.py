"""train.gcompris: the reviewed table, the data-file parser and the list builder end to end on a miniature GCompris
activity (tests/data/mini_farm.rcc, made by Qt's rcc: see tests/data/make_rcc_fixtures.py)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from soundlib.errors import ListError
from soundlib.images import load_image
from soundlib.lists import read_list
from train import gcompris as G

DATA = Path(__file__).resolve().parent / "data"
README = Path(__file__).resolve().parents[1] / "data" / "gcompris" / "README.md"


def _table(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sound", "concept", "notes"])
        w.writerows(rows)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def rcc_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rcc"
    d.mkdir()
    shutil.copy(DATA / "mini_farm.rcc", d / "mini_farm.rcc")
    return d


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    a = "mini_farm/resource/animals/"
    return _table(tmp_path / "concepts.csv", [
        (a + "cow", "cattle", "a cow"),
        (a + "dog.wav", "dog", "a dog (the extension is optional)"),
        (a + "bell", "", "left out: a test of the reviewed-and-left-out rows"),
        (a + "rain", "rain", "rain, no picture"),
        (a + "rain_copy", "rain", "the same bytes as rain.wav"),
    ])


def test_parse_media_items_reads_the_items_of_a_board() -> None:
    text = """QtObject { property var tab : [
        {"image": "qrc:/x/a/cow.svg", "title": qsTr("Cow"), "x": 0.1,
         "audio": GCompris.ApplicationInfo.getAudioFilePath("qrc:/x/a/cow.$CA"), "image2": "qrc:/x/a/cow.webp"},
        {"image": "qrc:/x/a/sun.svg", "title": qsTr("Sun")},
        {"audio": ApplicationInfo.getAudioFilePath("qrc:/x/a/alone.$CA")},
        {"text": qsTr("Find the harp"), "image": "qrc:/x/harp.svg", "audio": "qrc:/x/harp.ogg"}
    ] }"""
    items = G.parse_media_items(text, "board.qml")
    assert [(i.audio, i.images) for i in items] == [
        ("x/a/cow.$CA", ("x/a/cow.svg", "x/a/cow.webp")),
        ("x/harp.ogg", ("x/harp.svg",)),
    ]
    assert items[0].source == "board.qml"


@pytest.mark.parametrize("rows, reason", [
    ([("a/b", "dog", "x"), ("a/b.ogg", "dog", "y")], "listed twice"),
    ([("a/b", "dog", "")], "no notes"),
    ([("", "dog", "x")], "empty 'sound'"),
])
def test_bad_tables_are_refused_with_the_line(tmp_path: Path, rows: list, reason: str) -> None:
    path = _table(tmp_path / "t.csv", rows)
    with pytest.raises(ListError, match=reason) as e:
        G.read_sound_concepts(path)
    assert re.search(rf"t\.csv:{len(rows) + 1}\b", str(e.value))


def test_the_shipped_table_and_its_new_concepts_are_documented() -> None:
    table = G.read_sound_concepts()
    known = G.category_map_concepts()
    concepts = {t.concept for t in table.values() if t.concept}
    new = {c for c in concepts if c.lower() not in known}
    documented = re.search(r"^New concepts[^:]*: (.+)$", README.read_text(encoding="utf-8"), re.M)
    assert documented, "data/gcompris/README.md lists the new concepts on a 'New concepts ...: a, b' line"
    assert {c.strip(" .`") for c in documented.group(1).split(",")} == new
    assert {"dog", "cattle", "bowed strings", "drum kit"} <= concepts - new


def test_build_end_to_end(tmp_path: Path, rcc_dir: Path, table: Path) -> None:
    out = tmp_path / "gc"
    report = G.build_gcompris(rcc_dir, out, table)

    pairs = read_list(out / G.PAIRS_LIST)
    assert not pairs.errors
    got = sorted((r.frame.relative_to(out).as_posix(), r.audio.name, r.category, r.video) for r in pairs.rows)
    assert got == [
        ("extracted/gcompris/src/activities/mini_farm/resource/animals/cow.webp", "cow.wav", "cattle",
         "gcompris/mini_farm/cow"),
        ("extracted/gcompris/src/activities/mini_farm/resource/animals/dog.webp", "dog.wav", "dog",
         "gcompris/mini_farm/dog"),
        ("pictures/mini_farm/resource/animals/cow.png", "cow.wav", "cattle", "gcompris/mini_farm/cow"),
    ]
    assert all(r.start is None for r in pairs.rows)
    assert (out / G.PAIRS_LIST).read_text().splitlines()[0] == "frame,audio,start,sample,category,video"

    drawing = load_image(out / "pictures/mini_farm/resource/animals/cow.png")
    assert tuple(drawing.shape) == (3, G.DRAWING_SIDE, G.DRAWING_SIDE)
    centre = drawing[:, G.DRAWING_SIDE // 2, G.DRAWING_SIDE // 2]
    assert float(centre.max()) < 0.05                     # the black rectangle of cow.svg ...
    assert float(drawing[:, 2, G.DRAWING_SIDE // 2].min()) > 0.95  # ... on a transparent (-> white) margin

    sounds = {Path(r["audio"]).name: r for r in _rows(out / G.SOUNDS_LIST)}
    assert set(sounds) == {"cow.wav", "dog.wav", "rain.wav"}    # rain_copy: the same bytes; bell: left out
    assert {n: (r["category"], r["paired"]) for n, r in sounds.items()} == {
        "cow.wav": ("cattle", "yes"), "dog.wav": ("dog", "yes"), "rain.wav": ("rain", "no")}
    assert float(sounds["cow.wav"]["seconds"]) == pytest.approx(0.05)
    assert all((out / r["audio"]).is_file() for r in sounds.values())

    pictures = {Path(r["frame"]).name: (r["category"], r["kind"]) for r in _rows(out / G.PICTURES_LIST)}
    assert pictures == {"cow.png": ("cattle", "drawing"), "cow.webp": ("cattle", "photo"),
                        "dog.webp": ("dog", "photo")}

    summary = json.loads((out / G.SUMMARY).read_text())
    assert summary == report.to_dict()
    assert (summary["pairs"], summary["photos"], summary["drawings"], summary["paired_sounds"]) == (3, 2, 1, 2)
    assert summary["icons"] == {"extracted/gcompris/src/activities/mini_farm/resource/icon.svg": 2}
    assert [r["sound"] for r in summary["left_out"]] == ["mini_farm/resource/animals/bell"]
    assert any("rain_copy.wav" in s and "same bytes" in s for s in summary["skipped"])
    assert summary["new_concepts"] == []

    # Running again reuses the extracted files and the rendered drawing and writes the same lists.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix in (".png", ".wav")}
    before = (out / G.PAIRS_LIST).read_text()
    G.build_gcompris(rcc_dir, out, table)
    assert (out / G.PAIRS_LIST).read_text() == before
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_the_pair_list_evaluates(tmp_path: Path, rcc_dir: Path, table: Path, tiny_checkpoint: Path) -> None:
    from soundlib.evaluation.retrieval import evaluate_list

    G.build_gcompris(rcc_dir, tmp_path / "gc", table)
    report = evaluate_list(tmp_path / "gc" / G.PAIRS_LIST, [str(tiny_checkpoint)], ks=(1, 2))
    (result,) = report.models
    assert report.queries == 3 and report.candidates == 2 and not report.problems
    assert result.scores.chance[2][0] == pytest.approx(1.0)


def test_cli_json_table_and_a_missing_archive(tmp_path: Path, rcc_dir: Path, table: Path) -> None:
    from tests.cli_process import run_cli

    res = run_cli("gcompris", "--rcc", rcc_dir, "--out", tmp_path / "gc", "--concepts", table, "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # exactly one JSON document
    assert doc["pairs"] == 3 and doc["sounds"] == 3
    shown = run_cli("gcompris", "--rcc", rcc_dir, "--out", tmp_path / "gc", "--concepts", table)
    assert shown.exit_code == 0 and "GCompris pairs and sounds per" in shown.stdout  # the table (title wraps)
    assert "pairs 3 (" in shown.stdout

    other = _table(tmp_path / "other.csv", [("explore_farm_animals/resource/animals/cow", "cattle", "x")])
    res = run_cli("gcompris", "--rcc", rcc_dir, "--out", tmp_path / "gc2", "--concepts", other)
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    err = res.stderr.strip().splitlines()[-1]  # (progress lines come before it on stderr)
    assert err.startswith("error: ") and "explore_farm_animals.rcc: archive not found" in err
