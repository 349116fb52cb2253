"""One epoch of training: the optimizer, the LR schedule, one step on a batch, and the loop over an epoch's batches.

Determinism: epoch ``e`` reseeds torch with :func:`epoch_seed` ``(seed, e)`` and draws its shuffle (and BCE
negatives) from ``numpy.random.default_rng([seed, e])`` and the window of each whole-file clip from
``numpy.random.default_rng([seed, e, 1])``, so a run resumed after epoch ``e`` continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn
from train.datasets import PairData, make_epoch
from train.defaults import DEFAULT_PLATEAU_PATIENCE, DEFAULT_WEIGHT_DECAY, PRECISIONS

__all__ = ["make_optimizer", "make_scheduler", "autocast", "images_to_input", "train_step", "epoch_seed",
           "EpochResult", "train_epoch"]


def make_optimizer(model: Any, lr: float, weight_decay: float = DEFAULT_WEIGHT_DECAY) -> Any:
    """SGD, Nesterov momentum 0.9, weight decay ``weight_decay`` (the paper: 1e-4)."""
    import torch

    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def make_scheduler(optimizer: Any, patience: int = DEFAULT_PLATEAU_PATIENCE) -> Any:
    """Decay the LR tenfold when the validation metric (higher is better) stalls for ``patience`` epochs."""
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=patience)


def autocast(precision: str) -> Any:
    """The autocast context of ``precision``: bfloat16 on the CPU for ``"bf16"``, none for ``"fp32"``."""
    import torch

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision == "fp32":
        return nullcontext()
    raise SoundlibError(f"unknown precision {precision!r} (use {' or '.join(PRECISIONS)})")


def images_to_input(model: Any, frames_u8: Any, precision: str = "fp32") -> Any:
    """A batch from a frame store -> the model's image input.

    ``uint8 (B, 3, S, S)`` frames (the paper models) are resized and normalised by ``model.image_features``
    (channels-last under bf16); a float batch is already the model's input (the pretrained family's cached backbone
    features, ``(B, F)``) and is returned unchanged.
    """
    import torch

    if frames_u8.dtype != torch.uint8:
        return frames_u8
    x = model.image_features(frames_u8.float().div_(255.0))
    if precision == "bf16" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def train_step(model: Any, optimizer: Any, frames_u8: Any, feats: Any, labels: Any = None,
               precision: str = "fp32") -> float:
    """One optimisation step on a batch.

    Args:
        model: an :class:`~encoders.model.AVModel` (or a pretrained-family model) in train mode.
        optimizer: its optimizer.
        frames_u8: ``uint8 (B, 3, S, S)`` frames, or cached image features ``(B, F)`` (see :func:`images_to_input`).
        feats: audio input, row ``i`` pairing with frame ``i``: ``float32 (B, n_mels, frames)`` raw log-mels, or
            cached backbone features ``(B, F)``.
        labels: ``(B,)`` 1/0 for the BCE families, ``None`` for the contrastive ones.
        precision: ``"fp32"`` or ``"bf16"`` (autocast; the loss is computed in float32).

    Returns:
        the batch loss (float).
    """
    x = images_to_input(model, frames_u8, precision)
    with autocast(precision):
        v = model.encode_image(x)
        a = model.encode_audio(feats)
    loss = model.pair_loss(v.float(), a.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of epoch ``epoch`` of a run seeded with ``seed``."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


@dataclass
class EpochResult:
    """What one epoch of training did: mean loss over its pairs, pairs seen, and its wall time in seconds."""

    loss: float
    pairs: int
    seconds: float

    @property
    def pairs_per_s(self) -> float:
        """Training throughput (pairs per second)."""
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


def train_epoch(model: Any, optimizer: Any, data: PairData, frames: Any, feats: Any, windows: Any, *,
                contrastive: bool, batch: int, seed: int, epoch: int, precision: str,
                progress: ProgressFn) -> EpochResult:
    """Run epoch ``epoch`` (1-based) over ``data``: reseed, plan the batches, one :func:`train_step` per batch.

    Args:
        model: the model (switched to train mode).
        optimizer: its optimizer.
        data: the training pairs.
        frames: their frame store (``batches(index lists)`` yields frame batches).
        feats: ``(W, ...)`` audio input of every cached window of every clip.
        windows: the clips' cached windows (``draw(rng)`` picks one window per clip).
        contrastive: contrastive batches (``False``: BCE batches with negatives).
        batch: pairs per step.
        seed: the run's seed.
        epoch: the epoch number (seeds its shuffle and window draw).
        precision: ``"fp32"`` or ``"bf16"``.
        progress: reports ``"steps"``.

    Returns:
        :class:`EpochResult`.

    Raises:
        SoundlibError: the loss is not finite (the run diverged).
    """
    import torch

    torch.manual_seed(epoch_seed(seed, epoch))
    rng = np.random.default_rng([int(seed), int(epoch)])
    plan = make_epoch(data, contrastive, batch, rng)
    draw = torch.from_numpy(windows.draw(np.random.default_rng([int(seed), int(epoch), 1])))
    model.train()
    t0 = time.perf_counter()
    total, count = 0.0, 0
    frame_batches = [data.row_frame[r] for r in plan.rows]
    progress("steps", 0, len(plan.rows), epoch=epoch)
    for i, x in enumerate(frames.batches(frame_batches)):
        clip_feats = feats[draw[torch.from_numpy(plan.clips[i])]]
        labels = None if plan.labels is None else torch.from_numpy(plan.labels[i])
        loss = train_step(model, optimizer, x, clip_feats, labels, precision)
        if not math.isfinite(loss):
            raise SoundlibError(f"training diverged at epoch {epoch} (loss {loss}); try a smaller --lr")
        total += loss * len(plan.rows[i])
        count += len(plan.rows[i])
        progress("steps", i + 1, len(plan.rows), epoch=epoch, loss=total / count)
    return EpochResult(loss=total / max(count, 1), pairs=count, seconds=time.perf_counter() - t0)
