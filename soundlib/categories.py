"""A sound's category, by one of several rules (``soundlib ingest --category-from RULE``), and UCS file names.

Rules (``rel`` is the file's POSIX path below its library root):

- ``auto`` (the default): the UCS CatID when the file name starts with one, else ``path``;
- ``first``: the first folder below the root (``sfx/dogs/barks/a.wav`` -> ``dogs``; soundlib's rule before 0.2);
- ``parent``: the file's own folder (``dogs/barks/a.wav`` -> ``barks``);
- ``path``: the whole folder path below the root (``widelands/wolf/howl.ogg`` -> ``widelands/wolf``);
- ``ucs``: the UCS CatID of the name; a file without one gets ``""`` (shown as "(none)").

Files lying directly in the root take the root folder's own name under ``first``, ``parent`` and ``path`` (so a
category folder ingested on its own keeps its name).

Universal Category System (UCS) names: ``CatID(-UserCategory)_(VendorCategory-)FXName_CreatorID_SourceID(_UserData)``,
e.g. ``DOORWood_Creak Long_JD_Foley.wav``. The CatID is an upper-case category code followed by a capitalised
subcategory code (``DOORWood``, ``AIRBrst``, ``GUNAuto``, ``UIClick``). soundlib does **not** ship the UCS list
(CatID -> Category, SubCategory): no PyPI or Debian package carries it with terms that allow redistribution. So a
name whose first block has the CatID *shape* counts as UCS, and the code itself is the category (``DOORWood``);
its upper-case head (``DOOR``) is kept as a category level, so ``--category door`` finds every door.

Levels: every folder below the root, the category and its parts, and the CatID and its head, lower-cased, are the
"levels" a ``--category`` filter matches (``--category wolf`` finds ``widelands/wolf/...`` whatever the rule).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from soundlib.errors import SoundlibError

#: The rules ``--category-from`` accepts; ``auto`` is the default.
CATEGORY_RULES: tuple[str, ...] = ("auto", "first", "parent", "path", "ucs")
DEFAULT_RULE = "auto"
#: A UCS CatID: an upper-case head (the category code, 2+ letters) and a capitalised subcategory code, at most
#: 16 characters in all (the longest in UCS 8.2 has 10).
_CATID = re.compile(r"^(?P<head>[A-Z]{2,}?)(?P<sub>[A-Z][a-z][A-Za-z0-9]*)$")
_MAX_CATID = 16


@dataclass(frozen=True)
class UcsName:
    """The blocks of a UCS file name (``None`` where a block is absent)."""

    cat_id: str
    head: str
    user_category: str | None
    vendor_category: str | None
    fx_name: str
    creator_id: str | None
    source_id: str | None
    user_data: str | None


def is_cat_id(text: str) -> bool:
    """True if ``text`` has the shape of a UCS CatID (``DOORWood``; not ``DOORWOOD``, ``Doorwood``, ``DOOR``)."""
    return len(text) <= _MAX_CATID and _CATID.match(text) is not None


def parse_ucs(filename: str) -> UcsName | None:
    """Split a UCS file name (with or without its extension) into its blocks; ``None`` if it is not one.

    A UCS name has at least two ``_``-separated blocks (the standard asks for four) and a first block that is a
    CatID, optionally followed by ``-UserCategory``.
    """
    stem = os.path.splitext(filename)[0] if "." in filename else filename
    blocks = stem.split("_")
    if len(blocks) < 2 or not blocks[1].strip():
        return None
    cat_id, _, user_cat = blocks[0].partition("-")
    m = _CATID.match(cat_id)
    if m is None or len(cat_id) > _MAX_CATID:
        return None
    fx = blocks[1]
    vendor = None
    if "-" in fx:
        v, _, rest = fx.partition("-")
        if v.strip() and rest.strip():
            vendor, fx = v.strip(), rest
    return UcsName(cat_id=cat_id, head=m.group("head"), user_category=user_cat or None, vendor_category=vendor,
                   fx_name=fx.strip(), creator_id=blocks[2] if len(blocks) > 2 and blocks[2] else None,
                   source_id=blocks[3] if len(blocks) > 3 and blocks[3] else None,
                   user_data="_".join(blocks[4:]) or None)


@dataclass(frozen=True)
class Category:
    """A file's category under one rule.

    Attributes:
        category: the category (``""`` only under ``ucs`` for a name without a CatID).
        rule: the rule that made it.
        levels: lower-case levels a ``--category`` filter matches (see the module docstring), sorted.
        ucs: the parsed UCS name, if the file name is one.
    """

    category: str
    rule: str
    levels: tuple[str, ...]
    ucs: UcsName | None


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`CATEGORY_RULES`.

    Raises:
        SoundlibError: an unknown rule.
    """
    if rule not in CATEGORY_RULES:
        raise SoundlibError(f"unknown category rule '{rule}'; use one of {', '.join(CATEGORY_RULES)}")
    return rule


def categorize(rel: str, root: str | os.PathLike, rule: str = DEFAULT_RULE, cat_id: str | None = None) -> Category:
    """The category of the file ``rel`` (POSIX, relative to ``root``) under ``rule`` (module docstring).

    Args:
        rel: the file's path below the root.
        root: the library root (its name is the category of files lying directly in it).
        rule: one of :data:`CATEGORY_RULES`.
        cat_id: a CatID from the file's embedded metadata (iXML ``CATID``), used when the name has none.

    Raises:
        SoundlibError: an unknown rule.
    """
    check_rule(rule)
    parts = PurePosixPath(rel).parts
    folders = parts[:-1]
    own = Path(root).name or str(root)
    ucs = parse_ucs(parts[-1]) if parts else None
    code = ucs.cat_id if ucs is not None else (cat_id if cat_id and is_cat_id(cat_id) else None)
    if rule == "first":
        category = folders[0] if folders else own
    elif rule == "parent":
        category = folders[-1] if folders else own
    elif rule == "path":
        category = "/".join(folders) if folders else own
    elif rule == "ucs":
        category = code or ""
    else:  # auto
        category = code or ("/".join(folders) if folders else own)
    levels = {p.lower() for p in folders} | {p.lower() for p in category.split("/") if p} | {category.lower()}
    levels.discard("")
    if code:
        levels |= {code.lower(), _CATID.match(code).group("head").lower()}  # type: ignore[union-attr]
    if not folders:
        levels.add(own.lower())
    return Category(category=category, rule=rule, levels=tuple(sorted(levels)), ucs=ucs)
