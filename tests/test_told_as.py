"""What the user says a query is (soundlib.told_as, ``query --as``): concepts named in words replace the query's own
concept part (the bundled default model, real demo sounds in a real Chroma store)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from soundlib.errors import SoundlibError
from soundlib.read_as import read_as
from soundlib.told_as import as_told, told_concepts, words_query
from tests.cli_process import one_line, run_cli as run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEMO = Path(__file__).resolve().parents[1] / "demo"
HORSE = DEMO / "images" / "horse.png"  # a cartoon the default reads as a (comic) book


@pytest.fixture(scope="module")
def default_model():
    from soundlib.models import load_model

    return load_model(None)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of demo sounds (horse, dog, cow, lion: 15 files), ingested with the default model; returns the
    store folder."""
    base = tmp_path_factory.mktemp("told")
    for kind in ("horse", "dog", "cow", "lion"):
        shutil.copytree(DEMO / "sounds" / kind, base / "lib" / kind)
    res = run("ingest", str(base / "lib"), "--db", str(base / "db"), "--json")
    assert res.exit_code == 0, res.output
    return base / "db"


def test_words_name_concepts_as_file_names_do(default_model) -> None:
    model = default_model.model
    assert told_concepts(model, "Horse gallop").concepts == ("horse",)
    assert told_concepts(model, "dog and cat").concepts == ("dog", "cat")
    assert told_concepts(model, "sea lion").concepts == ("sea lion",)  # not big cat by "lion"
    assert told_concepts(model, "drum kit").concepts == ("drum kit",)  # a concept's own name counts
    told = told_concepts(model, "cow")
    assert told.concepts == ("cattle",) and told.vector.sum() == 1.0
    assert told.to_json() == {"words": "cow", "concepts": ["cattle"]}
    with pytest.raises(SoundlibError, match=r"'hors' names none of this model's 116 concepts \(close: .*horse"):
        told_concepts(model, "hors")
    with pytest.raises(SoundlibError, match="names none"):
        told_concepts(model, "   ")


def test_a_model_without_concepts_refuses_words(tiny_model) -> None:
    with pytest.raises(SoundlibError, match="needs a model with concept columns"):
        told_concepts(tiny_model.model, "horse")


def test_told_concepts_replace_the_concept_part_and_keep_the_heads(default_model) -> None:
    model = default_model.model
    d = int(model.config.embed_dim)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, d + len(model.config.concepts))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = as_told(model, vectors, told_concepts(model, "dog and cat"))
    np.testing.assert_allclose(out[:, :d], vectors[:, :d], atol=1e-6)  # how it looks: unchanged
    np.testing.assert_allclose(np.linalg.norm(out[:, d:], axis=1), np.sqrt(model.config.bridge_weight), atol=1e-5)
    for row in out:
        got = dict(read_as(model, row))
        assert set(got) == {"dog", "cat"}
        np.testing.assert_allclose(list(got.values()), [0.5, 0.5], atol=1e-4)
    q = words_query(model, told_concepts(model, "rain"))
    assert q.shape == (1, vectors.shape[1]) and not q[0, :d].any()
    np.testing.assert_allclose(np.linalg.norm(q), 1.0, atol=1e-6)
    assert read_as(model, q[0]) == [("rain", 1.0)]


