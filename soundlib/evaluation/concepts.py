"""How often each side of a model's concept bridge names the right concept: the weak side, made visible.

A bridged model's embedding (:mod:`encoders.bridge`) ends with its concept part, ``sqrt(w) * unit(concepts)``
over the concept columns ``model.config.concepts``; its largest entry is the concept that side names. On a list
whose rows carry categories, a picture is right when the concept it names is its row's category, a sound window
when it names its sound's category, and a sound file when the mean of its windows' concept parts does. Only
pictures and sounds whose category is one of the model's columns count (the others cannot be named), and a
picture with no concept mass at all names nothing (it counts as wrong).

Retrieval figures say how well the two sides meet; these say which side fails when they do not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["ConceptAccuracy", "concept_accuracy", "concept_part"]


@dataclass(frozen=True)
class ConceptAccuracy:
    """Share of pictures, sound windows and sound files whose named concept is their category.

    Attributes:
        pictures, sound_windows, sound_files: fractions in [0, 1]; ``None`` when none of that kind could count.
        pictures_counted, windows_counted, files_counted: how many counted (their category is a column).
    """

    pictures: float | None
    pictures_counted: int
    sound_windows: float | None
    windows_counted: int
    sound_files: float | None
    files_counted: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def concept_part(model: Any, vectors: np.ndarray) -> np.ndarray | None:
    """The concept columns ``(N, C)`` of ``(N, D)`` embeddings of a bridged model; ``None`` without a bridge."""
    if getattr(model, "bridge", None) is None or not model.config.concepts:
        return None
    return np.asarray(vectors, dtype=np.float32)[:, model.config.embed_dim:]


def _named(concepts: np.ndarray) -> np.ndarray:
    """``(N, C)`` -> ``(N,)`` column of the largest entry; ``-1`` where every entry is 0 (nothing named)."""
    out = concepts.argmax(axis=1)
    out[~(concepts > 0).any(axis=1)] = -1
    return out


def _share(right: list[bool]) -> float | None:
    return float(np.mean(right)) if right else None


def concept_accuracy(model: Any, query_vectors: np.ndarray, query_categories: Sequence[str | None],
                     sounds: Sequence[tuple[np.ndarray, str | None]]) -> ConceptAccuracy | None:
    """Concept accuracy of both sides of ``model``'s bridge on embedded pictures and sounds.

    Args:
        model: the model that made the embeddings (``LoadedModel.model``).
        query_vectors: ``(Q, D)`` picture embeddings.
        query_categories: their categories (``None`` or one that is not a column: not counted).
        sounds: one ``((W, D) window embeddings, category)`` per distinct sound (a whole file, or a list row's
            clip at its start time); "files" below means these.

    Returns:
        :class:`ConceptAccuracy`, or ``None`` for a model without a concept bridge.
    """
    q = concept_part(model, query_vectors)
    if q is None:
        return None
    column = {c.strip().lower(): i for i, c in enumerate(model.config.concepts)}

    def col(category: str | None) -> int | None:
        return None if category is None else column.get(category.strip().lower())

    pictures = [int(n) == c for n, cat in zip(_named(q), query_categories) if (c := col(cat)) is not None]
    windows: list[bool] = []
    files: list[bool] = []
    for vectors, category in sounds:
        c = col(category)
        if c is None or len(vectors) == 0:
            continue
        parts = concept_part(model, vectors)
        assert parts is not None
        windows.extend(int(n) == c for n in _named(parts))
        files.append(int(_named(parts.mean(axis=0, keepdims=True))[0]) == c)
    return ConceptAccuracy(_share(pictures), len(pictures), _share(windows), len(windows), _share(files), len(files))
