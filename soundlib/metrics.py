"""Retrieval metrics of the paper (pure numpy): top-k sample/category accuracy, their chance levels, MRR.

Vocabulary:

- a *query* is one image frame; its ground truth is its own clip's *sample* label and its *category*;
- a *candidate* is one sample of the search list (the unit ranked and counted); a candidate may be represented by
  several vectors (the windows of a whole file, or several clips sharing one sample label): its distance to a query
  is the minimum over its vectors (see :func:`group_min`);
- a *ranking* lists candidates by increasing Euclidean distance; top-k means its first ``k`` entries, exactly
  ``k`` of them (``min(k, N)`` when the list holds fewer candidates).

Nothing here touches files, models or Chroma, so every figure can be checked by hand.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

__all__ = [
    "parse_ks", "pairwise_l2", "group_min", "group_mean", "exact_topk", "truth_ranks", "reciprocal_ranks",
    "topk_accuracy",
    "mean_reciprocal_rank", "sample_chance", "category_chance", "hit_probability",
]

#: Upper bound of the (queries x vectors) distance block held in memory at once, in matrix elements.
_BLOCK_ELEMENTS = 4_000_000


def parse_ks(text: str | Iterable[int]) -> list[int]:
    """Parse the cut-offs ``"1,5,10"`` (or an iterable of ints) into a sorted list of distinct positive ints.

    Raises:
        ValueError: an entry is not a positive integer, or there is none.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    ks: set[int] = set()
    for item in items:
        s = str(item).strip()
        if not s:
            continue
        try:
            k = int(s)
        except ValueError:
            raise ValueError(f"bad k {s!r} (expected positive integers like 1,5,10)") from None
        if k < 1:
            raise ValueError(f"bad k {k} (must be >= 1)")
        ks.add(k)
    if not ks:
        raise ValueError("no k given (expected positive integers like 1,5,10)")
    return sorted(ks)


