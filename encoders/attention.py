"""Soft attention over local features ("Learn to Pay Attention", Jetley et al., ICLR 2018), as the paper uses it.

For each tap (a local feature map ``l`` of shape ``(B, C_l, H, W)``) and the global feature ``g`` ``(B, C_g)``:

1. ``l`` is projected to ``C_g`` channels by a 1x1 convolution when ``C_l != C_g``;
2. compatibility ``c = conv1x1(l + g)`` -> one score per position ``(B, H, W)`` (the paper's "add"; the paper's
   alternative, ``compatibility="dot"``, uses ``c = <l, g>``);
3. ``a = softmax(c)`` over the ``H * W`` positions (so each map sums to 1);
4. the tap's vector is the attention-weighted SUM of the (projected) local vectors ``sum_hw a[hw] * l[:, hw]``.

:class:`AttentionHead` concatenates the taps' vectors and maps them by Linear+ReLU to the embedding size; the
encoder L2-normalises the result.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


#: the compatibility functions: the paper's learned additive one and the dot product it mentions as alternative.
COMPATIBILITIES = ("add", "dot")


class AttentionPool(nn.Module):
    """Attention pooling of one local feature map, guided by the global feature.

    Args:
        local_channels: channels ``C_l`` of the local map.
        global_channels: channels ``C_g`` of the global feature (and of the output vector).
        compatibility: ``"add"`` (the paper: learned 1x1 conv over ``l + g``) or ``"dot"`` (``<l, g>``).
    """

    def __init__(self, local_channels: int, global_channels: int, compatibility: str = "add") -> None:
        super().__init__()
        if compatibility not in COMPATIBILITIES:
            raise ValueError(f"compatibility must be one of {COMPATIBILITIES}, got {compatibility!r}")
        self.compatibility = compatibility
        self.project: nn.Module = (
            nn.Conv2d(local_channels, global_channels, 1, bias=False)
            if local_channels != global_channels else nn.Identity()
        )
        if compatibility == "add":
            # A bias would add the same constant to every position, which the softmax ignores.
            self.compat = nn.Conv2d(global_channels, 1, 1, bias=False)

    def forward(self, local: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        """Pool ``local`` ``(B, C_l, H, W)`` with ``g`` ``(B, C_g)``.

        Computed without materialising the projected map (``C_g x H x W``, the costliest tensor of the model at
        224 px): with ``P`` the 1x1 projection and ``u`` the compatibility weights, ``u . (P l + g) = (P^T u) . l
        + u . g``, ``<P l, g> = (P^T g) . l`` and ``sum_hw a_hw P l_hw = P sum_hw a_hw l_hw``. The result equals the
        literal formula (tested). Note that with ``"add"`` the term ``u . g`` is the same at every position, so the
        softmax cancels it: the attention maps (and the output) do not depend on ``g`` at all -- true of the paper's
        formula and its reference code alike; ``"dot"`` is the variant where ``g`` steers the attention.

        Returns:
            ``(vector, attention)``: ``vector`` ``(B, C_g)`` float32, ``attention`` ``(B, H, W)`` float32, each map
            summing to 1 over its positions.
        """
        b, c, h, w = local.shape
        proj = self.project.weight.reshape(self.project.weight.shape[0], c) if isinstance(
            self.project, nn.Conv2d) else None  # (C_g, C_l)
        with torch.autocast("cpu", enabled=False):  # scores, softmax, weighted sum over H*W positions in float32
            flat = local.float().reshape(b, c, h * w)
            p = None if proj is None else proj.float()
            if self.compatibility == "add":
                u = self.compat.weight.float().reshape(1, -1)  # (1, C_g)
                k = u if p is None else u @ p  # (1, C_l): compatibility weights on the raw local map
                scores = torch.matmul(k, flat).squeeze(1) + g.float() @ u.T  # + u.g (constant per image)
            else:
                kg = g.float() if p is None else g.float() @ p  # (B, C_l) = P^T g
                scores = torch.bmm(kg.unsqueeze(1), flat).squeeze(1)
            att = torch.softmax(scores, dim=1)
            pooled = torch.bmm(flat, att.unsqueeze(2)).squeeze(2)  # (B, C_l)
            vector = pooled if p is None else pooled @ p.T  # (B, C_g)
        return vector, att.reshape(b, h, w)


class AttentionHead(nn.Module):
    """All taps' attention pools, concatenated, then Linear + ReLU to ``embed_dim`` (not yet L2-normalised).

    Args:
        tap_channels: channels of each tap's local map.
        global_channels: channels of the global feature.
        embed_dim: output size.
        compatibility: see :class:`AttentionPool`.
    """

    def __init__(self, tap_channels: Sequence[int], global_channels: int, embed_dim: int,
                 compatibility: str = "add") -> None:
        super().__init__()
        self.pools = nn.ModuleList(AttentionPool(c, global_channels, compatibility) for c in tap_channels)
        self.embed = nn.Sequential(nn.Linear(len(tap_channels) * global_channels, embed_dim), nn.ReLU())

    def forward(self, taps: Sequence[Tensor], g: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Returns ``(features (B, embed_dim), [attention (B, H_i, W_i) per tap])``."""
        if len(taps) != len(self.pools):
            raise ValueError(f"expected {len(self.pools)} local maps, got {len(taps)}")
        vectors, maps = [], []
        for pool, local in zip(self.pools, taps):
            v, a = pool(local, g)
            vectors.append(v)
            maps.append(a)
        return self.embed(torch.cat(vectors, dim=1)), maps
