"""Finding sounds by words (``soundlib search "door creak"``, ``soundlib query ... --text wood``).

Words of a file: its name (without the extension), its folders, its category, and its embedded ``title``,
``description``, ``keywords`` and ``comment`` (:mod:`soundlib.tags`). They are normalised by :func:`tokens`:
lower case, split at anything that is not a letter or digit and at camel case (``DOORWood`` -> ``door``,
``wood``), a plural ``s`` dropped (``doors`` -> ``door``), single characters and bare numbers dropped.

Where they live: ingest stores each file's set of words as the list metadata ``words`` of its last window
(:mod:`soundlib.store`); Chroma's own metadata filter (``{"words": {"$contains": w}}``, ids only) finds the files
that have a word, on an embedded store and on a Chroma server alike; the matching files' window-0 metadata (name,
tags) is then read by id for ranking. Why not a side index (SQLite FTS5 beside the store): a
server collection has no local folder, and a second index could fall out of step with the collection after a
crash; the filter needs neither. Why not Chroma documents: an ``update`` of documents without embeddings makes
Chroma 1.5 run its default embedding function (it tries to download a model), so a category change could not
rewrite them; and ``$contains`` on documents is case-sensitive substring matching, not words.

Ranking (:func:`search_words`): BM25 (k1 = 1.2, b = 0.75) over the matching files, each field weighted
(:data:`FIELD_WEIGHTS`: the name counts most), with document frequencies among the matching files. Files that have
more of the query's words rank first.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from soundlib.config import DEFAULT_K
from soundlib.errors import SoundlibError

#: Weight of a word by where it was found (BM25F-style term frequency).
FIELD_WEIGHTS: dict[str, float] = {"name": 3.0, "title": 2.0, "keywords": 2.0, "folder": 1.5, "category": 1.5,
                                   "description": 1.0, "comment": 0.5}
#: Words of one file kept at most (the list is Chroma metadata on one record).
MAX_WORDS = 256
#: Words of one query used at most.
MAX_QUERY_WORDS = 16
_K1, _B = 1.2, 0.75
_SPLIT = re.compile(r"[^\w]+|_", re.UNICODE)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def stem(word: str) -> str:
    """Drop a plural ``s`` (not ``ss``, ``us``, ``is``) of words longer than 3 letters."""
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """The normalised words of ``text``, in order (rules in the module docstring)."""
    out = []
    for chunk in _SPLIT.split(text or ""):
        for part in _CAMEL.split(chunk):
            w = part.lower()
            if len(w) < 2 or w.isdigit():
                continue
            out.append(stem(w))
    return out


def file_fields(rel: str, category: str, info: Mapping[str, Any]) -> dict[str, list[str]]:
    """Words of a file by field: ``name``, ``folder``, ``category`` and the text tags in ``info``."""
    p = PurePosixPath(rel)
    fields = {"name": tokens(p.stem), "folder": tokens(" ".join(p.parts[:-1])), "category": tokens(category)}
    for key in ("title", "description", "keywords", "comment"):
        fields[key] = tokens(str(info.get(key) or ""))
    return fields


def file_words(rel: str, category: str, info: Mapping[str, Any]) -> tuple[str, ...]:
    """The set of a file's words (sorted; at most :data:`MAX_WORDS`, the name's and folders' first)."""
    seen: dict[str, None] = {}
    for words in file_fields(rel, category, info).values():
        for w in words:
            seen.setdefault(w, None)
    return tuple(sorted(list(seen)[:MAX_WORDS]))


def query_words(text: str) -> list[str]:
    """The distinct normalised words of a query, in order.

    Raises:
        SoundlibError: the text has no usable word.
    """
    words = list(dict.fromkeys(tokens(text)))[:MAX_QUERY_WORDS]
    if not words:
        raise SoundlibError(f"no words to search for in {text!r} (words have 2+ letters or digits, not only digits)")
    return words


def words_where(words: Iterable[str], require_all: bool) -> dict[str, Any]:
    """Chroma ``where`` on the ``words`` list: every word (``$and``) or any (``$or``)."""
    terms = [{"words": {"$contains": w}} for w in words]
    if len(terms) == 1:
        return terms[0]
    return {"$and" if require_all else "$or": terms}


