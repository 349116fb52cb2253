"""train.catalog: catalog pairs from a category map (real wav/png/jpg files written here, real lists read back)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from soundlib.lists import read_candidates, read_list
from tests.conftest import tone, write_audio, write_image
from train.catalog import (
    SOUNDS_LIST, TRAIN_LIST, VAL_LIST, CatalogMapError, build_catalog, pair_count, parse_pattern,
    read_category_map, round_robin_pairs, scan_media,
)
from train.defaults import DEFAULT_MAP

SR = 16_000  # small files: the loaders resample anyway

MAP = """concept,sound_patterns,image_patterns,notes
dog,zoo/dog/*,wnid:n02085620-n02113978; cifar/dog/*,barks on dogs
cat,*/cat/*,imagenet:tabby; imagenet:tiger_cat; images/cifar/cat/*,"meows, on cats"
cattle,zoo/cow/*,imagenet:ox,moo
unicorn,zoo/unicorn/*,imagenet:ox,no sound on purpose
crane,zoo/cow/*,imagenet:crane,ambiguous on purpose
"""


def _sound(path: Path, seconds: float = 0.4, freq: float = 440.0, amplitude: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_audio(path, tone(freq, seconds, SR, amplitude=amplitude), SR)


def _image(path: Path, color: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, (32, 32), color=color)


@pytest.fixture()
def media(tmp_path: Path) -> dict[str, Path]:
    sounds, images = tmp_path / "sounds", tmp_path / "images"
    for i in range(4):
        _sound(sounds / "zoo" / "dog" / f"bark{i}.wav", freq=300 + 50 * i)
    for i in range(3):
        _sound(sounds / "zoo" / "cat" / f"meow{i}.wav", freq=800 + 50 * i)
    _sound(sounds / "zoo" / "cow" / "moo1.wav", freq=120)
    _sound(sounds / "other" / "wind" / "gust1.wav", freq=60)
    (sounds / "zoo" / "dog" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")  # undecodable
    (sounds / "zoo" / "dog" / "readme.txt").write_text("not a sound")
    for stem in ("n02085620_Chihuahua", "n02099601_golden_retriever", "n02123045_tabby", "n02123159_tiger_cat",
                 "n02403003_ox", "n03126707_crane", "n02012849_crane"):
        _image(images / "imagenet" / f"{stem}.jpg", (100, 80, 60))
    for i in range(10):
        _image(images / "cifar" / "dog" / f"{i:04d}.png", (10 * i, 50, 50))
    for i in range(6):
        _image(images / "cifar" / "cat" / f"{i:04d}.png", (50, 10 * i, 50))
    m = tmp_path / "map.csv"
    m.write_text(MAP)
    return {"sounds": sounds, "images": images, "map": m, "tmp": tmp_path}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_catalog_pairs_split_caps_and_lists_read_back(media: dict[str, Path]) -> None:
    out = media["tmp"] / "lists"
    rep = build_catalog(media["map"], [media["sounds"]], [media["images"]], out, val_fraction=0.25, seed=3,
                        pairs_per_image=2, pairs_per_sound=4, max_pairs_per_concept=10)
    by = {c.concept: c for c in rep.concepts}
    # matched and usable files (broken.wav dropped, readme.txt never seen)
    assert (by["dog"].images, by["dog"].sounds) == (12, 4)
    assert (by["cat"].images, by["cat"].sounds) == (8, 3)
    assert (by["cattle"].images, by["cattle"].sounds) == (1, 1)
    assert [s[0] for s in rep.skipped] == [str((media["sounds"] / "zoo/dog/broken.wav").resolve())]
    # split sizes: round(0.25 n), at least one from 3 files on, none below
    assert (by["dog"].val_images, by["dog"].val_sounds) == (3, 1)
    assert (by["cat"].val_images, by["cat"].val_sounds) == (2, 1)
    assert (by["cattle"].val_pairs, by["cattle"].train_pairs) == (0, 1)
    # caps: train min(10, max(9*2, 3*4), 9*3) = 10; val cap round(10 * .25/.75) = 3
    assert by["dog"].train_pairs == pair_count(9, 3, 2, 4, 10) == 10
    assert by["dog"].val_pairs == 3
    assert by["cat"].train_pairs == pair_count(6, 2, 2, 4, 10) == 10 and by["cat"].val_pairs == 2  # 2 img x 1 snd
    # rows without an image or a sound: reported, no pairs
    assert by["unicorn"].status == "no sounds" and by["unicorn"].train_pairs == 0
    assert ("unicorn", "sound", "zoo/unicorn/*") in rep.dead_patterns
    assert any("imagenet:crane" in w and "n02012849" in w and "n03126707" in w for w in rep.warnings)
    assert rep.unmapped_sounds == {"other/wind": 1}
    assert rep.pairs("train") == sum(c.train_pairs for c in rep.concepts)

    train, val = read_list(out / TRAIN_LIST), read_list(out / VAL_LIST)
    assert train.errors == [] and val.errors == []
    assert len(train.rows) == rep.pairs("train") and len(val.rows) == rep.pairs("val") == 3 + 2
    assert train.has_categories and val.has_categories
    # split by image AND by sound file
    assert not {r.frame for r in train.rows} & {r.frame for r in val.rows}
    assert not {r.audio for r in train.rows} & {r.audio for r in val.rows}
    # every pair is a real (image, sound) of its concept, never twice
    for r in (*train.rows, *val.rows):
        if r.category == "dog":
            assert r.audio.parent.name == "dog"
            assert r.frame.parent.name == "dog" or r.frame.stem in ("n02085620_Chihuahua", "n02099601_golden_retriever")
        if r.category == "cat":
            assert r.audio.parent.name == "cat"
            assert r.frame.parent.name == "cat" or r.frame.stem in ("n02123045_tabby", "n02123159_tiger_cat")
        assert r.start is None and r.sample == str(r.audio)  # whole files; media lie outside the list folder
    pairs = [(r.frame, r.audio) for r in train.rows]
    assert len(pairs) == len(set(pairs))
    # used evenly: within a concept, image uses differ by at most one, sound uses by at most one per round
    for concept in ("dog", "cat"):
        img_uses = Counter(r.frame for r in train.rows if r.category == concept).values()
        assert max(img_uses) - min(img_uses) <= 1
        snd_uses = Counter(r.audio for r in train.rows if r.category == concept).values()
        assert max(snd_uses) - min(snd_uses) <= 2
    # group ids: one per connected component, never shared between the lists
    assert {r.video for r in train.rows} == {"catalog:train:dog", "catalog:train:cat", "catalog:train:cattle"}
    assert not {r.video for r in train.rows} & {r.video for r in val.rows}


def test_sound_list_holds_every_labelled_sound_off_the_validation_side(media: dict[str, Path]) -> None:
    # a concept with sounds and no pictures (wind), a capped concept (dog: 4 sounds, 2 train pairs at most)
    media["map"].write_text(MAP + "wind,other/wind/*,imagenet:no_such_class,sounds only\n")
    out = media["tmp"] / "lists"
    rep = build_catalog(media["map"], [media["sounds"]], [media["images"]], out, val_fraction=0.25, seed=3,
                        pairs_per_image=1, pairs_per_sound=1, max_pairs_per_concept=2)
    sounds = read_candidates(out / SOUNDS_LIST)
    assert sounds.errors == [] and rep.lists["sounds"] == str(out / SOUNDS_LIST)
    got = {c.audio: c.category for c in sounds.rows}
    val_audio = {r.audio for r in read_list(out / VAL_LIST).rows}
    train_audio = {r.audio for r in read_list(out / TRAIN_LIST).rows}
    zoo = (media["sounds"] / "zoo").resolve()
    dogs = {p.resolve() for p in (zoo / "dog").glob("bark*.wav")}
    assert not set(got) & val_audio  # the validation side stays out
    assert train_audio <= set(got)  # every paired training sound is in it
    assert dogs - val_audio <= set(got) and len(dogs - val_audio) > len(dogs & train_audio)  # beyond the pair cap
    assert got[(media["sounds"] / "other" / "wind" / "gust1.wav").resolve()] == "wind"  # no pictures, still labelled
    # a sound in two rows (the moo: cattle, crane) takes the first; the broken file is not there
    assert got[(zoo / "cow" / "moo1.wav")] == "cattle" and (zoo / "dog" / "broken.wav") not in got
    assert rep.labelled_sounds == len(got) == len(dogs - val_audio) + 2 + 1 + 1
    assert all(c.audio.is_absolute() for c in sounds.rows)


def test_catalog_is_deterministic_and_paths_relative_inside_the_list_folder(media: dict[str, Path]) -> None:
    a = build_catalog(media["map"], [media["sounds"]], [media["images"]], media["tmp"], seed=7,
                      max_pairs_per_concept=6, check_files=False)
    first = (media["tmp"] / TRAIN_LIST).read_text()
    build_catalog(media["map"], [media["sounds"]], [media["images"]], media["tmp"], seed=7, max_pairs_per_concept=6,
                  check_files=False)
    assert (media["tmp"] / TRAIN_LIST).read_text() == first
    rows = _rows(media["tmp"] / TRAIN_LIST)
    assert rows and all(not Path(r["frame"]).is_absolute() and r["audio"].startswith("sounds/") for r in rows)
    assert all(r["sample"] == r["audio"] for r in rows)
    assert "start" not in rows[0]  # whole files only: no start column
    # without the check the undecodable file may be paired: it is matched like any dog sound
    assert a.skipped == [] and next(c for c in a.concepts if c.concept == "dog").sounds == 5
    assert max(c.train_pairs for c in a.concepts) == 6


def test_shared_files_keep_one_side(media: dict[str, Path]) -> None:
    m = media["tmp"] / "shared.csv"
    m.write_text("concept,sound_patterns,image_patterns\n"
                 "dog,zoo/dog/*,cifar/dog/*\n"
                 "pet,zoo/dog/*; zoo/cat/*,cifar/*/*\n")
    rep = build_catalog(m, [media["sounds"]], [media["images"]], media["tmp"] / "out", val_fraction=0.3, seed=1)
    assert rep.shared_files == 10 + 4  # the dog images and the dog sounds (broken.wav dropped)
    train, val = read_list(rep.lists["train"]), read_list(rep.lists["val"])
    assert {r.category for r in val.rows} == {"dog", "pet"}
    assert not {r.frame for r in train.rows} & {r.frame for r in val.rows}
    assert not {r.audio for r in train.rows} & {r.audio for r in val.rows}
    # the two concepts share files, so they are one connected component per side (one group id)
    assert len({r.video for r in train.rows}) == 1 and len({r.video for r in val.rows}) == 1


