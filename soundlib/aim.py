"""What a ranking looks for, and which of its results are it: the "is it" check of ``query``.

A bridged model (the default) ranks a library mostly by concepts (:mod:`encoders.bridge`). When the library holds no
sound of the concept a query points at, the top ``k`` are other concepts' leftovers and look like any ranking: a
cockatoo read as ``parrot 96 %`` in a library without parrots gets dog barks and whistles. So each answer says what
it looked for and how many of its results are that, by the test ``soundlib library concepts`` counts with: a file
is a concept when its words named it at ingest, or when its audio alone points at it most
(:func:`soundlib.concept_coverage.files_concepts`). Each concept is counted on its own, so a cockatoo read as
``dog`` and named ``parrot`` says that four results are dogs and none is a parrot.

What the ranking looks for (:class:`Aim`):

- ``"as"``: the concepts the user's words named (``query --as horse``), which replaced the query's own;
- ``"query"``: the concepts the query vector the ranking used points at, read as :mod:`soundlib.read_as` reads it
  (a picture's reading mixed with what its file name names; a sound's windows): each concept holding at least
  :data:`AIM_SHARE` of the concept part, at most :data:`AIM_TOP`. A query that points at no concept that firmly (a
  reading spread thin over many) is not checked: there is nothing to say it lacks.

The check reads the hits' own metadata (their files' descriptions, ``heard`` among them); for files ingested before
that was stored, the top ``k``'s vectors by id: one store read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Smallest share of the query's concept part a concept needs to be what the ranking looks for.
AIM_SHARE = 0.25
#: Concepts checked at most.
AIM_TOP = 3


@dataclass(frozen=True)
class Aim:
    """The concepts a ranking looks for.

    Attributes:
        concepts: concept names, in the model's column order (``"as"``) or most first (``"query"``).
        source: ``"as"`` (the user's words) or ``"query"`` (the query itself).
        named: those of ``concepts`` the query's own file names named (``"query"`` only).
    """

    concepts: tuple[str, ...]
    source: str
    named: tuple[str, ...] = ()

    def subject(self) -> str:
        """How the answer names them: ``"it"`` for the user's words (said just before), else ``"dog or wolf"``."""
        return "it" if self.source == "as" else " or ".join(self.concepts)


def aim_of_told(told: Any) -> Aim:
    """The aim of a told query (:class:`soundlib.told_as.Told`): the concepts the words named."""
    return Aim(tuple(told.concepts), "as")


def aim_of_query(model: Any, vector: np.ndarray, named: Sequence[str] = (), share: float = AIM_SHARE,
                 top: int = AIM_TOP) -> Aim | None:
    """The concepts a query embedding points at firmly enough to check.

    Args:
        model: the query's model (bridged; any other model, or ``None``, gives ``None``).
        vector: ``(D,)`` the query embedding the ranking used.
        named: the concepts the query's own file names named (mixed into ``vector``).
        share: smallest share of the concept part (squared components of its unit vector, summing to 1).
        top: concepts at most.

    Returns:
        An :class:`Aim` with source ``"query"``, or ``None``: no concept columns, or no concept holds ``share``.
    """
    from soundlib.read_as import read_as

    read = read_as(model, vector, top=top, floor=share)
    if not read:
        return None
    concepts = tuple(c for c, _ in read)
    return Aim(concepts, "query", tuple(c for c in concepts if c in set(named)))


@dataclass(frozen=True)
class Check:
    """What a ranking looked for and which of its results are it.

    Attributes:
        aim: the concepts looked for.
        concepts: per result, the aim's concepts it is named or heard as (empty: none).
        each: per concept of ``aim``, how many results are named or heard as it.
    """

    aim: Aim
    concepts: tuple[tuple[str, ...], ...]
    each: dict[str, int]

    @property
    def hits(self) -> list[bool]:
        """Per result: named or heard as any concept of the aim."""
        return [bool(c) for c in self.concepts]

    @property
    def found(self) -> int:
        """Results named or heard as any concept of the aim."""
        return sum(self.hits)

    @property
    def lacking(self) -> list[str]:
        """The concepts to warn about: all of the aim's when no result is any of them; else the ones the query's
        own names named that no result is (a cockatoo named ``parrot`` and read as ``dog``, ranked dogs). A
        reading no result shares, beside a name that found its sounds, is the misreading the caption already
        shows (a cartoon horse read as ``book``), not something the library lacks."""
        if self.concepts and not self.found:
            return list(self.aim.concepts)
        return [c for c in self.aim.named if not self.each.get(c)]

    def text(self, hint: str = "the library may lack it (soundlib library concepts)") -> str:
        """``"4 of 10 named or heard as dog"``; ``"4 of 5 named or heard as dog · none as parrot: the library may
        lack it (soundlib library concepts)"`` when a named concept has none; ``"none of these 5 is named or heard
        as book: ..."`` when no result is any (``hint``: what follows a lack; the page says it its own way)."""
        n, lacking = len(self.concepts), self.lacking
        if n and not self.found:
            return f"none of these {n} is named or heard as {self.aim.subject()}: {hint}"
        have = [c for c in self.aim.concepts if self.each.get(c)]
        subject = "it" if self.aim.source == "as" else " or ".join(have)
        text = f"{self.found} of {n} named or heard as {subject}"
        return text + (f" · none as {' or '.join(lacking)}: {hint}" if lacking else "")

    def to_json(self) -> dict[str, Any]:
        """``{"concepts", "from", "found", "each", "lacking"}`` for ``--json`` (``from``: ``"as"`` or ``"query"``;
        ``each``: concept -> results named or heard as it; ``lacking``: :attr:`lacking`)."""
        return {"concepts": list(self.aim.concepts), "from": self.aim.source, "found": self.found,
                "each": dict(self.each), "lacking": self.lacking}


def check(store: Any, model: Any, aim: Aim, hits: Sequence[Any]) -> Check:
    """Check a ranking (:class:`soundlib.store.Hit`, best first) against ``aim``, from the hits' own metadata
    (their files' descriptions, ``heard`` among them); files written before ingest stored ``heard`` cost one read
    of their vectors by id."""
    from soundlib.concept_coverage import files_concepts

    file_ids = [str(h.metadata.get("file_id", "")) for h in hits]
    of = files_concepts(store, model, {i: h.metadata for i, h in zip(file_ids, hits) if i})
    names = list(model.config.concepts)
    cols = {c: names.index(c) for c in aim.concepts}
    per = tuple(tuple(c for c, col in cols.items() if col in of.get(i, ())) for i in file_ids)
    return Check(aim, per, {c: sum(c in p for p in per) for c in cols})


def check_json(result_check: Check | None, hint: str | None = None) -> dict[str, Any] | None:
    """:meth:`Check.to_json`, or ``None`` when nothing was checked; with ``hint``, also ``"text"``: :meth:`Check.text`
    with that hint (what the web page shows)."""
    if result_check is None:
        return None
    return {**result_check.to_json(), **({"text": result_check.text(hint)} if hint is not None else {})}
