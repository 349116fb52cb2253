"""Provenance of a training run: which code, which data and which settings made a checkpoint.

Every checkpoint's ``training`` block (:func:`encoders.checkpoint.save_checkpoint`) holds the lists' paths and
sha256, the validation figures of each list at the best epoch with their chance levels, the metric the run kept,
the settings, the date, the soundlib version and the git commit.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from train.datasets import PairData
from train.state import RunState
from train.validation import TOP_K, ValData

__all__ = ["METRIC", "git_commit", "code_version", "list_facts", "Provenance"]

#: Name of the validation metric in reports and checkpoints.
METRIC = "val_top10_sample"


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


def list_facts(data: PairData) -> dict[str, Any]:
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


@dataclass
class Provenance:
    """What a run's checkpoints say about where they come from (see the module notes).

    Attributes:
        train: :func:`list_facts` of the train list(s).
        vals: :func:`list_facts` of each validation list.
        val_sha256: the validation list's sha256 (several: the sha256 of their hashes joined in order).
        code_version: :func:`code_version` at the start of the run.
        git_commit: :func:`git_commit` at the start of the run.
    """

    train: dict[str, Any]
    vals: list[dict[str, Any]]
    val_sha256: str
    code_version: str
    git_commit: str | None

    @classmethod
    def of(cls, train: PairData, vals: Sequence[PairData]) -> "Provenance":
        """Hash the lists and note the code (once per run)."""
        facts_train = list_facts(train)
        facts_vals = [list_facts(v) for v in vals]
        val_sha = (facts_vals[0]["sha256"] if len(vals) == 1 else
                   hashlib.sha256("\n".join(f["sha256"] for f in facts_vals).encode()).hexdigest())
        return cls(facts_train, facts_vals, val_sha, code_version(), git_commit())

    def val_lists(self, valdata: Sequence[ValData], run: RunState) -> list[dict[str, Any]]:
        """Per validation list: path, rows, samples, categories, chance levels and the best epoch's figures."""
        got = run.best_scores()
        return [{"path": f.get("path"), "rows": len(v.data), "samples": v.n_samples,
                 "categories": len(v.data.categories), "chance_top10": v.chance,
                 "chance_top10_category": v.chance_category, **(got[i] if i < len(got) else {})}
                for i, (f, v) in enumerate(zip(self.vals, valdata))]

    def training_facts(self, run: RunState, valdata: Sequence[ValData], settings: dict[str, Any], chance: float,
                       train_windows: int) -> dict[str, Any]:
        """The ``training`` block of the checkpoint written after the run's last finished epoch."""
        return {
            "data": {"train": self.train, "val": self.vals[0] if len(self.vals) == 1 else
                     {"path": None, "paths": [f["path"] for f in self.vals], "sha256": self.val_sha256,
                      "rows": sum(f["rows"] for f in self.vals)},
                     "val_lists": self.val_lists(valdata, run), "windows_per_file": int(settings["windows"]),
                     "train_windows": int(train_windows)},
            "epochs": run.epoch, "best_epoch": run.best_epoch,
            "metric": {"name": METRIC, "value": run.best if math.isfinite(run.best) else None, "k": TOP_K,
                       "aggregate": "mean over the validation lists weighted by their rows"},
            "chance": chance, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "code_version": self.code_version, "git_commit": self.git_commit, "settings": settings,
        }
