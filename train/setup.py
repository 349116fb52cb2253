"""Setting a training run up: the options checked, the model configuration, the lists, the cached model inputs.

Model inputs are computed once and cached on disk (:mod:`train.features`): the paper models' log-mels (their frames
are decoded as ``uint8`` and preloaded); for the pretrained family the frozen backbones' features of every audio
window AND every frame, so an epoch only runs the trainable heads. Whole-file rows (empty ``start``, e.g. catalog
pairs) cache up to ``windows`` of the file's loudest 1-s windows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from soundlib.errors import SoundlibError
from soundlib.progress import ProgressFn
from train.datasets import FeatureStore, FrameStore, PairData, load_pairs
from train.defaults import PRECISIONS

__all__ = ["check_options", "model_config", "load_lists", "RunInputs"]


def check_options(precision: str, epochs: int, patience: int, windows: int, weight_decay: float) -> None:
    """Raise :class:`SoundlibError` for an option out of range (before anything is read or built)."""
    if precision not in PRECISIONS:
        raise SoundlibError(f"unknown precision {precision!r} (use {' or '.join(PRECISIONS)})")
    if epochs < 1 or patience < 1:
        raise SoundlibError("epochs and patience must be >= 1")
    if windows < 1:
        raise SoundlibError("windows must be >= 1")
    if not weight_decay >= 0:
        raise SoundlibError("weight decay must be >= 0")


def model_config(model_name: str, width: float | None, image_size: int | None, temperature: float | None) -> Any:
    """The registry's configuration of ``model_name`` with the run's overrides (``None``: the configuration's).

    Raises:
        ConfigError: unknown model, or a width / image size for a family whose backbones fix them.
    """
    from encoders.errors import ConfigError
    from encoders.registry import get_config

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
    return get_config(model_name, **overrides)


def _as_lists(x: Any) -> list[Any]:
    return [x] if isinstance(x, (str, os.PathLike)) else list(x)


def load_lists(train_list: Any, val_list: Any, roots: Any = None) -> tuple[PairData, list[PairData]]:
    """The pooled train list(s) and each validation list (``roots``: where reference-format lists' frames and audio
    are, see :func:`train.datasets.load_pairs`).

    Raises:
        SoundlibError: no validation list, a bad list (ListError), or fewer than two train samples.
    """
    train_paths, val_paths = _as_lists(train_list), _as_lists(val_list)
    if not val_paths:
        raise SoundlibError("needs at least one validation list")
    train = load_pairs(train_paths, roots)
    vals = [load_pairs(p, roots) for p in val_paths]
    if len(train) < 2 or len(set(train.clip_sample)) < 2:
        raise SoundlibError("needs at least two rows with different samples to train", train.path)
    return train, vals


class RunInputs:
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
        """The clips' cached windows (:class:`train.features.ClipWindows`) and their features as a tensor."""
        import torch

        from train.features import clip_windows

        w = clip_windows(self.audio, data.clips, self.windows, self.progress, task=f"audio {task}")
        return w, torch.from_numpy(w.features)

    def sound_files(self, sounds: Sequence[tuple[Path, str]], data: PairData, task: str
                    ) -> tuple[list[str], Any]:
        """``(categories, features)`` of the cached windows (up to ``windows`` loudest per file) of the labelled
        ``sounds`` that are not already clips of ``data`` (each file counts once); one category per window."""
        from train.features import clip_windows

        have = {Path(p).resolve() for p, _ in data.clips}
        by_file = {Path(p).resolve(): c for p, c in sounds}  # a file listed twice counts once (its last category)
        todo = [(p, c) for p, c in by_file.items() if p not in have]
        if not todo:
            return [], None
        w = clip_windows(self.audio, [(p, None) for p, _ in todo], self.windows, self.progress, task=f"audio {task}")
        return [todo[c][1] for c in w.window_clip], w.features

    def frames(self, data: PairData, task: str) -> Any:
        """The list's frames: a store of their cached backbone features, or of the decoded frames."""
        import torch

        if self.images is not None:
            feats = self.images.features(data.frames, self.progress, task=f"images {task}")
            return FeatureStore(data.frames, torch.from_numpy(feats))
        return FrameStore(data.frames, self.size, self.workers, self.preload_mb, self.progress)