def test_windows_pick_the_loud_part_of_long_files(tmp_path: Path) -> None:
    snd, img = tmp_path / "s", tmp_path / "i"
    quiet_loud_quiet = np.concatenate([tone(500, 1.0, SR, amplitude=0.002), tone(500, 1.0, SR, amplitude=0.5),
                                       tone(500, 1.0, SR, amplitude=0.002)])
    snd.joinpath("x").mkdir(parents=True)
    write_audio(snd / "x" / "middle.wav", quiet_loud_quiet, SR)
    _sound(snd / "x" / "even.wav", seconds=3.0)
    _sound(snd / "x" / "short.wav", seconds=0.5)
    for i in range(4):
        _image(img / "x" / f"{i}.png", (40 * i, 0, 0))
    m = tmp_path / "m.csv"
    m.write_text("concept,sound_patterns,image_patterns\nthing,x/*,x/*\n")
    build_catalog(m, [snd], [img], tmp_path / "out", val_fraction=0.0, windows=2, pairs_per_image=3)
    rows = read_list(tmp_path / "out" / TRAIN_LIST).rows
    starts: dict[str, set] = {}
    for r in rows:
        starts.setdefault(r.audio.name, set()).add(r.start)
        assert r.sample == str(r.audio)  # all windows of a file are one sample
    assert starts["middle.wav"] == {1.0}  # the only window within 12 dB of the loudest
    assert len(starts["even.wav"]) == 2 and starts["even.wav"] <= {0.0, 1.0, 2.0}
    assert starts["short.wav"] == {None}  # shorter than a window: the whole file
    assert read_list(tmp_path / "out" / VAL_LIST).rows == []


