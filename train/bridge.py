"""Fitting the concept bridge of a model (:mod:`encoders.bridge`) on the training lists.

The bridge's columns are the concept table's concepts (:mod:`soundlib.concepts`, the picture side) followed by
every other category the training sounds carry (concepts only sounds have, e.g. ``magic``; the picture side leaves
them at 0). The sound classifier is a softmax regression over the frozen aisfx features of every training window
(:meth:`~encoders.pretrained.PretrainedAVModel.sound_classifier_input`), classes weighted to count equally, with an
L2 penalty (:data:`BRIDGE_WEIGHT_DECAY`, chosen on leave-one-source-out folds), fitted by L-BFGS. It is fitted once,
before the heads train, so validation scores the bridged embedding the checkpoint will have.

What it learns from: the training pairs' sounds, plus (``soundlib train --bridge-sounds``) a sound list of every
labelled sound of the training sources, paired or not (``soundlib catalog``'s ``catalog_sounds.csv``). The pairs
leave out a concept's sounds beyond its pair cap and every sound of a concept whose pictures are missing; on
leave-one-source-out folds, fitting on the whole list raised the mean top-10 from 31.9 / 54.1 to 35.1 / 60.2 %
(sample / category), most where a held-out picture source took many concepts' pictures with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoders.bridge import BridgeFitSet
from soundlib.errors import SoundlibError

#: L2 penalty of the sound classifier (per weight, against the mean class-weighted cross-entropy).
BRIDGE_WEIGHT_DECAY = 0.03
#: L-BFGS iterations of the sound classifier fit.
BRIDGE_MAX_ITER = 100


def bridge_concepts(categories: Sequence[str], table_names: Sequence[str]) -> list[str]:
    """The bridge's columns: ``table_names`` in order, then the ``categories`` not among them (case-insensitive,
    sorted, blank ones left out)."""
    known = {n.lower() for n in table_names}
    extra = sorted({c.strip() for c in categories if c.strip() and c.strip().lower() not in known})
    return list(table_names) + extra


def column_of(concepts: Sequence[str]) -> dict[str, int]:
    """Lower-cased concept name -> bridge column."""
    return {c.lower(): i for i, c in enumerate(concepts)}


def fit_softmax_regression(x: Any, y: np.ndarray, n_classes: int, weight_decay: float = BRIDGE_WEIGHT_DECAY,
                           max_iter: int = BRIDGE_MAX_ITER, sample_weight: Any = None) -> tuple[Any, Any, Any, Any]:
    """A class-balanced softmax regression on standardised inputs.

    Args:
        x: ``(N, F)`` float inputs.
        y: ``(N,)`` int classes in ``[0, n_classes)``.
        n_classes: ``C``.
        weight_decay: L2 penalty on the weights.
        max_iter: L-BFGS iterations.
        sample_weight: ``(N,)`` whole numbers >= 1, how many times each row counts (``None``: once each); a row of
            weight ``k`` is the same fit as ``k`` copies of it (the standardisation and the class balance included).

    Returns:
        ``(mean (F,), std (F,), weight (F, C), bias (C,))`` float32 tensors.

    Raises:
        SoundlibError: fewer than two classes present.
    """
    import torch

    x = torch.as_tensor(x).float()
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    counts = np.bincount(np.asarray(y), weights=sw, minlength=n_classes).astype(np.float64)
    if (counts > 0).sum() < 2:
        raise SoundlibError("the concept bridge needs training sounds of at least two categories")
    cw = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
    cw = torch.from_numpy(cw / cw[counts > 0].mean()).float()
    if sw is None:
        mean, std = x.mean(0), x.std(0) + 1e-5
    else:  # the mean and (unbiased) std of the rows repeated by their weights
        swt = torch.from_numpy(sw).float()[:, None]
        total = float(sw.sum())
        mean = (x * swt).sum(0) / total
        std = ((((x - mean) ** 2) * swt).sum(0) / max(total - 1.0, 1.0)).sqrt() + 1e-5
    xn = (x - mean) / std
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=int(max_iter), history_size=20, line_search_fn="strong_wolfe")
    row_w = None if sw is None else cw[yt] * torch.from_numpy(sw).float()

    def closure() -> Any:
        opt.zero_grad()
        if row_w is None:
            loss = torch.nn.functional.cross_entropy(xn @ w + b, yt, weight=cw)
        else:  # the same class-weighted mean cross-entropy, each row counted its weight times
            nll = torch.nn.functional.cross_entropy(xn @ w + b, yt, reduction="none")
            loss = (nll * row_w).sum() / row_w.sum()
        loss = loss + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return mean, std, w.detach(), b.detach()


def read_bridge_sounds(path: str | Path, config: Any) -> list[tuple[Path, str]]:
    """The labelled sounds of a bridge sound list (``audio,category``; :func:`soundlib.lists.read_candidates`'s
    format), for a bridged configuration.

    Raises:
        SoundlibError: the configuration has no bridge; the list is unreadable or a row is bad (missing file, no
            category): one line naming the list and the row.
    """
    from soundlib.lists import read_candidates

    if config.bridge_weight <= 0:
        raise SoundlibError(f"--bridge-sounds needs a model with a concept bridge (pt-effnet-aisfx-bridge), "
                            f"not {config.name}", str(path))
    got = read_candidates(path)
    if got.errors:
        raise got.errors[0]
    unlabelled = [r for r in got.rows if not (r.category or "").strip()]
    if unlabelled:
        raise SoundlibError(f"line {unlabelled[0].line}: no category (every sound of a bridge list needs one)",
                            str(path))
    return [(r.audio, str(r.category).strip()) for r in got.rows]


def fit_bridge(model: Any, window_features: Any, window_categories: Sequence[str | None],
               class_concept: np.ndarray, weight_decay: float = BRIDGE_WEIGHT_DECAY, batch: int = 512) -> int:
    """Fit ``model.bridge`` (a pretrained-family model built with ``config.concepts``) in place.

    Args:
        model: the model; its ``config.concepts`` are the columns.
        window_features: ``(W, F_packed)`` packed audio features of the training windows.
        window_categories: each window's category (``None``: unlabelled, left out of the fit).
        class_concept: ``(1000,)`` the concept table's column of each ImageNet class (``-1`` for none); the table's
            concepts must be the first columns of ``config.concepts``.
        weight_decay: L2 penalty of the sound classifier.
        batch: windows per feature call.

    Returns:
        The number of windows the classifier was fitted on.
    """
    import torch

    col = column_of(model.config.concepts)
    keep = [i for i, c in enumerate(window_categories) if c is not None and c.strip().lower() in col]
    y = np.array([col[window_categories[i].strip().lower()] for i in keep], dtype=np.int64)
    feats = torch.as_tensor(window_features)
    x = torch.cat([model.sound_classifier_input(feats[keep[i:i + batch]]) for i in range(0, len(keep), batch)]) \
        if keep else torch.zeros(0, 1)
    mean, std, w, b = fit_softmax_regression(x, y, len(model.config.concepts), weight_decay)
    model.bridge.set_classes(torch.tensor(np.asarray(class_concept), dtype=torch.int64))
    model.bridge.set_sound_classifier(mean, std, w, b)
    model.bridge_fit = BridgeFitSet.of(x, y, weight_decay)  # saved with the checkpoint, for `soundlib adapt`
    return len(keep)


def with_bridge_columns(config: Any, categories: Sequence[str]) -> tuple[Any, Any]:
    """``(config, concept table)`` for training: a bridged configuration (``bridge_weight`` > 0) gets its columns,
    the concept table's concepts then the other training ``categories`` (:func:`bridge_concepts`); any other
    configuration comes back unchanged with ``None``."""
    if config.bridge_weight <= 0:
        return config, None
    import dataclasses

    from soundlib.concepts import load_concepts

    table = load_concepts()
    return dataclasses.replace(config, concepts=tuple(bridge_concepts(categories, table.names))), table


def fit_bridge_on_list(model: Any, data: Any, windows: Any, window_features: Any, table: Any,
                       extra: tuple[Sequence[str], Any] | None = None) -> int:
    """:func:`fit_bridge` on a training list's cached windows: each window labelled by its clip's category
    (``data.clip_category``, ``-1`` = none), with the concept table's ImageNet class map; ``extra``: ``(categories
    (W',), features (W', F_packed))`` of more labelled windows (a bridge sound list's), fitted on as well."""
    import torch

    codes = data.clip_category[windows.window_clip]
    cats: list[str | None] = [data.categories[c] if c >= 0 else None for c in codes]
    feats = torch.as_tensor(window_features)
    if extra is not None and len(extra[0]):
        cats += list(extra[0])
        feats = torch.cat([feats, torch.as_tensor(extra[1])])
    return fit_bridge(model, feats, cats, table.class_concept)
