"""The training loop: SGD with Nesterov momentum, LR decay on plateau, early stopping, best/last checkpoints, resume.

Run folder (``out_dir``)::

    best.pt          checkpoint with the best validation top-10 sample accuracy
    last.pt          checkpoint of the last finished epoch
    last_state.pt    what ``--resume`` needs (weights, optimizer, scheduler, counters, history); weights_only-safe
    metrics.csv      epoch, train_loss, val_loss, val_top10, lr, pairs_per_s, seconds

Determinism: the model is initialised from ``seed``; epoch ``e`` reseeds torch with a value derived from
``(seed, e)`` and draws its shuffle (and BCE negatives) from ``numpy.random.default_rng([seed, e])``. A run resumed
after epoch ``e`` therefore continues exactly as the uninterrupted run would have.

Validation metric: top-10 sample-level accuracy on the val list -- the fraction of val rows whose own sample is among
the 10 nearest val samples (exactly ``min(10, N)``) of the frame's embedding, Euclidean distance between the
L2-normalised encoder embeddings, exact search.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import subprocess
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn, null_progress
from train.datasets import Epoch, FrameStore, PairData, load_pairs, make_epoch

#: Validation cut-off (the paper's top-10).
TOP_K = 10
#: Name of the validation metric in reports and checkpoints.
METRIC = "val_top10_sample"
METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "val_top10", "lr", "pairs_per_s", "seconds")
STATE_FORMAT = "soundlib-train-state"
STATE_VERSION = 1
#: Settings that must match for ``--resume`` to continue a run.
_RESUME_KEYS = ("model", "width", "image_size", "batch", "lr", "seed", "precision", "train_sha256", "val_sha256")


@dataclass
class EpochMetrics:
    """One row of ``metrics.csv``."""

    epoch: int
    train_loss: float
    val_loss: float
    val_top10: float
    lr: float
    pairs_per_s: float
    seconds: float


@dataclass
class TrainReport:
    """What :func:`train_model` did.

    Attributes:
        out_dir: the run folder.
        model: registry name.
        best_path, last_path, metrics_path: files written.
        epochs_run: last finished epoch (1-based; 0 if none).
        best_epoch, best_top10: the epoch kept in ``best.pt`` and its validation top-10 sample accuracy.
        chance: top-10 accuracy of a random ranking of the val samples (``min(1, 10 / N)``).
        stopped_early: early stopping ended the run.
        resumed_from: the epoch a ``--resume`` continued after (``None`` for a fresh run).
        train_rows, val_rows, val_samples: data sizes.
        pairs_per_s: mean training throughput of the epochs run now (pairs per second).
        seconds: wall time of this call.
        history: every epoch's metrics (including those before a resume).
        settings: model, width, image_size, batch, lr, seed, precision, ...
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [asdict(h) for h in self.history]
        return d


# --- small pieces -------------------------------------------------------------------------------------------------

def make_optimizer(model: Any, lr: float) -> Any:
    """SGD, Nesterov momentum 0.9, weight decay 1e-4 (the paper)."""
    import torch

    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)


