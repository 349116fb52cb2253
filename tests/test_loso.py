"""train.loso and `soundlib loso`: sources, fold tables, held-out lists, a tiny LOSO run, resume and the table.

A miniature of the real layout, written here as real files: a sound root with three packages (``zoo``, ``farm``,
``city``), a picture root of class folders (``snaps``: one source), a picture root of sources (``images/sprites``,
``images/icons``) and a GCompris-like set (its three lists). Models are tiny (m5 at width 0.125, 32 px, 1 epoch).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from soundlib.errors import SoundlibError
from soundlib.lists import read_candidates, read_list
from tests.conftest import tone, write_audio, write_image
from train.catalog import build_catalog
from train.loso import (FoldTableError, LosoMedia, LosoOutputError, build_fold, file_source, picture_root,
                        read_folds, recipe, run_loso, select_folds, sound_root)

SR = 16_000

MAP = """concept,sound_patterns,image_patterns,notes
dog,*/dog/*,snaps/dog/*; sprites/animals/dog*,barks
cat,*/cat/*,snaps/cat/*; sprites/animals/cat*,meows
horse,farm/horse/*,snaps/horse/*; icons/horse*,neighs
cow,zoo/cow/*,icons/cow*,moos
car,city/car/*,sprites/car*,engines
"""

FOLDS = """fold,pictures,sounds,note
sprites+zoo,sprites,zoo,the sprites with the zoo's sounds
snaps+farm+city,snaps,farm; city,class folders with two packages
gcompris,gcompris,gcompris,its own pairs
icons+city,icons,city,no shared concept: nothing to test
"""


def _sound(path: Path, freq: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_audio(path, tone(freq, 0.6, SR), SR)


def _image(path: Path, k: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, (32, 32), color=((37 * k) % 256, (91 * k) % 256, (53 * k + 40) % 256))


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loso")
    sfx, snaps, images, gc = root / "sfx", root / "snaps", root / "images", root / "gc"
    k = 0
    for rel, n in (("zoo/dog/bark", 3), ("zoo/cat/meow", 2), ("zoo/cow/moo", 2), ("zoo/misc/beep", 1),
                   ("farm/dog/woof", 2), ("farm/cat/purr", 2), ("farm/horse/neigh", 3),
                   ("city/car/engine", 3), ("city/dog/yap", 1)):
        for i in range(n):
            k += 1
            _sound(sfx / f"{rel}{i}.wav", 150.0 + 37.0 * k)
    (sfx / "zoo" / "misc" / "notes.txt").write_text("not a sound")
    for cls, n in (("dog", 4), ("cat", 3), ("horse", 3)):
        for i in range(n):
            k += 1
            _image(snaps / cls / f"{i:04d}.png", k)
    for name in ("animals/dog1", "animals/dog2", "animals/dog3", "animals/cat1", "animals/cat2", "car1", "car2",
                 "tree1"):
        k += 1
        _image(images / "sprites" / f"{name}.png", k)
    for name in ("horse", "cow"):
        k += 1
        _image(images / "icons" / f"{name}.png", k)
    # a GCompris-like set: a dog photo and a horse drawing paired with their sounds, a sound-only rain
    _image(gc / "pictures" / "dog.png", 201)
    _image(gc / "pictures" / "horse.png", 202)
    _sound(gc / "sounds" / "dog.wav", 900.0)
    _sound(gc / "sounds" / "horse.wav", 950.0)
    _sound(gc / "sounds" / "rain.wav", 1000.0)
    (gc / "gcompris_pairs.csv").write_text(
        "frame,audio,start,sample,category,video\n"
        "pictures/dog.png,sounds/dog.wav,,sounds/dog.wav,dog,gcompris/a/dog\n"
        "pictures/horse.png,sounds/horse.wav,,sounds/horse.wav,horse,gcompris/a/horse\n", encoding="utf-8")
    (gc / "gcompris_sounds.csv").write_text(
        "audio,category,activity,seconds,paired\n"
        "sounds/dog.wav,dog,a,0.6,yes\nsounds/horse.wav,horse,a,0.6,yes\nsounds/rain.wav,rain,b,0.6,no\n",
        encoding="utf-8")
    (gc / "gcompris_pictures.csv").write_text(
        "frame,category,activity,kind\npictures/dog.png,dog,a,photo\npictures/horse.png,horse,a,drawing\n",
        encoding="utf-8")
    (root / "map.csv").write_text(MAP, encoding="utf-8")
    (root / "folds.csv").write_text(FOLDS, encoding="utf-8")
    return {"root": root, "sfx": sfx, "snaps": snaps, "images": images, "gc": gc, "map": root / "map.csv",
            "folds": root / "folds.csv"}


@pytest.fixture(scope="module")
def media(mini: dict[str, Path]) -> LosoMedia:
    return LosoMedia.of([mini["sfx"]], [mini["snaps"], mini["images"]], mini["gc"])


def _fold(mini: dict[str, Path], name: str):
    return select_folds(read_folds(mini["folds"]), [name])[0]


def _list_files(path: str | Path) -> set[Path]:
    return {p for r in read_list(path).rows for p in (r.frame, r.audio)}


# --- sources and the fold table ------------------------------------------------------------------------------------

def test_file_source_rules(mini: dict[str, Path], tmp_path: Path) -> None:
    sounds = [sound_root(mini["sfx"])]
    assert file_source(mini["sfx"] / "zoo" / "dog" / "bark0.wav", sounds) == "zoo"
    assert file_source(mini["sfx"] / "city" / "car" / "engine1.wav", sounds) == "city"
    snaps, images = picture_root(mini["snaps"]), picture_root(mini["images"])
    assert snaps.whole and not images.whole  # class folders vs a folder of sources
    pics = [snaps, images]
    assert file_source(mini["snaps"] / "dog" / "0001.png", pics) == "snaps"
    assert file_source(mini["images"] / "sprites" / "animals" / "dog1.png", pics) == "sprites"
    assert file_source(mini["images"] / "icons" / "cow.png", pics) == "icons"
    # a folder holding pictures directly is one source (ImageNet samples); one flat sub-folder is a source
    _image(tmp_path / "flat" / "n01_a.png", 1)
    _image(tmp_path / "flat" / "more" / "b.png", 2)
    _image(tmp_path / "pkgs" / "widelands" / "wolf.png", 3)
    flat, pkgs = picture_root(tmp_path / "flat"), picture_root(tmp_path / "pkgs")
    assert flat.whole and file_source(tmp_path / "flat" / "more" / "b.png", [flat]) == "flat"
    assert not pkgs.whole and file_source(tmp_path / "pkgs" / "widelands" / "wolf.png", [pkgs]) == "widelands"
    # the documented limit: two flat package folders look like class folders (one source, named after the root);
    # a fold naming a package is then refused (LosoMedia.check), and passing the package folder itself works
    _image(tmp_path / "pkgs" / "freeciv" / "ox.png", 4)
    assert picture_root(tmp_path / "pkgs").whole
    assert file_source(tmp_path / "pkgs" / "freeciv" / "ox.png", [picture_root(tmp_path / "pkgs" / "freeciv")]) \
        == "freeciv"
    # a sound lying directly in its root takes the root's name; the deepest root holding a file wins
    _sound(tmp_path / "Loose" / "x.wav", 300)
    _sound(tmp_path / "Loose" / "pkg" / "y.wav", 300)
    loose = sound_root(tmp_path / "Loose")
    assert file_source(tmp_path / "Loose" / "x.wav", [loose]) == "loose"
    assert file_source(tmp_path / "Loose" / "pkg" / "y.wav", [sound_root(tmp_path), loose]) == "pkg"
    with pytest.raises(SoundlibError, match="below none"):
        file_source(tmp_path / "elsewhere.wav", [loose])
    with pytest.raises(SoundlibError, match="folder not found"):
        sound_root(tmp_path / "nothere")


def test_shipped_fold_table_reads() -> None:
    from train.defaults import DEFAULT_FOLDS

    folds = read_folds(DEFAULT_FOLDS)
    assert [f.name for f in folds][:1] == ["scratch"] and len(folds) >= 4
    by = {f.name: f for f in folds}
    assert by["cifar+scorched3d+openttd"].sounds == ("scorched3d", "openttd", "hedgewars", "freeciv")
    assert by["gcompris"].pictures == ("gcompris",) and all(f.note for f in folds)


@pytest.mark.parametrize("text, reason", [
    ("fold,pictures\nx,a\n", "missing column(s) sounds"),
    ("fold,pictures,sounds\nx,a,b\nX,c,d\n", ":3: duplicate fold 'X'"),
    ("fold,pictures,sounds\na/b,a,b\n", ":2: bad fold name"),
    ("fold,pictures,sounds\nx, ; ,b\n", ":2: fold 'x': no held-out source in 'pictures'"),
    ("fold,pictures,sounds\nx,gcompris,b\n", ":2: fold 'x': hold gcompris out in both"),
    ("fold,pictures,sounds\n", "no folds"),
])
def test_bad_fold_tables_are_one_line_errors(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "folds.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FoldTableError) as e:
        read_folds(path)
    assert reason in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_unknown_sources_and_folds_are_refused_before_any_work(mini: dict[str, Path], media: LosoMedia,
                                                                tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text("fold,pictures,sounds\nx,sprites,zo0\n", encoding="utf-8")
    with pytest.raises(SoundlibError, match=r"f.csv:2: fold 'x': no sounds source 'zo0' .*found: city, farm"):
        media.check(read_folds(tmp_path / "f.csv"))
    no_gc = LosoMedia.of([mini["sfx"]], [mini["snaps"], mini["images"]])
    with pytest.raises(SoundlibError, match="give --gcompris"):
        no_gc.check([_fold(mini, "gcompris")])
    with pytest.raises(SoundlibError, match="no fold 'nope'"):
        select_folds(read_folds(mini["folds"]), ["nope"])
    assert not list(tmp_path.glob("*/"))


