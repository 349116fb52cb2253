"""Adapting the default's ear to a library's own named sounds (train.adapt, `soundlib adapt`), and the fit set the
checkpoint keeps for it (encoders.bridge.BridgeFitSet). Real demo recordings, the bundled default, real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.bridge import BridgeFitSet
from encoders.checkpoint import load_checkpoint, save_checkpoint
from encoders.errors import CheckpointError
from soundlib.errors import SoundlibError
from train.adapt import adapt_model
from train.bridge import fit_softmax_regression
from tests.cli_process import one_line, run_cli as run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEMO = Path(__file__).resolve().parents[1] / "demo" / "sounds"
DEFAULT = Path(__file__).resolve().parents[1] / "soundlib" / "models" / "default.pt"


def _library(root: Path) -> Path:
    """Four real recordings under names that say something else than the base hears (a rooster named as an owl, a
    cat as a sheep), one unnamed, and the owl's second take."""
    lib = root / "lib"
    lib.mkdir()
    shutil.copy(DEMO / "chicken" / "Rooster.wav", lib / "owl_hoot_01.wav")
    shutil.copy(DEMO / "chicken" / "chicken_10.ogg", lib / "owl_hoot_02.ogg")
    shutil.copy(DEMO / "cat" / "Meow.wav", lib / "sheep_bleat.wav")
    rain = sorted((DEMO / "rain").iterdir())[0]
    shutil.copy(rain, lib / f"take_03{rain.suffix}")
    return lib


@pytest.fixture(scope="module")
def adapted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("adapt")
    lib = _library(root)
    report = adapt_model(None, [lib], root / "ear.pt")
    return lib, report


def _owl_probability(model, path: Path) -> float:
    from soundlib.audio import load_windows

    _, w = load_windows(path, model.config.audio)
    with torch.no_grad():
        p = model.sound_concepts(model.audio_features(torch.from_numpy(w)))
    return float(p[:, list(model.config.concepts).index("owl")].mean())


def test_the_shipped_default_keeps_its_fit_set_and_refitting_it_gives_its_classifier() -> None:
    model, info = load_checkpoint(DEFAULT)
    fit = model.bridge_fit
    assert info.has_bridge_fit and len(fit) > 1000 and int(fit.count.sum()) >= len(fit)
    mean, std, w, b = fit_softmax_regression(fit.x.float(), fit.y.numpy(), model.bridge.n_concepts,
                                             fit.weight_decay, sample_weight=fit.count.numpy())
    x = fit.x.float()[:400]
    ours = torch.softmax(((x - mean) / std) @ w + b, 1)
    theirs = model.bridge.sound_probs(x)
    assert float((ours - theirs).abs().max()) < 0.02  # float16 rows: the same classifier up to rounding
    assert float((ours.argmax(1) == theirs.argmax(1)).float().mean()) > 0.99