def test_round_robin_pairs_are_distinct_and_even() -> None:
    p = round_robin_pairs(4, 3, 12)
    assert len(set(p)) == 12
    assert set(Counter(i for i, _ in p).values()) == {3} and set(Counter(j for _, j in p).values()) == {4}
    assert round_robin_pairs(2, 5, 100) == round_robin_pairs(2, 5, 10)  # never more than a * b
    assert pair_count(0, 5, 2, 4, 100) == 0 and pair_count(1, 107, 2, 4, 200) == 107
    assert pair_count(500, 2, 2, 4, 200) == 200


def test_patterns_and_exclusions(media: dict[str, Path]) -> None:
    sounds = scan_media([media["sounds"]], "audio")
    images = scan_media([media["images"]], "image")
    assert {s.key for s in sounds if s.source == "zoo"} >= {"zoo/dog/bark0", "zoo/cow/moo1"}
    m = media["tmp"] / "ex.csv"
    m.write_text("concept,sound_patterns,image_patterns\n"
                 "animals,zoo/*; !zoo/dog/*; !*/cat/meow2,wnid:n02085620-n02123045; !imagenet:golden_*\n")
    rule = read_category_map(m)[0]
    assert sorted(s.key for s in rule.select(sounds, "sound")) == ["zoo/cat/meow0", "zoo/cat/meow1", "zoo/cow/moo1"]
    assert sorted(i.class_name for i in rule.select(images, "image")) == ["chihuahua", "tabby"]
    assert parse_pattern("WNID:n01000000").value == "n01000000-n01000000"
    assert parse_pattern("Scratch/Animal/Dog*").value == "scratch/animal/dog*"  # case-insensitive


