"""The scoring core of ``soundlib eval`` and of training's validation: vectors and labels in, metrics out.

Pure numpy (:mod:`soundlib.metrics`): no torch, no Chroma, no files. A *query* is a frame's embedding; its ground
truth is its own clip's *sample* label and *category*; a *candidate* is a sample, represented by one or more
vectors (a whole file's windows), its distance being that of its nearest vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundlib import metrics as M

__all__ = ["RetrievalScores", "score_vectors"]


@dataclass
class RetrievalScores:
    """Retrieval metrics of one model on one set of queries and candidates.

    Attributes:
        ks: the cut-offs, ascending.
        topk: ``{k: (sample accuracy, category accuracy or None)}`` (fractions in [0, 1]).
        chance: ``{k: (sample chance, category chance or None)}``.
        mrr: mean reciprocal rank of the own sample (exact full ranking; exact ties broken at random, in
            expectation: see :func:`soundlib.metrics.reciprocal_ranks`).
        ranks: (Q,) 1-based rank of each query's own sample: its position in ``ranked`` when listed there,
            else 1 + the number of candidates strictly closer (at least ``len(ranked) + 1``).
        n_queries, n_candidates: Q and N.
        ranked: per query, the indices (into ``samples``) of its top ``max(ks)`` candidates, nearest first.
        distances: per query, their distances.
        samples: the candidate sample labels (N), in order of first appearance.
        sample_categories: each candidate's category (N; ``None`` when unknown).
        agreement: mean fraction of the exact top-``max(ks)`` found in ``ranked`` (1.0 when ``ranked`` is the exact
            ranking; below 1 when the given ranking, e.g. Chroma's, missed some exact neighbours).
    """

    ks: list[int]
    topk: dict[int, tuple[float, float | None]]
    chance: dict[int, tuple[float, float | None]]
    mrr: float
    ranks: np.ndarray
    n_queries: int
    n_candidates: int
    ranked: list[list[int]]
    distances: list[list[float]]
    samples: list[str]
    sample_categories: list[str | None]
    agreement: float = 1.0

    def to_json(self, model: str) -> dict[str, Any]:
        """The per-model part of the ``--json`` document."""
        return {
            "model": model,
            "topk": {str(k): {"sample": s, "category": c} for k, (s, c) in self.topk.items()},
            "chance": {str(k): {"sample": s, "category": c} for k, (s, c) in self.chance.items()},
            "mrr": self.mrr,
        }


def _index_labels(labels: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    order: dict[str, int] = {}
    for lab in labels:
        if lab not in order:
            order[lab] = len(order)
    return list(order), order


def score_vectors(
    query_vectors: np.ndarray,
    query_samples: Sequence[str],
    query_categories: Sequence[str | None] | None,
    candidate_vectors: np.ndarray,
    candidate_samples: Sequence[str],
    candidate_categories: Sequence[str | None] | None,
    ks: Iterable[int],
    ranked: Sequence[Sequence[str]] | None = None,
    ranked_distances: Sequence[Sequence[float]] | None = None,
) -> RetrievalScores:
    """Score a retrieval: which candidate samples are nearest to each query, against the ground truth.

    Args:
        query_vectors: (Q, D) query embeddings (L2-normalised).
        query_samples: (Q,) each query's own sample label (must be one of ``candidate_samples``).
        query_categories: (Q,) each query's category, or ``None``; category metrics are computed only when every
            query has one.
        candidate_vectors: (M, D) candidate vectors; several may share a sample (a file's windows): a sample's
            distance is the minimum over its vectors.
        candidate_samples: (M,) sample label of each vector.
        candidate_categories: (M,) category of each vector (a sample takes its first vector's), or ``None``.
        ks: cut-offs; exactly ``min(k, N)`` results count for each.
        ranked: optional per-query ranked sample labels from another search (Chroma), at least
            ``min(max(ks), N)`` long, used for the top-k figures instead of the exact ranking; the MRR always
            comes from the exact full ranking.
        ranked_distances: the distances that go with ``ranked`` (reported as they are).

    Returns:
        :class:`RetrievalScores`.

    Raises:
        ValueError: shapes disagree, a query's sample is not a candidate, or a ranking is too short.
    """
    ks = M.parse_ks(list(ks))
    q = np.asarray(query_vectors, dtype=np.float32)
    c = np.asarray(candidate_vectors, dtype=np.float32)
    if q.ndim != 2 or c.ndim != 2 or q.shape[1] != c.shape[1]:
        raise ValueError(f"vectors must be (Q, D) and (M, D), got {q.shape} and {c.shape}")
    if len(query_samples) != len(q) or len(candidate_samples) != len(c):
        raise ValueError("one sample label per vector is needed")
    if len(q) == 0 or len(c) == 0:
        raise ValueError("no queries or no candidates")
    samples, index = _index_labels(candidate_samples)
    n = len(samples)
    groups = np.array([index[s] for s in candidate_samples], dtype=np.int64)
    cats: list[str | None] = [None] * n
    if candidate_categories is not None:
        seen: set[int] = set()
        for g, cat in zip(groups.tolist(), candidate_categories):
            if g not in seen:
                seen.add(g)
                cats[g] = cat
    missing = [s for s in query_samples if s not in index]
    if missing:
        raise ValueError(f"{len(missing)} query sample(s) are not candidates, e.g. {missing[0]!r}")
    truth = np.array([index[s] for s in query_samples], dtype=np.int64)

    dist = M.group_min(q, c, groups, n)
    rr = M.reciprocal_ranks(dist, truth)
    exact_ranks = M.truth_ranks(dist, truth)
    kmax = min(ks[-1], n)
    exact_idx, exact_dist = M.exact_topk(dist, kmax)
    if ranked is None:
        top = exact_idx.tolist()
        top_dist = exact_dist.tolist()
        agreement = 1.0
    else:
        if len(ranked) != len(q):
            raise ValueError(f"{len(ranked)} rankings for {len(q)} queries")
        top = []
        for labels in ranked:
            if len(labels) < kmax:
                raise ValueError(f"a ranking holds {len(labels)} results, {kmax} needed")
            top.append([index[s] for s in list(labels)[:kmax]])
        if ranked_distances is not None:
            top_dist = [list(map(float, d))[:kmax] for d in ranked_distances]
        else:
            top_dist = [dist[i, t].tolist() for i, t in enumerate(top)]
        agreement = float(np.mean([len(set(t) & set(e)) / kmax for t, e in zip(top, exact_idx.tolist())]))

    ranks = np.array([t.index(g) + 1 if g in t else max(len(t) + 1, int(r))
                      for t, g, r in zip(top, truth.tolist(), exact_ranks)], dtype=np.int64)
    sample_acc = M.topk_accuracy(top, truth.tolist(), ks)
    with_categories = (query_categories is not None and len(query_categories) == len(q)
                       and all(cat is not None for cat in query_categories))
    cat_acc: dict[int, float | None] = {k: None for k in ks}
    cat_chance: dict[int, float | None] = {k: None for k in ks}
    if with_categories:
        ranked_cats = [[cats[i] for i in t] for t in top]
        cat_acc = dict(M.topk_accuracy(ranked_cats, list(query_categories), ks))  # type: ignore[arg-type]
        cat_chance = {k: M.category_chance(k, list(query_categories), cats) for k in ks}  # type: ignore[arg-type]
    return RetrievalScores(
        ks=ks,
        topk={k: (sample_acc[k], cat_acc[k]) for k in ks},
        chance={k: (M.sample_chance(k, n), cat_chance[k]) for k in ks},
        mrr=float(np.mean(rr)),
        ranks=ranks,
        n_queries=len(q),
        n_candidates=n,
        ranked=top,
        distances=top_dist,
        samples=samples,
        sample_categories=cats,
        agreement=agreement,
    )
