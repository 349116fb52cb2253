"""The training loop: SGD with Nesterov momentum, LR decay on plateau, early stopping, best/last checkpoints, resume.

Run folder (``out_dir``)::

    best.pt          checkpoint with the best validation metric (below)
    last.pt          checkpoint of the last finished epoch
    last_state.pt    what ``--resume`` needs (weights, optimizer, scheduler, counters, history); weights_only-safe
    metrics.csv      epoch, train_loss, val_loss, val_top10, lr, pairs_per_s, seconds, val_top10_category, val_mrr
                     (val_* over all validation rows; + val<i>_top10, val<i>_top10_category, val<i>_mrr per
                     validation list when there are several)

Data: one or several train lists (pooled) and one or several validation lists (each scored on its own). Model
inputs are computed once and cached on disk (:mod:`train.features`): the paper models' log-mels (their frames are
decoded as ``uint8`` and preloaded); for the pretrained family (``family="pretrained"``) the frozen backbones'
features of every audio window AND every frame, so an epoch only runs the trainable heads (seconds on a CPU).

Whole-file rows (empty ``start``, e.g. catalog pairs): up to ``windows`` of the file's loudest 1-s windows are
cached; every epoch draws ONE of them per clip, uniformly, from ``numpy.random.default_rng([seed, epoch, 1])``, so a
sound is seen through different windows across epochs. Validation embeds all of a file's cached windows and scores
the file by its best (nearest) window, as ``soundlib eval`` and ``soundlib query`` do.

Determinism: the model is initialised from ``seed``; epoch ``e`` reseeds torch with a value derived from
``(seed, e)`` and draws its shuffle (and BCE negatives) from ``numpy.random.default_rng([seed, e])`` and its windows
as above. A run resumed after epoch ``e`` therefore continues exactly as the uninterrupted run would have.

Validation metric (per validation list, computed by :func:`soundlib.evaluation.scoring.score_vectors`, exact search): every
row is a query (its frame's embedding); the candidates are the list's distinct *samples* (a sample's distance is its
nearest window); a row's ground truth is the sample of its own clip (so a catalog list, where many rows share one
sound file, is well defined: the row's own sound). Reported: top-10 sample accuracy (exactly ``min(10, N)``
samples), top-10 category accuracy (when every row of the list has a category) and the mean reciprocal rank. The
run keeps the epoch with the best **top-10 sample accuracy over all validation rows** (the lists' figures averaged
with their row counts as weights; each row is still ranked among its own list's samples).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import math
import os
import subprocess
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from soundlib.config import INFERENCE_BATCH
from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn, null_progress
from train.datasets import Epoch, FeatureStore, FrameStore, PairData, load_pairs, make_epoch
from train.defaults import (DEFAULT_EPOCHS, DEFAULT_PATIENCE, DEFAULT_PLATEAU_PATIENCE, DEFAULT_PRECISION,
                            DEFAULT_PRELOAD_MB, DEFAULT_WEIGHT_DECAY, DEFAULT_WINDOWS, DEFAULT_WORKERS, PRECISIONS)

#: Validation cut-off (the paper's top-10).
TOP_K = 10
#: Name of the validation metric in reports and checkpoints.
METRIC = "val_top10_sample"
METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "val_top10", "lr", "pairs_per_s", "seconds",
                   "val_top10_category", "val_mrr")
STATE_FORMAT = "soundlib-train-state"
STATE_VERSION = 1
#: Settings that must match for ``--resume`` to continue a run.
_RESUME_KEYS = ("model", "width", "image_size", "batch", "lr", "seed", "precision", "train_sha256", "val_sha256",
                "windows", "temperature", "weight_decay")


@dataclass
class ValScores:
    """Validation figures of one list at one epoch (fractions in [0, 1]; NaN when undefined)."""

    top10: float
    top10_category: float
    mrr: float
    loss: float


@dataclass
class EpochMetrics:
    """One row of ``metrics.csv`` (``val_*`` figures are over all validation rows: the lists' figures weighted by
    their rows; ``per_val`` holds each list's :class:`ValScores` as a dict)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_top10: float
    lr: float
    pairs_per_s: float
    seconds: float
    val_top10_category: float = float("nan")
    val_mrr: float = float("nan")
    per_val: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainReport:
    """What :func:`train_model` did.

    Attributes:
        out_dir: the run folder.
        model: registry name.
        best_path, last_path, metrics_path: files written.
        epochs_run: last finished epoch (1-based; 0 if none).
        best_epoch, best_top10: the epoch kept in ``best.pt`` and its validation metric (top-10 sample accuracy
            over all validation rows, each ranked among its own list's samples).
        chance: the same metric for a random ranking (``min(1, 10 / N)`` of each list, weighted by its rows).
        stopped_early: early stopping ended the run.
        resumed_from: the epoch a ``--resume`` continued after (``None`` for a fresh run).
        train_rows, val_rows, val_samples: data sizes (summed over the validation lists).
        pairs_per_s: mean training throughput of the epochs run now (pairs per second).
        seconds: wall time of this call.
        history: every epoch's metrics (including those before a resume).
        settings: model, width, image_size, batch, lr, seed, precision, windows, temperature, weight_decay, ...
        val_lists: per validation list: ``path``, ``rows``, ``samples``, ``categories``, ``chance_top10``,
            ``chance_top10_category`` and the best epoch's ``top10``, ``top10_category``, ``mrr``.
        feature_seconds: time spent computing or loading the cached model inputs.
        train_windows: audio windows of the train clips (several per whole-file clip).
    """

    out_dir: str
    model: str
    best_path: str
    last_path: str
    metrics_path: str
    epochs_run: int
    best_epoch: int
    best_top10: float
    chance: float
    stopped_early: bool
    resumed_from: int | None
    train_rows: int
    val_rows: int
    val_samples: int
    pairs_per_s: float
    seconds: float
    history: list[EpochMetrics] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    val_lists: list[dict[str, Any]] = field(default_factory=list)
    feature_seconds: float = 0.0
    train_windows: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [asdict(h) for h in self.history]
        return d


# --- small pieces -------------------------------------------------------------------------------------------------

def make_optimizer(model: Any, lr: float, weight_decay: float = DEFAULT_WEIGHT_DECAY) -> Any:
    """SGD, Nesterov momentum 0.9, weight decay ``weight_decay`` (the paper: 1e-4)."""
    import torch

    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def make_scheduler(optimizer: Any, patience: int = DEFAULT_PLATEAU_PATIENCE) -> Any:
    """Decay the LR tenfold when the validation metric (higher is better) stalls for ``patience`` epochs."""
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=patience)