def test_query_as_ranks_what_the_words_name_and_still_says_what_it_read(library: Path) -> None:
    plain = json.loads(run("query", str(HORSE), "-k", "3", "--db", str(library), "--json").stdout)
    assert "as" not in plain
    res = run("query", str(HORSE), "-k", "3", "--as", "horse", "--db", str(library), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["as"] == {"words": "horse", "concepts": ["horse"]}
    assert doc["fits"] == {"concepts": ["horse"], "from": "as", "found": 3, "each": {"horse": 3}, "lacking": []}
    assert doc["read_as"] == plain["read_as"]  # what the picture itself reads as is still said
    assert [r["category"] for r in doc["results"]] == ["horse"] * 3
    assert [r["fits"] for r in doc["results"]] == [["horse"]] * 3
    assert plain["fits"]["from"] == "query"  # untold, the check is against what the query itself points at
    dogs = json.loads(run("query", str(HORSE), "-k", "3", "--as", "dog", "--db", str(library), "--json").stdout)
    assert [r["category"] for r in dogs["results"]] == ["dog"] * 3
    table = run("query", str(HORSE), "-k", "2", "--as", "horse", "--db", str(library), env={"COLUMNS": "160"})
    assert "ranked as: horse (--as) · 2 of 2 named or heard as it" in table.stdout and "read as: " in table.stdout
    assert "is it" in table.stdout and table.stdout.count("✓") == 2


def test_query_as_says_which_results_are_it_and_when_the_library_lacks_it(library: Path, tmp_path: Path) -> None:
    """Each result of a told query says whether it is named or heard as the told concept, the same test as
    ``library concepts`` counts; none of them says the library may lack it."""
    from soundlib.concept_coverage import concept_coverage
    from soundlib.models import load_model
    from soundlib.recommend import recommend
    from soundlib.store import open_store

    doc = json.loads(run("query", "--as", "dog", "-k", "8", "--db", str(library), "--json").stdout)
    told = [r["path"].split("/")[-2] for r in doc["results"] if r["fits"]]
    assert doc["fits"]["found"] == 4 and told == ["dog"] * 4  # the 4 dog files, named dog; nothing else
    piano = run("query", str(HORSE), "--as", "piano", "-k", "4", "--db", str(library), "--json")
    assert json.loads(piano.stdout)["fits"]["found"] == 0  # a library of horses, dogs, cows and lions
    table = run("query", str(HORSE), "--as", "piano", "-k", "4", "--db", str(library), env={"COLUMNS": "200"})
    assert "none of these 4 is named or heard as it: the library may lack it" in table.stdout
    # without names, a result is "it" exactly when library concepts hears it so
    for kind in ("horse", "dog", "cow", "lion"):
        shutil.copytree(DEMO / "sounds" / kind, tmp_path / "lib" / kind)
    assert run("ingest", str(tmp_path / "lib"), "--db", str(tmp_path / "plain"), "--no-names").exit_code == 0
    loaded = load_model(None)
    store = open_store(db=tmp_path / "plain")
    heard = {c.concept: c.heard for c in concept_coverage(store, loaded.model).concepts}
    for words, concept in (("horse", "horse"), ("dog", "dog"), ("cow", "cattle"), ("lion", "big cat")):
        result = recommend([], loaded, store, k=15, as_words=words)
        assert result.found == heard[concept], words
        assert result.check.aim.source == "as" and result.check.aim.concepts == (concept,)
        assert result.check.each == {concept: heard[concept]}


def test_an_untold_query_is_checked_against_what_it_points_at(library: Path, tmp_path: Path) -> None:
    """A picture or sound query says how many results are what it was read as (and named): a cartoon horse read as
    a book finds no book in a library of animals, and says so; its name makes it look for horses too."""
    def ask(*args: str) -> dict:
        res = run("query", *args, "-k", "5", "--db", str(library), "--json")
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    alone = ask(str(HORSE), "--no-names")  # read as book 100 %
    assert alone["fits"] == {"concepts": ["book"], "from": "query", "found": 0, "each": {"book": 0},
                             "lacking": ["book"]}
    assert [r["fits"] for r in alone["results"]] == [[]] * 5
    table = run("query", str(HORSE), "--no-names", "-k", "5", "--db", str(library), env={"COLUMNS": "200"})
    assert "read as: book 100 % · none of these 5 is named or heard as book: the library may lack it" in table.stdout
    named = ask(str(HORSE))  # horse.png: half its concept part is horse now
    assert set(named["fits"]["concepts"]) == {"book", "horse"} and named["fits"]["found"] == 5
    assert [r["fits"] for r in named["results"]] == [["horse"]] * 5  # each is a horse, none a book
    assert {r["category"] for r in named["results"]} == {"horse"}
    assert named["fits"]["each"]["horse"] == 5 and named["fits"]["lacking"] == []  # the misreading is no lack
    table = run("query", str(HORSE), "-k", "5", "--db", str(library), env={"COLUMNS": "200"})
    assert re.search(r"named: horse · 5 of 5 named or heard as horse *\n", table.stdout) and "is it" in table.stdout
    parrot = ask(str(DEMO / "images" / "cockatoo-photo.png"))  # read as a dog, named a parrot: none here
    assert parrot["named"] == ["parrot"] and parrot["fits"]["lacking"] == ["parrot"]
    assert parrot["fits"]["each"]["parrot"] == 0 and parrot["fits"]["found"] == parrot["fits"]["each"]["dog"] > 0
    table = run("query", str(DEMO / "images" / "cockatoo-photo.png"), "-k", "5", "--db", str(library),
                env={"COLUMNS": "250"})
    assert "named or heard as dog · none as parrot: the library may lack it" in table.stdout
    bark = next((DEMO / "sounds" / "dog").iterdir())
    shutil.copy(bark, tmp_path / "take_07.wav")  # a sound query, its name naming nothing: its audio is checked
    sound = ask(str(tmp_path / "take_07.wav"))
    assert sound["fits"]["from"] == "query" and "dog" in sound["fits"]["concepts"], sound["fits"]
    dogs = [r["fits"] for r in sound["results"] if r["path"].split("/")[-2] == "dog"]
    assert dogs and all("dog" in f for f in dogs) and sound["fits"]["found"] >= len(dogs)


def test_a_pictures_own_name_is_mixed_in_like_a_sounds(library: Path, tmp_path: Path) -> None:
    """``horse.png``, read as a book, ranks horses by its name; a name that names nothing, --no-names and --as leave
    the picture alone; what the picture was read as is its own reading either way."""
    def ask(picture: Path, *extra: str) -> dict:
        res = run("query", str(picture), "-k", "5", *extra, "--db", str(library), "--json")
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    named, alone = ask(HORSE), ask(HORSE, "--no-names")
    assert named["named"] == ["horse"] and "named" not in alone
    assert named["read_as"] == alone["read_as"] and alone["read_as"][0]["concept"] == "book"
    kinds = [[r["path"].split("/")[-2] for r in d["results"]] for d in (named, alone)]
    assert kinds[0] == ["horse"] * 5 and kinds[1].count("horse") < 5
    shutil.copy(HORSE, tmp_path / "shot_012.png")  # a name for the picture itself: nothing named
    unnamed = ask(tmp_path / "shot_012.png")
    assert "named" not in unnamed and [r["path"] for r in unnamed["results"]] == [r["path"] for r in alone["results"]]
    told = ask(HORSE, "--as", "dog")  # what the user says replaces the concepts, the name's too
    assert "named" not in told and [r["category"] for r in told["results"][:3]] == ["dog"] * 3
    table = run("query", str(HORSE), "-k", "2", "--db", str(library), env={"COLUMNS": "160"})
    assert "read as: book 100 % · named: horse" in table.stdout
    folder = run("query", str(DEMO / "images"), "-k", "2", "--db", str(library), "--json")  # 12 named pictures
    assert len(json.loads(folder.stdout)["named"]) == 12
    from soundlib.recommend import QueryResult

    assert QueryResult([], 1, [], named=["a", "b", "c", "d", "e", "f", "g"]).named_text() == \
        "named: a, b, c, d, e and 2 more"


def test_no_names_leaves_a_sound_querys_name_out_too(library: Path, tmp_path: Path) -> None:
    """A sound query that is not in the library has its own name mixed in, as ingest would; --no-names: the audio
    alone (what it reads as shows it)."""
    from tests.conftest import write_audio

    rng = np.random.default_rng(5)
    sound = write_audio(tmp_path / "Rooster crowing.wav", 0.2 * rng.standard_normal(48_000).astype(np.float32), 48_000)

    def shares(*extra: str) -> dict[str, float]:
        res = run("query", str(sound), "-k", "3", *extra, "--db", str(library), "--json")
        assert res.exit_code == 0, res.output
        return {c["concept"]: c["share"] for c in json.loads(res.stdout)["read_as"]}

    named, alone = shares(), shares("--no-names")
    assert named.get("chicken", 0.0) > alone.get("chicken", 0.0) + 0.2  # the name's half says chicken


def test_words_alone_rank_the_library(library: Path) -> None:
    res = run("query", "--as", "cows", "-k", "3", "--db", str(library), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["inputs"] == [] and "read_as" not in doc and doc["as"]["concepts"] == ["cattle"]
    assert [r["category"] for r in doc["results"]] == ["cow"] * 3
    table = run("query", "--as", "lion", "-k", "3", "--db", str(library), env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "--as lion" in table.stdout and table.stdout.count("lion/") == 3


def test_bad_words_and_no_inputs_are_one_line(library: Path) -> None:
    line = one_line(run("query", str(HORSE), "--as", "fax machine", "--db", str(library)), 2)
    assert line.startswith("error: --as 'fax machine' names none of this model's 116 concepts")
    res = run("query", "--db", str(library))
    assert res.exit_code == 2 and "--as WORDS" in res.output


def test_eval_as_category_tells_each_picture_its_category(tmp_path: Path) -> None:
    from soundlib.evaluation.retrieval import evaluate_list

    data = tmp_path / "data"
    for kind, name in (("horse", "horse_11.ogg"), ("lion", "lion_attack1.ogg"), ("elephant", "elephant_attack1.ogg")):
        (data / kind).mkdir(parents=True)
        shutil.copy(DEMO / "sounds" / kind / name, data / kind / name)
    for name in ("horse.png", "lion.png", "drum.png"):
        shutil.copy(DEMO / "images" / name, data / name)
    (data / "test.csv").write_text("frame,audio,category\nhorse.png,horse/horse_11.ogg,horse\n"
                                   "lion.png,lion/lion_attack1.ogg,lion\n"
                                   "drum.png,elephant/elephant_attack1.ogg,gadget\n", encoding="utf-8")
    own, told = (evaluate_list(data / "test.csv", [], (1, 3), as_category=a) for a in (False, True))
    assert "as_category" not in own.to_json() and told.to_json()["as_category"] == 2  # "gadget" names nothing

    def firsts(rep) -> list[str]:
        return [rec["knn_samples"][0] for rec in rep.models[0].recommendations.values()]

    assert firsts(told)[:2] == ["horse/horse_11.ogg", "lion/lion_attack1.ogg"]
    assert firsts(own)[0] != "horse/horse_11.ogg"  # read as a book, the horse picture's own top is another sound
    assert firsts(told)[2] == firsts(own)[2]  # the untold picture ranks as before
    # which side names the concept is still the pictures' own reading
    assert told.models[0].concepts.to_json() == own.models[0].concepts.to_json()
    res = run("eval", str(data / "test.csv"), "--as-category", "-k", "1")
    assert res.exit_code == 0, res.output
    assert "3 of 3 rows scored; 2 pictures told their category (--as-category)" in res.stdout


def test_eval_picture_names_mixes_each_pictures_name_in(tmp_path: Path) -> None:
    from soundlib.evaluation.retrieval import evaluate_list

    data = tmp_path / "data"
    for kind, name in (("horse", "horse_11.ogg"), ("lion", "lion_attack1.ogg"), ("elephant", "elephant_attack1.ogg")):
        (data / kind).mkdir(parents=True)
        shutil.copy(DEMO / "sounds" / kind / name, data / kind / name)
    shutil.copy(DEMO / "images" / "horse.png", data / "horse.png")
    shutil.copy(DEMO / "images" / "horse.png", data / "shot_3.png")  # a name that names nothing
    (data / "test.csv").write_text("frame,audio,category\nhorse.png,horse/horse_11.ogg,horse\n"
                                   "shot_3.png,horse/horse_11.ogg,horse\n"
                                   "horse.png,elephant/elephant_attack1.ogg,elephant\n", encoding="utf-8")
    own, named = (evaluate_list(data / "test.csv", [], (1, 3), picture_names=p) for p in (False, True))
    assert "picture_names" not in own.to_json() and named.to_json()["picture_names"] == 2

    def firsts(rep) -> list[str]:
        return [rec["knn_samples"][0] for rec in rep.models[0].recommendations.values()]

    assert firsts(named)[0] == "horse/horse_11.ogg" and firsts(own)[0] != "horse/horse_11.ogg"
    assert firsts(named)[1] == firsts(own)[1]  # shot_3.png: nothing named, ranked as before
    res = run("eval", str(data / "test.csv"), "--picture-names", "-k", "1")
    assert res.exit_code == 0, res.output
    assert "3 of 3 rows scored; 2 pictures named a concept (--picture-names)" in res.stdout


# --- which concepts a library holds (soundlib library concepts) ----------------------------------------------------

def test_library_concepts_counts_names_and_the_ear_alone(library: Path, tmp_path: Path) -> None:
    res = run("library", "concepts", "--db", str(library), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    by = {c["concept"]: c for c in doc["concepts"]}
    assert doc["files"] == 15 and len(doc["concepts"]) == 116
    assert {c: by[c]["named"] for c in ("horse", "dog", "cattle", "big cat")} == \
        {"horse": 5, "dog": 4, "cattle": 3, "big cat": 3}
    assert sum(c["named"] for c in doc["concepts"]) == 15 and sum(c["heard"] for c in doc["concepts"]) == 15
    assert by["horse"]["example"].startswith("horse/") and "piano" in doc["absent"] and "horse" not in doc["absent"]
    # the ear is the audio alone: a store of the same files without names hears exactly the same
    plain = tmp_path / "plain"
    for kind in ("horse", "dog", "cow", "lion"):
        shutil.copytree(DEMO / "sounds" / kind, tmp_path / "lib" / kind)
    assert run("ingest", str(tmp_path / "lib"), "--db", str(plain), "--no-names").exit_code == 0
    doc2 = json.loads(run("library", "concepts", "--db", str(plain), "--json").stdout)
    assert all(c["named"] == 0 for c in doc2["concepts"])
    assert {c["concept"]: c["heard"] for c in doc2["concepts"]} == {c: by[c]["heard"] for c in by}
    table = run("library", "concepts", "-n", "2", "--db", str(library), env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "concepts of 15 files" in table.stdout and "none named or heard" in table.stdout
    assert table.stdout.count("horse/") + table.stdout.count("dog/") <= 2  # two rows listed


def test_library_concepts_needs_concepts_and_a_collection(tmp_path: Path, tiny_checkpoint) -> None:
    from tests.conftest import write_audio

    lib = tmp_path / "lib"
    lib.mkdir()
    write_audio(lib / "hum.wav", (0.2 * np.random.default_rng(0).standard_normal(24_000)).astype(np.float32), 16_000)
    db = tmp_path / "db"
    assert run("ingest", str(lib), "--db", str(db), "--model", str(tiny_checkpoint)).exit_code == 0
    one_line(run("library", "concepts", "--db", str(db)), 2, "no concept columns")
    one_line(run("library", "concepts", "--db", str(tmp_path / "none")), 2, "no sound library here")


def test_ingest_stores_what_the_audio_alone_is_heard_as_and_older_stores_compute_it(library: Path, tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """``heard`` on window 0 is what the stored vectors give with the name unmixed; the check and ``library
    concepts`` read it instead of the vectors, and a store written before it (no ``heard``) counts the same."""
    from soundlib.concept_coverage import _file_concepts, concept_coverage
    from soundlib.models import load_model
    from soundlib.name_concepts import NameConcepts
    from soundlib.recommend import recommend
    from soundlib.store import open_store

    loaded = load_model(None)
    model = loaded.model
    columns = NameConcepts.columns_only(tuple(model.config.concepts))
    shutil.copytree(library, tmp_path / "db")  # this test rewrites the store
    with open_store(db=tmp_path / "db") as store:
        heads = store.file_records(complete=False)
        vectors = store.file_vectors(list(heads))
        for fid, head in heads.items():
            assert head.info["heard"] in model.config.concepts
            old = dataclasses.replace(head, info={k: v for k, v in head.info.items() if k != "heard"})
            computed = _file_concepts(model, columns, old, vectors[fid])[1]  # unmixed from the stored vectors
            assert model.config.concepts[computed] == head.info["heard"], head.rel
        before = concept_coverage(store, model).to_json()
        reads: list[int] = []
        real = store.file_vectors
        monkeypatch.setattr(store, "file_vectors", lambda ids, *a: (reads.append(len(ids)), real(ids, *a))[1])
        told = recommend([], loaded, store, k=8, as_words="dog")
        assert told.found == 4 and sum(reads) == 0  # the hits' metadata answered: no vector read
        store.update_files([(rec, {"named": rec.named}, {"heard": None}, {}) for rec in store.file_records().values()])
        assert all("heard" not in h.info for h in store.file_records(complete=False).values())
        assert concept_coverage(store, model).to_json() == before  # computed from the vectors, the same counts
        assert recommend([], loaded, store, k=8, as_words="dog").found == 4 and sum(reads) > 0
