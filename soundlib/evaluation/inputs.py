"""A pair list's inputs for ``soundlib eval``: its rows split into distinct frames and clips, embedded per model.

:func:`embed_list` is the one embedding path of :mod:`soundlib.evaluation`: every frame and every clip is read
once, embedded with each model in batches of :data:`soundlib.config.INFERENCE_BATCH`, and what could not be read
is kept as a one-line reason per frame or clip (a row with a bad frame or clip is skipped and reported, never
fatal). A row without ``start`` stands for the whole sound file: its windows (up to ``max_windows``) are embedded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoders.config import AudioConfig
from soundlib.config import FILE_SCORES, INFERENCE_BATCH
from soundlib.errors import SoundlibError
from soundlib.lists import PairList, PairRow
from soundlib.name_concepts import for_model as name_mixing
from soundlib.progress import ProgressFn

__all__ = ["Problem", "Clip", "ListData", "Embedded", "embed_list", "name_paths", "load_models", "model_labels",
           "check_file_score", "relative"]


@dataclass(frozen=True)
class Problem:
    """A row that was skipped: its line number in the list and why (one line)."""

    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


@dataclass
class Clip:
    """One distinct (audio, start) clip of the list, and the rows that use it."""

    audio: Path
    start: float | None
    rows: list[int] = field(default_factory=list)


@dataclass
class ListData:
    """The list, split into queries (rows) and the distinct clips and frames they use.

    Attributes:
        pairs: the list as read.
        rows: its rows (queries), in order.
        clips: the distinct ``(audio, start)`` clips.
        row_clip: (rows,) index into ``clips`` of each row's clip.
        frames: the distinct frame files.
        row_frame: (rows,) index into ``frames`` of each row's frame.
    """

    pairs: PairList
    rows: list[PairRow]
    clips: list[Clip]
    row_clip: list[int]
    frames: list[Path]
    row_frame: list[int]

    @classmethod
    def from_pairs(cls, pairs: PairList) -> "ListData":
        """Split a list read by :func:`soundlib.lists.read_list` into its distinct clips and frames."""
        return _split(pairs)


def _split(pairs: PairList) -> ListData:
    clips: list[Clip] = []
    clip_index: dict[tuple[str, float | None], int] = {}
    frames: list[Path] = []
    frame_index: dict[Path, int] = {}
    row_clip, row_frame = [], []
    for i, row in enumerate(pairs.rows):
        key = row.clip_key
        if key not in clip_index:
            clip_index[key] = len(clips)
            clips.append(Clip(row.audio, row.start))
        clips[clip_index[key]].rows.append(i)
        row_clip.append(clip_index[key])
        if row.frame not in frame_index:
            frame_index[row.frame] = len(frames)
            frames.append(row.frame)
        row_frame.append(frame_index[row.frame])
    return ListData(pairs, list(pairs.rows), clips, row_clip, frames, row_frame)


@dataclass
class Embedded:
    """A list embedded with one or more models (see :func:`embed_list`).

    Attributes:
        frames: per model, ``{frame index: (D,) vector}``.
        clips: per model, ``{clip index: (starts (W,), vectors (W, D))}`` (empty when clips were not embedded).
        frame_errors: ``{frame index: reason}`` over all models (the first model's reason is kept).
        clip_errors: ``{clip index: reason}`` likewise.
    """

    frames: list[dict[int, np.ndarray]] = field(default_factory=list)
    clips: list[dict[int, tuple[np.ndarray, np.ndarray]]] = field(default_factory=list)
    frame_errors: dict[int, str] = field(default_factory=dict)
    clip_errors: dict[int, str] = field(default_factory=dict)

    def row_error(self, data: ListData, row: int) -> str | None:
        """Why row ``row`` of ``data`` cannot be scored (its clip's reason first), or ``None``."""
        return self.clip_errors.get(data.row_clip[row]) or self.frame_errors.get(data.row_frame[row])

    def scorable_rows(self, data: ListData, rows: Sequence[int], problems: list[Problem]) -> list[int]:
        """The rows of ``rows`` that can be scored; each other one goes to ``problems`` with its reason (which is
        then sorted by line)."""
        ok = []
        for i in rows:
            reason = self.row_error(data, i)
            if reason:
                problems.append(Problem(data.rows[i].line, reason))
            else:
                ok.append(i)
        problems.sort(key=lambda p: (p.line or 0))
        return ok


def embed_list(models: Sequence[Any], labels: Sequence[str], data: ListData, progress: ProgressFn,
               max_windows: int | None, names: bool = False) -> Embedded:
    """Embed a list's frames, and its clips unless ``max_windows`` is ``None``, with every model.

    Args:
        models: the models (``LoadedModel.model``), in report order.
        labels: their labels (progress task names).
        data: the list (:meth:`ListData.from_pairs`).
        progress: progress callback (tasks ``"frames LABEL"``, ``"sounds LABEL"``).
        max_windows: windows embedded per whole-file clip; ``None``: frames only (a library supplies the sounds).
        names: mix the concepts each sound's path names into its windows, as ``soundlib ingest`` does (bridged
            models; :func:`name_paths` gives the paths).

    Returns:
        :class:`Embedded`; a frame or clip that failed with any model is in its errors.
    """
    out = Embedded()
    rels = name_paths([c.audio for c in data.clips]) if names else []
    for model, label in zip(models, labels):
        fv, fe = _embed_frames(model, data.frames, progress, label)
        out.frames.append(fv)
        for i, r in fe.items():
            out.frame_errors.setdefault(i, r)
        if max_windows is None:
            continue
        cv, ce = _embed_clips(model, data.clips, max_windows, progress, label)
        mixing = name_mixing(model) if names else None
        if mixing is not None:
            cv = {ci: (starts, mixing.apply(model, rels[ci], vecs)) for ci, (starts, vecs) in cv.items()}
        out.clips.append(cv)
        for i, r in ce.items():
            out.clip_errors.setdefault(i, r)
    return out


def name_paths(audio: Sequence[Path]) -> list[str]:
    """The paths whose words name a list's sounds (:mod:`soundlib.name_concepts`): each file's path below the
    deepest folder all of them share, the list's stand-in for a library root (so the folders above the sounds,
    such as a home folder, never count)."""
    if not audio:
        return []
    folders = [str(Path(a).parent) for a in audio]
    try:
        root = os.path.commonpath(folders)
    except ValueError:  # relative and absolute paths mixed: no common root
        return [Path(a).name for a in audio]
    return [Path(os.path.relpath(a, root)).as_posix() for a in audio]


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


def _embed_clips(model: Any, clips: Sequence[Clip], max_windows: int, progress: ProgressFn,
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


def relative(path: Path, base: Path) -> str:
    """``path`` relative to the list's folder, as a list would write it (``../audio/x.wav``)."""
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive
        return str(path)


def check_file_score(file_score: str) -> None:
    """Raise :class:`SoundlibError` unless ``file_score`` is one of :data:`soundlib.config.FILE_SCORES`."""
    if file_score not in FILE_SCORES:
        raise SoundlibError(f"unknown file score {file_score!r} (use {' or '.join(FILE_SCORES)})")


def load_models(model_specs: Sequence[str | None], norm_stats: str | os.PathLike | None = None
                ) -> list[tuple[str, Any]]:
    """``[(spec as given or "", LoadedModel)]`` for each checkpoint (the default model when none is given), each with
    ``norm_stats`` (a mean/variance ``.npy``, :mod:`soundlib.norm_stats`) replacing its band statistics if given."""
    from soundlib.models import load_model

    specs = list(model_specs) or [None]
    return [(str(spec) if spec else "", load_model(spec, norm_stats)) for spec in specs]