def make_scheduler(optimizer: Any, patience: int = 5) -> Any:
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
    """``uint8 (B, 3, S, S)`` frames -> the model's normalised image input (channels-last under bf16)."""
    import torch

    x = model.image_features(frames_u8.float().div_(255.0))
    if precision == "bf16":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def train_step(model: Any, optimizer: Any, frames_u8: Any, feats: Any, labels: Any = None,
               precision: str = "fp32") -> float:
    """One optimisation step on a batch.

    Args:
        model: an :class:`~encoders.model.AVModel` in train mode.
        optimizer: its optimizer.
        frames_u8: ``uint8 (B, 3, S, S)`` frames.
        feats: ``float32 (B, n_mels, frames)`` raw log-mels (row ``i`` pairs with frame ``i``).
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
    try:
        from importlib.metadata import version

        v = version("soundlib")
    except Exception:  # noqa: BLE001 - not installed
        v = "unknown"
    commit = git_commit()
    return f"{v}+git.{commit[:12]}" if commit else v


def _list_facts(data: PairData) -> dict[str, Any]:
    from train.features import file_sha256

    return {"path": str(Path(data.path).resolve()), "rows": len(data), "clips": len(data.clips),
            "frames": len(data.frames), "sha256": file_sha256(data.path)}


# --- validation ---------------------------------------------------------------------------------------------------

@dataclass
class ValData:
    """The val list with its log-mels, frames and a fixed batch plan for the val loss."""

    data: PairData
    mels: Any
    frames: FrameStore
    plan: Epoch
    sample_of_clip: np.ndarray  # clip -> sample code
    sample_of_row: np.ndarray  # row -> sample code
    n_samples: int


def _val_data(data: PairData, mels: Any, frames: FrameStore, contrastive: bool, batch: int, seed: int) -> ValData:
    codes: dict[str, int] = {}
    clip_s = np.asarray([codes.setdefault(s, len(codes)) for s in data.clip_sample], dtype=np.int64)
    row_s = np.asarray([codes.setdefault(s, len(codes)) for s in data.samples], dtype=np.int64)
    rng = np.random.default_rng([int(seed), 2**31 - 1])  # fixed for the whole run
    plan = make_epoch(data, contrastive, batch, rng) if len(set(clip_s.tolist())) >= 2 else Epoch([], [], None)
    return ValData(data=data, mels=mels, frames=frames, plan=plan, sample_of_clip=clip_s, sample_of_row=row_s,
                   n_samples=len(codes))


def embed_frames(model: Any, frames: FrameStore, precision: str, batch: int = 64) -> Any:
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


def embed_mels(model: Any, mels: Any, precision: str, batch: int = 128) -> Any:
    """``(n_clips, D)`` float32 embeddings of raw log-mels (model in eval mode, no grad)."""
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
        a_clips: ``(C, D)`` clip embeddings.
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


def validate(model: Any, val: ValData, precision: str) -> tuple[float, float]:
    """``(val_loss, top-10 sample accuracy)`` on the val list (model switched to eval mode)."""
    import torch

    model.eval()
    v_frames = embed_frames(model, val.frames, precision)
    a_clips = embed_mels(model, val.mels, precision)
    v_rows = v_frames[torch.from_numpy(val.data.row_frame)]
    top = topk_sample_accuracy(v_rows, a_clips, val.sample_of_clip, val.sample_of_row)
    losses, weights = [], []
    with torch.no_grad():
        for i, (rows, clips) in enumerate(zip(val.plan.rows, val.plan.clips)):
            if len(rows) < 2:
                continue
            labels = None if val.plan.labels is None else torch.from_numpy(val.plan.labels[i])
            v = v_frames[torch.from_numpy(val.data.row_frame[rows])]
            a = a_clips[torch.from_numpy(clips)]
            losses.append(float(model.pair_loss(v, a, labels)))
            weights.append(len(rows))
    vloss = float(np.average(losses, weights=weights)) if losses else float("nan")
    return vloss, top


# --- the run ----------------------------------------------------------------------------------------------------

def _write_metrics(path: Path, history: Sequence[EpochMetrics]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(METRICS_COLUMNS)
        for h in history:
            w.writerow([h.epoch, f"{h.train_loss:.6f}", f"{h.val_loss:.6f}", f"{h.val_top10:.6f}", f"{h.lr:.3g}",
                        f"{h.pairs_per_s:.2f}", f"{h.seconds:.2f}"])
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


def train_model(
    train_list: str | os.PathLike,
    val_list: str | os.PathLike,
    model_name: str,
    out_dir: str | os.PathLike,
    epochs: int = 50,
    batch: int | None = None,
    lr: float | None = None,
    resume: bool = False,
    width: float = 1.0,
    image_size: int = 224,
    seed: int = 0,
    patience: int = 20,
    plateau_patience: int = 5,
    workers: int = 1,
    cache_dir: str | os.PathLike | None = None,
    precision: str = "bf16",
    preload_mb: float = 1024.0,
    threads: int = 0,
    progress: ProgressFn | None = None,
) -> TrainReport:
    """Train one of the registered models on a pair list, validating every epoch.

    Args:
        train_list: training pair list (CSV, see :mod:`soundlib.lists`); >= 2 rows, >= 2 samples.
        val_list: validation pair list (other videos).
        model_name: registry name, e.g. ``m5-attention-linear-infonce``.
        out_dir: run folder (created): ``best.pt``, ``last.pt``, ``last_state.pt``, ``metrics.csv``.
        epochs: last epoch to run (1-based, counted over resumes).
        batch: pairs per step (``None``: the configuration's, 128 baseline / 32 attention). For the BCE families a
            batch holds ``batch // 2`` frames, each with its own clip and with a negative clip.
        lr: initial learning rate (``None``: the configuration's, 0.01).
        resume: continue from ``out_dir/last_state.pt`` (same settings and lists required); a fresh run if absent.
        width: channel multiplier of both streams.
        image_size: side of the square input image.
        seed: seed of the weights, shuffles and negatives.
        patience: stop after this many epochs without a better validation top-10 (the paper: 20).
        plateau_patience: epochs without improvement before the LR is divided by 10.
        workers: frame-decoding worker processes.
        cache_dir: log-mel cache folder (default ``<out_dir>/../.cache``).
        precision: ``"bf16"`` (autocast, channels-last; 2-3x faster on this CPU) or ``"fp32"``.
        preload_mb: frames are preloaded into RAM as uint8 when they need at most this many MiB.
        threads: torch CPU threads (0 = torch's default, all cores). On a machine shared with other jobs, 1 thread
            ran ~10x faster here than 2 (busy-waiting threads); results depend slightly on the thread count.
        progress: ``progress(task, done, total, **info)`` for ``"log-mel"``, ``"frames"``, ``"steps"``,
            ``"epochs"``.

    Returns:
        A :class:`TrainReport`.

    Raises:
        SoundlibError: bad lists (ListError), unknown model or option (ConfigError), or a resume state that does
            not match the settings.
    """
    import torch

    from encoders.checkpoint import save_checkpoint
    from encoders.registry import create_model, get_config
    from train.features import LogMelCache, clip_features

    t_start = time.perf_counter()
    progress = progress or null_progress
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    if precision not in ("fp32", "bf16"):
        raise SoundlibError(f"unknown precision {precision!r} (use fp32 or bf16)")
    if epochs < 1 or patience < 1:
        raise SoundlibError("epochs and patience must be >= 1")
    config = get_config(model_name, width=float(width), image_size=int(image_size))
    batch = int(batch or config.batch_size)
    lr = float(lr or config.lr)
    if batch < 2:
        raise SoundlibError("batch must be >= 2")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    train = load_pairs(train_list)
    val = load_pairs(val_list)
    if len(train) < 2 or len(set(train.clip_sample)) < 2:
        raise SoundlibError("needs at least two rows with different samples to train", train.path)
    contrastive = bool(config.contrastive)

    model = create_model(model_name, seed=seed, width=float(width), image_size=int(image_size))
    cache = LogMelCache(Path(cache_dir) if cache_dir else out.resolve().parent / ".cache",
                        model.audio_features, config.audio, extra_key=getattr(config, "family", "paper"))
    train_mels = torch.from_numpy(clip_features(cache, train.clips, progress, task="log-mel train"))
    val_mels = torch.from_numpy(clip_features(cache, val.clips, progress, task="log-mel val"))
    train_frames = FrameStore(train.frames, config.image_size, workers, preload_mb, progress)
    val_frames = FrameStore(val.frames, config.image_size, workers, preload_mb, progress)

    facts_train, facts_val = _list_facts(train), _list_facts(val)
    settings = {"model": model_name, "width": float(width), "image_size": int(image_size), "batch": batch,
                "lr": lr, "seed": int(seed), "precision": precision, "train_sha256": facts_train["sha256"],
                "val_sha256": facts_val["sha256"], "epochs": int(epochs), "patience": int(patience),
                "plateau_patience": int(plateau_patience)}

    if precision == "bf16":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, lr)
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
    else:
        from soundlib.audio import band_stats

        mean, std = band_stats(train_mels)
        model.set_audio_stats(mean, std)

    valdata = _val_data(val, val_mels, val_frames, contrastive, batch, seed)
    chance = min(1.0, TOP_K / max(1, valdata.n_samples))
    best_path, last_path, metrics_path = out / "best.pt", out / "last.pt", out / "metrics.csv"
    stopped = bad_epochs >= patience
    rates: list[float] = []

    version, commit = code_version(), git_commit()

    def facts(epoch: int) -> dict[str, Any]:
        return {
            "data": {"train": facts_train, "val": facts_val}, "epochs": epoch, "best_epoch": best_epoch,
            "metric": {"name": METRIC, "value": best if math.isfinite(best) else None, "k": TOP_K},
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
        model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        frame_batches = [train.row_frame[r] for r in plan.rows]
        progress("steps", 0, len(plan.rows), epoch=epoch)
        for i, x in enumerate(train_frames.batches(frame_batches)):
            feats = train_mels[torch.from_numpy(plan.clips[i])]
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
        val_loss, top = validate(model, valdata, precision)
        lr_now = float(optimizer.param_groups[0]["lr"])
        scheduler.step(top)
        history.append(EpochMetrics(epoch=epoch, train_loss=total / max(count, 1), val_loss=val_loss,
                                    val_top10=top, lr=lr_now, pairs_per_s=rate,
                                    seconds=time.perf_counter() - t0))
        if top > best:
            best, best_epoch, bad_epochs = top, epoch, 0
            save_checkpoint(best_path, model, training=facts(epoch))
        else:
            bad_epochs += 1
        save_checkpoint(last_path, model, training=facts(epoch))
        _write_metrics(metrics_path, history)
        _save_state(state_path, {
            "format": STATE_FORMAT, "version": STATE_VERSION, "epoch": epoch, "settings": settings,
            "model": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "history": [asdict(h) for h in history], "best": best, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "torch_rng": torch.get_rng_state(),
        })
        progress("epochs", epoch, epochs, loss=total / max(count, 1), val_top10=top, best=best,
                 pairs_s=round(rate, 1), lr=lr_now)
        if bad_epochs >= patience:
            stopped = True
            break

    last = history[-1].epoch if history else 0
    return TrainReport(
        out_dir=str(out), model=model_name, best_path=str(best_path), last_path=str(last_path),
        metrics_path=str(metrics_path), epochs_run=last, best_epoch=best_epoch,
        best_top10=best if math.isfinite(best) else float("nan"), chance=chance, stopped_early=stopped,
        resumed_from=resumed_from, train_rows=len(train), val_rows=len(val), val_samples=valdata.n_samples,
        pairs_per_s=float(np.mean(rates)) if rates else 0.0, seconds=time.perf_counter() - t_start,
        history=history, settings=settings,
    )


__all__ = [
    "EpochMetrics", "TrainReport", "ValData", "train_model", "train_step", "validate", "make_optimizer",
    "make_scheduler", "topk_sample_accuracy", "embed_frames", "embed_mels", "code_version", "git_commit",
]
