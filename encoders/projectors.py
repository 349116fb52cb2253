"""Projection heads applied to the encoder embeddings before the loss (paper section 4).

- Contrastive families (InfoNCE, NT-Xent): one projector shared by both modalities ("siamese", as in the reference
  code): :class:`LinearProjector` (one FC with bias) or :class:`NonlinearProjector` (FC-ReLU-FC).
- Pair-classifier families (BCE, BCE + margin): :class:`CorrelationHead`, an FC on the Euclidean distance between
  the two L2-normalised embeddings -> 2 logits (index 1 = correlated); its bias is the learned distance threshold.
  This FC *is* the "linear projector" of models 1-3 in the paper's Table 1b, so no extra D x D layer is added.

Retrieval never uses these: it ranks the L2-normalised encoder embeddings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class LinearProjector(nn.Module):
    """``z = W e + b`` with ``W`` of shape ``(dim, dim)``. Input and output ``(B, dim)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class NonlinearProjector(nn.Module):
    """``z = W2 relu(W1 e + b1) + b2`` (hidden size ``hidden``, default ``dim``). Input and output ``(B, dim)``."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.layers = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def make_projector(kind: str, dim: int) -> nn.Module:
    """The projector named ``kind`` (``"linear"`` or ``"nonlinear"``) for ``dim``-sized embeddings."""
    if kind == "linear":
        return LinearProjector(dim)
    if kind == "nonlinear":
        return NonlinearProjector(dim)
    raise ValueError(f"unknown projector {kind!r} (use 'linear' or 'nonlinear')")


def pair_distance(v: Tensor, a: Tensor) -> Tensor:
    """Euclidean distance between matching rows: ``(B, D), (B, D) -> (B,)`` (``F.pairwise_distance``, eps 1e-6,
    so the gradient is finite for identical rows)."""
    return F.pairwise_distance(v.float(), a.float())


class CorrelationHead(nn.Module):
    """FC on the Euclidean distance between the two embeddings -> 2 logits ``[uncorrelated, correlated]``.

    Initialised as ``logit_1 - logit_0 = 2 * (threshold - d)``: a pair is called correlated when its distance is below
    ``threshold`` (0.7, about half the largest distance between two non-negative unit vectors); training moves both.
    """

    def __init__(self, threshold: float = 0.7) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2, bias=True)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.copy_(torch.tensor([-threshold, threshold]))

    def forward_distance(self, dist: Tensor) -> Tensor:
        """Logits ``(B, 2)`` for distances ``(B,)``."""
        return self.fc(dist.float().unsqueeze(1))

    def forward(self, v: Tensor, a: Tensor) -> Tensor:
        """Logits ``(B, 2)`` for embeddings ``v``, ``a`` of shape ``(B, D)``."""
        return self.forward_distance(pair_distance(v, a))
