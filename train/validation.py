"""Validation of a training run (per validation list, exact search), as ``soundlib eval`` scores a list.

Every row is a query (its frame's embedding); the candidates are the list's distinct *samples* (a sample's distance
is its nearest window; a whole-file clip contributes all its cached windows); a row's ground truth is the sample of
its own clip (so a catalog list, where many rows share one sound file, is well defined: the row's own sound).
Reported: top-10 sample accuracy (exactly ``min(10, N)`` samples), top-10 category accuracy (when every row of the
list has a category), the mean reciprocal rank (:func:`soundlib.evaluation.scoring.score_vectors`) and the loss on
a batch plan fixed for the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from soundlib.config import INFERENCE_BATCH
from train.datasets import Epoch, PairData, make_epoch
from train.epoch import autocast, images_to_input

__all__ = ["TOP_K", "ValScores", "ValData", "val_data", "embed_frames", "embed_mels", "validate", "weighted",
           "aggregate"]

#: Validation cut-off (the paper's top-10).
TOP_K = 10


@dataclass
class ValScores:
    """Validation figures of one list at one epoch (fractions in [0, 1]; NaN when undefined)."""

    top10: float
    top10_category: float
    mrr: float
    loss: float


@dataclass
class ValData:
    """One validation list with its cached inputs, ground truth and a fixed batch plan for the val loss.

    Attributes:
        data: the list.
        feats: ``(W, ...)`` audio input of every window of every clip.
        window_clip: ``(W,)`` clip of each window.
        frames: the frames (or their cached features).
        plan: batches of rows for the val loss (fixed for the run).
        plan_window: ``(C,)`` the window each clip uses in the val loss (fixed for the run).
        query_samples: per row, the sample of its own clip.
        query_categories: per row, its category; ``None`` unless every row has one.
        window_samples, window_categories: per window, its clip's sample and category.
        n_samples: distinct samples (candidates).
        chance: top-10 sample accuracy of a random ranking, ``min(1, 10 / n_samples)``.
        chance_category: top-10 category accuracy of a random ranking (``nan`` without categories).
    """

    data: PairData
    feats: Any
    window_clip: np.ndarray
    frames: Any
    plan: Epoch
    plan_window: np.ndarray
    query_samples: list[str]
    query_categories: list[str] | None
    window_samples: list[str]
    window_categories: list[str | None]
    n_samples: int
    chance: float
    chance_category: float


def val_data(data: PairData, windows: Any, feats: Any, frames: Any, contrastive: bool, batch: int,
              seed: int) -> ValData:
    """A validation list with its cached inputs, ground truth and the fixed batch plan of its loss (see
    :class:`ValData`; ``contrastive``, ``batch`` and ``seed`` as in training)."""
    from soundlib import metrics as M

    cat_name = lambda c: data.categories[c] if c >= 0 else None  # noqa: E731
    query_samples = [data.clip_sample[c] for c in data.row_clip]
    row_cats = [cat_name(int(c)) for c in data.row_category]
    query_categories = row_cats if row_cats and all(c is not None for c in row_cats) else None
    window_samples = [data.clip_sample[c] for c in windows.window_clip]
    window_categories = [cat_name(int(data.clip_category[c])) for c in windows.window_clip]
    n_samples = len(set(data.clip_sample))
    rng = np.random.default_rng([int(seed), 2**31 - 1])  # fixed for the whole run
    plan = make_epoch(data, contrastive, batch, rng) if n_samples >= 2 else Epoch([], [], None)
    plan_window = windows.draw(np.random.default_rng([int(seed), 2**31 - 1, 1]))
    chance_cat = float("nan")
    if query_categories is not None:
        first: dict[str, str | None] = {}
        for smp, cat in zip(window_samples, window_categories):
            first.setdefault(smp, cat)
        chance_cat = float(M.category_chance(TOP_K, query_categories, list(first.values())))
    return ValData(data=data, feats=feats, window_clip=windows.window_clip, frames=frames, plan=plan,
                   plan_window=plan_window, query_samples=query_samples, query_categories=query_categories,
                   window_samples=window_samples, window_categories=window_categories, n_samples=n_samples,
                   chance=min(1.0, TOP_K / max(1, n_samples)), chance_category=chance_cat)


def embed_frames(model: Any, frames: Any, precision: str, batch: int = INFERENCE_BATCH) -> Any:
    """``(n_frames, D)`` float32 embeddings of every frame of a store (model in eval mode, no grad)."""
    import torch

    n = len(frames.paths)
    idx = [np.arange(i, min(i + batch, n)) for i in range(0, n, batch)]
    out = []
    with torch.no_grad():
        for x in frames.batches(idx):
            with autocast(precision):
                out.append(model.encode_image(images_to_input(model, x, precision)).float())
    return torch.cat(out) if out else torch.zeros((0, model.embed_dim))


def embed_mels(model: Any, mels: Any, precision: str, batch: int = INFERENCE_BATCH) -> Any:
    """``(n, D)`` float32 embeddings of audio inputs (raw log-mels or cached features; eval mode, no grad)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, mels.shape[0], batch):
            with autocast(precision):
                out.append(model.encode_audio(mels[i:i + batch]).float())
    return torch.cat(out) if out else torch.zeros((0, model.embed_dim))


def validate(model: Any, val: ValData, precision: str) -> ValScores:
    """Validation figures of one list (model switched to eval mode): see the module notes."""
    import torch

    from soundlib.evaluation.scoring import score_vectors

    model.eval()
    v_frames = embed_frames(model, val.frames, precision)
    a_windows = embed_mels(model, val.feats, precision)
    v_rows = v_frames[torch.from_numpy(val.data.row_frame)]
    scores = score_vectors(v_rows.numpy(), val.query_samples, val.query_categories, a_windows.numpy(),
                           val.window_samples, val.window_categories, [TOP_K])
    top, cat = scores.topk[TOP_K]
    losses, weights = [], []
    with torch.no_grad():
        for i, (rows, clips) in enumerate(zip(val.plan.rows, val.plan.clips)):
            if len(rows) < 2:
                continue
            labels = None if val.plan.labels is None else torch.from_numpy(val.plan.labels[i])
            v = v_frames[torch.from_numpy(val.data.row_frame[rows])]
            a = a_windows[torch.from_numpy(val.plan_window[clips])]
            losses.append(float(model.pair_loss(v, a, labels)))
            weights.append(len(rows))
    vloss = float(np.average(losses, weights=weights)) if losses else float("nan")
    return ValScores(top10=float(top), top10_category=float("nan") if cat is None else float(cat),
                     mrr=float(scores.mrr), loss=vloss)


def weighted(xs: Sequence[float], weights: Sequence[int]) -> float:
    """Weighted mean of the finite values (``nan`` when none is)."""
    pairs = [(x, w) for x, w in zip(xs, weights) if math.isfinite(x)]
    return float(np.average([x for x, _ in pairs], weights=[w for _, w in pairs])) if pairs else float("nan")


def aggregate(scores: Sequence[ValScores], rows: Sequence[int]) -> tuple[float, float, float, float]:
    """``(top10, top10_category, mrr, loss)`` over the validation lists, each list weighted by its rows (so the
    figures are over all validation rows, each row ranked among its own list's samples); the category figure
    over the lists that have categories."""
    return (weighted([s.top10 for s in scores], rows), weighted([s.top10_category for s in scores], rows),
            weighted([s.mrr for s in scores], rows), weighted([s.loss for s in scores], rows))
