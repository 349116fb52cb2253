"""What a picture query was read as (soundlib.read_as): the concepts a bridged query embedding points at, shown
under query rankings and in --json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from soundlib.read_as import read_as, read_as_text
from tests.cli_process import run_cli as run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEMO = Path(__file__).resolve().parents[1] / "demo"


@pytest.fixture(scope="module")
def default_model():
    from soundlib.models import load_model

    return load_model(None)


def test_shares_are_the_squared_concept_part_most_first(default_model) -> None:
    model = default_model.model
    d, names = int(model.config.embed_dim), list(model.config.concepts)
    vector = np.zeros(d + len(names), np.float32)
    vector[:d] = 0.5  # the heads' part plays no role
    vector[d + names.index("dog")], vector[d + names.index("cat")] = 0.6, 0.3
    vector[d + names.index("horse")] = 0.05  # a share of 0.0055: under the 1 % floor
    got = read_as(model, vector)
    assert [c for c, _ in got] == ["dog", "cat"]
    np.testing.assert_allclose([s for _, s in got], [0.36 / 0.4525, 0.09 / 0.4525], atol=1e-4)
    assert read_as(model, vector, top=1) == got[:1]
    assert read_as(model, np.r_[np.ones(d), np.zeros(len(names))]) == []  # reads as no concept at all
    assert read_as_text(got) == "read as: dog 80 % · cat 20 %"
    assert read_as_text([]) == "read as: no concept" and read_as_text(None) == ""


def test_a_model_without_concept_columns_reads_as_nothing(tiny_model) -> None:
    assert read_as(tiny_model.model, np.ones(int(tiny_model.model.embed_dim), np.float32)) is None


def test_query_says_what_each_picture_was_read_as(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for rel in ("dog/Dog1.wav", "cow/cattle_01.ogg", "drums/tom01.ogg"):
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO / "sounds" / rel, lib / rel)
    db = tmp_path / "db"
    assert run("ingest", str(lib), "--db", str(db)).exit_code == 0
    dog, drum = DEMO / "images" / "dog-photo.png", DEMO / "images" / "drum.png"
    res = run("query", str(dog), str(drum), "--per-frame", "-k", "2", "--db", str(db), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    frames = {Path(f["input"]).name: f["read_as"] for f in doc["frames"]}
    assert frames["dog-photo.png"][0]["concept"] == "dog" and frames["dog-photo.png"][0]["share"] > 0.5
    assert frames["drum.png"][0]["concept"] == "drum kit" and frames["drum.png"][0]["share"] > 0.5
    both = {r["concept"] for r in doc["read_as"]}  # the combined query: their mean
    assert {"dog", "drum kit"} <= both and sum(r["share"] for r in doc["read_as"]) <= 1.0
    table = run("query", str(dog), "-k", "2", "--db", str(db), env={"COLUMNS": "160"})
    assert "read as: dog" in table.stdout


def test_a_sound_query_says_what_the_sound_was_read_as(tmp_path: Path) -> None:
    lib = tmp_path / "lib" / "dog"
    lib.mkdir(parents=True)
    for name in ("Dog1.wav", "dog2.wav"):
        shutil.copy(DEMO / "sounds" / "dog" / name, lib / name)
    db = tmp_path / "db"
    assert run("ingest", str(tmp_path / "lib"), "--db", str(db)).exit_code == 0
    doc = json.loads(run("query", str(lib / "Dog1.wav"), "-k", "2", "--db", str(db), "--json").stdout)
    assert doc["results"][0]["path"].endswith("Dog1.wav")
    assert doc["read_as"][0]["concept"] == "dog"  # its folder names dog: half of its concept part


def test_other_models_have_no_read_as(tmp_path: Path, tiny_checkpoint) -> None:
    from tests.conftest import write_audio, write_image

    lib = tmp_path / "lib"
    lib.mkdir()
    rng = np.random.default_rng(0)
    write_audio(lib / "hum.wav", (0.2 * rng.standard_normal(24_000)).astype(np.float32), 16_000)
    db = tmp_path / "db"
    assert run("ingest", str(lib), "--db", str(db), "--model", str(tiny_checkpoint)).exit_code == 0
    pic = write_image(tmp_path / "pic.png", (64, 48), color=(10, 90, 200))
    doc = json.loads(run("query", str(pic), "--db", str(db), "--model", str(tiny_checkpoint), "--json").stdout)
    assert "read_as" not in doc  # the document keeps its shape for models without concept columns
    doc = json.loads(run("query", str(lib / "hum.wav"), "--db", str(db), "--model", str(tiny_checkpoint),
                         "--json").stdout)
    assert "read_as" not in doc and doc["results"][0]["path"].endswith("hum.wav")