# --- a fold's lists ------------------------------------------------------------------------------------------------

def test_fold_holds_out_exactly_its_sources(mini: dict[str, Path], media: LosoMedia, tmp_path: Path) -> None:
    fold = _fold(mini, "sprites+zoo")
    lists = build_fold(fold, media, tmp_path, map_csv=mini["map"], queries_per_concept=2)
    zoo = {p.resolve() for p in (mini["sfx"] / "zoo").rglob("*.wav")}
    sprites = {p.resolve() for p in (mini["images"] / "sprites").rglob("*.png")}
    train = _list_files(lists.train) | _list_files(lists.val)
    assert not train & (zoo | sprites)  # no held-out file in any training list
    bridge = {c.audio for c in read_candidates(lists.bridge_sounds).rows}  # the bridge's labelled sounds
    assert not bridge & zoo and {p for p in _list_files(lists.train) if p.suffix == ".wav"} <= bridge
    assert {p for p in train if "farm" in p.parts} and {p for p in train if "snaps" in p.parts}
    gc_files = {(mini["gc"] / "pictures" / "dog.png").resolve(), (mini["gc"] / "sounds" / "dog.wav").resolve()}
    assert gc_files <= train  # GCompris is a training source of this fold
    # test: held-out pictures of concepts with held-out sounds (dog, cat; car has no zoo sound, cow no sprite)
    rows = read_list(lists.test).rows
    assert {r.frame for r in rows} <= sprites and {r.audio for r in rows} <= zoo
    assert Counter(r.category for r in rows) == {"dog": 2, "cat": 2}  # at most 2 per concept
    assert len({r.frame for r in rows}) == len(rows)  # each picture once
    for r in rows:
        assert r.frame.name.startswith(r.category) and r.audio.parent.name == r.category
    dog_sounds = Counter(r.audio for r in rows if r.category == "dog")
    assert len(dog_sounds) == 2  # round-robin: two pictures meet two different barks
    # candidates: every zoo sound with a concept (the cow's moos too), not the unmapped beep
    with open(lists.candidates, newline="", encoding="utf-8") as f:
        cands = {Path(r["audio"]).resolve(): r["category"] for r in csv.DictReader(f)}
    assert set(cands) == {p for p in zoo if p.parent.name != "misc"}
    assert set(cands.values()) == {"dog", "cat", "cow"} and lists.candidates_count == len(cands) == 7
    assert lists.held_out_files == {"image": 8, "sound": 8} and lists.queries == 4
    doc = json.loads((tmp_path / fold.name / "fold.json").read_text())
    assert doc["test_concepts"] == {"dog": 2, "cat": 2} and doc["spec"]["fold"]["sounds"] == ["zoo"]