def category_where(categories: Iterable[str]) -> dict[str, Any] | None:
    """Chroma ``where`` (on a file's last window) for a category filter that matches any level: the ``levels``
    list holds the name lower-cased; ``category`` equal to the name covers files stored before levels existed."""
    names = sorted({c for c in categories if c})
    if not names:
        return None
    terms: list[dict[str, Any]] = []
    for c in names:
        terms += [{"levels": {"$contains": c.lower()}}, {"category": c}]
    return {"$or": terms}


def _and(*wheres: dict[str, Any] | None) -> dict[str, Any] | None:
    parts = [w for w in wheres if w]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def allowed_files(store: Any, text: str | None = None, categories: Iterable[str] = ()) -> dict[str, int]:
    """The files that have every word of ``text`` and match one of ``categories``: file id -> window count.

    Raises:
        SoundlibError: ``text`` has no usable word.
    """
    where = _and(words_where(query_words(text), require_all=True) if text else None,
                 category_where(categories))
    return store.files_matching(where)


@dataclass
class WordHit:
    """One file found by words: its path, category, BM25 ``score`` (larger is better), the words it matched and its
    window-0 metadata."""

    path: str
    category: str
    score: float
    matched: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def start(self) -> float:
        return 0.0


def rank(heads: Mapping[str, Mapping[str, Any]], words: list[str]) -> list[tuple[str, float, list[str]]]:
    """BM25 over ``heads`` (file id -> window-0 metadata) for ``words``: ``[(file id, score, matched)]`` best first
    (ties: by path)."""
    docs: dict[str, Counter] = {}
    lengths: dict[str, float] = {}
    for fid, m in heads.items():
        tf: Counter = Counter()
        length = 0.0
        for name, ws in file_fields(str(m.get("path", "")), str(m.get("category", "")), m).items():
            weight = FIELD_WEIGHTS.get(name, 1.0)
            for w in ws:
                tf[w] += weight
            length += weight * len(ws)
        docs[fid], lengths[fid] = tf, max(length, 1.0)
    n = len(docs)
    if n == 0:
        return []
    avg = sum(lengths.values()) / n
    df = {w: sum(1 for tf in docs.values() if tf.get(w)) for w in words}
    out = []
    for fid, tf in docs.items():
        score, matched = 0.0, []
        for w in words:
            f = tf.get(w, 0.0)
            if not f:
                continue
            idf = math.log(1.0 + (n - df[w] + 0.5) / (df[w] + 0.5))
            score += idf * f * (_K1 + 1) / (f + _K1 * (1 - _B + _B * lengths[fid] / avg))
            matched.append(w)
        if matched:
            out.append((fid, score, matched))
    out.sort(key=lambda t: (-len(t[2]), -t[1], str(heads[t[0]].get("path", ""))))
    return out


def search_words(store: Any, text: str, k: int = DEFAULT_K, categories: Iterable[str] = ()) -> list[WordHit]:
    """The ``k`` files that best match the words of ``text`` (any of them; files with more of them first).

    Args:
        store: an open :class:`soundlib.store.SoundStore`.
        text: the words.
        k: results at most.
        categories: only files matching one of these categories (any level).

    Raises:
        SoundlibError: ``text`` has no usable word, or ``k`` < 1.
        StoreError: no collection.
    """
    import os

    if k < 1:
        raise SoundlibError(f"k must be at least 1, got {k}")
    words = query_words(text)
    store.require()
    matching = store.files_matching(_and(words_where(words, require_all=False), category_where(categories)))
    heads = store.file_heads(matching)
    out = []
    for fid, score, matched in rank(heads, words)[:k]:
        m = heads[fid]
        root, rel = m.get("root"), str(m.get("path", ""))
        out.append(WordHit(path=os.path.join(str(root), rel) if root else rel, category=str(m.get("category", "")),
                           score=score, matched=matched, metadata=dict(m)))
    return out
