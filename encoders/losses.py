"""The paper's four training losses, as pure functions on tensors (all return a scalar mean over the batch).

Conventions: label 1 = the image and the sound belong together (correlated), 0 = not. ``zv[i]`` and ``za[i]`` are a
positive pair; every ``za[k]``, ``k != i``, is a negative for ``zv[i]``.

- :func:`bce_loss` — 2-way softmax cross-entropy on the correlation head's logits (= binary cross-entropy of the
  softmax probability of "correlated").
- :func:`margin_loss` — Hadsell et al. (2006) contrastive loss on the embedding distance ``d``:
  ``y * d**2 + (1 - y) * max(0, m - d)**2`` averaged over the batch (no 1/2 factor). The paper's Eq. 1 prints the
  same loss without the squares; ``squared=False`` gives that form.
- :func:`infonce_loss` — cross-entropy over the N x N matrix ``s[i, k] = cos(zv[i], za[k]) / tau`` with the
  diagonal as targets: ``-log(e^{s_ii} / sum_k e^{s_ik})`` averaged over ``i`` (image -> audio, as the paper).
- :func:`ntxent_loss` — the paper's Eq. 2: the same with the positive left out of the denominator,
  ``-log(e^{s_ii} / sum_{k != i} e^{s_ik})``.

Both contrastive losses default to the paper's single direction (image -> audio); ``symmetric=True`` averages it
with the audio -> image direction (the transposed matrix). Per row, with ``p = s_ii`` and
``S_neg = sum_{k != i} e^{s_ik}``: ``infonce_i = -log(e^p / (e^p + S_neg))`` and ``ntxent_i = -log(e^p / S_neg)``,
in either mode, so ``infonce_i - ntxent_i = log(1 + e^p / S_neg) > 0`` exactly (NT-Xent can go negative).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def _real(x: Tensor) -> Tensor:
    """float32 (or float64 if given float64: hand-checked tests use double precision)."""
    return x if x.dtype == torch.float64 else x.float()


def bce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of 2-way logits against 0/1 labels.

    Args:
        logits: ``(B, 2)`` — ``[uncorrelated, correlated]``.
        labels: ``(B,)`` of 0/1 (any dtype).

    Returns:
        scalar, mean over the batch of ``-log softmax(logits)[label]``.
    """
    if logits.dim() != 2 or logits.shape[1] != 2:
        raise ValueError(f"logits must be (B, 2), got {tuple(logits.shape)}")
    return F.cross_entropy(_real(logits), labels.to(device=logits.device).long().reshape(-1))


def margin_loss(dist: Tensor, labels: Tensor, margin: float = 0.1, squared: bool = True) -> Tensor:
    """Margin-based contrastive loss (Hadsell, Chopra, LeCun 2006).

    Args:
        dist: ``(B,)`` Euclidean distances between the two embeddings of each pair.
        labels: ``(B,)`` 1 for a correlated pair, 0 for an uncorrelated one.
        margin: ``m``; uncorrelated pairs closer than ``m`` are pushed apart.
        squared: ``True`` (default) -> ``y d^2 + (1 - y) max(0, m - d)^2``; ``False`` -> the paper's printed Eq. 1,
            ``y d + (1 - y) max(0, m - d)``.

    Returns:
        scalar mean over the batch.
    """
    dist = _real(dist).reshape(-1)
    y = labels.to(device=dist.device, dtype=dist.dtype).reshape(-1)
    hinge = torch.clamp(margin - dist, min=0.0)
    if squared:
        per_pair = y * dist.square() + (1.0 - y) * hinge.square()
    else:
        per_pair = y * dist + (1.0 - y) * hinge
    return per_pair.mean()


def similarity_logits(zv: Tensor, za: Tensor, tau: float) -> Tensor:
    """``s[i, k] = cos(zv[i], za[k]) / tau`` as an ``(N, N)`` float32 matrix (float64 for float64 inputs)."""
    if zv.shape != za.shape or zv.dim() != 2:
        raise ValueError(f"zv and za must both be (N, D), got {tuple(zv.shape)} and {tuple(za.shape)}")
    if tau <= 0:
        raise ValueError(f"temperature must be > 0, got {tau}")
    v = F.normalize(_real(zv), dim=1, eps=1e-8)
    a = F.normalize(_real(za), dim=1, eps=1e-8)
    return v @ a.T / tau


def _rowwise(s: Tensor, include_positive: bool) -> Tensor:
    """Per-row ``-log(e^{s_ii} / denominator)`` for a square logit matrix ``s``."""
    n = s.shape[0]
    pos = s.diagonal()
    if include_positive:
        denom = torch.logsumexp(s, dim=1)
    else:
        eye = torch.eye(n, dtype=torch.bool, device=s.device)
        denom = torch.logsumexp(s.masked_fill(eye, float("-inf")), dim=1)
    return denom - pos


def infonce_loss(zv: Tensor, za: Tensor, tau: float = 0.5, symmetric: bool = False) -> Tensor:
    """InfoNCE: cross-entropy of picking the matching sound for each image among the batch's N sounds.

    Args:
        zv: ``(N, D)`` projected visual vectors (normalised inside: cosine similarity).
        za: ``(N, D)`` projected audio vectors; ``za[i]`` is the positive of ``zv[i]``.
        tau: temperature.
        symmetric: also average in the audio -> image direction.

    Returns:
        scalar mean over rows (and directions).
    """
    s = similarity_logits(zv, za, tau)
    loss = _rowwise(s, include_positive=True).mean()
    if symmetric:
        loss = 0.5 * (loss + _rowwise(s.T, include_positive=True).mean())
    return loss


def ntxent_loss(zv: Tensor, za: Tensor, tau: float = 0.5, symmetric: bool = False) -> Tensor:
    """NT-Xent as the paper's Eq. 2: like :func:`infonce_loss` but the positive is excluded from the denominator.

    Needs ``N >= 2`` (with one pair there is no negative and the loss is undefined). Can be negative.

    Args:
        zv: ``(N, D)`` projected visual vectors.
        za: ``(N, D)`` projected audio vectors.
        tau: temperature.
        symmetric: also average in the audio -> image direction.
    """
    if zv.shape[0] < 2:
        raise ValueError("NT-Xent needs a batch of at least 2 pairs (the negatives come from the batch)")
    s = similarity_logits(zv, za, tau)
    loss = _rowwise(s, include_positive=False).mean()
    if symmetric:
        loss = 0.5 * (loss + _rowwise(s.T, include_positive=False).mean())
    return loss
