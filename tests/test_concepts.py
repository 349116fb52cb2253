"""soundlib.concepts and tools/build_concepts.py: the shipped WordNet concept tables, concept probabilities, real
pictures through EfficientNet-Lite0, and the builder on a miniature data.noun."""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from soundlib.concepts import (
    CLASSES_FILE, DEFAULT_DIR, OTHER, SENSES_FILE, ConceptTableError, class_concept_index, concept_names,
    concept_probabilities, load_concepts,
)
from train.catalog import DEFAULT_MAP, read_category_map

ROOT = Path(__file__).resolve().parents[1]
DEMO_IMAGES = ROOT / "demo" / "images"
IMAGENET_SAMPLES = ROOT.parent / "shared" / "data" / "imagenet-samples"


def _senses() -> list[dict[str, str]]:
    with (DEFAULT_DIR / SENSES_FILE).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _offsets(cell: str) -> list[str]:
    return [item.split()[0] for item in cell.split(";") if item.strip()]


# -- the shipped tables ------------------------------------------------------------------------------------------------
def test_every_concept_is_a_catalog_concept_or_a_documented_new_one() -> None:
    table = load_concepts()
    catalog = {r.concept for r in read_category_map(DEFAULT_MAP)}
    readme = (DEFAULT_DIR / "README.md").read_text(encoding="utf-8")
    assert len(table.names) == len({n.lower() for n in table.names}) >= 100
    for name, note in zip(table.names, table.notes):
        assert note, name
        if name not in catalog:
            assert note.startswith("NEW."), f"{name}: not in the catalog map and not marked NEW."
        if note.startswith("NEW."):
            assert f"`{name}`" in readme, f"{name}: a new concept is listed in data/concepts/README.md"
    assert OTHER not in table.names and concept_names(table)[-1] == OTHER


def test_class_table_follows_the_senses_and_no_class_is_in_two_concepts() -> None:
    table = load_concepts()
    senses = {r["concept"]: r for r in _senses()}
    assert list(senses) == list(table.names)
    assert len(table.wnids) == 1000 and list(table.wnids) == sorted(set(table.wnids))
    include_of: dict[str, str] = {}
    for concept, r in senses.items():
        for off in _offsets(r["include"]):
            assert off not in include_of, f"{off} is an include sense of {include_of.get(off)} and {concept}"
            include_of[off] = concept
    for k, wnid in enumerate(table.wnids):
        c = table.class_concept[k]
        if wnid in include_of:  # a class named as a sense belongs to that concept and no other
            assert c >= 0 and table.names[c] == include_of[wnid], wnid
        if c < 0:
            assert table.via[k] == ""
            continue
        r = senses[table.names[c]]
        via = table.via[k].split()[0]
        assert via in _offsets(r["include"]), (wnid, table.via[k])
        assert include_of[via] == table.names[c]
        assert wnid not in _offsets(r["exclude"]), (wnid, r["concept"])
    assert 350 <= int((table.class_concept >= 0).sum()) <= 1000


def test_the_traps_are_pinned() -> None:
    t = load_concepts()
    dogs = [t.wnids[i] for i in t.classes_of("dog")]
    assert len(dogs) == 118 and dogs == [w for w in t.wnids if "n02085620" <= w <= "n02113978"]
    for wild in ("n02115641", "n02115913", "n02116738", "n02117135"):  # dingo, dhole, hunting dog, hyena
        assert t.concept_of_wnid(wild) is None
    assert t.concept_of_wnid("n02114855") == "wolf"  # WordNet files the coyote under wolf
    assert sorted(t.class_names[i] for i in t.classes_of("big cat")) == ["jaguar", "leopard", "lion", "tiger"]
    assert t.concept_of_wnid("n02403003") == "cattle"  # ImageNet's ox
    assert t.concept_of_wnid("n02408429") is None and t.concept_of_wnid("n02410509") is None  # buffalo, bison
    assert t.concept_of_wnid("n03126707") == "construction" and t.concept_of_wnid("n02012849") is None  # cranes
    assert t.concept_of_wnid("n02892201") is None  # ImageNet's 'brass' is a memorial plaque
    assert t.concept_of_wnid("n03110669") == "brass"  # the cornet
    assert t.concept_of_wnid("n03393912") == "train" and t.concept_of_wnid("n02930766") == "road traffic"
    assert t.concept_of_wnid("n03786901") is None  # mortar and pestle
    assert t.concept_of_wnid("n02701002") == "siren"  # ambulance: excluded from road traffic
    assert t.concept_of_wnid("n09999999") is None


