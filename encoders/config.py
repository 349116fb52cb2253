"""Configuration dataclasses: every default (sample rate, mel bins, frames, image size, embedding size) lives here.

The front ends in :mod:`soundlib` and the models in :mod:`encoders` read these, so a number is written once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: ImageNet channel statistics (RGB, for images scaled to [0, 1]).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AudioConfig:
    """The audio front end of the paper: mono 48 kHz, 1-second windows, 64-band log-mel of 100 frames.

    Attributes:
        sample_rate: Hz every file is resampled to.
        window_seconds: length of one analysis window in seconds.
        hop_seconds: distance between window starts when a file is cut into windows, in seconds.
        n_mels: mel bands.
        n_fft: FFT size in samples.
        win_length: analysis window in samples (20 ms at 48 kHz).
        hop_length: STFT hop in samples (10 ms at 48 kHz).
        frames: log-mel frames per window (1 s / 10 ms).
        fmin, fmax: mel filterbank range in Hz (``fmax=None`` is Nyquist).
        log_offset: added before the logarithm, so silence maps to ``log(log_offset)``.
        max_windows: default cap of windows per file (sampled evenly over longer files).
    """

    sample_rate: int = 48_000
    window_seconds: float = 1.0
    hop_seconds: float = 1.0
    n_mels: int = 64
    n_fft: int = 1024
    win_length: int = 960
    hop_length: int = 480
    frames: int = 100
    fmin: float = 0.0
    fmax: float | None = None
    log_offset: float = 1e-6
    max_windows: int = 30

    @property
    def window_samples(self) -> int:
        """Samples in one window (48,000 by default)."""
        return int(round(self.sample_rate * self.window_seconds))


@dataclass(frozen=True)
class ImageConfig:
    """The visual front end: RGB frames resized to ``size`` x ``size``, normalised by ``mean``/``std``."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


#: How the concept bridge pools a picture's ImageNet probabilities per concept (``ModelConfig.bridge_picture_pool``).
PICTURE_POOLS: tuple[str, ...] = ("sum", "max")


@dataclass(frozen=True)
class ModelConfig:
    """One named model configuration (see :mod:`encoders.registry`).

    Attributes:
        name: registry name, e.g. ``m5-attention-linear-infonce``.
        attention: attention encoders (paper section 4.2) or the baseline's plain stacks (4.1).
        projector: ``"linear"`` (one FC with bias) or ``"nonlinear"`` (FC-ReLU-FC).
        loss: ``"bce"``, ``"margin"`` (BCE + margin contrastive), ``"infonce"`` or ``"ntxent"``.
        embed_dim: size of the L2-normalised embedding used for retrieval.
        width: channel multiplier of both streams (1.0 = the paper; 0.125 trains in minutes on a CPU).
        image_size: side of the square input image.
        visual_channels: output channels of the visual conv blocks.
        audio_channels: output channels of the audio conv blocks.
        visual_taps, audio_taps: 0-based indices of the blocks whose pre-pool maps feed attention.
        temperature: tau of InfoNCE / NT-Xent.
        margin: m of the margin contrastive loss.
        batch_size: the paper's batch for this family (128 baseline, 32 attention).
        lr: initial learning rate.
        audio: audio front-end configuration.
        image: image front-end configuration (its ``size`` follows ``image_size``).
        compatibility: attention score, ``"add"`` (the paper: 1x1 conv over local + global) or ``"dot"``
            (local . global, the alternative the paper mentions; with ``"add"`` the softmax cancels the global term).
        family: which builder in :data:`encoders.registry.FAMILIES` makes the ``nn.Module`` (``"paper"`` = the
            paper's from-scratch :class:`encoders.model.AVModel`; pretrained families register their own).
        bridge_weight: pretrained family only: the share ``w`` of the concept bridge in the retrieval score
            (:mod:`encoders.bridge`); the embedding is ``[sqrt(1 - w) * heads, sqrt(w) * concepts]``, so its dot
            product is ``(1 - w) * heads cosine + w * concept cosine``. ``0`` = no bridge.
        concepts: the bridge's concept names (its embedding columns), filled by training from the concept table
            and the training lists' categories; empty without a bridge.
        bridge_picture_pool: how the bridge turns a picture's ImageNet probabilities into a concept's: ``"sum"``
            over the concept's classes, or ``"max"``, its most probable class. The sum lets a concept of many
            classes collect the spread-out mass of any uncertain picture (dog has ImageNet's 118 breeds, so drawn
            pigs and owls read as dogs); the max does not. ``"sum"`` is the default so that checkpoints saved
            before the field existed keep their behaviour; the bridged registry configuration uses ``"max"``.
    """

    name: str
    family: str = "paper"
    attention: bool = True
    compatibility: str = "add"
    projector: str = "linear"
    loss: str = "infonce"
    embed_dim: int = 128
    width: float = 1.0
    image_size: int = 224
    visual_channels: tuple[int, ...] = (64, 128, 128, 256, 512, 512)
    audio_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512, 512)
    visual_taps: tuple[int, ...] = (1, 2, 3)
    audio_taps: tuple[int, ...] = (2, 3, 4)
    temperature: float = 0.5
    margin: float = 0.1
    batch_size: int = 32
    lr: float = 0.01
    audio: AudioConfig = field(default_factory=AudioConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    bridge_weight: float = 0.0
    concepts: tuple[str, ...] = ()
    bridge_picture_pool: str = "sum"

    @property
    def contrastive(self) -> bool:
        """True for the in-batch-negative losses (InfoNCE, NT-Xent); False for the pair classifiers."""
        return self.loss in ("infonce", "ntxent")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of builtins (tuples as lists), safe for ``torch.load(weights_only=True)``."""
        d = asdict(self)
        return _listify(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        d = dict(d)
        for key in ("visual_channels", "audio_channels", "visual_taps", "audio_taps", "concepts"):
            if key in d:
                d[key] = tuple(d[key])
        if isinstance(d.get("audio"), dict):
            d["audio"] = AudioConfig(**d["audio"])
        if isinstance(d.get("image"), dict):
            img = dict(d["image"])
            img["mean"] = tuple(img.get("mean", IMAGENET_MEAN))
            img["std"] = tuple(img.get("std", IMAGENET_STD))
            d["image"] = ImageConfig(**img)
        return cls(**d)


def _listify(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _listify(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_listify(v) for v in x]
    return x
