"""What the user says a query is (``soundlib query --as WORDS``): concepts named in words steer the ranking.

A bridged model (the default) ranks by ``heads cosine`` and by the cosine of the query's concept part with a
sound's (:mod:`encoders.bridge`). The picture side reads its concepts from an ImageNet classifier of photos: a
cartoon horse reads as ``book`` (ImageNet's ``comic book``), an icon as noise, a parrot the library lacks as
whatever comes second. ``query`` says what it read (:mod:`soundlib.read_as`); when that is wrong the user can say
what the picture is: ``--as horse``. The query's concept part is then **replaced** by the concepts the words name
(equal shares), and its heads' part (how the picture looks) is kept, so the ranking looks for horse sounds that
also suit this picture. Measured on leave-one-source-out folds, replacing the picture's concepts by its right
concept moved top-10 category from 63.9 % to 79.1 % (the model card, "What a perfect side would give").

Words are read like a sound's name (:mod:`soundlib.name_concepts`: the reviewed table
``soundlib/data/concept_words.csv``, a studio's ``$SOUNDLIB_WORDS``, and the concept names themselves, e.g. ``big
cat`` or ``drum kit``), so ``--as "horse gallop"`` names horse and ``--as "dog cat"`` names two. Words naming no
concept are an error that says which words are close. With no picture at all, the words alone make the query
(:func:`words_query`): the sounds whose concept part (their audio, mixed with what their names say) points that
way, the model's answer to "which of my sounds are dogs?" for a library whose names do not say so.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundlib.errors import SoundlibError
from soundlib.name_concepts import NameConcepts, for_model, name_words, named_columns
from soundlib.words import tokens

#: Close words offered when the words name no concept.
SUGGESTIONS = 5


@dataclass(frozen=True)
class Told:
    """Concepts named by the user's words.

    Attributes:
        words: the words as given.
        concepts: the concepts they name, in the model's column order.
        vector: ``(C,)`` float32, 1 for each named concept, else 0.
    """

    words: str
    concepts: tuple[str, ...]
    vector: np.ndarray

    def to_json(self) -> dict[str, Any]:
        """``{"words", "concepts"}`` for ``--json``."""
        return {"words": self.words, "concepts": list(self.concepts)}

    def text(self) -> str:
        """``"ranked as: horse (--as)"``."""
        return "ranked as: " + ", ".join(self.concepts) + " (--as)"


def _require_concepts(model: Any) -> None:
    """Refuse a model without concept columns (one line)."""
    if getattr(model, "bridge", None) is None or not getattr(model.config, "concepts", None):
        raise SoundlibError("--as needs a model with concept columns (the default model has them); "
                            "this model has none")


def _mixing(model: Any) -> NameConcepts:
    _require_concepts(model)
    return for_model(model)


def _phrases(mixing: NameConcepts) -> list[tuple[tuple[str, ...], ...]]:
    """Each column's phrases, with the concept's own name as one more (``drum kit``, ``big cat``)."""
    out = []
    for concept, phrases in zip(mixing.concepts, mixing.phrases):
        own = tuple(name_words(concept))
        out.append(phrases + ((own,) if own and own not in phrases else ()))
    return out


def _known_words(mixing: NameConcepts) -> list[str]:
    """The words and concept names a user may type, as written in the tables (lower case)."""
    from soundlib.lists import read_records
    from soundlib.name_concepts import WORDS_TABLE, user_words

    known = {c.lower() for c in mixing.concepts}
    for table in (WORDS_TABLE, user_words()):
        if table is not None:
            for _, row in read_records(table, ("concept", "words")):
                known |= {w.strip().lower() for w in row["words"].split(";") if w.strip()}
    return sorted(known)


def told_concepts(model: Any, words: str) -> Told:
    """The concepts ``words`` name for ``model``.

    Args:
        model: a bridged model (``loaded.model``).
        words: free text (``"horse"``, ``"Horse gallop"``, ``"dog and cat"``).

    Returns:
        :class:`Told` naming at least one concept.

    Raises:
        SoundlibError: the model has no concept columns, or the words name none of its concepts (the message says
            which known words are close).
    """
    mixing = _mixing(model)
    phrases = _phrases(mixing)
    cols = sorted(named_columns(name_words(words), phrases))
    if not cols:
        known = _known_words(mixing)
        close: list[str] = []
        for w in tokens(words) or [words.strip().lower()]:
            close += [c for c in difflib.get_close_matches(w, known, n=SUGGESTIONS, cutoff=0.75) if c not in close]
        hint = f" (close: {', '.join(close[:SUGGESTIONS])})" if close else ""
        raise SoundlibError(f"--as {words!r} names none of this model's {len(mixing.concepts)} concepts{hint}; "
                            "their words are soundlib/data/concept_words.csv (and $SOUNDLIB_WORDS)")
    vector = np.zeros(len(mixing.concepts), np.float32)
    vector[cols] = 1.0
    return Told(words=words, concepts=tuple(mixing.concepts[i] for i in cols), vector=vector)


def as_told(model: Any, vectors: np.ndarray, told: Told) -> np.ndarray:
    """Query embeddings with their concept part replaced by the told concepts (equal shares).

    Args:
        model: the bridged model that made ``vectors``.
        vectors: ``(N, D)`` unit embeddings (pictures, video frames or sound windows).
        told: from :func:`told_concepts` for the same model.

    Returns:
        ``(N, D)`` float32 unit embeddings: the heads' part as given, the concept part ``sqrt(w) * unit(told)``.
    """
    import torch

    _require_concepts(model)
    if len(vectors) == 0:
        return np.asarray(vectors, np.float32)
    out = model.with_sound_evidence(torch.from_numpy(np.asarray(vectors, np.float32)),
                                    torch.from_numpy(told.vector), 1.0)
    return out.detach().float().cpu().numpy()


def words_query(model: Any, told: Told) -> np.ndarray:
    """``(1, D)`` float32 unit query made of the told concepts alone (heads' part zero): it ranks sounds by their
    concept part only."""
    _require_concepts(model)
    heads = int(model.config.embed_dim)
    out = np.zeros((1, heads + len(told.vector)), np.float32)
    out[0, heads:] = told.vector / np.linalg.norm(told.vector)
    return out