def test_adapting_learns_the_library_names_and_changes_nothing_else(adapted) -> None:
    lib, report = adapted
    assert (report.files, report.named_files) == (4, 3)
    assert report.concepts == {"owl": 2, "sheep": 1}
    assert report.windows >= 3 and report.skipped == []
    base, base_info = load_checkpoint(DEFAULT)
    ear, info = load_checkpoint(report.out)
    assert info.sha256 == report.sha256 and report.base_sha256 == base_info.sha256
    assert "same_weights_as" not in info.training  # the default's claim about its weights is not the adapted model's
    facts = info.training["adapted"]
    assert facts["base_sha256"] == base_info.sha256 and facts["named_files"] == 3 and facts["concepts"]["owl"] == 2
    changed = {k for k, v in ear.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    assert changed and changed <= {"bridge.sound_mean", "bridge.sound_std", "bridge.sound_weight", "bridge.sound_bias"}
    assert len(ear.bridge_fit) == len(base.bridge_fit)  # the base's fit set, not the library's rows
    # the rooster now sounds like what its name says, more than it did to the base
    rooster = lib / "owl_hoot_01.wav"
    assert _owl_probability(ear, rooster) > _owl_probability(base, rooster) + 0.05


def test_adapting_an_adapted_model_starts_again_from_the_base(adapted, tmp_path: Path) -> None:
    lib, report = adapted
    again = adapt_model(report.out, [lib], tmp_path / "again.pt")
    a, _ = load_checkpoint(report.out)
    b, info = load_checkpoint(again.out)
    assert torch.allclose(a.bridge.sound_weight, b.bridge.sound_weight, atol=1e-5)
    assert again.base_sha256 == info.training["adapted"]["base_sha256"] == report.base_sha256  # the default's


def test_embedded_descriptions_name_files_as_ingest_reads_them(tmp_path: Path) -> None:
    import soundfile as sf

    from tests.fixtures_tags import write_bwf
    from train.adapt import named_library_files

    lib = tmp_path / "studio"
    lib.mkdir()
    y, sr = sf.read(str(DEMO / "chicken" / "Rooster.wav"), dtype="float32")
    write_bwf(lib / "SFX_0412.wav", y, sr, description="Large dog barking, outdoors")
    write_bwf(lib / "SFX_0413.wav", y, sr)
    model, _ = load_checkpoint(DEFAULT)
    concepts = list(model.config.concepts)
    found, named = named_library_files([str(lib)], model)
    assert found == 2 and [(f.rel, [concepts[i] for i in np.flatnonzero(v)]) for f, v in named] == [
        ("SFX_0412.wav", ["dog"])]
    assert named_library_files([str(lib)], model, metadata=False) == (2, [])


def test_a_library_whose_names_name_nothing_is_one_clear_error(tmp_path: Path) -> None:
    lib = tmp_path / "takes"
    lib.mkdir()
    shutil.copy(DEMO / "cat" / "Meow.wav", lib / "take_01.wav")
    shutil.copy(DEMO / "chicken" / "Rooster.wav", lib / "take_02.wav")
    with pytest.raises(SoundlibError, match=r"words of its 2 audio files name none of the model's \d+ concepts"):
        adapt_model(None, [lib], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_a_model_without_a_bridge_or_without_its_fit_set_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    lib = _library(tmp_path)
    with pytest.raises(SoundlibError, match="no concept bridge"):
        adapt_model(str(tiny_checkpoint), [lib], tmp_path / "x.pt")
    model, _ = load_checkpoint(DEFAULT)
    model.bridge_fit = None
    old = tmp_path / "old.pt"
    save_checkpoint(old, model, training={"data": "a default saved before fit sets"})
    with pytest.raises(SoundlibError, match="without its sound classifier's fit set"):
        adapt_model(str(old), [lib], tmp_path / "x.pt")
    base = tmp_path / "base.pt"
    shutil.copy(DEFAULT, base)
    with pytest.raises(SoundlibError, match="overwrite its base"):
        adapt_model(str(base), [lib], base)


def test_the_cli_writes_the_model_reports_a_broken_named_file_and_ingest_uses_the_model(tmp_path: Path) -> None:
    lib = _library(tmp_path)
    (lib / "owl_broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "ear.pt"
    r = run("adapt", str(lib), "--out", str(out), "--json")
    assert r.exit_code == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["named_files"] == 3 and doc["concepts"] == {"owl": 3, "sheep": 1}
    assert [s["path"] for s in doc["skipped"]] == [str(lib / "owl_broken.wav")]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2 and "owl_broken.wav" in lines[0] and "Traceback" not in r.stderr
    assert lines[1].startswith("warning") and "only 3 named files" in lines[1]
    assert doc["caution"].startswith("only 3 named files")
    (lib / "owl_broken.wav").unlink()
    db = tmp_path / "db"
    r = run("ingest", str(lib), "--model", str(out), "--db", str(db), "--collection", "ear", "--json")
    assert r.exit_code == 0, r.stderr
    from soundlib.store import open_store

    shutil.copy(DEMO / "cat" / "Kitten.wav", lib / "sheep_lamb.wav")  # a later ingest keeps the collection's model
    r = run("ingest", str(lib), "--db", str(db), "--collection", "ear", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 1
    with open_store(db=str(db), collection="ear") as store:  # later queries of the collection use the adapted model
        assert store.recorded_model_path() == str(out.resolve())
    r = run("library", "--db", str(db), "--collection", "ear", "--json")
    assert json.loads(r.stdout)["model_path"] == str(out.resolve())
    assert json.loads(r.stdout)["model_sha256"] == load_checkpoint(out)[1].sha256
    r = run("query", str(DEMO.parent / "images" / "dog-photo.png"), "--db", str(db), "--collection", "ear", "--json")
    assert r.exit_code == 0, r.stderr
    found = {Path(h["path"]).stem for h in json.loads(r.stdout)["results"]}
    assert found == {"owl_hoot_01", "owl_hoot_02", "sheep_bleat", "sheep_lamb", "take_03"}


def test_an_out_that_cannot_be_written_is_refused_before_the_library_is_read(tmp_path: Path) -> None:
    lib = _library(tmp_path)
    with pytest.raises(SoundlibError, match="is a folder"):
        adapt_model(None, [lib], tmp_path)
    (tmp_path / "file").write_text("x")
    one_line(run("adapt", str(lib), "--out", str(tmp_path / "file" / "ear.pt")), 2, "cannot make its folder")


def test_a_missing_library_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    one_line(run("adapt", str(tmp_path / "nope"), "--out", str(tmp_path / "x.pt")), 2, str(tmp_path / "nope"))


def test_a_fit_set_merges_identical_rows_and_a_weighted_fit_equals_the_repeated_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    xr, yr = np.concatenate([x, x[:10]]), np.concatenate([y, y[:10]])
    fit = BridgeFitSet.of(xr, yr, 0.03)
    assert len(fit) == 40 and int(fit.count.sum()) == 50 and fit.count[:10].tolist() == [2] * 10
    xh = fit.x.float()
    a = fit_softmax_regression(xh, fit.y.numpy(), 3, 0.03, sample_weight=fit.count.numpy())
    b = fit_softmax_regression(torch.cat([xh, xh[:10]]), np.concatenate([fit.y.numpy(), fit.y.numpy()[:10]]), 3, 0.03)
    for u, v in zip(a, b):
        assert torch.allclose(u, v, atol=2e-4)


def test_a_damaged_fit_set_in_a_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    model, _ = load_checkpoint(DEFAULT)
    fit = model.bridge_fit
    model.bridge_fit = BridgeFitSet(fit.x[:5], fit.y[:5] + 10_000, fit.count[:5], fit.weight_decay)
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, model)
    with pytest.raises(CheckpointError, match=r"bad\.pt: damaged soundlib checkpoint: bridge fit set: a column"):
        load_checkpoint(bad)


def test_a_model_that_names_an_earlier_file_with_its_weights_keeps_that_files_collections(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The default saved again with its fit set has the same weights under a new sha256: collections built with the
    earlier file stay usable, because the new file says so (training["same_weights_as"]); any other file is refused."""
    from encoders.checkpoint import file_sha256
    from tests.conftest import write_image
    from tests.fixtures_library import write_sound

    lib = tmp_path / "lib"
    write_sound(lib / "rain" / "rain_01.wav", 2.0, 16_000, "noise", 0)
    write_sound(lib / "bird" / "chirp_01.wav", 1.5, 16_000, "chirp", 1)
    db = tmp_path / "db"
    assert run("ingest", str(lib), "--db", str(db), "--model", str(tiny_checkpoint), "--json").exit_code == 0
    model, info = load_checkpoint(tiny_checkpoint)
    same, other = tmp_path / "same.pt", tmp_path / "other.pt"
    save_checkpoint(same, model, training={**info.training, "same_weights_as": [file_sha256(tiny_checkpoint)]})
    save_checkpoint(other, model, training={**info.training, "note": "saved again, saying nothing"})
    pic = write_image(tmp_path / "p.png", (64, 48))
    r = run("query", str(pic), "--db", str(db), "--model", str(same), "--json")
    assert r.exit_code == 0, r.stderr
    assert {Path(h["path"]).name for h in json.loads(r.stdout)["results"]} == {"rain_01.wav", "chirp_01.wav"}
    one_line(run("query", str(pic), "--db", str(db), "--model", str(other), "--json"), 2, "was built with model")


def test_the_shipped_default_names_the_file_before_it() -> None:
    _, info = load_checkpoint(DEFAULT)
    assert info.training["same_weights_as"] == ["f02e618dafb4e5a863424396fa3efff0c4c368b1b27ffeb3f958e4ee0c6c525a"]