def _autocast(precision: str) -> Any:
    import torch

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision == "fp32":
        return nullcontext()
    raise SoundlibError(f"unknown precision {precision!r} (use fp32 or bf16)")


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
    with _autocast(precision):
        v = model.encode_image(x)
        a = model.encode_audio(feats)
    loss = model.pair_loss(v.float(), a.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _copy_durably(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary file that is fsynced, then renamed over ``dst``."""
    import shutil

    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as a, open(tmp, "wb") as b:
        shutil.copyfileobj(a, b, 1 << 20)
        b.flush()
        os.fsync(b.fileno())
    os.replace(tmp, dst)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


def git_commit(repo: Path | None = None) -> str | None:
    """The checkout's HEAD commit (``None`` when not a git checkout or git is missing)."""
    repo = repo or Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def code_version() -> str:
    """``"<soundlib version>"`` plus ``"+git.<12 hex>"`` when running from a git checkout."""
    from encoders.version import package_version

    v = package_version()
    commit = git_commit()
    return f"{v}+git.{commit[:12]}" if commit else v


def _list_facts(data: PairData) -> dict[str, Any]:
    """Facts of the list(s) behind ``data``: for one list its path and sha256; for several, ``paths`` and the
    sha256 of their hashes joined in order."""
    from train.features import file_sha256

    shas = [file_sha256(p) for p in data.paths]
    facts: dict[str, Any] = {"rows": len(data), "clips": len(data.clips), "frames": len(data.frames)}
    if len(shas) == 1:
        facts.update(path=str(Path(data.paths[0]).resolve()), sha256=shas[0])
    else:
        facts.update(path=None, paths=[str(Path(p).resolve()) for p in data.paths],
                     lists_sha256=shas, sha256=hashlib.sha256("\n".join(shas).encode()).hexdigest())
    return facts


# --- validation ---------------------------------------------------------------------------------------------------

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


def _val_data(data: PairData, windows: Any, feats: Any, frames: Any, contrastive: bool, batch: int,
              seed: int) -> ValData:
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
            with _autocast(precision):
                out.append(model.encode_image(images_to_input(model, x, precision)).float())
    return torch.cat(out) if out else torch.zeros((0, model.embed_dim))


def embed_mels(model: Any, mels: Any, precision: str, batch: int = INFERENCE_BATCH) -> Any:
    """``(n, D)`` float32 embeddings of audio inputs (raw log-mels or cached features; eval mode, no grad)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, mels.shape[0], batch):
            with _autocast(precision):
                out.append(model.encode_audio(mels[i:i + batch]).float())
    return torch.cat(out) if out else torch.zeros((0, model.embed_dim))


def topk_sample_accuracy(v_rows: Any, a_clips: Any, clip_sample: np.ndarray, row_sample: np.ndarray,
                         k: int = TOP_K) -> float:
    """Fraction of rows whose own sample is among the ``min(k, N)`` nearest of the ``N`` samples.

    Args:
        v_rows: ``(R, D)`` frame embeddings, one per row.
        a_clips: ``(C, D)`` clip (or window) embeddings.
        clip_sample: ``(C,)`` sample code of each clip (a sample with several clips counts its nearest one).
        row_sample: ``(R,)`` the row's own sample code.
        k: cut-off.
    """
    import torch

    if v_rows.shape[0] == 0:
        return float("nan")
    d = torch.cdist(v_rows.double(), a_clips.double())  # (R, C)
    n_s = int(clip_sample.max()) + 1
    groups = torch.from_numpy(np.ascontiguousarray(clip_sample, dtype=np.int64)).expand(d.shape[0], -1)
    d = torch.full((d.shape[0], n_s), float("inf"), dtype=d.dtype).scatter_reduce(1, groups, d, reduce="amin")
    kk = min(int(k), n_s)
    top = torch.topk(d, kk, dim=1, largest=False).indices  # sample codes, nearest first
    hits = (top == torch.from_numpy(row_sample)[:, None]).any(dim=1)
    return float(hits.double().mean())


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


def _weighted(xs: Sequence[float], weights: Sequence[int]) -> float:
    """Weighted mean of the finite values (``nan`` when none is)."""
    pairs = [(x, w) for x, w in zip(xs, weights) if math.isfinite(x)]
    return float(np.average([x for x, _ in pairs], weights=[w for _, w in pairs])) if pairs else float("nan")


def _aggregate(scores: Sequence[ValScores], rows: Sequence[int]) -> tuple[float, float, float, float]:
    """``(top10, top10_category, mrr, loss)`` over the validation lists, each list weighted by its rows (so the
    figures are over all validation rows, each row ranked among its own list's samples); the category figure
    over the lists that have categories."""
    return (_weighted([s.top10 for s in scores], rows), _weighted([s.top10_category for s in scores], rows),
            _weighted([s.mrr for s in scores], rows), _weighted([s.loss for s in scores], rows))


# --- the run ----------------------------------------------------------------------------------------------------

def _write_metrics(path: Path, history: Sequence[EpochMetrics]) -> None:
    n_val = max((len(h.per_val) for h in history), default=0)
    extra = [f"val{i + 1}_{m}" for i in range(n_val) for m in ("top10", "top10_category", "mrr")] if n_val > 1 else []
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(list(METRICS_COLUMNS) + extra)
        for h in history:
            row = [h.epoch, f"{h.train_loss:.6f}", f"{h.val_loss:.6f}", f"{h.val_top10:.6f}", f"{h.lr:.3g}",
                   f"{h.pairs_per_s:.2f}", f"{h.seconds:.2f}", f"{h.val_top10_category:.6f}", f"{h.val_mrr:.6f}"]
            if extra:
                for pv in h.per_val:
                    row += [f"{pv['top10']:.6f}", f"{pv['top10_category']:.6f}", f"{pv['mrr']:.6f}"]
            w.writerow(row)
    os.replace(tmp, path)


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear line
        raise SoundlibError(f"cannot read the resume state ({type(e).__name__}); start without --resume",
                            path) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise SoundlibError("not a soundlib training state file", path)
    return state


def _as_lists(x: Any) -> list[Any]:
    return [x] if isinstance(x, (str, os.PathLike)) else list(x)


class _Inputs:
    """Builds a model's cached inputs: audio windows (+ features) for clips, frames (or their features)."""

    def __init__(self, model: Any, config: Any, cache_dir: Path, windows: int, workers: int, preload_mb: float,
                 progress: ProgressFn) -> None:
        from train.features import ImageFeatureCache, LogMelCache

        self.model, self.windows, self.workers, self.preload_mb = model, int(windows), workers, preload_mb
        self.progress = progress
        self.pretrained = hasattr(model, "features_key")
        extra = model.features_key if self.pretrained else getattr(config, "family", "paper")
        self.audio = LogMelCache(cache_dir, model.audio_features, config.audio, extra_key=extra)
        self.size = model.picture_size
        self.images = (ImageFeatureCache(cache_dir, model.image_features, model.features_key, self.size,
                                         detail=model.picture_detail)
                       if self.pretrained else None)

    def clips(self, data: PairData, task: str) -> tuple[Any, Any]:
        import torch

        from train.features import clip_windows

        w = clip_windows(self.audio, data.clips, self.windows, self.progress, task=f"audio {task}")
        return w, torch.from_numpy(w.features)

    def frames(self, data: PairData, task: str) -> Any:
        import torch

        if self.images is not None:
            feats = self.images.features(data.frames, self.progress, task=f"images {task}")
            return FeatureStore(data.frames, torch.from_numpy(feats))
        return FrameStore(data.frames, self.size, self.workers, self.preload_mb, self.progress)


def train_model(
    train_list: str | os.PathLike | Sequence[str | os.PathLike],
    val_list: str | os.PathLike | Sequence[str | os.PathLike],
    model_name: str,
    out_dir: str | os.PathLike,
    epochs: int = DEFAULT_EPOCHS,
    batch: int | None = None,
    lr: float | None = None,
    resume: bool = False,
    width: float | None = None,
    image_size: int | None = None,
    seed: int = 0,
    patience: int = DEFAULT_PATIENCE,
    plateau_patience: int = DEFAULT_PLATEAU_PATIENCE,
    workers: int = DEFAULT_WORKERS,
    cache_dir: str | os.PathLike | None = None,
    precision: str = DEFAULT_PRECISION,
    preload_mb: float = DEFAULT_PRELOAD_MB,
    threads: int = 0,
    windows: int = DEFAULT_WINDOWS,
    temperature: float | None = None,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    progress: ProgressFn | None = None,
) -> TrainReport:
    """Train one of the registered models on pair lists, validating every epoch.

    Args:
        train_list: training pair list(s) (CSV, see :mod:`soundlib.lists`); several are pooled; >= 2 rows with
            >= 2 samples in all.
        val_list: validation pair list(s) (other videos / other files); each is scored on its own.
        model_name: registry name, e.g. ``m5-attention-linear-infonce`` or ``pt-effnet-aisfx-infonce``.
        out_dir: run folder (created): ``best.pt``, ``last.pt``, ``last_state.pt``, ``metrics.csv``.
        epochs: last epoch to run (1-based, counted over resumes).
        batch: pairs per step (``None``: the configuration's, 128 baseline / 32 attention / 128 pretrained). For
            the BCE families a batch holds ``batch // 2`` frames, each with its own clip and with a negative clip.
        lr: initial learning rate (``None``: the configuration's, 0.01).
        resume: continue from ``out_dir/last_state.pt`` (same settings and lists required); a fresh run if absent.
        width: channel multiplier of both streams (``None``: the configuration's). Paper models only.
        image_size: side of the square input image (``None``: the configuration's, 224). The pretrained family's
            backbone fixes it at 224: giving another value (or a width) for it is an error.
        seed: seed of the weights, shuffles, negatives and window draws.
        patience: stop after this many epochs without a better validation metric (the paper: 20).
        plateau_patience: epochs without improvement before the LR is divided by 10.
        workers: frame-decoding worker processes (paper models).
        cache_dir: feature cache folder (default ``<out_dir>/../.cache``).
        precision: ``"bf16"`` (autocast; channels-last for the paper models' CNNs; 2-3x faster on this CPU) or
            ``"fp32"``.
        preload_mb: frames are preloaded into RAM as uint8 when they need at most this many MiB (paper models).
        threads: torch CPU threads (0 = torch's default, all cores). On a machine shared with other jobs, 1 thread
            ran ~10x faster here than 2 (busy-waiting threads); results depend slightly on the thread count.
        windows: cached windows per whole-file clip (its loudest; one is drawn per epoch).
        temperature: tau of InfoNCE / NT-Xent (``None``: the configuration's, 0.5).
        weight_decay: SGD weight decay (the paper: 1e-4).
        progress: ``progress(task, done, total, **info)`` for ``"audio ..."``, ``"images ..."``, ``"frames"``,
            ``"steps"``, ``"epochs"``.

    Returns:
        A :class:`TrainReport`.

    Raises:
        SoundlibError: bad lists (ListError), unknown model or option (ConfigError), or a resume state that does
            not match the settings.
    """
    import torch

    from encoders.checkpoint import save_checkpoint
    from encoders.errors import ConfigError
    from encoders.registry import build_model, get_config

    t_start = time.perf_counter()
    progress = progress or null_progress
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    if precision not in PRECISIONS:
        raise SoundlibError(f"unknown precision {precision!r} (use {' or '.join(PRECISIONS)})")
    if epochs < 1 or patience < 1:
        raise SoundlibError("epochs and patience must be >= 1")
    if windows < 1:
        raise SoundlibError("windows must be >= 1")
    if not weight_decay >= 0:
        raise SoundlibError("weight decay must be >= 0")
    base = get_config(model_name)
    overrides: dict[str, Any] = {}
    if temperature is not None:
        overrides["temperature"] = float(temperature)
    if base.family == "paper":
        if width is not None:
            overrides["width"] = float(width)
        if image_size is not None:
            overrides["image_size"] = int(image_size)
    elif (width is not None and float(width) != base.width) or (image_size is not None
                                                                and int(image_size) != base.image_size):
        raise ConfigError(f"model {model_name}: width and image size are fixed by its pretrained backbones "
                          f"(image size {base.image_size}); leave --width and --image-size out")
    config = get_config(model_name, **overrides)
    batch = int(batch or config.batch_size)
    lr = float(lr or config.lr)
    if batch < 2:
        raise SoundlibError("batch must be >= 2")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    train_paths, val_paths = _as_lists(train_list), _as_lists(val_list)
    if not val_paths:
        raise SoundlibError("needs at least one validation list")
    train = load_pairs(train_paths)
    vals = [load_pairs(p) for p in val_paths]
    if len(train) < 2 or len(set(train.clip_sample)) < 2:
        raise SoundlibError("needs at least two rows with different samples to train", train.path)
    contrastive = bool(config.contrastive)

    model = build_model(config, seed=seed)
    t_feat = time.perf_counter()
    inputs = _Inputs(model, config, Path(cache_dir) if cache_dir else out.resolve().parent / ".cache", windows,
                     workers, preload_mb, progress)
    train_windows, train_feats = inputs.clips(train, "train")
    val_inputs = [inputs.clips(v, f"val {i + 1}" if len(vals) > 1 else "val") for i, v in enumerate(vals)]
    train_frames = inputs.frames(train, "train")
    val_frames = [inputs.frames(v, f"val {i + 1}" if len(vals) > 1 else "val") for i, v in enumerate(vals)]
    feature_seconds = time.perf_counter() - t_feat

    facts_train = _list_facts(train)
    facts_vals = [_list_facts(v) for v in vals]
    val_sha = (facts_vals[0]["sha256"] if len(vals) == 1 else
               hashlib.sha256("\n".join(f["sha256"] for f in facts_vals).encode()).hexdigest())
    settings = {"model": model_name, "width": float(config.width), "image_size": int(config.image_size),
                "batch": batch, "lr": lr, "seed": int(seed), "precision": precision,
                "train_sha256": facts_train["sha256"], "val_sha256": val_sha, "epochs": int(epochs),
                "patience": int(patience), "plateau_patience": int(plateau_patience), "windows": int(windows),
                "temperature": float(config.temperature), "weight_decay": float(weight_decay)}

    if precision == "bf16" and not inputs.pretrained:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, lr, weight_decay)
    scheduler = make_scheduler(optimizer, plateau_patience)
    history: list[EpochMetrics] = []
    best, best_epoch, bad_epochs, start = -math.inf, 0, 0, 1
    resumed_from: int | None = None
    state_path = out / "last_state.pt"
    if resume and state_path.exists():
        state = _load_state(state_path)
        old = state["settings"]
        diff = [k for k in _RESUME_KEYS if old.get(k) != settings[k]]
        if diff:
            raise SoundlibError("cannot resume: settings differ from the interrupted run ("
                                + ", ".join(f"{k} {old.get(k)!r} -> {settings[k]!r}" for k in diff) + ")", state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = [EpochMetrics(**h) for h in state["history"]]
        best, best_epoch, bad_epochs = float(state["best"]), int(state["best_epoch"]), int(state["bad_epochs"])
        start = int(state["epoch"]) + 1
        resumed_from = int(state["epoch"])
    elif getattr(model, "needs_audio_stats", True):
        from soundlib.audio import band_stats

        mean, std = band_stats(train_feats)
        model.set_audio_stats(mean, std)

    valdata = [_val_data(v, w, f, fr, contrastive, batch, seed)
               for v, (w, f), fr in zip(vals, val_inputs, val_frames)]
    chance = _weighted([v.chance for v in valdata], [len(v.data) for v in valdata])
    best_path, last_path, metrics_path = out / "best.pt", out / "last.pt", out / "metrics.csv"
    stopped = bad_epochs >= patience
    rates: list[float] = []

    version, commit = code_version(), git_commit()

    def best_scores() -> list[dict[str, float]]:
        for h in history:
            if h.epoch == best_epoch:
                return h.per_val
        return []

    def val_lists() -> list[dict[str, Any]]:
        got = best_scores()
        return [{"path": f.get("path"), "rows": len(v.data), "samples": v.n_samples,
                 "categories": len(v.data.categories), "chance_top10": v.chance,
                 "chance_top10_category": v.chance_category, **(got[i] if i < len(got) else {})}
                for i, (f, v) in enumerate(zip(facts_vals, valdata))]

    def facts(epoch: int) -> dict[str, Any]:
        return {
            "data": {"train": facts_train, "val": facts_vals[0] if len(facts_vals) == 1 else
                     {"path": None, "paths": [f["path"] for f in facts_vals], "sha256": val_sha,
                      "rows": sum(f["rows"] for f in facts_vals)},
                     "val_lists": val_lists(), "windows_per_file": int(windows),
                     "train_windows": int(train_windows.offsets[-1])},
            "epochs": epoch, "best_epoch": best_epoch,
            "metric": {"name": METRIC, "value": best if math.isfinite(best) else None, "k": TOP_K,
                       "aggregate": "mean over the validation lists weighted by their rows"},
            "chance": chance, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "code_version": version, "git_commit": commit, "settings": settings,
        }

    epoch = start - 1
    for epoch in range(start, epochs + 1):
        if stopped:
            break
        torch.manual_seed(_epoch_seed(seed, epoch))
        rng = np.random.default_rng([int(seed), int(epoch)])
        plan = make_epoch(train, contrastive, batch, rng)
        draw = torch.from_numpy(train_windows.draw(np.random.default_rng([int(seed), int(epoch), 1])))
        model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        frame_batches = [train.row_frame[r] for r in plan.rows]
        progress("steps", 0, len(plan.rows), epoch=epoch)
        for i, x in enumerate(train_frames.batches(frame_batches)):
            feats = train_feats[draw[torch.from_numpy(plan.clips[i])]]
            labels = None if plan.labels is None else torch.from_numpy(plan.labels[i])
            loss = train_step(model, optimizer, x, feats, labels, precision)
            if not math.isfinite(loss):
                raise SoundlibError(f"training diverged at epoch {epoch} (loss {loss}); try a smaller --lr")
            total += loss * len(plan.rows[i])
            count += len(plan.rows[i])
            progress("steps", i + 1, len(plan.rows), epoch=epoch, loss=total / count)
        train_seconds = time.perf_counter() - t0
        rate = count / train_seconds if train_seconds > 0 else 0.0
        rates.append(rate)
        scores = [validate(model, v, precision) for v in valdata]
        top, val_cat, val_mrr, val_loss = _aggregate(scores, [len(v.data) for v in valdata])
        lr_now = float(optimizer.param_groups[0]["lr"])
        scheduler.step(top)
        history.append(EpochMetrics(
            epoch=epoch, train_loss=total / max(count, 1), val_loss=val_loss, val_top10=top, lr=lr_now,
            pairs_per_s=rate, seconds=time.perf_counter() - t0,
            val_top10_category=val_cat, val_mrr=val_mrr, per_val=[asdict(sc) for sc in scores]))
        improved = top > best
        if improved:
            best, best_epoch, bad_epochs = top, epoch, 0
        else:
            bad_epochs += 1
        save_checkpoint(last_path, model, training=facts(epoch))
        if improved:  # the same bytes: copy them rather than serialise and hash the weights again
            _copy_durably(last_path, best_path)
        _write_metrics(metrics_path, history)
        _save_state(state_path, {
            "format": STATE_FORMAT, "version": STATE_VERSION, "epoch": epoch, "settings": settings,
            "model": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "history": [asdict(h) for h in history], "best": best, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "torch_rng": torch.get_rng_state(),
        })
        progress("epochs", epoch, epochs, loss=total / max(count, 1), val_top10=top,
                 val_cat10=history[-1].val_top10_category, best=best, pairs_s=round(rate, 1), lr=lr_now)
        if bad_epochs >= patience:
            stopped = True
            break

    last = history[-1].epoch if history else 0
    return TrainReport(
        out_dir=str(out), model=model_name, best_path=str(best_path), last_path=str(last_path),
        metrics_path=str(metrics_path), epochs_run=last, best_epoch=best_epoch,
        best_top10=best if math.isfinite(best) else float("nan"), chance=chance, stopped_early=stopped,
        resumed_from=resumed_from, train_rows=len(train), val_rows=sum(len(v) for v in vals),
        val_samples=sum(v.n_samples for v in valdata),
        pairs_per_s=float(np.mean(rates)) if rates else 0.0, seconds=time.perf_counter() - t_start,
        history=history, settings=settings, val_lists=val_lists(), feature_seconds=feature_seconds,
        train_windows=int(train_windows.offsets[-1]),
    )


__all__ = [
    "EpochMetrics", "TrainReport", "ValData", "ValScores", "train_model", "train_step", "validate",
    "make_optimizer", "make_scheduler", "topk_sample_accuracy", "embed_frames", "embed_mels", "code_version",
    "git_commit", "images_to_input", "DEFAULT_WINDOWS", "DEFAULT_WEIGHT_DECAY",
]
