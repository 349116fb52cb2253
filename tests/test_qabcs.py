"""The qABCs outside set (train.qabcs): pair lists from an unpacked qabcs-data tree (real PNGs, real Ogg Vorbis
noises written with soundfile), read back by the lists `soundlib eval` reads."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from soundlib.errors import ListError, SoundlibError
from soundlib.lists import read_candidates, read_list
from tests.conftest import write_tone
from train.qabcs import DEFAULT_TABLE, PACKAGE_DIR, build_qabcs, main, read_table


def _package(root: Path) -> Path:
    """An unpacked package: dog and top with noises, an apple without one."""
    base = root / PACKAGE_DIR
    for group, stem, noise in (("animals", "dog", True), ("toys", "top", True), ("food", "apple", False)):
        (base / "pics" / group).mkdir(parents=True, exist_ok=True)
        Image.new("RGBA", (40, 30), (200, 100, 50, 128)).save(base / "pics" / group / f"{stem}.png")
        if noise:
            (base / "noises").mkdir(exist_ok=True)
            write_tone(base / "noises" / f"{stem}.ogg", 330.0, 0.8)
    return root


def test_the_pairs_are_the_pictures_with_a_noise_and_their_reviewed_concept(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("stem,group,concept,notes\ndog,animals,dog,\ngiant_panda,animals,,\n")
    report = build_qabcs(_package(tmp_path / "pkg"), tmp_path / "out", table)
    assert (report.pairs, report.concept_pairs) == (2, 1)
    assert report.unreviewed == ["top"] and report.missing == ["giant_panda"]
    with open(tmp_path / "out" / "qabcs_pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["frame"], r["audio"], r["category"]) for r in rows] == [
        ("pictures/animals/dog.png", "noises/dog.ogg", "dog"), ("pictures/toys/top.png", "noises/top.ogg", "top")]
    pairs = read_list(tmp_path / "out" / "qabcs_concept_pairs.csv")  # what `soundlib eval` reads, files checked
    assert [(Path(r.frame).name, r.category) for r in pairs.rows] == [("dog.png", "dog")]
    assert len(read_candidates(tmp_path / "out" / "qabcs_pairs.csv").rows) == 2


def test_the_shipped_table_names_only_known_concepts() -> None:
    from soundlib.models import load_model

    concepts = set(load_model(None).model.config.concepts)
    rows = read_table(DEFAULT_TABLE)
    assert len(rows) == 241 and sum(1 for r in rows.values() if r.concept) == 61
    assert {r.concept for r in rows.values() if r.concept} <= concepts
    assert rows["paper_airplane"].concept == "" and rows["eagle-owl"].concept == "owl"  # reviewed, not read


def test_bad_tables_and_folders_say_what_and_where(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("stem,group\ndog,animals\n")
    with pytest.raises(ListError, match="concept"):
        read_table(bad)
    bad.write_text("stem,group,concept\ndog,animals,dog\ndog,animals,dog\n")
    with pytest.raises(ListError, match=r"bad.csv.*3.*'dog' listed twice"):
        read_table(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SoundlibError, match="no qABCs picture with a noise"):
        build_qabcs(tmp_path / "empty", tmp_path / "out")
    assert main(["--package", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(tmp_path / "empty") in err[0]
