"""Finding and loading the model a command runs with (``--model``): a checkpoint path, or the bundled default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soundlib.config import MODEL_ENV
from soundlib.errors import CheckpointError

if TYPE_CHECKING:  # torch is imported lazily so the CLI starts fast
    from encoders.checkpoint import CheckpointInfo

#: The default model shipped in the repository (heads only; see soundlib/models/README.md).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "default.pt"


@dataclass
class LoadedModel:
    """A model ready for inference plus what identifies it (for the collection's metadata)."""

    model: Any  # encoders.model.AVModel (or a pretrained-family model with the same interface)
    info: "CheckpointInfo"

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sha256(self) -> str:
        return self.info.sha256

    @property
    def dim(self) -> int:
        return int(self.model.embed_dim)

    @property
    def same_weights_as(self) -> list[str]:
        """The sha256 of earlier checkpoint files this one declares to hold its weights bit for bit
        (``training["same_weights_as"]``; e.g. the default saved again with its fit set): collections built with
        them hold the same vectors and stay usable (:meth:`soundlib.store.SoundStore.check_model`)."""
        listed = (self.info.training or {}).get("same_weights_as")
        return [h for h in listed if isinstance(h, str)] if isinstance(listed, list) else []


def resolve_model_path(spec: str | os.PathLike | None) -> Path:
    """The checkpoint file for ``--model``: the given path, else ``$SOUNDLIB_MODEL``, else the bundled default.

    Raises:
        CheckpointError: the file does not exist (for the default: says that no default is bundled yet).
    """
    if spec is None or str(spec) == "":
        env = os.environ.get(MODEL_ENV)
        if env:
            spec = env
        else:
            if not DEFAULT_MODEL_PATH.exists():
                raise CheckpointError(
                    "no default model is bundled in this build yet; pass --model CHECKPOINT "
                    "(train one with `soundlib train`)", str(DEFAULT_MODEL_PATH))
            return DEFAULT_MODEL_PATH
    path = Path(spec).expanduser()
    if not path.exists():
        raise CheckpointError("checkpoint not found", str(path))
    if path.is_dir():
        best = path / "best.pt"
        if best.exists():
            return best
        raise CheckpointError("is a folder without best.pt; pass the checkpoint file", str(path))
    return path


def load_model(spec: str | os.PathLike | None = None, norm_stats: str | os.PathLike | None = None) -> LoadedModel:
    """Load the model for inference (eval mode, CPU).

    Args:
        spec: checkpoint path, a run folder holding ``best.pt``, or ``None`` for the default.
        norm_stats: a mean/variance ``.npy`` (the reference code's ``vggsound_train_mean_var.npy``) replacing the
            checkpoint's log-mel band statistics (paper models only; see :mod:`soundlib.norm_stats`).

    Raises:
        CheckpointError: missing, foreign, truncated or mismatched checkpoint.
        SoundlibError: ``norm_stats`` refused (bad file, or a model that does not use band statistics).
    """
    from encoders.checkpoint import load_checkpoint

    path = resolve_model_path(spec)
    model, info = load_checkpoint(path)
    if norm_stats is not None:
        from soundlib.norm_stats import apply_norm_stats

        apply_norm_stats(model, info.name, norm_stats)
    model.eval()
    return LoadedModel(model=model, info=info)
