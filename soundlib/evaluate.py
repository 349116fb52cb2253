"""``soundlib eval``: the paper's retrieval metrics (and its correlation task) for one or several models on a list.

Retrieval (paper section 5, Table 1b):

- each row of the list is one *query* (its ``frame``); its ground truth is its own clip's ``sample`` and ``category``;
- the *search list* is every distinct ``(audio, start)`` clip of the list, embedded with the model under test into
  a temporary Chroma collection; the unit ranked and counted (a *candidate*) is the sample label, so the ``k``
  results are ``k`` distinct samples (exactly ``k``: the reference code's ``k + 1`` is not repeated);
- a row without ``start`` stands for the whole sound file: all its windows (up to ``max_windows``) are embedded and
  the file is scored by its best window (``file_score="best"``, what ``soundlib query`` does) or by the
  re-normalised mean of its windows (``"mean"``);
- metrics per ``k``: top-k sample accuracy, top-k category accuracy (when every row has a category), their chance
  levels (:mod:`soundlib.metrics`), and the mean reciprocal rank of the own sample over the exact full ranking.

Which file score is the default, measured: 5 tiny m5 models (width 0.125, 64 px, 20 epochs, seeds 0-4) trained on
the first 70 % of each video's seconds (the 19 Debian demo videos with sound, 276 pairs); 116 held-out frames
queried against the 18 whole audio files (rows without ``start``, up to 30 windows each). Mean over seeds (sd):
best window top-1 67.8 % (8.3), top-5 87.4 % (4.1), MRR 0.766 (0.063); mean of windows top-1 58.3 % (14.1),
top-5 84.8 % (7.7), MRR 0.697 (0.104); best won on 4 of 5 seeds. So ``best`` is the default (it is also what
``soundlib query`` does); ``mean`` stays available.

With ``library=NAME`` the candidates are the files of an ingested collection instead, and a row's own sample is
the library file at its ``audio`` path.

Correlation (Table 1a): balanced correlated / uncorrelated pairs built from the list (:func:`make_pairs`), classified
by the model's correlation head (BCE families) or by a distance threshold fitted on a validation list.

The pure core is :func:`score_vectors` (vectors and labels in, metrics out); :func:`evaluate_list` and
:func:`evaluate_correlation` read the files, embed them and call it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoders.config import AudioConfig
from soundlib import metrics as M
from soundlib.config import INFERENCE_BATCH
from soundlib.errors import SoundlibError
from soundlib.lists import PairList, PairRow, read_list
from soundlib.progress import ProgressFn, null_progress

FILE_SCORES: tuple[str, ...] = ("best", "mean")
#: The file score used when none is asked for (measured against "mean": see the module docstring).
DEFAULT_FILE_SCORE = "best"

__all__ = [
    "FILE_SCORES", "DEFAULT_FILE_SCORE", "RetrievalScores", "score_vectors", "Problem", "ModelResult",
    "EvalReport", "evaluate_list", "make_pairs", "fit_threshold", "CorrelationResult", "CorrelationReport",
    "evaluate_correlation", "model_labels", "chroma_ranking", "retrieval_table", "correlation_table",
]


# ------------------------------------------------------------------------------------------------------------------
# The scoring core (vectors in, metrics out)
# ------------------------------------------------------------------------------------------------------------------

@dataclass
class RetrievalScores:
    """Retrieval metrics of one model on one set of queries and candidates.

    Attributes:
        ks: the cut-offs, ascending.
        topk: ``{k: (sample accuracy, category accuracy or None)}`` (fractions in [0, 1]).
        chance: ``{k: (sample chance, category chance or None)}``.
        mrr: mean reciprocal rank of the own sample (exact full ranking; exact ties broken at random, in
            expectation: see :func:`soundlib.metrics.reciprocal_ranks`).
        ranks: (Q,) 1-based rank of each query's own sample: its position in ``ranked`` when listed there,
            else 1 + the number of candidates strictly closer (at least ``len(ranked) + 1``).
        n_queries, n_candidates: Q and N.
        ranked: per query, the indices (into ``samples``) of its top ``max(ks)`` candidates, nearest first.
        distances: per query, their distances.
        samples: the candidate sample labels (N), in order of first appearance.
        sample_categories: each candidate's category (N; ``None`` when unknown).
        agreement: mean fraction of the exact top-``max(ks)`` found in ``ranked`` (1.0 when ``ranked`` is the exact
            ranking; below 1 when the given ranking, e.g. Chroma's, missed some exact neighbours).
    """

    ks: list[int]
    topk: dict[int, tuple[float, float | None]]
    chance: dict[int, tuple[float, float | None]]
    mrr: float
    ranks: np.ndarray
    n_queries: int
    n_candidates: int
    ranked: list[list[int]]
    distances: list[list[float]]
    samples: list[str]
    sample_categories: list[str | None]
    agreement: float = 1.0

    def to_json(self, model: str) -> dict[str, Any]:
        """The per-model part of the ``--json`` document."""
        return {
            "model": model,
            "topk": {str(k): {"sample": s, "category": c} for k, (s, c) in self.topk.items()},
            "chance": {str(k): {"sample": s, "category": c} for k, (s, c) in self.chance.items()},
            "mrr": self.mrr,
        }


def _index_labels(labels: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    order: dict[str, int] = {}
    for lab in labels:
        if lab not in order:
            order[lab] = len(order)
    return list(order), order


def score_vectors(
    query_vectors: np.ndarray,
    query_samples: Sequence[str],
    query_categories: Sequence[str | None] | None,
    candidate_vectors: np.ndarray,
    candidate_samples: Sequence[str],
    candidate_categories: Sequence[str | None] | None,
    ks: Iterable[int],
    ranked: Sequence[Sequence[str]] | None = None,
    ranked_distances: Sequence[Sequence[float]] | None = None,
) -> RetrievalScores:
    """Score a retrieval: which candidate samples are nearest to each query, against the ground truth.

    Args:
        query_vectors: (Q, D) query embeddings (L2-normalised).
        query_samples: (Q,) each query's own sample label (must be one of ``candidate_samples``).
        query_categories: (Q,) each query's category, or ``None``; category metrics are computed only when every
            query has one.
        candidate_vectors: (M, D) candidate vectors; several may share a sample (a file's windows): a sample's
            distance is the minimum over its vectors.
        candidate_samples: (M,) sample label of each vector.
        candidate_categories: (M,) category of each vector (a sample takes its first vector's), or ``None``.
        ks: cut-offs; exactly ``min(k, N)`` results count for each.
        ranked: optional per-query ranked sample labels from another search (Chroma), at least
            ``min(max(ks), N)`` long, used for the top-k figures instead of the exact ranking; the MRR always
            comes from the exact full ranking.
        ranked_distances: the distances that go with ``ranked`` (reported as they are).

    Returns:
        :class:`RetrievalScores`.

    Raises:
        ValueError: shapes disagree, a query's sample is not a candidate, or a ranking is too short.
    """
    ks = M.parse_ks(list(ks))
    q = np.asarray(query_vectors, dtype=np.float32)
    c = np.asarray(candidate_vectors, dtype=np.float32)
    if q.ndim != 2 or c.ndim != 2 or q.shape[1] != c.shape[1]:
        raise ValueError(f"vectors must be (Q, D) and (M, D), got {q.shape} and {c.shape}")
    if len(query_samples) != len(q) or len(candidate_samples) != len(c):
        raise ValueError("one sample label per vector is needed")
    if len(q) == 0 or len(c) == 0:
        raise ValueError("no queries or no candidates")
    samples, index = _index_labels(candidate_samples)
    n = len(samples)
    groups = np.array([index[s] for s in candidate_samples], dtype=np.int64)
    cats: list[str | None] = [None] * n
    if candidate_categories is not None:
        seen: set[int] = set()
        for g, cat in zip(groups.tolist(), candidate_categories):
            if g not in seen:
                seen.add(g)
                cats[g] = cat
    missing = [s for s in query_samples if s not in index]
    if missing:
        raise ValueError(f"{len(missing)} query sample(s) are not candidates, e.g. {missing[0]!r}")
    truth = np.array([index[s] for s in query_samples], dtype=np.int64)

    dist = M.group_min(q, c, groups, n)
    rr = M.reciprocal_ranks(dist, truth)
    exact_ranks = M.truth_ranks(dist, truth)
    kmax = min(ks[-1], n)
    exact_idx, exact_dist = M.exact_topk(dist, kmax)
    if ranked is None:
        top = exact_idx.tolist()
        top_dist = exact_dist.tolist()
        agreement = 1.0
    else:
        if len(ranked) != len(q):
            raise ValueError(f"{len(ranked)} rankings for {len(q)} queries")
        top = []
        for labels in ranked:
            if len(labels) < kmax:
                raise ValueError(f"a ranking holds {len(labels)} results, {kmax} needed")
            top.append([index[s] for s in list(labels)[:kmax]])
        if ranked_distances is not None:
            top_dist = [list(map(float, d))[:kmax] for d in ranked_distances]
        else:
            top_dist = [dist[i, t].tolist() for i, t in enumerate(top)]
        agreement = float(np.mean([len(set(t) & set(e)) / kmax for t, e in zip(top, exact_idx.tolist())]))

    ranks = np.array([t.index(g) + 1 if g in t else max(len(t) + 1, int(r))
                      for t, g, r in zip(top, truth.tolist(), exact_ranks)], dtype=np.int64)
    sample_acc = M.topk_accuracy(top, truth.tolist(), ks)
    with_categories = (query_categories is not None and len(query_categories) == len(q)
                       and all(cat is not None for cat in query_categories))
    cat_acc: dict[int, float | None] = {k: None for k in ks}
    cat_chance: dict[int, float | None] = {k: None for k in ks}
    if with_categories:
        ranked_cats = [[cats[i] for i in t] for t in top]
        cat_acc = dict(M.topk_accuracy(ranked_cats, list(query_categories), ks))  # type: ignore[arg-type]
        cat_chance = {k: M.category_chance(k, list(query_categories), cats) for k in ks}  # type: ignore[arg-type]
    return RetrievalScores(
        ks=ks,
        topk={k: (sample_acc[k], cat_acc[k]) for k in ks},
        chance={k: (M.sample_chance(k, n), cat_chance[k]) for k in ks},
        mrr=float(np.mean(rr)),
        ranks=ranks,
        n_queries=len(q),
        n_candidates=n,
        ranked=top,
        distances=top_dist,
        samples=samples,
        sample_categories=cats,
        agreement=agreement,
    )


# ------------------------------------------------------------------------------------------------------------------
# Reading and embedding a list
# ------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """A row that was skipped: its line number in the list and why (one line)."""

    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


@dataclass
class _Clip:
    """One distinct (audio, start) clip of the list, and the rows that use it."""

    audio: Path
    start: float | None
    rows: list[int] = field(default_factory=list)


@dataclass
class _Data:
    """The list, split into queries (rows) and the distinct clips and frames they use."""

    pairs: PairList
    rows: list[PairRow]
    clips: list[_Clip]
    row_clip: list[int]
    frames: list[Path]
    row_frame: list[int]


def _prepare(pairs: PairList) -> _Data:
    clips: list[_Clip] = []
    clip_index: dict[tuple[str, float | None], int] = {}
    frames: list[Path] = []
    frame_index: dict[Path, int] = {}
    row_clip, row_frame = [], []
    for i, row in enumerate(pairs.rows):
        key = row.clip_key
        if key not in clip_index:
            clip_index[key] = len(clips)
            clips.append(_Clip(row.audio, row.start))
        clips[clip_index[key]].rows.append(i)
        row_clip.append(clip_index[key])
        if row.frame not in frame_index:
            frame_index[row.frame] = len(frames)
            frames.append(row.frame)
        row_frame.append(frame_index[row.frame])
    return _Data(pairs, list(pairs.rows), clips, row_clip, frames, row_frame)


def _embed_frames(model: Any, frames: Sequence[Path], progress: ProgressFn,
                  label: str) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Embed images (batched). Returns ``({frame index: (D,) vector}, {frame index: error reason})``."""
    import torch

    from soundlib.images import load_image

    size = model.picture_size
    batch = INFERENCE_BATCH
    out: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    pending: list[tuple[int, Any]] = []

    def flush() -> None:
        if not pending:
            return
        x = torch.stack([img for _, img in pending])
        with torch.inference_mode():
            emb = model.embed_images(x).float().cpu().numpy()
        for (i, _), v in zip(pending, emb):
            out[i] = v
        pending.clear()

    for i, path in enumerate(frames):
        try:
            img = load_image(path, size=size, detail=model.picture_detail)
        except SoundlibError as e:
            errors[i] = f"frame: {e}"
        except Exception as e:  # noqa: BLE001 - an odd file must not stop the evaluation
            errors[i] = f"frame: {path}: {type(e).__name__}: {e}"
        else:
            pending.append((i, torch.as_tensor(img, dtype=torch.float32)))
            if len(pending) >= batch:
                flush()
        progress(f"frames {label}", i + 1, len(frames))
    flush()
    return out, errors


def _embed_clips(model: Any, clips: Sequence[_Clip], max_windows: int, progress: ProgressFn,
                 label: str) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict[int, str]]:
    """Embed every clip's windows (batched; each file decoded once for all its clips).

    Returns:
        ``({clip index: (starts (W,), vectors (W, D))}, {clip index: error reason})``.
    """
    import torch

    cfg: AudioConfig = model.config.audio
    batch = INFERENCE_BATCH
    by_file: dict[Path, list[int]] = {}
    for ci, clip in enumerate(clips):
        by_file.setdefault(clip.audio, []).append(ci)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    errors: dict[int, str] = {}
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # (clip, starts, windows)
    pending_windows = 0

    def flush() -> None:
        nonlocal pending_windows
        if not pending:
            return
        from soundlib.embedding import embed_windows

        with torch.inference_mode():
            emb = embed_windows(model, np.concatenate([w for _, _, w in pending]), batch)
        pos = 0
        for ci, starts, w in pending:
            out[ci] = (starts, emb[pos:pos + len(w)])
            pos += len(w)
        pending.clear()
        pending_windows = 0

    done = 0
    for path, members in by_file.items():
        with_start = [ci for ci in members if clips[ci].start is not None]
        whole = [ci for ci in members if clips[ci].start is None]
        jobs: list[tuple[list[int], dict[str, Any]]] = []
        if with_start:
            starts_ = [float(clips[ci].start) for ci in with_start]  # type: ignore[arg-type]
            jobs.append((with_start, {"starts": starts_}))
        if whole:
            jobs.append((whole, {"max_windows": max_windows}))
        for members_, kwargs in jobs:
            try:
                starts, windows = _read_windows(path, cfg, **kwargs)
            except _ClipErrors as e:
                for j, ci in enumerate(members_):
                    if j in e.errors:
                        errors[ci] = e.errors[j]
                starts, windows = e.starts, e.windows
                members_ = [ci for j, ci in enumerate(members_) if j not in e.errors]
                if not members_:
                    continue
            if "starts" in kwargs:
                for j, ci in enumerate(members_):
                    pending.append((ci, starts[j:j + 1], windows[j:j + 1]))
            else:
                for ci in members_:
                    pending.append((ci, starts, windows))
            pending_windows += len(windows)
            if pending_windows >= 4 * batch:
                flush()
        done += len(members)
        progress(f"sounds {label}", done, len(clips))
    flush()
    return out, errors


class _ClipErrors(Exception):
    """Some windows of a file could not be read: per-window reasons plus the windows that could."""

    def __init__(self, errors: dict[int, str], starts: np.ndarray, windows: np.ndarray) -> None:
        super().__init__(f"{len(errors)} unreadable clip(s)")
        self.errors, self.starts, self.windows = errors, starts, windows


def _read_windows(path: Path, cfg: AudioConfig, starts: list[float] | None = None,
                  max_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Windows of one file: at the given ``starts`` (one per clip) or over the whole file (``max_windows``).

    A whole file that cannot be read (or is silent throughout) is an error for its clip. With explicit starts,
    the file is decoded once; if that fails, each start is read on its own, so one bad start (past the end)
    only costs its own clip; a silent second of a video is data, not an error.

    Returns:
        ``(starts (W,), windows (W, samples))``.

    Raises:
        _ClipErrors: with ``starts``, some (or all) of them failed.
        SoundlibError: the whole file failed (``starts`` is None) -- reported for the whole-file clip.
    """
    from soundlib.audio import load_windows, stream_windows

    def reason(e: Exception) -> str:
        return f"audio: {e}" if isinstance(e, SoundlibError) else f"audio: {path}: {type(e).__name__}: {e}"

    if starts is None:
        try:
            got, windows = load_windows(path, cfg, max_windows=max_windows)
        except Exception as e:  # noqa: BLE001 - reported per clip, never fatal
            raise _ClipErrors({0: reason(e)}, np.zeros(0), np.zeros((0, cfg.window_samples), np.float32)) from e
        return np.asarray(got, dtype=np.float64), np.asarray(windows, dtype=np.float32)
    try:
        got, windows = load_windows(path, cfg, starts=starts)
        if len(windows) == len(starts):
            return np.asarray(got, dtype=np.float64), np.asarray(windows, dtype=np.float32)
    except Exception:  # noqa: BLE001 - retried one start at a time below
        pass
    errors: dict[int, str] = {}
    ok_starts, ok_windows = [], []
    for j, s in enumerate(starts):
        try:
            (s_got, w), = list(stream_windows(path, starts=[s], cfg=cfg))
        except Exception as e:  # noqa: BLE001
            errors[j] = reason(e)
            continue
        ok_starts.append(float(s_got))
        ok_windows.append(np.asarray(w, dtype=np.float32))
    st = np.asarray(ok_starts, dtype=np.float64)
    win = np.stack(ok_windows) if ok_windows else np.zeros((0, cfg.window_samples), np.float32)
    if errors:
        raise _ClipErrors(errors, st, win)
    return st, win


def model_labels(names: Sequence[str], specs: Sequence[str]) -> list[str]:
    """Column labels for several models: the model names, made unique with the checkpoint file name if needed."""
    labels = list(names)
    for i, name in enumerate(names):
        if names.count(name) > 1:
            labels[i] = f"{name} ({Path(str(specs[i])).name})"
    for i, lab in enumerate(labels):
        if labels.count(lab) > 1:
            labels[i] = f"{lab} #{i + 1}"
    return labels


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to the list's folder, as a list would write it (``../audio/x.wav``)."""
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive
        return str(path)


# ------------------------------------------------------------------------------------------------------------------
# Retrieval over a list
# ------------------------------------------------------------------------------------------------------------------

@dataclass
class ModelResult:
    """One model's retrieval figures and its per-query recommendations (for ``--out``)."""

    model: str
    checkpoint: str
    scores: RetrievalScores
    recommendations: dict[str, dict[str, Any]]


@dataclass
class EvalReport:
    """Everything ``soundlib eval`` reports: figures per model, plus the rows that were skipped."""

    list_path: str
    ks: list[int]
    queries: int
    candidates: int
    clips: int
    rows: int
    models: list[ModelResult]
    problems: list[Problem]
    file_score: str
    library: str | None = None

    @property
    def has_categories(self) -> bool:
        return any(c is not None for m in self.models for _, c in m.scores.topk.values())

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document of the eval issue (exactly its keys)."""
        return {
            "list": self.list_path,
            "queries": self.queries,
            "candidates": self.candidates,
            "models": [m.scores.to_json(m.model) for m in self.models],
        }

    def recommendations_json(self) -> dict[str, Any]:
        """The ``--out`` document: for one model the reference code's shape (frame -> knn, knn_dist, labels,
        ground truth); for several, ``{model: that}``."""
        if len(self.models) == 1:
            return self.models[0].recommendations
        return {m.model: m.recommendations for m in self.models}


def _check_file_score(file_score: str) -> None:
    if file_score not in FILE_SCORES:
        raise SoundlibError(f"unknown file score {file_score!r} (use {' or '.join(FILE_SCORES)})")


def _load_models(model_specs: Sequence[str | None]) -> list[tuple[str, Any]]:
    from soundlib.models import load_model

    specs = list(model_specs) or [None]
    return [(str(spec) if spec else "", load_model(spec)) for spec in specs]


def evaluate_list(
    list_path: str | Path,
    model_specs: Sequence[str | None] = (),
    ks: Iterable[int] = (1, 5, 10),
    *,
    file_score: str | None = None,
    max_windows: int | None = None,
    library: str | None = None,
    db: str | None = None,
    url: str | None = None,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Evaluate one or several models on a pair list (same rows, same candidates for all of them).

    Args:
        list_path: the pair list (CSV; paths relative to its folder).
        model_specs: checkpoints (``None`` or empty = the default model).
        ks: cut-offs.
        file_score: how a whole-file row's windows are combined: ``"best"`` (min distance) or ``"mean"``
            (default :data:`DEFAULT_FILE_SCORE`; a library is always ranked by best window, like ``query``).
        max_windows: cap of windows per whole file (default ``AudioConfig.max_windows``).
        library: evaluate against this ingested collection instead of the list's own clips.
        db, url: where that collection lives (see :func:`soundlib.store.open_store`).
        progress: progress callback.

    Returns:
        :class:`EvalReport`; ``queries == 0`` when nothing could be scored (every row is in ``problems``).

    Raises:
        ListError: the list file itself is unusable. CheckpointError: a model cannot be loaded.
    """
    if library is not None and file_score not in (None, "best"):
        raise SoundlibError("--library ranks files by their best window (as `soundlib query` does); "
                            "--file-score mean applies to lists only")
    file_score = file_score or DEFAULT_FILE_SCORE
    _check_file_score(file_score)
    ks = M.parse_ks(list(ks))
    progress = progress or null_progress
    max_windows = int(max_windows or AudioConfig().max_windows)
    pairs = read_list(list_path)
    problems = [Problem(e.line, e.reason) for e in pairs.errors]
    data = _prepare(pairs)
    loaded = _load_models(model_specs)
    labels = model_labels([lm.name for _, lm in loaded], [spec or lm.info.path for spec, lm in loaded])
    n_rows = len(data.rows) + len(pairs.errors)
    if library is not None:
        return _evaluate_library(data, loaded, labels, ks, problems, library, db, url, progress, list_path, n_rows)

    # 1. embed frames and clips with every model; a row is scored only if it worked for all of them
    frame_vecs: list[dict[int, np.ndarray]] = []
    clip_vecs: list[dict[int, tuple[np.ndarray, np.ndarray]]] = []
    frame_err: dict[int, str] = {}
    clip_err: dict[int, str] = {}
    for label, (_, lm) in zip(labels, loaded):
        fv, fe = _embed_frames(lm.model, data.frames, progress, label)
        cv, ce = _embed_clips(lm.model, data.clips, max_windows, progress, label)
        frame_vecs.append(fv)
        clip_vecs.append(cv)
        for i, r in fe.items():
            frame_err.setdefault(i, r)
        for i, r in ce.items():
            clip_err.setdefault(i, r)
    ok_rows: list[int] = []
    for i, row in enumerate(data.rows):
        reason = clip_err.get(data.row_clip[i]) or frame_err.get(data.row_frame[i])
        if reason:
            problems.append(Problem(row.line, reason))
        else:
            ok_rows.append(i)
    problems.sort(key=lambda p: (p.line or 0))
    ok_clips = sorted({data.row_clip[i] for i in ok_rows})
    base = data.pairs.path.parent.resolve()
    if not ok_rows:
        return EvalReport(str(list_path), ks, 0, 0, len(ok_clips), n_rows, [], problems, file_score)

    # 2. the candidate entries: one per distinct (clip, sample) of the scored rows
    entries: list[tuple[int, str, str | None]] = []
    seen: dict[tuple[int, str], int] = {}
    for i in ok_rows:
        row = data.rows[i]
        key = (data.row_clip[i], row.sample)
        if key not in seen:
            seen[key] = len(entries)
            entries.append((data.row_clip[i], row.sample, row.category))
    query_samples = [data.rows[i].sample for i in ok_rows]
    query_cats = [data.rows[i].category for i in ok_rows]

    results: list[ModelResult] = []
    for m, (label, (spec, lm)) in enumerate(zip(labels, loaded)):
        qv = np.stack([frame_vecs[m][data.row_frame[i]] for i in ok_rows])
        vecs, v_samples, v_cats, v_meta = [], [], [], []
        for e, (ci, sample, cat) in enumerate(entries):
            starts, v = clip_vecs[m][ci]
            clip = data.clips[ci]
            if clip.start is None and file_score == "mean":
                v = M.group_mean(v, np.zeros(len(v), dtype=np.int64), 1)
                starts = np.array([math.nan])
            for s, vec in zip(starts, v):
                vecs.append(vec)
                v_samples.append(sample)
                v_cats.append(cat)
                v_meta.append({"entry": e, "clip": _rel(clip.audio, base),
                               "start": None if math.isnan(float(s)) else float(s)})
        cand = np.stack(vecs).astype(np.float32)
        ranked, ranked_dist, which = chroma_ranking(
            qv, cand, v_samples, v_cats, ks[-1], {"model": lm.name, "model_sha256": lm.sha256})
        hit_meta = [[v_meta[j] for j in row] for row in which]
        scores = score_vectors(qv, query_samples, query_cats, cand, v_samples, v_cats, ks,
                               ranked=ranked, ranked_distances=ranked_dist)
        recs = _recommendations(data, ok_rows, scores, hit_meta, base)
        results.append(ModelResult(label, spec or str(lm.info.path), scores, recs))
    n_cand = results[0].scores.n_candidates
    return EvalReport(str(list_path), ks, len(ok_rows), n_cand, len(ok_clips), n_rows, results, problems,
                      file_score)


def chroma_ranking(queries: np.ndarray, vectors: np.ndarray, samples: Sequence[str],
                   categories: Sequence[str | None], k: int, store_meta: dict[str, Any] | None = None
                   ) -> tuple[list[list[str]], list[list[float]], list[list[int]]]:
    """Rank candidates with the product's search: a temporary Chroma collection, ``k`` distinct samples per query.

    Args:
        queries: (Q, D) query vectors.
        vectors: (M, D) candidate vectors (several may share a sample).
        samples, categories: (M,) per vector.
        k: results per query (``min(k, number of samples)`` come back).
        store_meta: extra collection metadata (model name and hash).

    Returns:
        Per query: the ranked sample labels, their distances, and the index (into ``vectors``) of each
        sample's best vector.
    """
    from soundlib.store import SoundStore

    vectors = np.asarray(vectors, dtype=np.float32)
    metadatas = []
    for i, (s, c) in enumerate(zip(samples, categories)):
        md: dict[str, Any] = {"sample": s, "vector": i}
        if c is not None:
            md["category"] = c
        metadatas.append(md)
    ids = [f"v{i}" for i in range(len(vectors))]
    with SoundStore.temporary(int(vectors.shape[1]), store_meta) as store:
        store.add_vectors(ids, vectors, metadatas)
        hits = store.search(np.asarray(queries, dtype=np.float32), k, distinct="sample")
    ranked = [[str(h.metadata["sample"]) for h in row] for row in hits]
    dists = [[float(h.distance) for h in row] for row in hits]
    which = [[int(h.metadata["vector"]) for h in row] for row in hits]
    return ranked, dists, which


def _clip_id(clip: str, start: float | None) -> str:
    return clip if start is None else f"{clip}@{start:g}"


def _recommendations(data: _Data, ok_rows: list[int], scores: RetrievalScores,
                     hit_meta: list[list[dict[str, Any]]], base: Path) -> dict[str, dict[str, Any]]:
    recs: dict[str, dict[str, Any]] = {}
    for q, i in enumerate(ok_rows):
        row = data.rows[i]
        key = _rel(row.frame, base)
        if key in recs:
            key = f"{key}#{row.line}"
        recs[key] = {
            "line": row.line,
            "knn": [_clip_id(m["clip"], m["start"]) for m in hit_meta[q]],
            "knn_dist": [float(d) for d in scores.distances[q]],
            "knn_samples": [scores.samples[j] for j in scores.ranked[q]],
            "aud_labels": [scores.sample_categories[j] for j in scores.ranked[q]],
            "gt_sample": row.sample,
            "gt_label": row.category,
            "gt_rank": int(scores.ranks[q]),
        }
    return recs


def _library_vectors(store: Any) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    """Every window of a collection: ``(vectors (M, D), file ids (M,), metadatas (M,))``, read page by page."""
    vecs: list[np.ndarray] = []
    fids: list[str] = []
    metas: list[dict[str, Any]] = []
    for ids, emb, page_metas in store.iter_records():
        for i, m in zip(ids, page_metas):
            fids.append(str(m.get("file_id") or m.get("path") or i))
            metas.append(m)
        vecs.append(emb)
    if not vecs:
        raise SoundlibError(f"collection '{store.name}' is empty; fill it with `soundlib ingest`", store.location)
    return np.concatenate(vecs), fids, metas


def _evaluate_library(data: _Data, loaded: list[tuple[str, Any]], labels: list[str], ks: list[int],
                      problems: list[Problem], library: str, db: str | None, url: str | None,
                      progress: ProgressFn, list_path: str | Path, n_rows: int) -> EvalReport:
    """Retrieval against an ingested collection: candidates are its files (best window each, like ``query``).

    A row's own sample is the library file at its ``audio`` path (the row's ``start`` is ignored); its category
    is that file's library category (so both sides use the library's vocabulary).
    """
    from soundlib.store import open_store

    with open_store(db=db, url=url, collection=library) as store:
        for _, lm in loaded:
            store.check_model(lm)
        vectors, fids, metas = _library_vectors(store)
        file_path: dict[str, Path] = {}
        file_cat: dict[str, str | None] = {}
        for fid, m in zip(fids, metas):
            if fid not in file_path:
                root, rel = m.get("root"), str(m.get("path", ""))
                file_path[fid] = Path(os.path.join(root, rel) if root else rel)
                file_cat[fid] = str(m.get("category") or "") or None
        by_path: dict[str, str] = {}
        for fid, p in file_path.items():
            by_path.setdefault(str(p), fid)
            try:
                by_path.setdefault(str(p.resolve()), fid)
            except OSError:
                pass
        truth: dict[int, str] = {}
        for i, row in enumerate(data.rows):
            fid = by_path.get(str(row.audio)) or by_path.get(str(Path(row.audio).resolve()))
            if fid is None:
                problems.append(Problem(row.line, f"audio not in library '{library}': {row.audio}"))
            else:
                truth[i] = fid
        frame_vecs = []
        frame_err: dict[int, str] = {}
        for label, (_, lm) in zip(labels, loaded):
            fv, fe = _embed_frames(lm.model, data.frames, progress, label)
            frame_vecs.append(fv)
            for i, r in fe.items():
                frame_err.setdefault(i, r)
        ok_rows = []
        for i in sorted(truth):
            reason = frame_err.get(data.row_frame[i])
            if reason:
                problems.append(Problem(data.rows[i].line, reason))
            else:
                ok_rows.append(i)
        problems.sort(key=lambda p: (p.line or 0))
        n_files = len(file_path)
        if not ok_rows:
            return EvalReport(str(list_path), ks, 0, n_files, n_files, n_rows, [], problems, "best", library)
        base = data.pairs.path.parent.resolve()
        q_samples = [truth[i] for i in ok_rows]
        q_cats = [file_cat[truth[i]] for i in ok_rows]
        v_cats = [file_cat[f] for f in fids]
        results = []
        for m, (label, (spec, lm)) in enumerate(zip(labels, loaded)):
            qv = np.stack([frame_vecs[m][data.row_frame[i]] for i in ok_rows]).astype(np.float32)
            hits = store.search(qv, ks[-1], distinct="path")
            ranked = [[str(h.metadata.get("file_id") or h.metadata.get("path") or h.id) for h in row] for row in hits]
            dists = [[float(h.distance) for h in row] for row in hits]
            scores = score_vectors(qv, q_samples, q_cats, vectors, fids, v_cats, ks, ranked=ranked,
                                   ranked_distances=dists)
            hit_meta = [[{"clip": _rel(Path(h.path), base), "start": float(h.start)} for h in row] for row in hits]
            recs = _recommendations(data, ok_rows, scores, hit_meta, base)
            for q, key in enumerate(recs):
                recs[key]["knn_samples"] = [_rel(file_path[f], base) for f in ranked[q]]
                recs[key]["gt_sample"] = _rel(file_path[q_samples[q]], base)
                recs[key]["gt_label"] = q_cats[q]
            results.append(ModelResult(label, spec or str(lm.info.path), scores, recs))
    return EvalReport(str(list_path), ks, len(ok_rows), n_files, n_files, n_rows, results, problems, "best",
                      library)


# ------------------------------------------------------------------------------------------------------------------
# Correlation (Table 1a)
# ------------------------------------------------------------------------------------------------------------------

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


def _embed_rows_for_pairs(lm: Any, data: _Data, max_windows: int, progress: ProgressFn, label: str
                          ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, str]]:
    """Embed a list's frames and clips; returns per row the frame vector, the clip's window vectors, errors."""
    fv, fe = _embed_frames(lm.model, data.frames, progress, label)
    cv, ce = _embed_clips(lm.model, data.clips, max_windows, progress, label)
    qv, av, err = {}, {}, {}
    for i in range(len(data.rows)):
        reason = ce.get(data.row_clip[i]) or fe.get(data.row_frame[i])
        if reason:
            err[i] = reason
            continue
        qv[i] = fv[data.row_frame[i]]
        av[i] = cv[data.row_clip[i]][1]
    return qv, av, err


def _pairs_for(data: _Data, rows: list[int], seed: int) -> list[tuple[int, int, int]]:
    local = make_pairs([data.rows[i].sample for i in rows], [data.rows[i].category for i in rows],
                       [data.rows[i].video for i in rows], [data.row_clip[i] for i in rows], seed)
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
) -> CorrelationReport:
    """The paper's correlation task (Table 1a): accuracy on balanced correlated / uncorrelated pairs.

    Models with a correlation head (BCE, BCE + margin) classify with it (class 1 = correlated); the others call a
    pair correlated when its embedding distance is below a threshold fitted on ``val_path``'s pairs.

    Raises:
        SoundlibError: a contrastive model without ``val_path``; no pairs can be built.
    """
    file_score = file_score or DEFAULT_FILE_SCORE
    _check_file_score(file_score)
    progress = progress or null_progress
    max_windows = int(max_windows or AudioConfig().max_windows)
    loaded = _load_models(model_specs)
    labels = model_labels([lm.name for _, lm in loaded], [spec or lm.info.path for spec, lm in loaded])
    need_val = [lab for lab, (_, lm) in zip(labels, loaded) if not _has_head(lm.model)]
    if need_val and val_path is None:
        raise SoundlibError(f"{', '.join(need_val)} has no correlation head: pass --val LIST to fit a distance "
                            "threshold on")
    pairs_list = read_list(list_path)
    data = _prepare(pairs_list)
    problems = [Problem(e.line, e.reason) for e in pairs_list.errors]
    val_data = _prepare(read_list(val_path)) if (need_val and val_path is not None) else None

    embedded = []
    bad: dict[int, str] = {}
    for label, (_, lm) in zip(labels, loaded):
        qv, av, err = _embed_rows_for_pairs(lm, data, max_windows, progress, label)
        embedded.append((qv, av))
        for i, r in err.items():
            bad.setdefault(i, r)
    for i, r in bad.items():
        problems.append(Problem(data.rows[i].line, r))
    problems.sort(key=lambda p: (p.line or 0))
    ok_rows = [i for i in range(len(data.rows)) if i not in bad]
    pairs = _pairs_for(data, ok_rows, seed)
    n_rows = len(data.rows) + len(pairs_list.errors)
    if not pairs:
        return CorrelationReport(str(list_path), 0, n_rows, [], problems, len(ok_rows))
    y = np.array([p[2] for p in pairs])

    results = []
    for label, (_, lm), (qv, av) in zip(labels, loaded, embedded):
        if _has_head(lm.model):
            s = _pair_scores(lm.model, pairs, qv, av, True, file_score)
            results.append(CorrelationResult(label, "head", float(np.mean((s > 0) == (y == 1)))))
            continue
        assert val_data is not None
        vq, va, verr = _embed_rows_for_pairs(lm, val_data, max_windows, progress, f"{label} (val)")
        vrows = [i for i in range(len(val_data.rows)) if i not in verr]
        vpairs = _pairs_for(val_data, vrows, seed)
        if not vpairs:
            raise SoundlibError("no correlated/uncorrelated pairs can be built from it", str(val_path))
        vd = -_pair_scores(lm.model, vpairs, vq, va, False, file_score)
        t, vacc = fit_threshold(vd, [p[2] for p in vpairs])
        d = -_pair_scores(lm.model, pairs, qv, av, False, file_score)
        results.append(CorrelationResult(label, "threshold", float(np.mean((d < t) == (y == 1))), t, vacc))
    return CorrelationReport(str(list_path), len(pairs), n_rows, results, problems, len(ok_rows))