def test_round_robin_and_cap_on_a_bigger_concept(mini: dict[str, Path], media: LosoMedia, tmp_path: Path) -> None:
    lists = build_fold(_fold(mini, "snaps+farm+city"), media, tmp_path, map_csv=mini["map"])
    rows = read_list(lists.test).rows
    assert Counter(r.category for r in rows) == {"dog": 4, "cat": 3, "horse": 3}
    dog = Counter(r.audio.name for r in rows if r.category == "dog")  # 4 pictures over 3 dog sounds (farm + city)
    assert sorted(dog.values()) == [1, 1, 2] and {"yap0.wav"} <= set(dog)
    again = build_fold(_fold(mini, "snaps+farm+city"), media, tmp_path / "again", map_csv=mini["map"])
    assert Path(again.test).read_text() == Path(lists.test).read_text()  # seeded: the same test


def test_gcompris_fold_tests_its_pairs_and_trains_on_the_plain_catalog(mini: dict[str, Path], media: LosoMedia,
                                                                        tmp_path: Path) -> None:
    lists = build_fold(_fold(mini, "gcompris"), media, tmp_path, map_csv=mini["map"])
    rows = read_list(lists.test).rows
    assert [(r.frame.name, r.audio.name, r.category) for r in rows] == [("dog.png", "dog.wav", "dog"),
                                                                        ("horse.png", "horse.wav", "horse")]
    with open(lists.candidates, newline="", encoding="utf-8") as f:
        assert sorted(Path(r["audio"]).name for r in csv.DictReader(f)) == ["dog.wav", "horse.wav", "rain.wav"]
    # nothing below the roots is held out: the training catalog is exactly `soundlib catalog`'s
    plain = build_catalog(mini["map"], [mini["sfx"]], [mini["snaps"], mini["images"]], tmp_path / "plain")
    for split in ("train", "val"):
        assert Path(getattr(lists, split)).read_text() == Path(plain.lists[split]).read_text()


