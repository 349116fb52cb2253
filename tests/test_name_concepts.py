"""Concepts named by a sound's file name, mixed into its bridged embedding at ingest (soundlib.name_concepts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.bridge import mix_concepts, unmix_concepts
from soundlib.config import NAME_SHARE, NAMES_VERSION
from soundlib.errors import SoundlibError
from soundlib.ingest import ingest
from soundlib.name_concepts import NameConcepts, concept_words, for_model, path_words
from soundlib.store import file_key, open_store
from tests.cli_process import run_cli as run
from tests.chroma_server import chroma_server  # noqa: F401 (fixture)
from tests.conftest import write_audio

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEMO_DOG = Path(__file__).resolve().parents[1] / "demo" / "images" / "dog-photo.png"


@pytest.fixture(scope="module")
def default_model():
    from soundlib.models import load_model

    return load_model(None)


@pytest.fixture(scope="module")
def names(default_model) -> NameConcepts:
    mixing = for_model(default_model.model)
    assert mixing is not None
    return mixing


# --- the words table and reading names ----------------------------------------------------------------------------

def test_every_concept_of_the_default_model_has_words(names: NameConcepts) -> None:
    assert len(names.concepts) == 116
    assert [c for c, ps in zip(names.concepts, names.phrases) if not ps] == []


@pytest.mark.parametrize(("rel", "named"), [
    ("Animals/Dogs/Dog Bark Large 03.wav", ["dog"]),
    ("ANMLDog_Growl_JD_Foley.wav", ["dog"]),  # a UCS name: CatID camel case split
    ("DOORWood_Creak Long_JD.wav", ["door"]),
    ("weather/RainOnRoof.flac", ["rain"]),
    ("cows/moo2.ogg", ["cattle"]),  # a plural folder
    ("Animal/Dog1.wav", ["dog"]),  # a numbered take: letters and digits parted
    ("drums/Shakers02.ogg", ["drum kit", "shaker"]),
    ("Sea Lions.wav", ["sea lion"]),  # the longer phrase uses "lion" up: not big cat
    ("vehicles/Steam Engine Whistle.wav", ["road traffic", "train", "whistle"]),
    ("Fire Crackling Campfire Guitar.wav", ["fire", "acoustic guitar"]),
    ("take_03.wav", []),
    ("", []),
])
def test_names_read_folders_and_the_name_without_its_extension(names: NameConcepts, rel: str, named: list[str]) -> None:
    assert sorted(names.named(rel)) == sorted(named)
    v = names.vector(rel)
    assert v.shape == (116,) and v.sum() == len(named)
    assert sorted(names.concepts[i] for i in np.flatnonzero(v)) == sorted(named)


def test_the_embedded_title_description_keywords_and_catid_name_concepts_too(names: NameConcepts) -> None:
    info = {"description": "Large dog barking, outdoors", "keywords": "Thunder; storm", "cat_id": "DOORWood",
            "comment": "fire", "library": "Boom Library", "artist": "Owl Studios"}  # the last three do not count
    assert names.named("SFX_0412.wav", info) == ["dog", "rain", "door"]
    assert names.named("SFX_0412.wav", {"title": "Sea"}) == ["seashore"]
    assert names.named("SFX_0412.wav") == [] and names.named("SFX_0412.wav", {}) == []
    # a phrase never spans two fields: "sea" ending the title and "lion" starting the description are two words
    assert names.named("x.wav", {"title": "Sea", "description": "lion"}) == ["big cat", "seashore"]


@pytest.mark.parametrize("name,named", [
    ("horse.png", ["horse"]),
    ("dog-photo.jpg", ["dog"]),  # "photo" says what the picture is, not a camera shutter
    ("shot_012.png", []),  # a film shot, not a gun
    ("camera_A_take3.mov", []),
    ("gun shot.png", ["firearm"]),  # the gun still counts
    ("Thunderstorm over the sea.jpg", ["rain", "seashore"]),
    ("C:\\stills\\sea lion.webp", ["sea lion"]),
])
def test_a_query_pictures_name_leaves_out_words_for_the_picture_itself(names: NameConcepts, name: str,
                                                                        named: list[str]) -> None:
    assert names.names_of(names.picture_vector(name)) == named
    if name == "shot_012.png":
        assert names.named(name) == ["firearm"]  # a sound named so is a shot


def test_path_words_skip_the_extension_only_on_the_name() -> None:
    assert path_words("Rain.wav/drip.wav") == ["rain", "wav", "drip"]
    assert path_words("take 3/x9 MP5 Cows2.wav") == ["take", "mp", "cow"]  # bare numbers and single letters go
    assert path_words("a\\b\\Owl Hoot.ogg") == ["owl", "hoot"]


@pytest.mark.parametrize(("text", "reason"), [
    ("concept,notes\ndog,x\n", "missing column(s) words (header: concept,notes)"),
    ("concept,words\ndog,dog\ndog,bark\n", "line 3: empty or repeated concept 'dog'"),
    ("concept,words\ndog,dog;--\n", "line 2: '--' has no word soundlib keeps"),
])
def test_a_bad_words_table_is_one_line_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    table = tmp_path / f"bad{abs(hash(text))}.csv"
    table.write_text(text)
    with pytest.raises(SoundlibError) as e:
        concept_words(table)
    assert str(e.value) == f"{table}: {reason}"
    with pytest.raises(SoundlibError) as e:
        concept_words(tmp_path / "missing.csv")
    assert str(e.value) == f"{tmp_path / 'missing.csv'}: list file not found"


def test_a_model_without_a_bridge_has_no_name_mixing(tiny_model) -> None:
    assert for_model(tiny_model.model) is None


# --- the mix ------------------------------------------------------------------------------------------------------

def test_mix_moves_the_concept_part_and_keeps_the_heads_and_unit_rows() -> None:
    g = torch.Generator().manual_seed(0)
    d, c, w = 8, 5, 0.7
    heads = torch.nn.functional.normalize(torch.randn(3, d, generator=g), dim=1)
    probs = torch.softmax(torch.randn(3, c, generator=g), dim=1)
    emb = torch.cat([heads * (1 - w) ** 0.5, torch.nn.functional.normalize(probs, dim=1) * w ** 0.5], dim=1)
    named = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    out = mix_concepts(emb, named, d, w, 0.5)
    assert torch.allclose(out[:, :d], emb[:, :d])
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-6)
    before = torch.nn.functional.normalize(emb[:, d:], dim=1)[:, 2]
    after = torch.nn.functional.normalize(out[:, d:], dim=1)[:, 2]
    assert bool((after > before + 0.1).all())
    # half and half: the mixed part is the normalised sum of the two unit directions
    want = torch.nn.functional.normalize(torch.nn.functional.normalize(emb[:, d:], dim=1) + named, dim=1)
    assert torch.allclose(out[:, d:] / w ** 0.5, want, atol=1e-6)
    assert mix_concepts(emb, torch.zeros(c), d, w, 0.5) is emb  # nothing named: unchanged
    assert torch.allclose(mix_concepts(emb, named, d, w, 1.0)[:, d:] / w ** 0.5, named.expand(3, -1))
    with pytest.raises(ValueError, match="share"):
        mix_concepts(emb, named, d, w, 1.5)


@pytest.mark.parametrize("share", [0.25, 0.5, 0.8])
def test_unmix_undoes_a_mix_of_one_or_several_concepts(share: float) -> None:
    g = torch.Generator().manual_seed(1)
    d, c, w = 8, 6, 0.7
    heads = torch.nn.functional.normalize(torch.randn(4, d, generator=g), dim=1)
    probs = torch.softmax(3 * torch.randn(4, c, generator=g), dim=1)
    emb = torch.cat([heads * (1 - w) ** 0.5, torch.nn.functional.normalize(probs, dim=1) * w ** 0.5], dim=1)
    for named in (torch.tensor([0.0, 0, 1, 0, 0, 0]), torch.tensor([1.0, 0, 0, 0, 1, 1])):
        mixed = mix_concepts(emb, named, d, w, share)
        assert not torch.allclose(mixed, emb, atol=1e-3)
        assert torch.allclose(unmix_concepts(mixed, named, d, w, share), emb, atol=1e-5)
        other = unmix_concepts(mixed, torch.tensor([0.0, 1, 0, 0, 0, 0]), d, w, share)  # not what it was mixed with
        assert not torch.allclose(other, emb, atol=1e-3)
    assert unmix_concepts(emb, torch.zeros(c), d, w, 0.5) is emb  # nothing was mixed: unchanged
    with pytest.raises(ValueError, match="share"):
        unmix_concepts(emb, named, d, w, 1.0)  # the name alone: nothing of the audio is left to recover


# --- ingest with the bridged default --------------------------------------------------------------------------------

def _noise(seconds: float = 1.5, rate: int = 48_000, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * rng.standard_normal(t.size) * np.exp(-3 * (t % 0.5))).astype(np.float32)


def _vectors(store, root: Path, rel: str) -> tuple[np.ndarray, list[dict]]:
    got = store.require().get(where={"file_id": file_key(str(root), rel)}, include=["embeddings", "metadatas"])
    order = np.argsort([m["window"] for m in got["metadatas"]])
    return np.asarray(got["embeddings"])[order], [got["metadatas"][i] for i in order]


def test_ingest_mixes_what_the_name_says_and_only_that(tmp_path: Path, default_model, names: NameConcepts) -> None:
    lib = tmp_path / "lib"
    (lib / "animals").mkdir(parents=True)
    y = _noise()
    write_audio(lib / "animals" / "Dog Bark 01.wav", y, 48_000)
    write_audio(lib / "take_01.wav", y, 48_000)  # the same sound, a name that says nothing
    model = default_model.model
    d, dog = int(model.config.embed_dim), names.concepts.index("dog")
    with open_store(db=tmp_path / "db", create=True) as store:
        report = ingest([lib], default_model, store)
        assert (report.added, report.skipped) == (2, [])
        named, meta_named = _vectors(store, lib, "animals/Dog Bark 01.wav")
        plain, meta_plain = _vectors(store, lib, "take_01.wav")
        assert {m["named"] for m in meta_named + meta_plain} == {NAMES_VERSION}
        np.testing.assert_allclose(named[:, :d], plain[:, :d], atol=1e-5)  # the heads: the same audio
        np.testing.assert_allclose(np.linalg.norm(named, axis=1), 1.0, atol=1e-5)
        part_named = named[:, d:] / np.linalg.norm(named[:, d:], axis=1, keepdims=True)
        part_plain = plain[:, d:] / np.linalg.norm(plain[:, d:], axis=1, keepdims=True)
        # the mix: half the concept part points at dog (the name), half is the audio's own concepts
        want = part_plain + np.eye(len(names.concepts))[dog]
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        np.testing.assert_allclose(part_named, want, atol=1e-4)
        assert (part_named[:, dog] > part_plain[:, dog] + 0.3).all()
        # a dog query (its concept part all dog) now finds the named file first
        query = np.concatenate([np.zeros(d), np.eye(len(names.concepts))[dog]])
        assert float((named @ query).max()) > float((plain @ query).max()) + 0.3

        again = ingest([lib], default_model, store)
        assert (again.unchanged, again.added, again.updated, again.windows) == (2, 0, 0, 0)  # no work

        # stored under the other choice: the named file's mix is undone from its stored vectors (no decoding); the
        # take held the audio alone under either choice, so only its metadata is rewritten
        audio_only = ingest([lib], default_model, store, names=False)
        assert (audio_only.updated, audio_only.remixed, audio_only.unchanged, audio_only.windows) == (0, 2, 0, 0)
        named2, meta2 = _vectors(store, lib, "animals/Dog Bark 01.wav")
        assert {m["named"] for m in meta2} == {0} and "named_concepts" not in meta2[0]
        np.testing.assert_allclose(named2, plain, atol=1e-5)  # now the audio alone: like the unnamed copy
        assert {m["named"] for m in _vectors(store, lib, "take_01.wav")[1]} == {0}

        # names again: both hold the audio alone, so both are mixed in place from their stored vectors
        remixed = ingest([lib], default_model, store)
        assert (remixed.remixed, remixed.updated, remixed.unchanged, remixed.windows) == (2, 0, 0, 0)
        named3, meta3 = _vectors(store, lib, "animals/Dog Bark 01.wav")
        np.testing.assert_allclose(named3, named, atol=1e-5)  # exactly the mix a fresh embedding gets
        assert {m["named"] for m in meta3} == {NAMES_VERSION} and meta3[0]["named_concepts"] == "dog"
        np.testing.assert_allclose(_vectors(store, lib, "take_01.wav")[0], plain, atol=1e-5)
        assert ingest([lib], default_model, store).unchanged == 2  # and then no work


def test_files_stored_before_names_were_mixed_are_mixed_in_place(tmp_path: Path, default_model) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    write_audio(lib / "rain on roof.wav", _noise(seed=5), 48_000)
    write_audio(lib / "take_02.wav", _noise(seed=6, seconds=4.0), 48_000)
    with open_store(db=tmp_path / "fresh", create=True) as fresh:  # what an ingest with names stores
        ingest([lib], default_model, fresh)
        want = {rel: _vectors(fresh, lib, rel)[0] for rel in ("rain on roof.wav", "take_02.wav")}
    with open_store(db=tmp_path / "db", create=True) as store:
        ingest([lib], default_model, store, names=False)  # an older soundlib stored the audio alone...
        col = store.require()
        got = col.get(include=["embeddings", "metadatas"])
        for m in got["metadatas"]:  # what an older soundlib wrote: no "named" key (an update would merge keys)
            del m["named"]
        col.delete(ids=got["ids"])
        col.add(ids=got["ids"], embeddings=got["embeddings"], metadatas=got["metadatas"])
        assert "named" not in col.get(include=["metadatas"])["metadatas"][0]
        report = ingest([lib], default_model, store)
        assert (report.remixed, report.updated, report.unchanged, report.windows) == (2, 0, 0, 0)  # no embedding
        assert {m["named"] for m in col.get(include=["metadatas"])["metadatas"]} == {NAMES_VERSION}
        for rel, vectors in want.items():
            np.testing.assert_allclose(_vectors(store, lib, rel)[0], vectors, atol=1e-5)
        assert _vectors(store, lib, "rain on roof.wav")[1][0]["named_concepts"] == "rain"
        assert ingest([lib], default_model, store).unchanged == 2


def test_a_remix_cut_by_a_crash_is_embedded_again(tmp_path: Path, default_model) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    write_audio(lib / "owl hoot.wav", _noise(seed=8, seconds=3.0), 48_000)
    with open_store(db=tmp_path / "db", create=True) as store:
        ingest([lib], default_model, store, names=False)
        plain, meta = _vectors(store, lib, "owl hoot.wav")
        assert len(meta) >= 2
        col = store.require()  # a remix killed after its window 0: the last window still says "not mixed"
        col.update(ids=[f"{file_key(str(lib), 'owl hoot.wav')}:0"], metadatas=[{"named": NAMES_VERSION}])
        report = ingest([lib], default_model, store)
        assert (report.updated, report.remixed) == (1, 0)
        now, meta = _vectors(store, lib, "owl hoot.wav")
        assert {m["named"] for m in meta} == {NAMES_VERSION} and meta[0]["named_concepts"] == "owl"
        assert not np.allclose(now, plain, atol=1e-3)


def test_an_embedded_description_names_a_generic_file_and_a_no_metadata_store_is_redone(
        tmp_path: Path, default_model, names: NameConcepts) -> None:
    from tests.fixtures_tags import write_bwf

    lib = tmp_path / "lib"
    lib.mkdir()
    y = _noise(seed=13)
    write_bwf(lib / "SFX_0412.wav", y, 48_000, description="Large dog barking, outdoors")
    write_audio(lib / "SFX_0413.wav", y, 48_000)  # the same sound, no tags
    d, dog = int(default_model.model.config.embed_dim), names.concepts.index("dog")
    with open_store(db=tmp_path / "db", create=True) as store:
        first = ingest([lib], default_model, store, metadata=False)  # tags not read: nothing names dog
        assert first.added == 2
        untagged, _ = _vectors(store, lib, "SFX_0412.wav")
        plain, _ = _vectors(store, lib, "SFX_0413.wav")
        np.testing.assert_allclose(untagged, plain, atol=1e-5)

        second = ingest([lib], default_model, store)  # reads the tags: the mix changes, so it is embedded again
        assert (second.updated, second.described) == (2, 0)
        tagged, meta = _vectors(store, lib, "SFX_0412.wav")
        assert meta[0]["description"] == "Large dog barking, outdoors"
        part = tagged[:, d:] / np.linalg.norm(tagged[:, d:], axis=1, keepdims=True)
        base = plain[:, d:] / np.linalg.norm(plain[:, d:], axis=1, keepdims=True)
        want = base + np.eye(len(names.concepts))[dog]
        np.testing.assert_allclose(part, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-4)
        np.testing.assert_allclose(_vectors(store, lib, "SFX_0413.wav")[0], plain, atol=1e-5)

        third = ingest([lib], default_model, store, metadata=False)  # not reading tags now does not undo them
        assert (third.unchanged, third.updated) == (2, 0)


def test_a_file_stored_without_tags_and_remixed_without_names_is_described_too(tmp_path: Path, default_model) -> None:
    from tests.fixtures_tags import write_bwf

    lib = tmp_path / "lib"
    lib.mkdir()
    write_bwf(lib / "SFX_0500.wav", _noise(seed=14), 48_000, description="Rain on a tin roof")
    with open_store(db=tmp_path / "db", create=True) as store:
        assert ingest([lib], default_model, store, metadata=False).added == 1  # names mixed, tags not read
        report = ingest([lib], default_model, store, names=False)  # the audio alone now, and the tags read
        assert (report.remixed, report.described, report.updated, report.windows) == (1, 1, 0, 0)
        _, meta = _vectors(store, lib, "SFX_0500.wav")
        assert meta[0]["description"] == "Rain on a tin roof" and {m["named"] for m in meta} == {0}
        assert {m["meta"] for m in meta} == {1}
        assert ingest([lib], default_model, store, names=False).unchanged == 1


def test_cli_ingest_no_names(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    write_audio(lib / "owl hoot.wav", _noise(seed=7), 48_000)
    db = tmp_path / "db"
    write_audio(lib / "take_04.wav", _noise(seed=37), 48_000)
    first = run("ingest", str(lib), "--db", str(db), "--no-names", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["added"] == 2
    assert "names" not in json.loads(run("library", "--db", str(db), "--json").stdout)  # nothing mixed
    second = run("ingest", str(lib), "--db", str(db), "--json")
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout)
    assert (doc["remixed"], doc["updated"], doc["unchanged"], doc["windows"]) == (2, 0, 0, 0)  # mixed in place
    doc = json.loads(run("library", "--db", str(db), "--json").stdout)
    assert doc["names"] == {"mixed_files": 2, "named_files": 1}  # the owl's name named it, the take's nothing
    table = run("library", "--db", str(db), env={"COLUMNS": "200"})
    assert "named by their words" in table.stdout and "1 of 2 files" in table.stdout
    assert "--no-names" in run("ingest", "--help").stdout
    assert NAME_SHARE == 0.5


# --- eval --names ---------------------------------------------------------------------------------------------------

def test_name_paths_are_below_the_sounds_common_folder(tmp_path: Path) -> None:
    from soundlib.evaluation.inputs import name_paths

    home = tmp_path / "Horse Project"  # a folder above the sounds: its words must not count
    got = name_paths([home / "sfx" / "dogs" / "bark.wav", home / "sfx" / "rain" / "RainOnRoof.flac"])
    assert got == ["dogs/bark.wav", "rain/RainOnRoof.flac"]
    assert name_paths([home / "sfx" / "dogs" / "bark.wav"]) == ["bark.wav"]
    assert name_paths([]) == []


def test_eval_names_mixes_each_sounds_path_and_only_with_the_flag(tmp_path: Path, default_model) -> None:
    import shutil

    from soundlib.evaluation.retrieval import evaluate_list

    data = tmp_path / "data"
    (data / "sfx" / "dogs").mkdir(parents=True)
    (data / "sfx" / "misc").mkdir(parents=True)
    y = _noise(seed=11)
    write_audio(data / "sfx" / "dogs" / "Dog Bark.wav", y, 48_000)
    write_audio(data / "sfx" / "misc" / "take.wav", y, 48_000)  # the same sound, a name that says nothing
    shutil.copy(DEMO_DOG, data / "frame.png")  # the bundled demo's dog photo: the picture side says dog
    (data / "test.csv").write_text("frame,audio,category\nframe.png,sfx/dogs/Dog Bark.wav,dog\n"
                                   "frame.png,sfx/misc/take.wav,dog\n", encoding="utf-8")
    reports = {names: evaluate_list(data / "test.csv", [], (1, 2), names=names) for names in (False, True)}
    assert "names" not in reports[False].to_json() and reports[True].to_json()["names"] is True

    def distances(rep) -> dict[str, float]:
        rec = next(iter(rep.models[0].recommendations.values()))
        return dict(zip(rec["knn_samples"], rec["knn_dist"]))

    alone, named = distances(reports[False]), distances(reports[True])
    assert alone["sfx/dogs/Dog Bark.wav"] == pytest.approx(alone["sfx/misc/take.wav"], abs=1e-4)  # same audio
    assert named["sfx/misc/take.wav"] == pytest.approx(alone["sfx/misc/take.wav"], abs=1e-5)  # nothing named
    assert named["sfx/dogs/Dog Bark.wav"] < alone["sfx/dogs/Dog Bark.wav"] - 0.05  # the name brought it nearer
    with pytest.raises(SoundlibError, match="--names"):
        evaluate_list(data / "test.csv", [], (1,), names=True, library="sounds", db=str(tmp_path / "db"))


# --- results say which words counted ----------------------------------------------------------------------------

def test_results_name_the_concepts_the_words_named(tmp_path: Path, default_model) -> None:
    import shutil

    from soundlib.serve.config import ServeConfig
    from soundlib.serve.engine import Engine

    lib = tmp_path / "lib"
    (lib / "dogs").mkdir(parents=True)
    y = _noise(seed=17)
    write_audio(lib / "dogs" / "Dog Bark 01.wav", y, 48_000)
    write_audio(lib / "take_01.wav", y, 48_000)
    with open_store(db=tmp_path / "db", create=True) as store:
        ingest([lib], default_model, store)
        engine = Engine(default_model, store, ServeConfig(cache_dir=tmp_path / "cache"))
        photo = tmp_path / "dog.png"
        shutil.copy(DEMO_DOG, photo)
        rows = engine.query_uploads([("dog.png", photo)], k=2)["results"]
        assert {r["name"]: r["named"] for r in rows} == {"Dog Bark 01.wav": "dog", "take_01.wav": ""}
        assert rows[0]["name"] == "Dog Bark 01.wav"  # the same sound: the name decides, for a dog photo

    db = str(tmp_path / "db")
    doc = json.loads(run("query", str(photo), "--db", db, "-k", "2", "--json").stdout)
    infos = {Path(h["path"]).name: h["info"] for h in doc["results"]}
    assert infos["Dog Bark 01.wav"]["named_concepts"] == "dog" and "named_concepts" not in infos["take_01.wav"]
    table = run("query", str(photo), "--db", db, "-k", "2")
    assert table.exit_code == 0 and "named" in table.stdout and "dog" in table.stdout
    assert "description" not in table.stdout  # no result has one: the column is left out


# --- a studio's own words ($SOUNDLIB_WORDS) ------------------------------------------------------------------------

def test_a_studios_own_words_name_concepts_in_its_language(tmp_path: Path, default_model) -> None:
    words = tmp_path / "de.csv"
    words.write_text("concept,words\ndog,hund;bellen\nrain,regen\n", encoding="utf-8")
    concepts = default_model.model.config.concepts
    plain = NameConcepts.for_concepts(concepts)
    german = NameConcepts.for_concepts(concepts, extra=words)
    assert plain.named("Hund_Bellen_01.wav") == [] and german.named("Hund_Bellen_01.wav") == ["dog"]
    assert german.named("Tiere/Regen auf Dach.wav") == ["rain"] and german.named("Dog1.wav") == ["dog"]  # and English
    assert plain.version == NAMES_VERSION and german.version not in (0, 1)
    words.write_text("concept,words\ndog,hund\n", encoding="utf-8")  # other words: another version
    assert NameConcepts.for_concepts(concepts, extra=words).version not in (german.version, 0, 1)


@pytest.mark.parametrize(("text", "reason"), [
    ("concept,words\nhund,hund\n", "'hund' is not a concept of this model"),
    ("concept\ndog\n", "missing column(s) words (header: concept)"),
])
def test_a_bad_studio_words_table_is_one_line_naming_it(tmp_path: Path, default_model, text: str,
                                                        reason: str) -> None:
    words = tmp_path / f"words{len(text)}.csv"
    words.write_text(text, encoding="utf-8")
    with pytest.raises(SoundlibError) as e:
        NameConcepts.for_concepts(default_model.model.config.concepts, extra=words)
    assert str(e.value).startswith(f"{words}: {reason}")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00concept")
    with pytest.raises(SoundlibError) as e:
        NameConcepts.for_concepts(default_model.model.config.concepts, extra=binary)
    assert str(e.value) == f"{binary}: not a text (UTF-8 CSV) file"


def test_ingest_with_soundlib_words_and_without_it_again(tmp_path: Path, default_model, monkeypatch) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    y = _noise(seed=19)
    write_audio(lib / "Hund_Bellen_01.wav", y, 48_000)
    write_audio(lib / "Aufnahme_01.wav", y, 48_000)  # "recording": names nothing in either table
    words = tmp_path / "de.csv"
    words.write_text("concept,words\ndog,hund;bellen\n", encoding="utf-8")
    with open_store(db=tmp_path / "db", create=True) as store:
        monkeypatch.setenv("SOUNDLIB_WORDS", str(words))
        first = ingest([lib], default_model, store)
        assert first.added == 2
        german, meta = _vectors(store, lib, "Hund_Bellen_01.wav")
        plain, _ = _vectors(store, lib, "Aufnahme_01.wav")
        assert meta[0]["named_concepts"] == "dog" and meta[0]["named"] not in (0, 1)
        assert not np.allclose(german, plain, atol=1e-3)
        assert ingest([lib], default_model, store).unchanged == 2  # same words: no work
        monkeypatch.delenv("SOUNDLIB_WORDS")
        again = ingest([lib], default_model, store)  # the shipped words only: both were mixed under other words
        # Hund's mix named dog, which these words do not: undone in place; Aufnahme named nothing either way
        assert (again.updated, again.remixed, again.unchanged, again.windows) == (0, 2, 0, 0)
        now, meta = _vectors(store, lib, "Hund_Bellen_01.wav")
        assert meta[0]["named"] == NAMES_VERSION and "named_concepts" not in meta[0]
        np.testing.assert_allclose(now, plain, atol=1e-5)
        rec, meta = _vectors(store, lib, "Aufnahme_01.wav")
        assert meta[0]["named"] == NAMES_VERSION and "named_concepts" not in meta[0]
        np.testing.assert_allclose(rec, plain, atol=1e-5)
        monkeypatch.setenv("SOUNDLIB_WORDS", str(words))  # the German words back: Hund is mixed in place
        back = ingest([lib], default_model, store)
        assert (back.remixed, back.updated, back.windows) == (2, 0, 0)
        np.testing.assert_allclose(_vectors(store, lib, "Hund_Bellen_01.wav")[0], german, atol=1e-5)
        # a table that moves a word to other concepts: the dog mix is undone and the new concepts mixed in, the
        # same vectors as a fresh ingest under that table
        words.write_text("concept,words\ncat,hund\nbells,bellen\n", encoding="utf-8")
        moved = ingest([lib], default_model, store)
        assert (moved.remixed, moved.updated, moved.windows) == (2, 0, 0)
        now, meta = _vectors(store, lib, "Hund_Bellen_01.wav")
        assert meta[0]["named_concepts"] == "cat; bells"
        with open_store(db=tmp_path / "fresh", create=True) as fresh:
            ingest([lib], default_model, fresh)
            np.testing.assert_allclose(now, _vectors(fresh, lib, "Hund_Bellen_01.wav")[0], atol=1e-5)
    bad = run("ingest", str(lib), "--db", str(tmp_path / "db2"), env={"SOUNDLIB_WORDS": str(tmp_path / "none.csv")})
    assert bad.exit_code == 2 and "none.csv" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


# --- sound queries ("more like this") --------------------------------------------------------------------------------

def test_a_sound_query_in_the_library_uses_its_stored_windows_and_others_mix_their_own_name(
        tmp_path: Path, default_model) -> None:
    import os
    import shutil

    from soundlib.recommend import recommend, stored_sound

    lib = tmp_path / "lib"
    (lib / "rain").mkdir(parents=True)
    (lib / "dogs").mkdir()
    write_audio(lib / "rain" / "thunder_10.wav", _noise(seed=23), 48_000)  # mixed with rain: its folder and name
    write_audio(lib / "dogs" / "Dog Bark.wav", _noise(seed=29), 48_000)
    write_audio(lib / "take_02.wav", _noise(seed=31), 48_000)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(lib / "take_02.wav", outside / "Dog Bark 2.wav")  # the take's audio, a name that says dog
    shutil.copy(lib / "take_02.wav", outside / "take_03.wav")
    with open_store(db=tmp_path / "db", create=True) as store:
        ingest([lib], default_model, store)
        for rel in ("rain/thunder_10.wav", "dogs/Dog Bark.wav", "take_02.wav"):
            starts, vectors = stored_sound(store, lib / rel)
            np.testing.assert_array_equal(vectors, _vectors(store, lib, rel)[0])  # exactly what ingest wrote
            top = recommend([str(lib / rel)], default_model, store, k=1).results[0]
            assert (Path(top.path).name, top.distance) == (Path(rel).name, pytest.approx(0.0, abs=1e-6))
        assert stored_sound(store, outside / "take_03.wav") is None  # not below a stored root
        os.utime(lib / "take_02.wav", ns=(1, 1))  # changed on disk since ingest: no longer the stored file
        assert stored_sound(store, lib / "take_02.wav") is None

        def distance_to_dog(query: Path, names: bool = True) -> float:
            hits = recommend([str(query)], default_model, store, k=3, names=names).results
            return next(h.distance for h in hits if Path(h.path).name == "Dog Bark.wav")

        named, unnamed = distance_to_dog(outside / "Dog Bark 2.wav"), distance_to_dog(outside / "take_03.wav")
        assert named < unnamed - 0.05  # the query's own name counts, as a stored file's does
        assert distance_to_dog(outside / "Dog Bark 2.wav", names=False) == pytest.approx(unnamed, abs=1e-5)


@pytest.mark.server
def test_a_remix_on_a_chroma_server_matches_a_fresh_embedding(tmp_path: Path, default_model, chroma_server) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    write_audio(lib / "owl hoot.wav", _noise(seed=21, seconds=2.5), 48_000)
    write_audio(lib / "take_05.wav", _noise(seed=22), 48_000)
    with open_store(db=tmp_path / "local", create=True) as local:
        ingest([lib], default_model, local)
        want = {rel: _vectors(local, lib, rel)[0] for rel in ("owl hoot.wav", "take_05.wav")}
    with open_store(url=chroma_server.url, create=True) as store:
        assert ingest([lib], default_model, store, names=False).added == 2
        report = ingest([lib], default_model, store)
        assert (report.remixed, report.updated, report.windows) == (2, 0, 0)
        for rel, vectors in want.items():
            np.testing.assert_allclose(_vectors(store, lib, rel)[0], vectors, atol=1e-5)
        back = ingest([lib], default_model, store, names=False)  # the owl's mix undone, the take's metadata only
        assert (back.updated, back.remixed, back.windows) == (0, 2, 0)
        owl, meta = _vectors(store, lib, "owl hoot.wav")
        assert {m["named"] for m in meta} == {0} and "named_concepts" not in meta[0]
        with open_store(db=tmp_path / "plain", create=True) as plain:  # what an ingest without names stores
            ingest([lib], default_model, plain, names=False)
            np.testing.assert_allclose(owl, _vectors(plain, lib, "owl hoot.wav")[0], atol=1e-5)
        take, meta = _vectors(store, lib, "take_05.wav")
        assert {m["named"] for m in meta} == {0} and "named_concepts" not in meta[0]
        np.testing.assert_allclose(take, want["take_05.wav"], atol=1e-5)


# --- the words that name nothing yet (soundlib library words) --------------------------------------------------------

def test_library_words_lists_what_unnamed_files_say_and_a_words_table_remixes_them(
        tmp_path: Path, default_model, monkeypatch) -> None:
    from soundlib.name_coverage import unnamed_words

    lib = tmp_path / "lib"
    (lib / "Tiere").mkdir(parents=True)
    for i, name in enumerate(("Tiere/Hund_Bellen_01.wav", "Tiere/Hund_Knurren_02.wav", "Dog Bark 01.wav",
                              "take_07.wav")):
        write_audio(lib / name, _noise(seed=40 + i), 48_000)
    db = tmp_path / "db"
    with open_store(db=db, create=True) as store:
        ingest([lib], default_model, store)
        report = unnamed_words(store)
    assert (report.mixed_files, report.unnamed_files) == (4, 3)
    counts = {w.word: w.files for w in report.words}
    assert counts == {"tiere": 2, "hund": 2, "bellen": 1, "knurren": 1}  # not take, 01, dog or bark
    assert report.words[0].word == "hund" and report.words[0].example == "Tiere/Hund_Bellen_01.wav"

    doc = run("library", "words", "--db", str(db), "--json")
    assert doc.exit_code == 0, doc.output
    assert json.loads(doc.stdout) == report.to_json()
    table = run("library", "words", "-n", "1", "--db", str(db), env={"COLUMNS": "160"})
    assert "3 of 4 files" in table.stdout and "hund" in table.stdout and "bellen" not in table.stdout

    words = tmp_path / "de.csv"
    words.write_text("concept,words\ndog,hund\n", encoding="utf-8")  # the word the list pointed at
    monkeypatch.setenv("SOUNDLIB_WORDS", str(words))
    with open_store(db=db) as store:
        again = ingest([lib], default_model, store)
        assert (again.remixed, again.updated, again.windows) == (4, 0, 0)  # the Hund files mixed in place
        assert _vectors(store, lib, "Tiere/Hund_Knurren_02.wav")[1][0]["named_concepts"] == "dog"
        after = unnamed_words(store)
    assert (after.unnamed_files, [w.word for w in after.words]) == (1, [])  # take_07: nothing worth listing
    said = run("library", "words", "--db", str(db))
    assert said.exit_code == 0
    assert "1 of 4 files named no concept, and their words are none worth listing" in said.stdout


def test_library_words_of_a_collection_without_names(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    write_audio(lib / "Grillen_Nacht.wav", _noise(seed=50), 48_000)
    db = tmp_path / "db"
    assert run("ingest", str(lib), "--db", str(db), "--no-names").exit_code == 0
    doc = json.loads(run("library", "words", "--db", str(db), "--json").stdout)
    assert doc == {"mixed_files": 0, "unnamed_files": 0, "words": []}
    table = run("library", "words", "--db", str(db))
    assert table.exit_code == 0 and "no file of this collection was mixed" in table.stdout
    assert "soundlib library words" in run("library", "words", "--help").stdout
    missing = run("library", "words", "--db", str(db), "--collection", "nope")
    assert missing.exit_code == 2 and "no collection 'nope'" in missing.stderr and "Traceback" not in missing.stderr
