"""The pure retrieval metrics (soundlib.metrics): hand-checked figures, brute force and simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundlib import metrics as M


def test_parse_ks_sorts_and_dedups():
    assert M.parse_ks("10, 1,5,5") == [1, 5, 10]
    assert M.parse_ks([3, 1]) == [1, 3]
    for bad in ("0", "a", "", "1,-2"):
        with pytest.raises(ValueError):
            M.parse_ks(bad)


def test_pairwise_l2_matches_naive():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(7, 6))
    naive = np.array([[np.linalg.norm(x - y) for y in b] for x in a])
    np.testing.assert_allclose(M.pairwise_l2(a, b), naive, atol=1e-9)
    assert M.pairwise_l2(a, a).diagonal().max() < 1e-6


def test_group_min_takes_best_vector_per_candidate(monkeypatch):
    q = np.array([[0.0, 0.0], [10.0, 0.0]])
    vectors = np.array([[3.0, 0.0], [1.0, 0.0], [9.0, 0.0], [0.0, 2.0], [12.0, 0.0]])
    groups = np.array([0, 0, 1, 2, 1])  # candidate 0: x=3 and x=1; 1: x=9 and x=12; 2: (0, 2)
    expected = np.array([[1.0, 9.0, 2.0], [7.0, 1.0, math.hypot(10, 2)]])
    np.testing.assert_allclose(M.group_min(q, vectors, groups, 3), expected)
    monkeypatch.setattr(M, "_BLOCK_ELEMENTS", 1)  # one query per block: same answer
    np.testing.assert_allclose(M.group_min(q, vectors, groups, 3), expected)
    with pytest.raises(ValueError):
        M.group_min(q, vectors, groups, 4)  # candidate 3 has no vector


def test_group_mean_renormalises():
    v = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    out = M.group_mean(v, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(out, [[2 ** -0.5, 2 ** -0.5], [0.0, -1.0]], atol=1e-6)


def test_exact_topk_returns_exactly_k_and_caps_at_n():
    d = np.array([[0.3, 0.1, 0.2, 0.1]])
    idx, dist = M.exact_topk(d, 2)
    assert idx.tolist() == [[1, 3]]  # tie broken by candidate index
    np.testing.assert_allclose(dist, [[0.1, 0.1]])
    idx, _ = M.exact_topk(d, 10)
    assert idx.shape == (1, 4) and sorted(idx[0].tolist()) == [0, 1, 2, 3]


def test_truth_ranks_and_mrr_by_hand():
    d = np.array([[0.5, 0.1, 0.9], [0.2, 0.3, 0.1], [0.4, 0.4, 0.0]])
    ranks = M.truth_ranks(d, np.array([0, 1, 0]))
    assert ranks.tolist() == [2, 3, 2]  # third query: candidate 2 is closer, candidate 1 ties (not counted)
    assert M.mean_reciprocal_rank(ranks) == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert M.mean_reciprocal_rank([1, 1]) == 1.0
    with pytest.raises(ValueError):
        M.mean_reciprocal_rank([])


def test_reciprocal_ranks_break_ties_at_random_in_expectation():
    d = np.array([[0.5, 0.1, 0.9], [0.2, 0.2, 0.2], [0.3, 0.1, 0.3]])
    rr = M.reciprocal_ranks(d, np.array([0, 1, 2]))
    # q0: rank 2, no tie; q1: three-way tie -> rank 1, 2 or 3; q2: one closer, one tie -> rank 2 or 3
    np.testing.assert_allclose(rr, [1 / 2, (1 + 1 / 2 + 1 / 3) / 3, (1 / 2 + 1 / 3) / 2])
    rng = np.random.default_rng(5)  # against simulation: shuffle tied candidates, average 1/position
    d = rng.integers(0, 4, size=(6, 9)).astype(float)
    truth = rng.integers(0, 9, size=6)
    sim = np.zeros(6)
    for _ in range(4000):
        perm = rng.permutation(9)
        order = np.lexsort((perm[None, :].repeat(6, 0), d), axis=1)
        sim += 1.0 / (1 + np.argmax(order == truth[:, None], axis=1))
    np.testing.assert_allclose(sim / 4000, M.reciprocal_ranks(d, truth), atol=0.03)


def test_topk_accuracy_by_hand():
    ranked = [["a", "b", "c"], ["b", "a", "c"], ["c", "b", "a"], ["b", "c", "d"]]
    truth = ["a", "a", "a", "a"]
    assert M.topk_accuracy(ranked, truth, [1, 2, 3]) == {1: 0.25, 2: 0.5, 3: 0.75}


def test_sample_chance():
    assert M.sample_chance(1, 4) == 0.25
    assert M.sample_chance(10, 4) == 1.0
    with pytest.raises(ValueError):
        M.sample_chance(1, 0)


@pytest.mark.parametrize("n,n_c,k", [(6, 2, 1), (6, 2, 3), (7, 3, 4), (5, 5, 2), (5, 0, 3), (4, 1, 4), (4, 2, 9)])
def test_hit_probability_equals_enumeration(n, n_c, k):
    """Exact: enumerate every k-subset of N candidates of which the first n_c match."""
    kk = min(k, n)
    subsets = list(itertools.combinations(range(n), kk))
    brute = sum(1 for s in subsets if any(i < n_c for i in s)) / len(subsets)
    assert M.hit_probability(k, n, n_c) == pytest.approx(brute, abs=1e-12)


def test_hit_probability_large_counts_is_finite_and_monotone():
    ps = [M.hit_probability(k, 200_000, 37) for k in (1, 10, 100, 1000)]
    assert ps[0] == pytest.approx(37 / 200_000)
    assert all(0 < a < b < 1 for a, b in zip(ps, ps[1:]))


def test_category_chance_against_monte_carlo():
    """Shuffle the candidates at random many times and count category hits; compare within 5 standard errors."""
    rng = np.random.default_rng(1)
    candidates = ["dog"] * 3 + ["cat"] * 7 + ["car"] * 1 + [None] * 2 + ["sea"] * 12
    queries = ["dog", "cat", "car", "sea", "dog", "bird"]
    trials, k = 20_000, 3
    cand = np.array([c if c is not None else "" for c in candidates])
    hits = np.zeros(len(queries))
    for _ in range(trials):
        top = set(cand[rng.permutation(len(cand))[:k]].tolist())
        hits += [q in top for q in queries]
    simulated = hits.mean() / trials
    exact = M.category_chance(k, queries, candidates)
    per_query = np.array([M.hit_probability(k, len(cand), candidates.count(q)) for q in queries])
    se = math.sqrt((per_query * (1 - per_query)).sum()) / len(queries) / math.sqrt(trials)
    assert abs(simulated - exact) < 5 * se + 1e-12
    assert exact == pytest.approx(per_query.mean())
    assert M.category_chance(100, ["dog"], candidates) == 1.0
    assert M.category_chance(5, ["bird"], candidates) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(2, 12), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_topk_from_ranking_agrees_with_truth_ranks(q, n, k, seed):
    """With distinct distances, 'own sample in the exact top-k' is the same event as 'rank <= k'."""
    rng = np.random.default_rng(seed)
    d = rng.permutation(q * n).reshape(q, n).astype(float)  # all distinct
    truth = rng.integers(0, n, size=q)
    idx, _ = M.exact_topk(d, k)
    assert idx.shape == (q, min(k, n))
    acc = M.topk_accuracy(idx.tolist(), truth.tolist(), [k])[k]
    ranks = M.truth_ranks(d, truth)
    assert acc == pytest.approx(float(np.mean(ranks <= k)))
    np.testing.assert_allclose(M.reciprocal_ranks(d, truth), 1.0 / ranks)
    assert 1 <= ranks.min() and ranks.max() <= n