# ------------------------------------------------------------------------------------------------------------------
# Rendering (Rich; imported lazily)
# ------------------------------------------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def retrieval_table(report: EvalReport) -> Any:
    """A Rich table: rows = top-k, chance@k and MRR; one column per model, cells "sample % / category %"."""
    from rich.table import Table

    cats = report.has_categories
    title = (f"{Path(report.list_path).name}: {report.queries} queries, {report.candidates} candidates"
             + (f" (library {report.library})" if report.library else f", file score {report.file_score}"))
    table = Table(title=title, show_lines=False)
    table.add_column("metric", style="bold")
    unit = "sample / category %" if cats else "sample %"
    for m in report.models:
        table.add_column(f"{m.model}\n{unit}", justify="right")

    def cell(pair: tuple[float, float | None]) -> str:
        s, c = pair
        return f"{_pct(s)} / {_pct(c)}" if cats else _pct(s)

    for k in report.ks:
        table.add_row(f"top-{k}", *[cell(m.scores.topk[k]) for m in report.models])
    table.add_section()
    for k in report.ks:
        table.add_row(f"chance@{k}", *[cell(m.scores.chance[k]) for m in report.models], style="dim")
    table.add_section()
    table.add_row("MRR", *[f"{m.scores.mrr:.3f}" for m in report.models])
    return table


def correlation_table(report: CorrelationReport) -> Any:
    """A Rich table of the correlation task: one row per model."""
    from rich.table import Table

    table = Table(title=f"{Path(report.list_path).name}: correlation on {report.pairs} balanced pairs")
    for col in ("model", "method", "threshold", "accuracy %"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for m in report.models:
        table.add_row(m.model, m.method, "-" if m.threshold is None else f"{m.threshold:.3f}", _pct(m.accuracy))
    return table