def test_concept_probabilities_sum_the_softmax() -> None:
    t = load_concepts()
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(1000, 0.1), size=6).astype(np.float32)
    q = concept_probabilities(p, t)
    assert q.shape == (6, len(t.names) + 1) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)
    dog = t.index("Dog")
    np.testing.assert_allclose(q[:, dog], p[:, t.classes_of("dog")].sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(q[:, -1], p[:, t.class_concept < 0].sum(axis=1), rtol=1e-5)
    col = class_concept_index(t)
    for k in (0, 151, 517, 999):  # a one-hot class lands in its concept's column (or "other")
        one = np.zeros(1000, np.float32)
        one[k] = 1
        got = concept_probabilities(one, t)
        assert got.shape == (len(t.names) + 1,) and got[col[k]] == 1 and got.sum() == 1
    for bad in (np.ones((2, 999)), np.ones((1, 2, 1000)), -p, np.full((1, 1000), np.nan)):
        with pytest.raises(ValueError):
            concept_probabilities(bad, t)


@pytest.mark.parametrize("change, reason", [
    (lambda d: (d / CLASSES_FILE).unlink(), "not found"),
    (lambda d: _edit(d / CLASSES_FILE, lambda ls: ls[:-1]), "999 classes"),
    (lambda d: _edit(d / CLASSES_FILE, lambda ls: [re.sub(r",dog,", ",unicorn,", x) for x in ls]), "unicorn"),
    (lambda d: _edit(d / SENSES_FILE, lambda ls: ls + ['unicorn,n00000001 unicorn,,"NEW. none"']), "unicorn"),
    (lambda d: _edit(d / CLASSES_FILE, lambda ls: [ls[0], ls[2], ls[1], *ls[3:]]), "index"),
])
def test_bad_tables_are_one_clear_error(tmp_path: Path, change, reason: str) -> None:
    d = tmp_path / "concepts"
    shutil.copytree(DEFAULT_DIR, d)
    change(d)
    with pytest.raises(ConceptTableError, match=reason) as e:
        load_concepts(d)
    assert str(d) in str(e.value) and "\n" not in str(e.value)


def _edit(path: Path, fn) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(fn(lines)) + "\n", encoding="utf-8")


def test_concepts_import_no_torch() -> None:
    import subprocess

    code = "import soundlib.concepts, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- real pictures through the classifier ----------------------------------------------------------------------------
def _concepts_of(paths: list[Path]) -> list[str]:
    import torch

    from encoders.pretrained import imagenet_logits
    from soundlib.images import load_image

    batch = torch.stack([load_image(p, 256, detail=224) for p in paths])
    q = concept_probabilities(torch.softmax(imagenet_logits(batch), dim=1).numpy())
    names = concept_names()
    return [names[int(np.argmax(row))] for row in q]


def test_real_pictures_land_in_their_concepts(one_torch_thread) -> None:
    want = {"dog-photo.png": "dog", "sail-boat.png": "sailing ship", "cow.png": "cattle"}
    assert _concepts_of([DEMO_IMAGES / f for f in want]) == list(want.values())


@pytest.mark.skipif(not IMAGENET_SAMPLES.is_dir(), reason="../shared/data/imagenet-samples not present")
def test_imagenet_samples_land_in_their_concepts(one_torch_thread) -> None:
    t = load_concepts()
    files = [p for p in sorted(IMAGENET_SAMPLES.glob("n*_*.jpg")) if t.concept_of_wnid(p.name[:9])][::10]
    assert len(files) >= 30
    got = _concepts_of(files)
    hits = sum(g == t.concept_of_wnid(f.name[:9]) for f, g in zip(files, got))
    assert hits >= 0.7 * len(files), list(zip([f.name for f in files], got))


