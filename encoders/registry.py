"""Named model configurations and the one factory that builds them.

``MODELS`` maps a name to its :class:`~encoders.config.ModelConfig`; the config's ``family`` picks the builder in
``FAMILIES`` (``"module:attribute"``, imported lazily), so a pretrained family (another ``nn.Module`` with the
:class:`~encoders.model.AVModel` interface) plugs in with :func:`register_family` + :func:`register_model`.

The paper's seven (Table 1b; batch 128 for the baseline, 32 for the attention models, lr 0.01):

====  ==================================  =========  ==========  ======================
 id   name                                encoder    projector   loss
====  ==================================  =========  ==========  ======================
 1    ``m1-baseline-linear-bce``          baseline   linear      BCE
 2    ``m2-attention-linear-bce``         attention  linear      BCE
 3    ``m3-attention-linear-margin``      attention  linear      BCE + margin (m = 0.1)
 4    ``m4-attention-nonlinear-infonce``  attention  nonlinear   InfoNCE (tau = 0.5)
 5    ``m5-attention-linear-infonce``     attention  linear      InfoNCE
 6    ``m6-attention-nonlinear-ntxent``   attention  nonlinear   NT-Xent (tau = 0.5)
 7    ``m7-attention-linear-ntxent``      attention  linear      NT-Xent
====  ==================================  =========  ==========  ======================
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, Callable

from encoders.config import PICTURE_POOLS, ModelConfig
from encoders.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

#: family -> "module:attribute" of a callable ``(ModelConfig) -> nn.Module``.
FAMILIES: dict[str, str] = {
    "paper": "encoders.model:AVModel",
    "pretrained": "encoders.pretrained:PretrainedAVModel",  # frozen pretrained backbones + trainable heads
}

_PAPER = ModelConfig(name="m1-baseline-linear-bce")  # defaults shared by the paper's seven

#: name -> configuration.
MODELS: dict[str, ModelConfig] = {}

PROJECTORS = ("linear", "nonlinear")
LOSSES = ("bce", "margin", "infonce", "ntxent")
COMPATIBILITIES = ("add", "dot")  # same as encoders.attention.COMPATIBILITIES (kept here: no torch import)


def register_model(config: ModelConfig, replace: bool = False) -> None:
    """Add a named configuration (its ``family`` must be registered). ``replace=False`` refuses a taken name."""
    if config.name in MODELS and not replace:
        raise ConfigError(f"model name {config.name!r} is already registered")
    if config.family not in FAMILIES:
        raise ConfigError(f"unknown model family {config.family!r}; known: {', '.join(sorted(FAMILIES))}")
    MODELS[config.name] = config


def register_family(family: str, builder: str | Callable[[ModelConfig], "nn.Module"]) -> None:
    """Register a builder for ``family``: a callable or a lazy ``"module:attribute"`` string."""
    FAMILIES[family] = builder  # type: ignore[assignment]


for _name, _attention, _projector, _loss, _batch in (
    ("m1-baseline-linear-bce", False, "linear", "bce", 128),
    ("m2-attention-linear-bce", True, "linear", "bce", 32),
    ("m3-attention-linear-margin", True, "linear", "margin", 32),
    ("m4-attention-nonlinear-infonce", True, "nonlinear", "infonce", 32),
    ("m5-attention-linear-infonce", True, "linear", "infonce", 32),
    ("m6-attention-nonlinear-ntxent", True, "nonlinear", "ntxent", 32),
    ("m7-attention-linear-ntxent", True, "linear", "ntxent", 32),
):
    register_model(dataclasses.replace(
        _PAPER, name=_name, attention=_attention, projector=_projector, loss=_loss, batch_size=_batch, lr=0.01))

# The pretrained family (issue: default model): frozen EfficientNet-Lite0 (ImageNet) and aisfx (sound-effects
# libraries) backbones, trainable attention heads. "dot" compatibility: with the paper's "add" the global feature
# cancels out of the softmax over positions (see encoders/attention.py), so it could not steer the attention.
register_model(dataclasses.replace(
    _PAPER, name="pt-effnet-aisfx-infonce", family="pretrained", attention=True, compatibility="dot",
    projector="linear", loss="infonce", batch_size=128, lr=0.01))
# The same heads plus the concept bridge (issue 12; encoders/bridge.py): what EfficientNet's ImageNet classifier
# knows about a picture, pooled into concepts (each concept's most probable class), against a sound -> concept
# classifier fitted on the training sounds. The weight 0.7, the temperature 0.1 and the max pooling were chosen on
# leave-one-source-out folds (soundlib/models/README.md).
register_model(dataclasses.replace(
    MODELS["pt-effnet-aisfx-infonce"], name="pt-effnet-aisfx-bridge", temperature=0.1, bridge_weight=0.7,
    bridge_picture_pool="max"))


def model_names() -> tuple[str, ...]:
    """All registered names, in registration order."""
    return tuple(MODELS)


#: The paper's seven configurations (Table 1b), in order; :func:`model_names` lists every registered name.
MODEL_NAMES: tuple[str, ...] = tuple(n for n, c in MODELS.items() if c.family == "paper")

_TUPLE_FIELDS = ("visual_channels", "audio_channels", "visual_taps", "audio_taps", "concepts")


def validate_config(config: ModelConfig) -> ModelConfig:
    """Check a configuration's values; returns it unchanged.

    Raises:
        ConfigError: one line naming the bad field and the allowed values.
    """
    def bad(reason: str) -> ConfigError:
        return ConfigError(f"model {config.name}: {reason}")

    if config.family not in FAMILIES:
        raise bad(f"unknown family {config.family!r}; known: {', '.join(sorted(FAMILIES))}")
    if config.compatibility not in COMPATIBILITIES:
        raise bad(f"compatibility must be one of {', '.join(COMPATIBILITIES)}, got {config.compatibility!r}")
    if config.projector not in PROJECTORS:
        raise bad(f"projector must be one of {', '.join(PROJECTORS)}, got {config.projector!r}")
    if config.loss not in LOSSES:
        raise bad(f"loss must be one of {', '.join(LOSSES)}, got {config.loss!r}")
    if not config.width > 0:
        raise bad(f"width must be > 0, got {config.width}")
    for key in ("embed_dim", "image_size", "batch_size"):
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad(f"{key} must be a positive integer, got {value!r}")
    if not config.temperature > 0:
        raise bad(f"temperature must be > 0, got {config.temperature}")
    if not config.margin >= 0:
        raise bad(f"margin must be >= 0, got {config.margin}")
    if not config.lr > 0:
        raise bad(f"lr must be > 0, got {config.lr}")
    if not 0.0 <= config.bridge_weight < 1.0:
        raise bad(f"bridge_weight must be in [0, 1), got {config.bridge_weight}")
    if config.bridge_picture_pool not in PICTURE_POOLS:
        raise bad(f"bridge_picture_pool must be one of {', '.join(PICTURE_POOLS)}, got {config.bridge_picture_pool!r}")
    if config.bridge_weight > 0 and config.family == "paper":
        raise bad("a concept bridge needs the pretrained family's ImageNet classifier (family 'pretrained')")
    if len(set(c.lower() for c in config.concepts)) != len(config.concepts):
        raise bad("concept names must be distinct")
    for chans, taps, kind in ((config.visual_channels, config.visual_taps, "visual"),
                              (config.audio_channels, config.audio_taps, "audio")):
        if not chans or any(not isinstance(c, int) or c < 1 for c in chans):
            raise bad(f"{kind}_channels must be positive integers, got {list(chans)}")
        if config.attention and (not taps or any(not isinstance(t, int) or not 0 <= t < len(chans) for t in taps)
                                 or list(taps) != sorted(set(taps))):
            raise bad(f"{kind}_taps must be increasing block indices in 0..{len(chans) - 1}, got {list(taps)}")
    return config


def get_config(name: str, /, **overrides: Any) -> ModelConfig:
    """The configuration registered as ``name`` with fields replaced by ``overrides`` (e.g. ``width=0.125``).

    ``image_size`` also sets ``image.size``; list values for the channel/tap fields are turned into tuples.

    Raises:
        ConfigError: unknown name (lists the valid names), unknown override field (lists the valid fields),
            ``name`` among the overrides, or an invalid value.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    config = MODELS[name]
    valid = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "name"]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for model {name}; valid options: {', '.join(valid)}")
    overrides = dict(overrides)
    for key in _TUPLE_FIELDS:
        if key in overrides and isinstance(overrides[key], list):
            overrides[key] = tuple(overrides[key])
    if "image_size" in overrides and "image" not in overrides:
        overrides["image"] = dataclasses.replace(config.image, size=overrides["image_size"])
    try:
        config = dataclasses.replace(config, **overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for model {name}: {exc}") from None
    return validate_config(config)


def _builder(family: str) -> Callable[[ModelConfig], "nn.Module"]:
    target = FAMILIES.get(family)
    if target is None:
        raise ConfigError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_model(config: ModelConfig, seed: int | None = None) -> "nn.Module":
    """Build the ``nn.Module`` for an explicit configuration (its family's builder), optionally seeded.

    The seed initialises the weights without disturbing the global RNG state.
    """
    import torch

    validate_config(config)
    build = _builder(config.family)
    if seed is None:
        return build(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(config)


def create_model(name: str, /, seed: int | None = None, **overrides: Any) -> "nn.Module":
    """A freshly initialised model for the registered ``name`` (see :func:`get_config` for ``overrides``).

    Args:
        name: a registered name, e.g. ``"m5-attention-linear-infonce"``.
        seed: if given, the weights are a deterministic function of it.
        **overrides: config fields to replace, e.g. ``width=0.125, image_size=64``.

    Raises:
        ConfigError: unknown name or invalid override.
    """
    return build_model(get_config(name, **overrides), seed=seed)