@pytest.mark.parametrize("text, reason", [
    ("concept,sound_patterns\ndog,a/*\n", "missing column(s) image_patterns"),
    ("concept,sound_patterns,image_patterns\ndog,a/*,b/*\nDog,c/*,d/*\n", "duplicate concept 'Dog'"),
    ("concept,sound_patterns,image_patterns\ndog,a/*;;b/*,c/*\n", "empty pattern"),
    ("concept,sound_patterns,image_patterns\ndog,a/*,c/*,a note\n", "4 cells for 3 columns"),
    ("concept,sound_patterns,image_patterns\ndog,!a/*,c/*\n", "no positive pattern in sound_patterns"),
    ("concept,sound_patterns,image_patterns\ndog,a/*,wnid:n02-n03\n", "bad WordNet id range"),
    ("concept,sound_patterns,image_patterns\ndog,a/*,wnid:n02000000-n01000000\n", "runs backwards"),
    ("concept,sound_patterns,image_patterns\n,a/*,b/*\n", "empty concept"),
])
def test_bad_maps_are_one_clear_error(tmp_path: Path, text: str, reason: str) -> None:
    m = tmp_path / "bad.csv"
    m.write_text(text)
    with pytest.raises(CatalogMapError) as e:
        read_category_map(m)
    assert reason in str(e.value) and str(e.value).startswith(str(m))