# -- the builder on a miniature WordNet --------------------------------------------------------------------------------
def _builder():
    spec = importlib.util.spec_from_file_location("build_concepts", ROOT / "tools" / "build_concepts.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["build_concepts"] = mod
    spec.loader.exec_module(mod)
    return mod


#: data.noun lines in WordNet's format: offset lex_filenum pos w_cnt(hex) (word lex_id)+ p_cnt (ptr off pos src/tgt)*
MINI_NOUN = """  1 This software and database is being provided to you, the LICENSEE, by Princeton University
00000001 03 n 01 animal 0 000 | a living organism
00000010 05 n 01 canine 0 001 @ 00000001 n 0000 | a dog-like animal
00000020 05 n 02 dog 0 domestic_dog 0 001 @ 00000010 n 0000 | a dog
00000021 05 n 01 beagle 0 001 @ 00000020 n 0000 | a small hound
00000022 05 n 01 pug 0 001 @ 00000020 n 0000 | a small dog
00000030 05 n 01 wild_dog 0 001 @ 00000010 n 0000 | a wild canine
00000031 05 n 01 dingo 0 001 @ 00000030 n 0000 | a wild dog of Australia
00000040 05 n 01 bird 0 001 @ 00000001 n 0000 | a bird
00000041 05 n 01 cock 0 001 @ 00000040 n 0000 | adult male bird
00000050 18 n 01 Laika 0 001 @i 00000021 n 0000 | an instance of a beagle
"""


def test_builder_assigns_through_hypernyms_with_exclusions(tmp_path: Path) -> None:
    bc = _builder()
    (tmp_path / "data.noun").write_text(MINI_NOUN, encoding="latin-1")
    syn = bc.read_data_noun(tmp_path)
    assert syn["00000020"].lemmas == ["dog", "domestic_dog"] and syn["00000050"].hypernyms == ["00000021"]
    assert bc.ancestors("00000050", syn) == {"00000050", "00000021", "00000020", "00000010", "00000001"}
    senses = tmp_path / "senses.csv"
    senses.write_text('concept,include,exclude,notes\ndog,n00000020 dog,n00000022 pug,"dogs, not pugs"\n'
                      "chicken,n00000041 cock,,the cock\n")
    rows = bc.read_senses(senses)
    bc.check_senses(rows, syn, "senses.csv")
    wnids = ["n00000021", "n00000022", "n00000031", "n00000041", "n00000050"]
    table = bc.assign_concepts(wnids, ["beagle", "pug", "dingo", "cock", "laika"], rows, syn)
    assert [c.concept for c in table] == ["dog", "", "", "chicken", "dog"]
    assert table[4].via == "n00000020 dog"
    out = tmp_path / "classes.csv"
    bc.write_table(out, table)
    assert out.read_text().splitlines()[1] == "0,n00000021,beagle,dog,n00000020 dog"


@pytest.mark.parametrize("senses, reason", [
    ("dog,n00000020 cat,,typo\n", "is dog/domestic_dog, not 'cat'"),
    ("dog,n00000099 dog,,missing\n", "not a WordNet 3.0 noun synset"),
    ("dog,n00000020 dog,,a\ncanine,n00000010 canine,,b\n", "in several concepts"),
    ("dog,n00000020 dog,,a\nbird,n00000040 bird,,no class\n", "cover no ImageNet class"),
    ("dog,,,no sense\n", "no include sense"),
    ("dog,n0000002 dog,,short\n", "bad sense"),
])
def test_builder_refuses_bad_senses(tmp_path: Path, senses: str, reason: str) -> None:
    bc = _builder()
    (tmp_path / "data.noun").write_text(MINI_NOUN, encoding="latin-1")
    syn = bc.read_data_noun(tmp_path / "data.noun")
    p = tmp_path / "senses.csv"
    p.write_text("concept,include,exclude,notes\n" + senses)
    with pytest.raises(bc.BuildError, match=re.escape(reason)):
        rows = bc.read_senses(p)
        bc.check_senses(rows, syn, str(p))
        bc.assign_concepts(["n00000021"], ["beagle"], rows, syn)


def test_builder_wants_the_1000_classes(tmp_path: Path) -> None:
    bc = _builder()
    f = tmp_path / "wnids.txt"
    f.write_text("n00000021 beagle\n")
    with pytest.raises(bc.BuildError, match="1,000"):
        bc.imagenet_classes(None, f)
    f.write_text("".join(f"{w}\n" for w in load_concepts().wnids))
    wnids, _ = bc.imagenet_classes(None, f)
    assert tuple(wnids) == load_concepts().wnids
    assert bc.main(["--wordnet", str(tmp_path / "nope"), "--wnids", str(f), "--out", str(tmp_path / "x.csv")]) == 2
