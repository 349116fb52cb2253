"""What a ranking looked for and which results are it (soundlib.aim): the answer's words for each case."""

from __future__ import annotations

import numpy as np
import pytest

from soundlib.aim import Aim, Check, aim_of_query


@pytest.fixture(scope="module")
def default_model():
    from soundlib.models import load_model

    return load_model(None)


def _check(source: str, concepts: tuple[str, ...], per: list[tuple[str, ...]], named: tuple[str, ...] = ()) -> Check:
    aim = Aim(concepts, source, named)
    return Check(aim, tuple(per), {c: sum(c in p for p in per) for c in concepts})


def test_the_answer_counts_the_results_and_warns_only_of_a_lack() -> None:
    told = _check("as", ("horse",), [("horse",), (), ("horse",)])
    assert told.text() == "2 of 3 named or heard as it" and told.lacking == [] and told.hits == [True, False, True]
    none = _check("as", ("piano",), [(), ()])
    assert none.text() == ("none of these 2 is named or heard as it: the library may lack it "
                           "(soundlib library concepts)") and none.lacking == ["piano"]
    read = _check("query", ("dog", "wolf"), [("dog",), ("wolf",), ()])
    assert read.text() == "2 of 3 named or heard as dog or wolf"
    # a cockatoo named parrot, read as a dog: dogs found, the named parrot lacking
    parrot = _check("query", ("dog", "parrot"), [("dog",), ("dog",)], named=("parrot",))
    assert parrot.lacking == ["parrot"]
    assert parrot.text() == ("2 of 2 named or heard as dog · none as parrot: the library may lack it "
                             "(soundlib library concepts)")
    # a cartoon horse named horse, read as a book: the misreading finds nothing, the name does: no warning
    horse = _check("query", ("book", "horse"), [("horse",)] * 3, named=("horse",))
    assert horse.lacking == [] and horse.text() == "3 of 3 named or heard as horse"
    assert horse.to_json() == {"concepts": ["book", "horse"], "from": "query", "found": 3,
                               "each": {"book": 0, "horse": 3}, "lacking": []}
    side = _check("query", ("dog", "wolf"), [("dog",)])  # a side reading with none: not a lack (not named)
    assert side.lacking == [] and side.text() == "1 of 1 named or heard as dog"


def test_a_query_is_checked_against_the_concepts_it_points_at_firmly(default_model) -> None:
    model = default_model.model
    d, names = int(model.config.embed_dim), list(model.config.concepts)
    v = np.zeros(d + len(names), np.float32)
    v[d + names.index("dog")], v[d + names.index("wolf")] = 0.8, 0.6  # shares 0.64 and 0.36
    aim = aim_of_query(model, v, named=("wolf",))
    assert aim is not None and aim.concepts == ("dog", "wolf") and aim.named == ("wolf",)
    spread = np.zeros_like(v)
    spread[d:d + 10] = 1.0  # ten concepts at 10 % each: nothing firm to check
    assert aim_of_query(model, spread) is None
    assert aim_of_query(None, v) is None