def pairwise_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` (Q, D) and ``b`` (M, D), computed in float64.

    Returns:
        (Q, M) float64 array of distances (>= 0).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise_l2 needs (Q, D) and (M, D) arrays, got {a.shape} and {b.shape}")
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def group_min(query_vectors: np.ndarray, vectors: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Distance of every query to every candidate, a candidate's distance being the minimum over its vectors.

    Args:
        query_vectors: (Q, D) query embeddings.
        vectors: (M, D) candidate vectors (windows).
        groups: (M,) int candidate index of each vector, each of ``0 .. n_groups - 1`` used at least once.
        n_groups: number of candidates N.

    Returns:
        (Q, N) float64 distances. Computed in blocks of queries, so M may be large.
    """
    groups = np.asarray(groups, dtype=np.int64)
    vectors = np.asarray(vectors)
    if groups.shape != (vectors.shape[0],):
        raise ValueError(f"groups must have one entry per vector: {groups.shape} vs {vectors.shape[0]} vectors")
    if len(groups) and (groups.min() < 0 or groups.max() >= n_groups):
        raise ValueError("group index out of range")
    if len(np.unique(groups)) != n_groups:
        raise ValueError("every candidate needs at least one vector")
    order = np.argsort(groups, kind="stable")
    sorted_vectors = vectors[order]
    starts = np.flatnonzero(np.r_[True, np.diff(groups[order]) != 0])
    q = np.asarray(query_vectors)
    out = np.empty((q.shape[0], n_groups), dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // max(1, len(groups)))
    for i in range(0, q.shape[0], step):
        d = pairwise_l2(q[i:i + step], sorted_vectors)
        out[i:i + step] = np.minimum.reduceat(d, starts, axis=1)
    return out


def group_mean(vectors: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of each candidate's vectors, re-normalised to unit L2 norm (the "mean of windows" file score).

    Args:
        vectors: (M, D) L2-normalised vectors.
        groups: (M,) candidate index of each vector.
        n_groups: number of candidates N (each must own at least one vector).

    Returns:
        (N, D) float32 unit vectors (a zero mean stays zero).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    counts = np.bincount(groups, minlength=n_groups)
    if (counts == 0).any():
        raise ValueError("every candidate needs at least one vector")
    sums = np.zeros((n_groups, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, groups, vectors)
    means = sums / counts[:, None]
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def exact_topk(distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-k of each query: exactly ``min(k, N)`` candidates, nearest first, ties by candidate index.

    Args:
        distances: (Q, N) query-candidate distances.
        k: cut-off.

    Returns:
        ``(indices, distances)``, both (Q, min(k, N)).
    """
    distances = np.asarray(distances, dtype=np.float64)
    kk = min(int(k), distances.shape[1])
    idx = np.argsort(distances, axis=1, kind="stable")[:, :kk]
    return idx, np.take_along_axis(distances, idx, axis=1)


def truth_ranks(distances: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each query's own candidate in the full exact ranking.

    The rank is 1 + the number of candidates strictly closer than the own one (ties count in the query's favour).

    Args:
        distances: (Q, N) query-candidate distances.
        truth: (Q,) index of each query's own candidate.

    Returns:
        (Q,) int64 ranks in ``1 .. N``.
    """
    distances = np.asarray(distances, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    own = distances[np.arange(len(truth)), truth]
    return 1 + (distances < own[:, None]).sum(axis=1).astype(np.int64)


def reciprocal_ranks(distances: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each query's reciprocal rank of its own candidate, ties broken uniformly at random (in expectation).

    With ``a = 1 +`` (candidates strictly closer) and ``t`` other candidates at exactly the same distance, the own
    candidate's rank is uniform on ``a .. a + t``, so the expected reciprocal rank is
    ``(H(a + t) - H(a - 1)) / (t + 1)`` (``H`` = harmonic numbers). Without ties this is ``1 / a``.

    Args:
        distances: (Q, N) query-candidate distances.
        truth: (Q,) index of each query's own candidate.

    Returns:
        (Q,) float64 in (0, 1].
    """
    distances = np.asarray(distances, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    own = distances[np.arange(len(truth)), truth][:, None]
    a = 1 + (distances < own).sum(axis=1)
    t = (distances == own).sum(axis=1) - 1
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, distances.shape[1] + 1))])
    return (harmonic[a + t] - harmonic[a - 1]) / (t + 1)


def mean_reciprocal_rank(ranks: Sequence[float] | np.ndarray) -> float:
    """Mean of ``1 / rank`` over queries (ranks 1-based; fractional ranks allowed)."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no queries")
    if (r < 1).any():
        raise ValueError("ranks are 1-based")
    return float(np.mean(1.0 / r))


def topk_accuracy(ranked: Sequence[Sequence[Hashable]], truth: Sequence[Hashable],
                  ks: Iterable[int]) -> dict[int, float]:
    """Fraction of queries whose ground-truth label is among the first ``k`` entries of their ranked labels.

    Args:
        ranked: per query, the labels of its ranked results (nearest first; at least ``min(max(ks), N)`` long).
        truth: per query, the ground-truth label.
        ks: cut-offs.

    Returns:
        ``{k: fraction in [0, 1]}``.
    """
    if len(ranked) != len(truth):
        raise ValueError(f"{len(ranked)} rankings for {len(truth)} queries")
    if not truth:
        raise ValueError("no queries")
    out: dict[int, float] = {}
    for k in ks:
        hits = sum(1 for labels, t in zip(ranked, truth) if t in list(labels)[:k])
        out[int(k)] = hits / len(truth)
    return out


def sample_chance(k: int, n_candidates: int) -> float:
    """Chance of the own sample being in a random top-k of ``n_candidates``: ``min(1, k / N)``."""
    if n_candidates < 1:
        raise ValueError("no candidates")
    return min(1.0, k / n_candidates)


def hit_probability(k: int, n_candidates: int, n_matching: int) -> float:
    """P(at least one of ``k`` candidates drawn without replacement from ``N`` is one of the ``n_matching``).

    Hypergeometric: ``1 - C(N - n, k) / C(N, k)``, computed with exact integers (``k`` is capped at ``N``).
    """
    if not 0 <= n_matching <= n_candidates:
        raise ValueError(f"bad counts: {n_matching} matching of {n_candidates}")
    k = min(int(k), n_candidates)
    if n_matching == 0 or k == 0:
        return 0.0
    if n_candidates - n_matching < k:
        return 1.0
    return 1.0 - math.comb(n_candidates - n_matching, k) / math.comb(n_candidates, k)


def category_chance(k: int, query_categories: Sequence[Hashable], candidate_categories: Sequence[Hashable]) -> float:
    """Expected top-k category accuracy under a uniformly random ranking of the candidates.

    For a query of category ``c``, with ``n_c`` of the ``N`` candidates in ``c``, the chance is
    :func:`hit_probability` ``(k, N, n_c)``; the result is its mean over the queries.

    Args:
        k: cut-off.
        query_categories: (Q,) each query's category.
        candidate_categories: (N,) each candidate's category (``None`` never matches).
    """
    if not query_categories:
        raise ValueError("no queries")
    n = len(candidate_categories)
    counts = Counter(c for c in candidate_categories if c is not None)
    cache: dict[Hashable, float] = {}
    total = 0.0
    for c in query_categories:
        if c not in cache:
            cache[c] = hit_probability(k, n, counts.get(c, 0)) if c is not None else 0.0
        total += cache[c]
    return total / len(query_categories)
