"""The four losses against values computed by hand (plain Python math loops) on tiny batches."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from encoders.losses import bce_loss, infonce_loss, margin_loss, ntxent_loss


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cos(x: list[float], y: list[float]) -> float:
    dot = sum(a * b for a, b in zip(x, y))
    return dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y)))


def _hand_contrastive(zv: list[list[float]], za: list[list[float]], tau: float, with_positive: bool) -> float:
    """Mean over rows of -log(e^p / denominator), image -> audio, by explicit loops."""
    n = len(zv)
    total = 0.0
    for i in range(n):
        p = _cos(zv[i], za[i]) / tau
        s_neg = sum(math.exp(_cos(zv[i], za[k]) / tau) for k in range(n) if k != i)
        denom = s_neg + math.exp(p) if with_positive else s_neg
        total += -math.log(math.exp(p) / denom)
    return total / n


ZV = [[0.3, -1.2, 0.5], [1.0, 0.2, -0.4], [-0.7, 0.9, 0.1], [0.2, 0.2, 0.8]]
ZA = [[0.1, -1.0, 0.9], [0.8, -0.3, -0.2], [-0.2, 0.4, 0.6], [-1.0, 0.1, 0.3]]


def test_bce_loss_matches_hand_value() -> None:
    logits = [[0.2, -0.1], [1.5, 0.3], [-0.7, 0.4]]
    labels = [1, 0, 1]
    hand = sum(-math.log(math.exp(l[y]) / (math.exp(l[0]) + math.exp(l[1]))) for l, y in zip(logits, labels)) / 3
    got = bce_loss(torch.tensor(logits, dtype=torch.float64), torch.tensor(labels))
    assert got.item() == pytest.approx(hand, abs=1e-12)
    # float labels are accepted; a wrong logits shape is refused
    assert bce_loss(torch.tensor(logits), torch.tensor(labels, dtype=torch.float32)).item() == pytest.approx(hand, 1e-6)
    with pytest.raises(ValueError):
        bce_loss(torch.zeros(3, 3), torch.tensor(labels))


def test_margin_loss_matches_hand_value() -> None:
    dist = [0.05, 0.3, 0.02, 0.5, 0.09]
    labels = [1, 0, 0, 1, 0]
    m = 0.1
    sq = sum(y * d * d + (1 - y) * max(0.0, m - d) ** 2 for d, y in zip(dist, labels)) / 5
    lin = sum(y * d + (1 - y) * max(0.0, m - d) for d, y in zip(dist, labels)) / 5
    d_t, y_t = torch.tensor(dist, dtype=torch.float64), torch.tensor(labels)
    assert margin_loss(d_t, y_t, margin=m).item() == pytest.approx(sq, abs=1e-12)
    assert margin_loss(d_t, y_t, margin=m, squared=False).item() == pytest.approx(lin, abs=1e-12)
    # uncorrelated pairs beyond the margin and correlated pairs at distance 0 cost nothing
    assert margin_loss(torch.tensor([0.0, 0.2]), torch.tensor([1, 0]), margin=m).item() == 0.0


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_infonce_and_ntxent_match_hand_values(tau: float) -> None:
    zv, za = torch.tensor(ZV, dtype=torch.float64), torch.tensor(ZA, dtype=torch.float64)
    assert infonce_loss(zv, za, tau=tau).item() == pytest.approx(_hand_contrastive(ZV, ZA, tau, True), abs=1e-12)
    assert ntxent_loss(zv, za, tau=tau).item() == pytest.approx(_hand_contrastive(ZV, ZA, tau, False), abs=1e-12)
    # symmetric mode = mean of both directions (audio -> image is the transposed problem)
    both = 0.5 * (_hand_contrastive(ZV, ZA, tau, True) + _hand_contrastive(ZA, ZV, tau, True))
    assert infonce_loss(zv, za, tau=tau, symmetric=True).item() == pytest.approx(both, abs=1e-12)
    both = 0.5 * (_hand_contrastive(ZV, ZA, tau, False) + _hand_contrastive(ZA, ZV, tau, False))
    assert ntxent_loss(zv, za, tau=tau, symmetric=True).item() == pytest.approx(both, abs=1e-12)


def test_infonce_is_cross_entropy_on_cosine_matrix_and_scale_invariant() -> None:
    g = torch.Generator().manual_seed(3)
    zv, za = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    cos = torch.nn.functional.cosine_similarity(zv[:, None, :], za[None, :, :], dim=2)
    ref = torch.nn.functional.cross_entropy(cos / 0.5, torch.arange(6))
    assert infonce_loss(zv, za, tau=0.5).item() == pytest.approx(ref.item(), abs=1e-6)
    # cosine similarity: rescaling the vectors changes nothing
    assert infonce_loss(3.0 * zv, 0.2 * za).item() == pytest.approx(infonce_loss(zv, za).item(), abs=1e-6)
    assert ntxent_loss(3.0 * zv, 0.2 * za).item() == pytest.approx(ntxent_loss(zv, za).item(), abs=1e-6)
    # aligned pairs cost less than shuffled ones
    assert infonce_loss(zv, zv).item() < infonce_loss(zv, za).item()


def test_contrastive_edge_cases() -> None:
    z = torch.randn(1, 4)
    assert infonce_loss(z, z).item() == pytest.approx(0.0, abs=1e-7)  # one pair: nothing to confuse it with
    with pytest.raises(ValueError, match="at least 2"):
        ntxent_loss(z, z)
    with pytest.raises(ValueError):
        infonce_loss(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError):
        infonce_loss(torch.randn(3, 4), torch.randn(3, 4), tau=0.0)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 6), d=st.integers(2, 5), seed=st.integers(0, 10_000), symmetric=st.booleans(),
       tau=st.floats(0.05, 2.0))
def test_infonce_and_ntxent_differ_exactly_by_the_positive_in_the_denominator(
        n: int, d: int, seed: int, symmetric: bool, tau: float) -> None:
    """Per row: infonce_i = -log(e^p / (e^p + S_neg)), ntxent_i = -log(e^p / S_neg)
    => infonce_i - ntxent_i = log(1 + e^p / S_neg); the batch losses are the means of these."""
    g = torch.Generator().manual_seed(seed)
    zv, za = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)

    def gap(a: torch.Tensor, b: torch.Tensor) -> float:
        s = torch.nn.functional.cosine_similarity(a[:, None, :], b[None, :, :], dim=2) / tau
        total = 0.0
        for i in range(n):
            p = s[i, i].item()
            s_neg = sum(math.exp(s[i, k].item()) for k in range(n) if k != i)
            total += math.log1p(math.exp(p) / s_neg)
        return total / n

    expected = gap(zv, za) if not symmetric else 0.5 * (gap(zv, za) + gap(za, zv))
    diff = infonce_loss(zv, za, tau=tau, symmetric=symmetric) - ntxent_loss(zv, za, tau=tau, symmetric=symmetric)
    assert diff.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert diff.item() > 0  # the positive in the denominator always raises the loss


def test_losses_backpropagate() -> None:
    zv = torch.randn(4, 8, requires_grad=True)
    za = torch.randn(4, 8, requires_grad=True)
    (infonce_loss(zv, za) + ntxent_loss(zv, za)).backward()
    assert zv.grad is not None and torch.isfinite(zv.grad).all() and zv.grad.abs().sum() > 0
    dist = torch.tensor([0.0, 0.05], requires_grad=True)
    margin_loss(dist, torch.tensor([1, 0])).backward()
    assert torch.allclose(dist.grad, torch.tensor([0.0, -2 * 0.05 / 2]))  # d/dd of mean((m-d)^2) at d=.05
