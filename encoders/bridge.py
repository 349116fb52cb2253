"""The concept bridge: what the frozen classifiers already know, as part of the retrieval embedding.

A picture's concept probabilities come from EfficientNet-Lite0's ImageNet softmax pooled over each concept's
classes (``class_concept``: the concept index of each of the 1,000 classes, ``-1`` for none; the table is built
from WordNet by ``tools/build_concepts.py`` and read by :mod:`soundlib.concepts`; classes in no concept are
dropped): the probability of the concept's most probable class (``picture_pool="max"``, the bridged default) or
the sum over its classes (``"sum"``, checkpoints saved before the choice existed). The sum favours concepts of
many classes: dog holds ImageNet's 118 breeds, so a drawing the classifier is unsure of (a pig, an owl) collects
more dog mass than anything else. A sound's concept probabilities come from a linear classifier (softmax
regression) over aisfx's 512-d embedding and the log-probabilities of its 9 sound-library classifiers
(:class:`~encoders.backbones.AisfxHeads`), standardised; it is fitted on the training sounds' categories
(``train/bridge.py``), never by gradient descent with the heads.

Both are L2-normalised into the same ``C`` columns (concepts only sounds have, such as ``magic``, are columns the
picture side leaves at 0), and the model's embedding becomes ``[sqrt(1 - w) * heads, sqrt(w) * concepts]`` (``w`` =
``config.bridge_weight``): the dot product of a picture's and a sound's embeddings is ``(1 - w) * heads cosine +
w * concept cosine``, so Chroma's L2 search ranks by the blend with nothing else changed. Every tensor here is a
buffer (no parameters): the optimiser of the heads never touches it, and the checkpoint carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.config import PICTURE_POOLS

#: ImageNet-1k classes of EfficientNet-Lite0's classifier.
IMAGENET_CLASSES = 1000


class ConceptBridge(nn.Module):
    """Concept probabilities of pictures (from ImageNet logits) and sounds (from aisfx features) in ``C`` columns.

    Args:
        n_concepts: ``C``, the number of concept columns.
        sound_features: size ``F`` of the sound classifier's input (512 + 378 for aisfx).
        picture_pool: ``"max"`` (a concept's most probable ImageNet class) or ``"sum"`` (all its classes).

    Buffers (filled by :meth:`set_classes` and :meth:`set_sound_classifier`; zeros until then):
        class_concept: ``(1000,)`` int64 concept column of each ImageNet class, ``-1`` for none.
        sound_mean, sound_std: ``(F,)`` standardisation of the classifier's input.
        sound_weight, sound_bias: ``(F, C)`` and ``(C,)`` of the softmax regression.
    """

    def __init__(self, n_concepts: int, sound_features: int, picture_pool: str = "sum") -> None:
        super().__init__()
        if picture_pool not in PICTURE_POOLS:
            raise ValueError(f"picture_pool must be one of {', '.join(PICTURE_POOLS)}, got {picture_pool!r}")
        self.n_concepts = int(n_concepts)
        self.picture_pool = picture_pool
        self.register_buffer("class_concept", torch.full((IMAGENET_CLASSES,), -1, dtype=torch.int64))
        self.register_buffer("sound_mean", torch.zeros(sound_features))
        self.register_buffer("sound_std", torch.ones(sound_features))
        self.register_buffer("sound_weight", torch.zeros(sound_features, n_concepts))
        self.register_buffer("sound_bias", torch.zeros(n_concepts))

    def set_classes(self, class_concept: Tensor) -> None:
        """Set the ImageNet class -> concept column map (``(1000,)`` ints in ``[-1, C)``).

        Raises:
            ValueError: wrong shape or a column out of range.
        """
        cc = torch.as_tensor(class_concept, dtype=torch.int64).flatten()
        if cc.numel() != IMAGENET_CLASSES or int(cc.min()) < -1 or int(cc.max()) >= self.n_concepts:
            raise ValueError(f"class_concept must be {IMAGENET_CLASSES} ints in [-1, {self.n_concepts})")
        self.class_concept.copy_(cc)

    def set_sound_classifier(self, mean: Tensor, std: Tensor, weight: Tensor, bias: Tensor) -> None:
        """Set the fitted softmax regression (input standardisation, ``(F, C)`` weight, ``(C,)`` bias)."""
        self.sound_mean.copy_(torch.as_tensor(mean).float())
        self.sound_std.copy_(torch.as_tensor(std).float())
        self.sound_weight.copy_(torch.as_tensor(weight).float())
        self.sound_bias.copy_(torch.as_tensor(bias).float())

    def image_probs(self, logits: Tensor) -> Tensor:
        """``(B, 1000)`` ImageNet logits -> ``(B, C)`` concept scores in [0, 1]: per concept, the softmax
        probability of its most probable class (``"max"``) or the sum over its classes (``"sum"``: each row then
        sums to the mass of the classes that have a concept, at most 1). A concept without classes scores 0."""
        p = torch.softmax(logits.float(), dim=1)
        keep = self.class_concept >= 0
        out = p.new_zeros(p.shape[0], self.n_concepts)
        if self.picture_pool == "max":
            index = self.class_concept[keep].expand(p.shape[0], -1)
            return out.scatter_reduce_(1, index, p[:, keep], reduce="amax", include_self=True)
        return out.index_add_(1, self.class_concept[keep], p[:, keep])

    def sound_logits(self, x: Tensor) -> Tensor:
        """``(B, F)`` raw classifier input -> ``(B, C)`` logits of the softmax regression."""
        return ((x.float() - self.sound_mean) / self.sound_std) @ self.sound_weight + self.sound_bias

    def sound_probs(self, x: Tensor) -> Tensor:
        """``(B, F)`` raw classifier input -> ``(B, C)`` concept probabilities (rows sum to 1)."""
        return torch.softmax(self.sound_logits(x), dim=1)


@dataclass(frozen=True)
class BridgeFitSet:
    """The labelled windows a sound classifier was fitted on, kept with the checkpoint so the classifier can be
    fitted again with more windows (``soundlib adapt``: a library's own named sounds) without the training media.

    Identical rows (a pair's window that is also a bridge-list window) are stored once with their count, so a fit
    on the set (:func:`train.bridge.fit_softmax_regression` with ``sample_weight=count``) is the fit on the original
    rows. ``x`` is stored as float16 (half the bytes): refitted from the default's set, the classifier's
    probabilities of its rows stay within 0.01 of the original fit's.

    Attributes:
        x: ``(N, F)`` float16 raw classifier inputs
            (:meth:`~encoders.pretrained.PretrainedAVModel.sound_classifier_input`).
        y: ``(N,)`` int64 concept columns.
        count: ``(N,)`` int64 times each row was in the fit (>= 1).
        weight_decay: the L2 penalty of the fit.
    """

    x: Tensor
    y: Tensor
    count: Tensor
    weight_decay: float

    @classmethod
    def of(cls, x: Any, y: Any, weight_decay: float) -> "BridgeFitSet":
        """The set of ``(N, F)`` inputs ``x`` with columns ``y``, identical (row, column) pairs merged."""
        xh = torch.as_tensor(x).detach().float().to(torch.float16).contiguous()
        yt = torch.as_tensor(np.asarray(y), dtype=torch.int64).reshape(-1)
        if xh.ndim != 2 or xh.shape[0] != yt.shape[0]:
            raise ValueError(f"x must be (N, F) with one column per row; got {tuple(xh.shape)} and {tuple(yt.shape)}")
        if not len(yt):
            return cls(xh, yt, torch.zeros(0, dtype=torch.int64), float(weight_decay))
        keys = np.concatenate([xh.view(torch.int16).numpy(), yt.numpy()[:, None].astype(np.int16)], axis=1)
        _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
        order = np.argsort(first)  # keep the original order of first appearance
        idx = torch.from_numpy(first[order])
        return cls(xh[idx].clone(), yt[idx].clone(), torch.from_numpy(counts[order].astype(np.int64)),
                   float(weight_decay))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to_payload(self) -> dict[str, Any]:
        """Tensors and builtins for a checkpoint (``torch.load(weights_only=True)`` reads them back)."""
        return {"x": self.x, "y": self.y, "count": self.count, "weight_decay": float(self.weight_decay)}

    @classmethod
    def from_payload(cls, d: Any, n_features: int, n_concepts: int) -> "BridgeFitSet":
        """Check and rebuild a :meth:`to_payload` dict for a classifier of ``n_features`` inputs and ``n_concepts``
        columns.

        Raises:
            ValueError: a missing key, a wrong type or shape, or a column out of range (one line).
        """
        if not isinstance(d, dict) or not {"x", "y", "count", "weight_decay"} <= set(d):
            raise ValueError("bridge fit set: not a dict with x, y, count and weight_decay")
        x, y, count, wd = d["x"], d["y"], d["count"], d["weight_decay"]
        if not all(isinstance(t, Tensor) for t in (x, y, count)) or not isinstance(wd, (int, float)):
            raise ValueError("bridge fit set: x, y and count must be tensors, weight_decay a number")
        if x.dtype != torch.float16 or x.ndim != 2 or x.shape[1] != n_features:
            raise ValueError(f"bridge fit set: x must be float16 (N, {n_features}), got {x.dtype} {tuple(x.shape)}")
        n = x.shape[0]
        if y.dtype != torch.int64 or tuple(y.shape) != (n,) or count.dtype != torch.int64 or tuple(count.shape) != (n,):
            raise ValueError(f"bridge fit set: y and count must be int64 ({n},)")
        if n and (int(y.min()) < 0 or int(y.max()) >= n_concepts or int(count.min()) < 1):
            raise ValueError(f"bridge fit set: a column outside [0, {n_concepts}) or a count below 1")
        return cls(x, y, count, float(wd))


def blend(heads: Tensor, concepts: Tensor, weight: float) -> Tensor:
    """``[sqrt(1 - w) * heads, sqrt(w) * unit(concepts)]``: ``(B, D)`` unit heads + ``(B, C)`` probabilities ->
    ``(B, D + C)``; a picture with no concept mass keeps a zero concept part."""
    return torch.cat([heads * (1.0 - weight) ** 0.5, F.normalize(concepts.float(), dim=1) * weight ** 0.5], dim=1)


def mix_concepts(emb: Tensor, concepts: Tensor, embed_dim: int, weight: float, share: float) -> Tensor:
    """Bridged embeddings with their concept part moved towards other concept evidence (e.g. the concepts a sound's
    file name names).

    Args:
        emb: ``(B, embed_dim + C)`` unit embeddings made by :func:`blend` with bridge weight ``weight``.
        concepts: ``(C,)`` non-negative evidence for one item (all its rows); all zero leaves ``emb`` unchanged.
        embed_dim: size of the heads' part.
        weight: the model's bridge weight ``w``.
        share: how much of the concept part the evidence gets, in ``[0, 1]``: the part becomes
            ``unit((1 - share) * unit(part) + share * unit(concepts))``.

    Returns:
        ``(B, embed_dim + C)``: the heads' part as given, the concept part mixed and still of norm ``sqrt(w)``, so
        rows stay unit vectors.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    extra = torch.as_tensor(concepts, dtype=torch.float32).reshape(1, -1)
    if float(extra.abs().sum()) == 0.0 or share == 0.0:
        return emb
    part = F.normalize(emb[:, embed_dim:].float(), dim=1)
    mixed = F.normalize((1.0 - share) * part + share * F.normalize(extra, dim=1), dim=1)
    return torch.cat([emb[:, :embed_dim].float(), mixed * weight ** 0.5], dim=1)


def unmix_concepts(emb: Tensor, concepts: Tensor, embed_dim: int, weight: float, share: float) -> Tensor:
    """The inverse of :func:`mix_concepts`: embeddings mixed with ``concepts`` at ``share`` -> the embeddings before.

    With ``m`` the mixed unit concept part, ``n = unit(concepts)`` and ``s = share``, the part before was the unit
    ``a`` with ``m = ((1 - s) a + s n) / L``; ``|a| = 1`` gives ``L = s (m.n) + sqrt((1 - s)^2 - s^2 (1 - (m.n)^2))``
    and ``a = (L m - s n) / (1 - s)`` (for ``s = 0.5``: ``a = 2 (m.n) m - n``). Exact up to rounding (float32
    embeddings come back to about 1e-6).

    Args:
        emb, concepts, embed_dim, weight: as in :func:`mix_concepts` (``concepts``: the evidence they were mixed
            with; all zero means they were not mixed, and ``emb`` is returned).
        share: the share they were mixed at, in ``[0, 1)`` (a share of 1 left nothing of the part before).

    Returns:
        ``(B, embed_dim + C)`` unit embeddings: the heads' part as given, the concept part before the mix.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1) to be undone, got {share}")
    extra = torch.as_tensor(concepts, dtype=torch.float32).reshape(1, -1)
    if float(extra.abs().sum()) == 0.0 or share == 0.0:
        return emb
    m = F.normalize(emb[:, embed_dim:].float(), dim=1)
    n = F.normalize(extra, dim=1)
    d = (m * n).sum(dim=1, keepdim=True)
    length = share * d + torch.sqrt(torch.clamp((1.0 - share) ** 2 - share ** 2 * (1.0 - d ** 2), min=0.0))
    before = F.normalize((length * m - share * n) / (1.0 - share), dim=1)
    return torch.cat([emb[:, :embed_dim].float(), before * weight ** 0.5], dim=1)