def test_fold_without_a_shared_concept_is_an_error(mini: dict[str, Path], media: LosoMedia, tmp_path: Path) -> None:
    with pytest.raises(SoundlibError, match="folds.csv:5: fold 'icons\\+city': no held-out picture shares"):
        build_fold(_fold(mini, "icons+city"), media, tmp_path, map_csv=mini["map"])


# --- runs: `soundlib loso` -----------------------------------------------------------------------------------------

TINY = ["--model", "m5-attention-linear-infonce", "--width", "0.125", "--image-size", "32", "--epochs", "1",
        "--batch", "4", "--threads", "1"]


def _loso(mini: dict[str, Path], out: Path, *extra: str) -> object:
    from cli import main

    args = ["loso", "--sounds", str(mini["sfx"]), "--images", str(mini["snaps"]), "--images", str(mini["images"]),
            "--gcompris", str(mini["gc"]), "--folds", str(mini["folds"]), "--map", str(mini["map"]),
            "--out", str(out), *TINY, *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def first_run(mini: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs") / "loso"
    r = _loso(mini, out, "--fold", "sprites+zoo", "--fold", "gcompris", "--fold", "icons+city", "--json")
    return r, out


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_loso_trains_evaluates_every_fold_and_reports(first_run) -> None:
    r, out = first_run
    assert r.exit_code == 1, r.output  # the fold without a shared concept failed; the others ran
    doc = json.loads(r.stdout)
    assert [f["fold"] for f in doc["folds"]] == ["sprites+zoo", "gcompris"]
    assert doc["failed"] == [{"fold": "icons+city", "model": None, "reason": doc["failed"][0]["reason"]}]
    assert "no held-out picture shares" in doc["failed"][0]["reason"]
    (m,) = doc["models"]
    assert m["model"] == "m5-attention-linear-infonce"
    # the recipe under the options given: m5's width/size/epochs overridden, its patience and windows kept
    assert m["options"]["width"] == 0.125 and m["options"]["epochs"] == 1 and m["options"]["patience"] == 4
    by = {f["fold"]: f for f in m["folds"]}
    assert (by["sprites+zoo"]["queries"], by["sprites+zoo"]["candidates"]) == (5, 7)
    assert (by["gcompris"]["queries"], by["gcompris"]["candidates"]) == (2, 3)
    for f in m["folds"]:
        assert f["chance"]["10"]["sample"] == pytest.approx(min(1.0, 10 / f["candidates"]))
        assert f["chance"]["1"]["sample"] == pytest.approx(1 / f["candidates"])
        assert 0 <= f["topk"]["1"]["sample"] <= f["topk"]["10"]["sample"] <= 1 and 0 < f["mrr"] <= 1
        assert f["epochs_run"] == 1 and (Path(f["run_dir"]) / "best.pt").is_file()
    mean = m["mean"]
    assert mean["folds"] == 2
    assert mean["mrr"] == pytest.approx((by["sprites+zoo"]["mrr"] + by["gcompris"]["mrr"]) / 2)
    assert mean["chance"]["1"]["sample"] == pytest.approx((1 / 7 + 1 / 3) / 2)
    # every query counted once: the 5 of one fold and the 2 of the other
    pooled = m["pooled"]
    assert pooled["queries"] == 7
    assert pooled["mrr"] == pytest.approx((5 * by["sprites+zoo"]["mrr"] + 2 * by["gcompris"]["mrr"]) / 7)
    assert pooled["chance"]["1"]["sample"] == pytest.approx((5 / 7 + 2 / 3) / 7)
    for k in ("1", "5", "10"):
        hits = sum(f["queries"] * f["topk"][k]["category"] for f in m["folds"])
        assert pooled["topk"][k]["category"] == pytest.approx(hits / 7)
    # a fold's figures are `soundlib eval` of its test list with its candidates
    from soundlib.evaluation.retrieval import evaluate_list

    fold = out / "sprites+zoo"
    ev = evaluate_list(fold / "test.csv", [str(fold / "m5-attention-linear-infonce" / "best.pt")], (1, 5, 10),
                       candidates=fold / "candidates.csv")
    assert ev.candidates == 7 and ev.models[0].scores.mrr == pytest.approx(by["sprites+zoo"]["mrr"])


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_loso_resumes_without_redoing_and_prints_tables(mini: dict[str, Path], first_run) -> None:
    r0, out = first_run
    best = out / "gcompris" / "m5-attention-linear-infonce" / "best.pt"
    stamp = best.stat().st_mtime_ns
    r = _loso(mini, out, "--fold", "sprites+zoo", "--fold", "gcompris")
    assert r.exit_code == 0, r.output
    assert best.stat().st_mtime_ns == stamp  # not trained again
    text = " ".join(r.stdout.split())
    for want in ("leave-one-source-out", "sprites+zoo", "gcompris", "mean (2 folds)", "chance", "top-10", "MRR",
                 "all 7 queries pooled"):
        assert want in text, want
    assert "2 result(s) read back" in r.stderr
    mrr = {f["fold"]: f["mrr"] for f in json.loads(r0.stdout)["models"][0]["folds"]}
    assert f"{mrr['gcompris']:.3f}" in text
    # other training options never mix with the results there
    r = _loso(mini, out, "--fold", "gcompris", "--lr", "0.5")
    assert r.exit_code == 2 and "use another --out" in r.stderr and "Traceback" not in r.stderr


def test_run_loso_refuses_bad_recipes_before_any_work(mini: dict[str, Path], media: LosoMedia,
                                                      tmp_path: Path) -> None:
    folds = [_fold(mini, "gcompris")]
    with pytest.raises(SoundlibError, match="unknown model"):
        run_loso(folds, media, tmp_path / "a", [recipe("m9-nothing")], map_csv=mini["map"])
    with pytest.raises(SoundlibError, match="width and image size are fixed"):
        run_loso(folds, media, tmp_path / "b", [recipe("pt-effnet-aisfx-infonce", {"width": 0.25})],
                 map_csv=mini["map"])
    with pytest.raises(SoundlibError, match="each model once"):
        run_loso(folds, media, tmp_path / "c", [recipe("m1-baseline-linear-bce")] * 2, map_csv=mini["map"])
    assert not any((tmp_path / d).exists() for d in "abc")


def test_lists_built_from_other_settings_are_not_mixed_with_runs(mini: dict[str, Path], media: LosoMedia,
                                                                 tmp_path: Path) -> None:
    fold = _fold(mini, "gcompris")
    build_fold(fold, media, tmp_path, map_csv=mini["map"])
    (tmp_path / "gcompris" / "m1-baseline-linear-bce").mkdir()
    (tmp_path / "gcompris" / "m1-baseline-linear-bce" / "result.json").write_text("{}")
    with pytest.raises(LosoOutputError, match="other settings \\(seed\\)"):
        run_loso([fold], media, tmp_path, [recipe("m1-baseline-linear-bce")], map_csv=mini["map"], seed=5)


def test_the_held_out_guard_refuses_a_training_list_with_a_held_out_file(tmp_path: Path) -> None:
    """build_fold re-reads its training lists; a held-out file there (a broken filter) stops the fold."""
    from soundlib.lists import write_list
    from train.catalog import CatalogReport
    from train.loso import _check_held_out

    frame, audio = _image(tmp_path / "a.png", 1), _sound(tmp_path / "a.wav", 300)
    write_list(tmp_path / "train.csv", [{"frame": str(frame), "audio": str(audio)}])
    report = CatalogReport(lists={"train": str(tmp_path / "train.csv")})
    _check_held_out(report, {tmp_path / "other.wav"})
    with pytest.raises(SoundlibError, match="held-out file in a training list: .*a.wav"):
        _check_held_out(report, {audio.resolve()})


def test_a_bridged_recipe_fits_each_folds_bridge_on_its_own_labelled_sounds(mini: dict[str, Path], media: LosoMedia,
                                                                            tmp_path: Path) -> None:
    """The default's recipe says ``bridge_sounds="catalog"``: each fold's run is given that fold's own
    ``train/catalog_sounds.csv`` (its training sources only), and the result records the recipe's value."""
    import torch

    from encoders.hashing import file_sha256
    from train.loso import FOLD_SOUNDS

    assert recipe("pt-effnet-aisfx-bridge").options["bridge_sounds"] == FOLD_SOUNDS
    fold = _fold(mini, "snaps+farm+city")
    rec = recipe("pt-effnet-aisfx-bridge", {"epochs": 1, "batch": 4, "windows": 1, "threads": 1})
    report = run_loso([fold], media, tmp_path, [rec], map_csv=mini["map"], ks=[1, 5])
    assert not report.failed and len(report.results) == 1
    assert report.results[0].options["bridge_sounds"] == FOLD_SOUNDS
    lists = report.folds[0]
    state = torch.load(tmp_path / fold.name / "pt-effnet-aisfx-bridge" / "last_state.pt", weights_only=False)
    assert state["settings"]["bridge_sounds_sha256"] == file_sha256(lists.bridge_sounds)
    held = {p.resolve() for src in ("farm", "city") for p in (mini["sfx"] / src).rglob("*.wav")}
    assert not {c.audio for c in read_candidates(lists.bridge_sounds).rows} & held
    # both sides' concept accuracy is measured, kept in result.json and averaged (one fold: the mean is the fold)
    named = report.results[0].concept_accuracy
    assert named is not None and named["pictures_counted"] == lists.queries and named["files_counted"] > 0
    assert all(0.0 <= named[k] <= 1.0 for k in ("pictures", "sound_windows", "sound_files"))
    stored = json.loads((tmp_path / fold.name / "pt-effnet-aisfx-bridge" / "result.json").read_text())
    assert stored["concept_accuracy"] == named
    assert report.mean("pt-effnet-aisfx-bridge")["concept_accuracy"] == {
        k: named[k] for k in ("pictures", "sound_windows", "sound_files")}
    from rich.console import Console

    from soundlib.cli_tables import loso_concepts_table

    con = Console(record=True, width=200)
    con.print(loso_concepts_table(report, "pt-effnet-aisfx-bridge"))
    text = con.export_text()
    assert "right concept named" in text
    assert f"{100 * named['sound_windows']:.1f} of {named['windows_counted']}" in text


def test_a_fold_of_an_older_soundlib_with_runs_is_refused_by_name(mini: dict[str, Path], media: LosoMedia,
                                                                  tmp_path: Path) -> None:
    """A fold folder written before the bridge's sound list existed (fold.json without it) is not silently reused."""
    fold = _fold(mini, "gcompris")
    build_fold(fold, media, tmp_path, map_csv=mini["map"])
    marker = tmp_path / "gcompris" / "fold.json"
    doc = json.loads(marker.read_text())
    del doc["bridge_sounds"]
    marker.write_text(json.dumps(doc))
    (tmp_path / "gcompris" / "m1-baseline-linear-bce").mkdir()
    (tmp_path / "gcompris" / "m1-baseline-linear-bce" / "result.json").write_text("{}")
    with pytest.raises(LosoOutputError, match="misses some of its lists .*catalog_sounds.csv.*use another --out"):
        run_loso([fold], media, tmp_path, [recipe("m1-baseline-linear-bce")], map_csv=mini["map"])