def test_build_rejects_bad_arguments(media: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        build_catalog(media["map"], [media["sounds"]], [media["images"]], media["tmp"], val_fraction=1.0)
    with pytest.raises(Exception, match="folder not found"):
        build_catalog(media["map"], [media["tmp"] / "nope"], [media["images"]], media["tmp"])


def test_the_shipped_category_map_is_valid() -> None:
    rules = read_category_map(DEFAULT_MAP)
    assert len(rules) >= 80
    names = [r.concept.lower() for r in rules]
    assert len(names) == len(set(names))
    for r in rules:
        assert r.notes, f"{r.concept}: every row carries its reviewer's note"
        for p in (*r.sound_patterns, *r.image_patterns):
            assert p.value.strip() and p.text.strip(), r.concept
        # ImageNet names are written as in the file names (no spaces), WordNet ids as ranges of real ids
        for p in r.image_patterns:
            if p.kind == "imagenet":
                assert " " not in p.value, (r.concept, p.text)
        assert not any(p.kind != "glob" for p in r.sound_patterns), r.concept
    # ImageNet pictures come through the concept table: the dog block, and the two 'crane' classes kept apart
    from soundlib.concepts import load_concepts

    table = load_concepts()
    dog = next(r for r in rules if r.concept == "dog")
    assert any(p.kind == "concept" and p.value == "dog" for p in dog.image_patterns)
    assert [table.wnids[i] for i in table.classes_of("dog")] == [w for w in table.wnids
                                                                 if "n02085620" <= w <= "n02113978"]
    assert not any(p.kind == "imagenet" and p.value == "crane" for r in rules for p in r.image_patterns)
    assert table.concept_of_wnid("n03126707") == "construction" and table.concept_of_wnid("n02012849") is None
    # every concept of the table with catalog sounds selects its ImageNet classes through concept:NAME
    for r in rules:
        if r.concept in table.names:
            assert any(p.kind == "concept" and p.value == r.concept.lower() for p in r.image_patterns), r.concept


def test_concept_patterns_select_imagenet_classes_and_concept_sorted_sources(tmp_path: Path) -> None:
    """``concept:NAME`` picks ImageNet files through the shipped concept table and the NAME folder of a
    concept-sorted source (openclipart); an unknown concept is a map error naming the line."""
    images, sounds = tmp_path / "images", tmp_path / "sounds"
    for stem in ("n02128385_leopard", "n02129165_lion", "n02128757_snow_leopard", "n02130308_cheetah",
                 "n02123045_tabby"):
        _image(images / "imagenet" / f"{stem}.jpg", (90, 70, 40))
    _image(images / "drawings" / "openclipart" / "big cat" / "leone.png", (200, 150, 50))
    _image(images / "drawings" / "openclipart" / "cat" / "gatto.png", (20, 20, 20))
    _image(images / "sprites" / "big cat" / "lion.png", (200, 150, 50))  # not a concept-sorted source
    for i in range(2):
        _sound(sounds / "zoo" / "lion" / f"roar{i}.wav", freq=90 + 10 * i)
    m = tmp_path / "map.csv"
    m.write_text("concept,sound_patterns,image_patterns,notes\nbig cat,zoo/lion/*,concept:Big  Cat,roars\n")
    rep = build_catalog(m, [sounds], [images], tmp_path / "lists", val_fraction=0.0)
    assert rep.concepts[0].images == 3 and rep.dead_patterns == []
    rows = read_list(tmp_path / "lists" / TRAIN_LIST).rows
    assert {r.frame.stem for r in rows} == {"n02128385_leopard", "n02129165_lion", "leone"}
    assert parse_pattern("!concept:dog").negate and parse_pattern("concept:dog").kind == "concept"
    m.write_text("concept,sound_patterns,image_patterns,notes\nx,zoo/*,concept:unicorn,none\n")
    with pytest.raises(CatalogMapError, match="unicorn.*no such concept") as e:
        read_category_map(m)
    assert str(e.value).startswith(f"{m}:2")


def test_cli_catalog_json_table_and_bad_input(media: dict[str, Path]) -> None:
    """``soundlib catalog``: the same lists as the library call, one JSON document, a table, one-line errors."""
    from tests.cli_process import run_cli

    out = media["tmp"] / "cli"
    args = ["catalog", "--map", media["map"], "--sounds", media["sounds"], "--images", media["images"] / "imagenet",
            "--images", media["images"] / "cifar", "--val-fraction", "0.25", "--seed", "3", "--max-pairs", "10"]
    res = run_cli(*args, "--out", out, "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # exactly one JSON document
    ref = build_catalog(media["map"], [media["sounds"]], [media["images"] / "imagenet", media["images"] / "cifar"],
                        media["tmp"] / "lib", val_fraction=0.25, seed=3, max_pairs_per_concept=10)
    assert doc["totals"] == ref.to_dict()["totals"] and doc["totals"]["train_pairs"] > 0
    for name in (TRAIN_LIST, VAL_LIST):
        assert _rows(out / name) == _rows(media["tmp"] / "lib" / name)
    assert "broken.wav" in res.stderr and "unmatched map rows" in res.stderr  # skipped file, unicorn has no sound

    table = run_cli(*args, "--out", out)
    assert table.exit_code == 0 and "catalog pairs per concept" in table.stdout and "unicorn" in table.stdout
    assert f"train {doc['totals']['train_pairs']}, val {doc['totals']['val_pairs']}" in table.stdout

    missing = run_cli("catalog", "--map", media["map"], "--sounds", media["tmp"] / "nope", "--images",
                      media["images"], "--out", out)
    assert missing.exit_code == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
