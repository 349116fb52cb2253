"""A run's state across epochs and interruptions: its history (``metrics.csv``), its best epoch, and the resume file.

``last_state.pt`` holds what ``--resume`` needs (weights, optimizer, scheduler, counters, history; weights_only-safe
torch tensors and plain types); a resumed run must have the same settings (:data:`RESUME_KEYS`) and continues
exactly as the uninterrupted run would have (see :mod:`train.epoch`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from encoders.atomic import atomic_write
from soundlib.errors import SoundlibError

__all__ = ["METRICS_COLUMNS", "STATE_FORMAT", "STATE_VERSION", "RESUME_KEYS", "EpochMetrics", "RunState",
           "write_metrics", "save_state", "load_state", "resume"]

METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "val_top10", "lr", "pairs_per_s", "seconds",
                   "val_top10_category", "val_mrr")
STATE_FORMAT = "soundlib-train-state"
STATE_VERSION = 1
#: Settings that must match for ``--resume`` to continue a run.
RESUME_KEYS = ("model", "width", "image_size", "batch", "lr", "seed", "precision", "train_sha256", "val_sha256",
               "windows", "temperature", "weight_decay", "bridge_sounds_sha256")


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
class RunState:
    """Where a run stands: its epochs so far and its best one.

    Attributes:
        history: every finished epoch's metrics (including those before a resume).
        best: the best validation metric so far (``-inf`` before the first epoch).
        best_epoch: the epoch that reached it (0 before the first).
        bad_epochs: epochs since the last improvement.
        epoch: the last finished epoch (0 for a fresh run).
    """

    history: list[EpochMetrics] = field(default_factory=list)
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    epoch: int = 0

    def record(self, metrics: EpochMetrics) -> bool:
        """Add an epoch's metrics; returns ``True`` when its ``val_top10`` beats the best so far."""
        self.history.append(metrics)
        self.epoch = metrics.epoch
        if metrics.val_top10 > self.best:
            self.best, self.best_epoch, self.bad_epochs = metrics.val_top10, metrics.epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def best_scores(self) -> list[dict[str, float]]:
        """The best epoch's per-validation-list figures (``[]`` before the first epoch)."""
        for h in self.history:
            if h.epoch == self.best_epoch:
                return h.per_val
        return []


def write_metrics(path: Path, history: Sequence[EpochMetrics]) -> None:
    """Write ``metrics.csv`` (one row per epoch; per-list columns when there are several validation lists)."""
    n_val = max((len(h.per_val) for h in history), default=0)
    extra = [f"val{i + 1}_{m}" for i in range(n_val) for m in ("top10", "top10_category", "mrr")] if n_val > 1 else []
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(list(METRICS_COLUMNS) + extra)
        for h in history:
            row = [h.epoch, f"{h.train_loss:.6f}", f"{h.val_loss:.6f}", f"{h.val_top10:.6f}", f"{h.lr:.3g}",
                   f"{h.pairs_per_s:.2f}", f"{h.seconds:.2f}", f"{h.val_top10_category:.6f}", f"{h.val_mrr:.6f}"]
            if extra:
                for pv in h.per_val:
                    row += [f"{pv['top10']:.6f}", f"{pv['top10_category']:.6f}", f"{pv['mrr']:.6f}"]
            w.writerow(row)


def save_state(path: Path, settings: dict[str, Any], model: Any, optimizer: Any, scheduler: Any,
               run: RunState) -> None:
    """Write the resume file of the run after its last finished epoch (replaced whole, never half-written)."""
    import torch

    payload = {
        "format": STATE_FORMAT, "version": STATE_VERSION, "epoch": run.epoch, "settings": settings,
        "model": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "history": [asdict(h) for h in run.history], "best": run.best, "best_epoch": run.best_epoch,
        "bad_epochs": run.bad_epochs,
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """Read a resume file.

    Raises:
        SoundlibError: unreadable, or not a soundlib training state file.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear line
        raise SoundlibError(f"cannot read the resume state ({type(e).__name__}); start without --resume",
                            path) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise SoundlibError("not a soundlib training state file", path)
    return state


def resume(path: Path, settings: dict[str, Any], model: Any, optimizer: Any, scheduler: Any) -> RunState:
    """Restore the model, optimizer and scheduler from a resume file; returns the run's state.

    Raises:
        SoundlibError: the file is unreadable, or its run had other settings (each difference is named).
    """
    state = load_state(path)
    old = state["settings"]
    diff = [k for k in RESUME_KEYS if old.get(k) != settings[k]]
    if diff:
        raise SoundlibError("cannot resume: settings differ from the interrupted run ("
                            + ", ".join(f"{k} {old.get(k)!r} -> {settings[k]!r}" for k in diff) + ")", path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return RunState(history=[EpochMetrics(**h) for h in state["history"]], best=float(state["best"]),
                    best_epoch=int(state["best_epoch"]), bad_epochs=int(state["bad_epochs"]),
                    epoch=int(state["epoch"]))
