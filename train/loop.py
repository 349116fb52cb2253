"""The training loop: SGD with Nesterov momentum, LR decay on plateau, early stopping, best/last checkpoints, resume.

Cut like ``open_clip_train``: setting up (:mod:`train.setup`), one epoch (:mod:`train.epoch`), validation
(:mod:`train.validation`), the run's state and resume file (:mod:`train.state`) and provenance
(:mod:`train.provenance`); this module runs the epochs and keeps the files.

Run folder (``out_dir``)::

    best.pt          checkpoint with the best validation metric (below)
    last.pt          checkpoint of the last finished epoch
    last_state.pt    what ``--resume`` needs (weights, optimizer, scheduler, counters, history); weights_only-safe
    metrics.csv      epoch, train_loss, val_loss, val_top10, lr, pairs_per_s, seconds, val_top10_category, val_mrr
                     (val_* over all validation rows; + val<i>_top10, val<i>_top10_category, val<i>_mrr per
                     validation list when there are several)

Data: one or several train lists (pooled) and one or several validation lists (each scored on its own). Whole-file
rows (empty ``start``): every epoch draws ONE of a file's cached windows per clip; validation embeds all of them
and scores the file by its best (nearest) window, as ``soundlib eval`` and ``soundlib query`` do.

The run keeps the epoch with the best **top-10 sample accuracy over all validation rows** (the lists' figures
averaged with their row counts as weights; each row is still ranked among its own list's samples).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from encoders.atomic import atomic_write
from encoders.hashing import file_sha256
from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn, null_progress
from train.bridge import fit_bridge_on_list, read_bridge_sounds, with_bridge_columns
from train.defaults import (DEFAULT_EPOCHS, DEFAULT_PATIENCE, DEFAULT_PLATEAU_PATIENCE, DEFAULT_PRECISION,
                            DEFAULT_PRELOAD_MB, DEFAULT_WEIGHT_DECAY, DEFAULT_WINDOWS, DEFAULT_WORKERS)
from train.epoch import make_optimizer, make_scheduler, train_epoch
from train.provenance import Provenance
from train.setup import RunInputs, check_options, load_lists, model_config
from train.state import EpochMetrics, RunState, resume as resume_run, save_state, write_metrics
from train.validation import aggregate, val_data, validate, weighted

__all__ = ["TrainReport", "train_model"]


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


def _copy_durably(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically, flushed to disk before it replaces ``dst``."""
    import shutil

    with atomic_write(dst, fsync=True) as tmp:
        shutil.copyfile(src, tmp)


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
    roots: Any = None,
    norm_stats: str | os.PathLike | None = None,
    bridge_sounds: str | os.PathLike | None = None,
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
        precision: ``"bf16"`` (autocast; channels-last for the paper models' CNNs; faster on a CPU with bf16) or
            ``"fp32"``.
        preload_mb: frames are preloaded into RAM as uint8 when they need at most this many MiB (paper models).
        threads: torch CPU threads (0 = torch's default, all cores; on a machine shared with other jobs 1 is
            faster, see ``bench/README.md``); results depend slightly on the thread count.
        windows: cached windows per whole-file clip (its loudest; one is drawn per epoch).
        temperature: tau of InfoNCE / NT-Xent (``None``: the configuration's, 0.5).
        weight_decay: SGD weight decay (the paper: 1e-4).
        progress: ``progress(task, done, total, **info)`` for ``"audio ..."``, ``"images ..."``, ``"frames"``,
            ``"steps"``, ``"epochs"``.
        roots: where reference-format lists' frames and audio are (a
            :class:`soundlib.reference_lists.ReferenceRoots`; ``None``: next to the lists).
        norm_stats: a mean/variance ``.npy`` (the reference code's ``vggsound_train_mean_var.npy``) used as the
            model's log-mel band statistics instead of computing them on the train clips (paper models only;
            :mod:`soundlib.norm_stats`).
        bridge_sounds: a sound list (``audio,category``, e.g. ``soundlib catalog``'s ``catalog_sounds.csv``) whose
            sounds the concept bridge's sound classifier is fitted on besides the training pairs' sounds (bridged
            configurations only): it needs labelled sounds, not pairs. Each file counts once, with up to
            ``windows`` of its loudest windows.

    Returns:
        A :class:`TrainReport`.

    Raises:
        SoundlibError: bad lists (ListError), unknown model or option (ConfigError), or a resume state that does
            not match the settings.
    """
    import torch

    from encoders.checkpoint import save_checkpoint
    from encoders.registry import build_model

    t_start = time.perf_counter()
    progress = progress or null_progress
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    check_options(precision, epochs, patience, windows, weight_decay)
    config = model_config(model_name, width, image_size, temperature)
    stats = None
    if norm_stats is not None:  # read before any work: a bad file is refused at once
        from soundlib.norm_stats import check_accepts_norm_stats, read_norm_stats

        check_accepts_norm_stats(model_name, config)
        stats = read_norm_stats(norm_stats, int(config.audio.n_mels))
    batch = int(batch or config.batch_size)
    lr = float(lr or config.lr)
    if batch < 2:
        raise SoundlibError("batch must be >= 2")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    train, vals = load_lists(train_list, val_list, roots)
    contrastive = bool(config.contrastive)
    extra_sounds = read_bridge_sounds(bridge_sounds, config) if bridge_sounds is not None else []
    # the concept bridge's columns, if any
    config, table = with_bridge_columns(config, [*train.categories, *(c for _, c in extra_sounds)])

    # setup: the model, its cached inputs, the settings a resume must match
    model = build_model(config, seed=seed)
    t_feat = time.perf_counter()
    inputs = RunInputs(model, config, Path(cache_dir) if cache_dir else out.resolve().parent / ".cache", windows,
                       workers, preload_mb, progress)
    train_windows, train_feats = inputs.clips(train, "train")
    if table is not None:  # fitted once, before the heads train (validation scores the bridged embedding)
        fit_bridge_on_list(model, train, train_windows, train_feats, table,
                           inputs.sound_files(extra_sounds, train, "bridge sounds"))
    val_inputs = [inputs.clips(v, f"val {i + 1}" if len(vals) > 1 else "val") for i, v in enumerate(vals)]
    train_frames = inputs.frames(train, "train")
    val_frames = [inputs.frames(v, f"val {i + 1}" if len(vals) > 1 else "val") for i, v in enumerate(vals)]
    feature_seconds = time.perf_counter() - t_feat
    prov = Provenance.of(train, vals)
    settings = {"model": model_name, "width": float(config.width), "image_size": int(config.image_size),
                "batch": batch, "lr": lr, "seed": int(seed), "precision": precision,
                "train_sha256": prov.train["sha256"], "val_sha256": prov.val_sha256, "epochs": int(epochs),
                "patience": int(patience), "plateau_patience": int(plateau_patience), "windows": int(windows),
                "temperature": float(config.temperature), "weight_decay": float(weight_decay),
                "norm_stats": str(norm_stats) if norm_stats is not None else None,
                "bridge_sounds_sha256": file_sha256(bridge_sounds) if bridge_sounds is not None else None}

    # state: a fresh run, or the interrupted one restored
    if precision == "bf16" and not inputs.pretrained:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, lr, weight_decay)
    scheduler = make_scheduler(optimizer, plateau_patience)
    state_path = out / "last_state.pt"
    resumed_from: int | None = None
    if resume and state_path.exists():
        run = resume_run(state_path, settings, model, optimizer, scheduler)
        resumed_from = run.epoch
    else:
        run = RunState()
        if stats is not None:
            model.set_audio_stats(*stats)
        elif getattr(model, "needs_audio_stats", True):
            from soundlib.audio import band_stats

            mean, std = band_stats(train_feats)
            model.set_audio_stats(mean, std)

    valdata = [val_data(v, w, f, fr, contrastive, batch, seed)
               for v, (w, f), fr in zip(vals, val_inputs, val_frames)]
    val_rows = [len(v.data) for v in valdata]
    chance = weighted([v.chance for v in valdata], val_rows)
    best_path, last_path, metrics_path = out / "best.pt", out / "last.pt", out / "metrics.csv"
    n_train_windows = int(train_windows.offsets[-1])
    stopped = run.bad_epochs >= patience
    rates: list[float] = []

    for epoch in range(run.epoch + 1, epochs + 1):
        if stopped:
            break
        t0 = time.perf_counter()
        done = train_epoch(model, optimizer, train, train_frames, train_feats, train_windows,
                           contrastive=contrastive, batch=batch, seed=seed, epoch=epoch, precision=precision,
                           progress=progress)
        rates.append(done.pairs_per_s)
        scores = [validate(model, v, precision) for v in valdata]
        top, val_cat, val_mrr, val_loss = aggregate(scores, val_rows)
        lr_now = float(optimizer.param_groups[0]["lr"])
        scheduler.step(top)
        improved = run.record(EpochMetrics(
            epoch=epoch, train_loss=done.loss, val_loss=val_loss, val_top10=top, lr=lr_now,
            pairs_per_s=done.pairs_per_s, seconds=time.perf_counter() - t0,
            val_top10_category=val_cat, val_mrr=val_mrr, per_val=[asdict(sc) for sc in scores]))
        # provenance and files: last.pt (best.pt when improved), metrics.csv, the resume state
        save_checkpoint(last_path, model,
                        training=prov.training_facts(run, valdata, settings, chance, n_train_windows))
        if improved:  # the same bytes: copy them rather than serialise and hash the weights again
            _copy_durably(last_path, best_path)
        write_metrics(metrics_path, run.history)
        save_state(state_path, settings, model, optimizer, scheduler, run)
        progress("epochs", epoch, epochs, loss=done.loss, val_top10=top, val_cat10=val_cat, best=run.best,
                 pairs_s=round(done.pairs_per_s, 1), lr=lr_now)
        if run.bad_epochs >= patience:
            stopped = True
            break

    return TrainReport(
        out_dir=str(out), model=model_name, best_path=str(best_path), last_path=str(last_path),
        metrics_path=str(metrics_path), epochs_run=run.history[-1].epoch if run.history else 0,
        best_epoch=run.best_epoch, best_top10=run.best if math.isfinite(run.best) else float("nan"),
        chance=chance, stopped_early=stopped, resumed_from=resumed_from, train_rows=len(train),
        val_rows=sum(len(v) for v in vals), val_samples=sum(v.n_samples for v in valdata),
        pairs_per_s=float(np.mean(rates)) if rates else 0.0, seconds=time.perf_counter() - t_start,
        history=run.history, settings=settings, val_lists=prov.val_lists(valdata, run),
        feature_seconds=feature_seconds, train_windows=n_train_windows,
    )
