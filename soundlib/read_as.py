"""What a picture query was read as: the concepts its embedding points at (bridged models, e.g. the default).

A bridged embedding ends with one column per concept (:mod:`encoders.bridge`): the picture's ImageNet softmax pooled
per concept and L2-normalised. Its dot product with a sound's concept part weighs the bridge weight (0.7 for the
default) of how the sound ranks, so those columns say why a ranking is what it is: a video frame of a white cockatoo
that reads as "dog 98 %" gets dog barks, and the user knows to filter (``--category bird``) rather than to distrust
the library.

A concept's share is its squared component of the unit concept part: the shares sum to 1 and say how much of the
concept direction each concept holds. For several pictures (a video) it is read from the query the ranking used,
their normalised mean; for a sound query, from the mean of its windows (its classifier's concepts and, for a named
file, what its name says).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Concepts listed at most, and the smallest share listed.
READ_AS_TOP, READ_AS_FLOOR = 3, 0.01


def read_as(model: Any, vector: np.ndarray, top: int = READ_AS_TOP,
            floor: float = READ_AS_FLOOR) -> list[tuple[str, float]] | None:
    """The concepts a query embedding points at, most first.

    Args:
        model: the query's model (a :class:`encoders.pretrained.PretrainedAVModel` with a bridge; any other model,
            or ``None``, gives ``None``).
        vector: ``(D,)`` one query embedding of that model.
        top: concepts listed at most.
        floor: smallest share listed (shares are in [0, 1] and sum to 1 over all concepts).

    Returns:
        ``[(concept, share), ...]`` (empty when the picture reads as no concept at all); ``None`` for a model
        without concept columns.
    """
    bridge = getattr(model, "bridge", None)
    if bridge is None:
        return None
    heads = int(model.config.embed_dim)
    part = np.asarray(vector, dtype=np.float64).reshape(-1)[heads:]
    energy = float(np.sum(part ** 2))
    if energy <= 1e-12:
        return []
    shares = part ** 2 / energy
    names = list(model.config.concepts)
    order = np.argsort(-shares, kind="stable")[:max(0, int(top))]
    return [(names[i], round(float(shares[i]), 4)) for i in order if shares[i] >= floor]


def read_as_json(concepts: list[tuple[str, float]] | None) -> list[dict[str, Any]] | None:
    """``[{"concept", "share"}]`` for ``--json`` (``None`` stays ``None``)."""
    return None if concepts is None else [{"concept": c, "share": s} for c, s in concepts]


def read_as_text(concepts: list[tuple[str, float]] | None) -> str:
    """``"read as: dog 98 % · parrot 1 %"`` (``""`` for a model without concepts)."""
    if concepts is None:
        return ""
    if not concepts:
        return "read as: no concept"
    return "read as: " + " · ".join(f"{c} {round(s * 100)} %" for c, s in concepts)
