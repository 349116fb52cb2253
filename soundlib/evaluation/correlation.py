"""The paper's correlation task (Table 1a): balanced correlated / uncorrelated pairs built from a list
(:func:`make_pairs`) or taken from the reference code's ``vid2aud_<split>.json`` (:func:`vid2aud_pairs`), classified
by the model's correlation head (BCE families) or by a distance threshold fitted on a validation list
(:func:`fit_threshold`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoders.config import AudioConfig
from soundlib import metrics as M
from soundlib.config import DEFAULT_FILE_SCORE
from soundlib.errors import SoundlibError
from soundlib.evaluation.inputs import (Embedded, ListData, Problem, check_file_score, embed_list, load_models,
                                        model_labels)
from soundlib.lists import read_list
from soundlib.progress import ProgressFn, null_progress
from soundlib.reference_lists import ReferenceRoots, Vid2Aud, read_vid2aud

__all__ = ["make_pairs", "vid2aud_pairs", "fit_threshold", "CorrelationResult", "CorrelationReport",
           "evaluate_correlation"]


def make_pairs(samples: Sequence[str], categories: Sequence[str | None], videos: Sequence[str | None],
               clips: Sequence[Any], seed: int = 0) -> list[tuple[int, int, int]]:
    """Balanced correlated / uncorrelated pairs from a list's rows.

    For every row ``i`` that has at least one acceptable partner, two pairs: ``(i, i, 1)`` (its frame with its own
    clip) and ``(i, j, 0)`` with ``j`` drawn (seeded) among the rows whose clip and sample differ from ``i``'s,
    from another video when both rows name one, and from another category when both rows have one.
    Rows without a partner are left out, so the result is always balanced.

    Args:
        samples, categories, videos, clips: per row (``clips`` any hashable clip identity).
        seed: random seed.

    Returns:
        ``[(frame row, clip row, label)]``, label 1 = correlated.
    """
    rng = np.random.default_rng(seed)

    def codes(values: Sequence[Any]) -> np.ndarray:  # None -> -1, else an int per distinct value
        table: dict[Any, int] = {}
        return np.array([-1 if v is None else table.setdefault(v, len(table)) for v in values], dtype=np.int64)

    smp, cat, vid, clp = codes(samples), codes(categories), codes(videos), codes(clips)
    out: list[tuple[int, int, int]] = []
    for i in range(len(smp)):
        ok = (clp != clp[i]) & (smp != smp[i])
        if vid[i] >= 0:
            ok &= vid != vid[i]
        if cat[i] >= 0:
            ok &= cat != cat[i]
        partners = np.flatnonzero(ok)
        if partners.size == 0:
            continue
        out.append((i, i, 1))
        out.append((i, int(partners[rng.integers(partners.size)]), 0))
    return out


def vid2aud_pairs(table: Mapping[str, Vid2Aud], samples: Sequence[str], seed: int = 0
                  ) -> tuple[list[tuple[int, int, int]], list[str]]:
    """Balanced correlated / uncorrelated pairs from a ``vid2aud_<split>.json`` (:func:`read_vid2aud`).

    For every clip id of ``table`` (in sorted order) that is the sample of a row, two pairs: its frame with the
    clip of one of its ``pos_aud`` ids (label 1) and with one of its ``neg_aud`` ids (label 0), each drawn (seeded)
    among the ids that are samples of rows. In the reference code's files ``pos_aud`` holds every clip of the split
    with the same label, the clip itself included.

    Args:
        table: the json's entries by clip id.
        samples: per row, its sample (a reference list's sample is its clip id).
        seed: random seed.

    Returns:
        ``([(frame row, clip row, label)], clip ids left out)``: an id is left out when it is no row's sample or
        has no positive or no negative among the rows.
    """
    rng = np.random.default_rng(seed)
    row_of: dict[str, int] = {}
    for i, s in enumerate(samples):
        row_of.setdefault(s, i)
    out: list[tuple[int, int, int]] = []
    left_out: list[str] = []
    for key in sorted(table):
        entry = table[key]
        pos = [row_of[x] for x in entry.pos_aud if x in row_of]
        neg = [row_of[x] for x in entry.neg_aud if x in row_of]
        if key not in row_of or not pos or not neg:
            left_out.append(key)
            continue
        i = row_of[key]
        out.append((i, pos[int(rng.integers(len(pos)))], 1))
        out.append((i, neg[int(rng.integers(len(neg)))], 0))
    return out, left_out


def fit_threshold(distances: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The distance threshold that best separates correlated (label 1, near) from uncorrelated pairs.

    A pair is called correlated when its distance is below the threshold. Candidates are the midpoints between
    consecutive distinct distances (and points just outside the range); ties go to the middle of the best run.

    Returns:
        ``(threshold, accuracy on these pairs)``.
    """
    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if d.size == 0:
        raise ValueError("no pairs to fit a threshold on")
    u = np.unique(d)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    acc = np.array([np.mean((d < t) == (y == 1)) for t in cands])
    best = np.flatnonzero(acc == acc.max())
    t = float(cands[best[len(best) // 2]])
    return t, float(acc.max())


@dataclass
class CorrelationResult:
    """One model's correlation accuracy: ``method`` is ``"head"`` (BCE head) or ``"threshold"`` (fitted on val)."""

    model: str
    method: str
    accuracy: float
    threshold: float | None = None
    val_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "method": self.method, "threshold": self.threshold, "accuracy": self.accuracy}


@dataclass
class CorrelationReport:
    """Correlation task results: figures per model and skipped rows."""

    list_path: str
    pairs: int
    rows: int
    models: list[CorrelationResult]
    problems: list[Problem]
    queries: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"list": self.list_path, "pairs": self.pairs, "models": [m.to_json() for m in self.models]}


def _has_head(model: Any) -> bool:
    return getattr(model.config, "loss", None) in ("bce", "margin") and hasattr(model, "correlation_logits")


def _pair_scores(model: Any, pairs: list[tuple[int, int, int]], qv: dict[int, np.ndarray],
                 av: dict[int, np.ndarray], use_head: bool, file_score: str) -> np.ndarray:
    """Per pair: correlated-minus-uncorrelated logit (head) or negative distance; larger = more correlated.

    ``av[j]`` holds the clip's window vectors (W, D): best = max over windows, mean = on the mean vector.
    """
    import torch

    out = np.empty(len(pairs), dtype=np.float64)
    for p, (i, j, _) in enumerate(pairs):
        windows = av[j]
        if file_score == "mean" and len(windows) > 1:
            windows = M.group_mean(windows, np.zeros(len(windows), dtype=np.int64), 1)
        v = np.repeat(qv[i][None, :], len(windows), axis=0)
        if use_head:
            with torch.inference_mode():
                logits = model.correlation_logits(torch.as_tensor(v), torch.as_tensor(windows)).float().numpy()
            s = logits[:, 1] - logits[:, 0]
        else:
            s = -np.linalg.norm(v.astype(np.float64) - windows.astype(np.float64), axis=1)
        out[p] = float(s.max())
    return out


def _row_vectors(emb: Embedded, m: int, data: ListData, rows: Sequence[int]
                 ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Model ``m``'s vectors of ``rows``: per row its frame vector and its clip's window vectors."""
    qv = {i: emb.frames[m][data.row_frame[i]] for i in rows}
    av = {i: emb.clips[m][data.row_clip[i]][1] for i in rows}
    return qv, av


def _pairs_for(data: ListData, rows: list[int], seed: int, table: Mapping[str, Vid2Aud] | None = None,
               problems: list[Problem] | None = None, table_path: str | os.PathLike | None = None
               ) -> list[tuple[int, int, int]]:
    """The pairs of ``rows``: from ``table`` (a vid2aud json; ids it names that are no scorable row go to
    ``problems`` as one line) or built by :func:`make_pairs`."""
    samples = [data.rows[i].sample for i in rows]
    if table is not None:
        local, left_out = vid2aud_pairs(table, samples, seed)
        if left_out and problems is not None:
            shown = ", ".join(left_out[:3]) + (", ..." if len(left_out) > 3 else "")
            problems.append(Problem(None, f"{table_path}: {len(left_out)} of {len(table)} clip ids left out (not a "
                                          f"scored row of the list, or no positive or negative among them: {shown})"))
    else:
        local = make_pairs(samples, [data.rows[i].category for i in rows], [data.rows[i].video for i in rows],
                           [data.row_clip[i] for i in rows], seed)
    return [(rows[a], rows[b], y) for a, b, y in local]


def evaluate_correlation(
    list_path: str | Path,
    model_specs: Sequence[str | None] = (),
    *,
    val_path: str | Path | None = None,
    seed: int = 0,
    file_score: str | None = None,
    max_windows: int | None = None,
    progress: ProgressFn | None = None,
    roots: ReferenceRoots | None = None,
    norm_stats: str | os.PathLike | None = None,
    pairs_json: str | os.PathLike | None = None,
    val_pairs_json: str | os.PathLike | None = None,
) -> CorrelationReport:
    """The paper's correlation task (Table 1a): accuracy on balanced correlated / uncorrelated pairs.

    Models with a correlation head (BCE, BCE + margin) classify with it (class 1 = correlated); the others call a
    pair correlated when its embedding distance is below a threshold fitted on ``val_path``'s pairs.

    Args:
        list_path, val_path: the test list and the list the threshold is fitted on (CSV or reference format).
        model_specs: checkpoints (``None`` or empty = the default model).
        seed: seed of the drawn pairs.
        file_score, max_windows: how whole-file rows are scored (as in :func:`~soundlib.evaluation.retrieval.
            evaluate_list`).
        progress: progress callback.
        roots: where reference-format lists' frames and audio are.
        norm_stats: a mean/variance ``.npy`` replacing the paper models' log-mel statistics.
        pairs_json, val_pairs_json: ``vid2aud_<split>.json`` files giving the pairs of ``list_path`` /
            ``val_path`` (:func:`vid2aud_pairs`) instead of :func:`make_pairs`.

    Raises:
        SoundlibError: a contrastive model without ``val_path``; no pairs can be built; a bad pairs file.
    """
    file_score = file_score or DEFAULT_FILE_SCORE
    check_file_score(file_score)
    progress = progress or null_progress
    max_windows = int(max_windows or AudioConfig().max_windows)
    if val_pairs_json is not None and val_path is None:
        raise SoundlibError("--val-pairs needs --val LIST")
    table = read_vid2aud(pairs_json) if pairs_json is not None else None
    val_table = read_vid2aud(val_pairs_json) if val_pairs_json is not None else None
    loaded = load_models(model_specs, norm_stats)
    labels = model_labels([lm.name for _, lm in loaded], [spec or lm.info.path for spec, lm in loaded])
    need_val = [lab for lab, (_, lm) in zip(labels, loaded) if not _has_head(lm.model)]
    if need_val and val_path is None:
        raise SoundlibError(f"{', '.join(need_val)} has no correlation head: pass --val LIST to fit a distance "
                            "threshold on")
    pairs_list = read_list(list_path, roots=roots)
    data = ListData.from_pairs(pairs_list)
    problems = [Problem(e.line, e.reason) for e in pairs_list.errors]
    val_data = (ListData.from_pairs(read_list(val_path, roots=roots)) if (need_val and val_path is not None)
                else None)

    emb = embed_list([lm.model for _, lm in loaded], labels, data, progress, max_windows)
    ok_rows = emb.scorable_rows(data, range(len(data.rows)), problems)
    pairs = _pairs_for(data, ok_rows, seed, table, problems, pairs_json)
    n_rows = len(data.rows) + len(pairs_list.errors)
    if not pairs:
        return CorrelationReport(str(list_path), 0, n_rows, [], problems, len(ok_rows))
    y = np.array([p[2] for p in pairs])

    results = []
    for m, (label, (_, lm)) in enumerate(zip(labels, loaded)):
        qv, av = _row_vectors(emb, m, data, ok_rows)
        if _has_head(lm.model):
            s = _pair_scores(lm.model, pairs, qv, av, True, file_score)
            results.append(CorrelationResult(label, "head", float(np.mean((s > 0) == (y == 1)))))
            continue
        assert val_data is not None
        vemb = embed_list([lm.model], [f"{label} (val)"], val_data, progress, max_windows)
        vrows = [i for i in range(len(val_data.rows)) if not vemb.row_error(val_data, i)]
        vq, va = _row_vectors(vemb, 0, val_data, vrows)
        vpairs = _pairs_for(val_data, vrows, seed, val_table, None, val_pairs_json)
        if not vpairs:
            raise SoundlibError("no correlated/uncorrelated pairs can be built from it", str(val_path))
        vd = -_pair_scores(lm.model, vpairs, vq, va, False, file_score)
        t, vacc = fit_threshold(vd, [p[2] for p in vpairs])
        d = -_pair_scores(lm.model, pairs, qv, av, False, file_score)
        results.append(CorrelationResult(label, "threshold", float(np.mean((d < t) == (y == 1))), t, vacc))
    return CorrelationReport(str(list_path), len(pairs), n_rows, results, problems, len(ok_rows))
