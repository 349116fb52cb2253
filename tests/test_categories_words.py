"""Category rules, UCS names (soundlib/categories.py) and word normalisation / ranking (soundlib/words.py)."""

from __future__ import annotations

import pytest

from soundlib.categories import CATEGORY_RULES, categorize, is_cat_id, parse_ucs
from soundlib.errors import SoundlibError
from soundlib.words import file_words, query_words, rank, tokens


def test_ucs_names_are_split_into_their_blocks():
    u = parse_ucs("DOORWood_Creak Long_JD_Foley.wav")
    assert (u.cat_id, u.head, u.fx_name, u.creator_id, u.source_id, u.user_data) == (
        "DOORWood", "DOOR", "Creak Long", "JD", "Foley", None)
    u = parse_ucs("GUNAuto-EXT_UZI 9mm-Rapid Fire_TN_NONE_416-MKH8040-DualMono.flac")
    assert (u.cat_id, u.user_category, u.vendor_category, u.fx_name, u.user_data) == (
        "GUNAuto", "EXT", "UZI 9mm", "Rapid Fire", "416-MKH8040-DualMono")
    assert parse_ucs("UIClick_Soft_ME_Menus.wav").head == "UI"
    assert parse_ucs("AIRBrst_Can.wav").creator_id is None  # two blocks are enough


@pytest.mark.parametrize("name", [
    "DOORWOOD_Creak_JD_Foley.wav",      # no lower-case subcategory
    "Doorwood_Creak_JD_Foley.wav",      # no upper-case head
    "DOORWood.wav",                     # no FXName block
    "DOORWood__JD.wav",                 # empty FXName
    "D_Creak.wav", "door creak.wav", "lumber_treeexpire_03.ogg", "0ad_select.ogg",
    "ABCDEFGHIJKLMNOPQRs_x.wav",        # longer than any CatID
])
def test_names_that_are_not_ucs(name):
    assert parse_ucs(name) is None


def test_unknown_but_well_formed_cat_ids_keep_their_code():
    # soundlib does not ship the UCS list: a CatID-shaped code nobody defined is still a category of its own
    assert is_cat_id("XYZQwerty") and not is_cat_id("XYZ")
    c = categorize("misc/XYZQwerty_Thing_JD_Lib.wav", "/lib")
    assert (c.category, c.ucs.cat_id) == ("XYZQwerty", "XYZQwerty")
    assert set(c.levels) == {"misc", "xyzqwerty", "xyz"}


def test_rules_on_a_nested_path():
    rel = "widelands/wolf/howl_01.ogg"
    got = {rule: categorize(rel, "/data/sfx", rule).category for rule in CATEGORY_RULES}
    assert got == {"auto": "widelands/wolf", "first": "widelands", "parent": "wolf", "path": "widelands/wolf",
                   "ucs": ""}
    # any rule: every folder is a level, so --category wolf finds it
    assert all({"widelands", "wolf"} <= set(categorize(rel, "/data/sfx", r).levels) for r in CATEGORY_RULES)
    assert "widelands/wolf" in categorize(rel, "/data/sfx", "auto").levels
    ucs = "Vendor/Doors/DOORWood_Creak Long_JD_Foley.wav"
    got = {rule: categorize(ucs, "/x", rule).category for rule in CATEGORY_RULES}
    assert got == {"auto": "DOORWood", "first": "Vendor", "parent": "Doors", "path": "Vendor/Doors", "ucs": "DOORWood"}
    assert {"door", "doorwood", "vendor", "doors"} <= set(categorize(ucs, "/x").levels)
    # files in the root take the root's name; an iXML CatID counts when the name has none
    assert categorize("loose.wav", "/data/sfx", "path").category == "sfx"
    assert categorize("x/take 3.wav", "/r", "auto", cat_id="RAINHvy").category == "RAINHvy"
    assert categorize("x/take 3.wav", "/r", "auto", cat_id="not a catid").category == "x"
    with pytest.raises(SoundlibError, match="unknown category rule"):
        categorize(rel, "/x", "second")


def test_tokens():
    assert tokens("DOORWood_Creak Long_JD_Foley") == ["door", "wood", "creak", "long", "jd", "foley"]
    assert tokens("lumber_treeexpire_03 Doors, glass!") == ["lumber", "treeexpire", "door", "glass"]
    assert tokens("x 42 ß Straße Über") == ["straße", "über"]
    assert query_words("Door doors DOOR creak") == ["door", "creak"]
    with pytest.raises(SoundlibError, match="no words"):
        query_words("!! 12 a")


def _head(path, **tags):
    return {"path": path, "category": "", **tags}


def test_bm25_ranks_names_over_descriptions_and_more_words_first():
    heads = {
        "a": _head("doors/wood/creak_01.wav"),
        "b": _head("misc/take_01.wav", description="an old door that creaks, wood frame"),
        "c": _head("doors/metal/slam.wav"),
        "d": _head("ambience/rain.wav", keywords="rain, roof, door"),
        "e": _head("x/door creak door creak.wav"),
    }
    ranked = rank(heads, ["door", "creak"])
    ids = [fid for fid, _, _ in ranked]
    assert set(ids) == {"a", "b", "c", "d", "e"}
    both = {fid for fid, _, m in ranked if m == ["door", "creak"]}
    assert both == {"a", "b", "e"} and set(ids[:3]) == both  # files with both words first
    assert ids.index("a") < ids.index("b")  # in the name and folders beats the description
    assert ids[3:] == ["c", "d"]  # door in the folders (doors/metal) beats door among rain keywords
    assert rank(heads, ["glass"]) == []


def test_file_words_cover_name_folders_and_tags():
    w = file_words("Vendor/Doors/DOORWood_Creak Long_JD_Foley.wav", "DOORWood",
                   {"description": "Old barn doors", "keywords": "hinge; squeak", "comment": "take 2", "title": "x"})
    assert {"vendor", "door", "wood", "creak", "long", "foley", "old", "barn", "hinge", "squeak", "take"} <= set(w)
    assert list(w) == sorted(w) and len(w) == len(set(w))
