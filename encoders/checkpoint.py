"""One-file checkpoints: save atomically, load safely (``torch.load(weights_only=True)`` only).

File content (a torch zip archive holding only tensors and plain builtins)::

    {"format": "soundlib-checkpoint", "version": 1, "name": str, "config": ModelConfig.to_dict(),
     "state_dict": {key: tensor}, "audio_mean": [float] * n_mels, "audio_std": [float] * n_mels,
     "training": {"data": ..., "epochs": ..., "metric": ..., "date": ISO-8601 UTC, "code_version": ...},
     "bridge_fit": {"x": float16 (N, F), "y": int64 (N,), "count": int64 (N,), "weight_decay": float}}

``bridge_fit`` is optional: a bridged model's sound-classifier fit set (:class:`~encoders.bridge.BridgeFitSet`),
which ``soundlib adapt`` fits again with a library's own named sounds; files without it load as before.

Anything else -- missing, empty, truncated, random bytes, a foreign torch file, a pickle carrying code, another
version, weights that do not fit the configuration -- raises :class:`~encoders.errors.CheckpointError` with one line
``"<path>: <reason>"``. A pickle is never executed: ``weights_only`` refuses every global that is not a tensor type.
"""

from __future__ import annotations

from encoders.hashing import file_sha256  # noqa: F401 (re-exported)

import datetime as _dt
import hashlib
import io
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encoders.atomic import atomic_write
from encoders.config import ModelConfig
from encoders.errors import CheckpointError, ConfigError
from encoders.version import package_version

if TYPE_CHECKING:
    from torch import nn

FORMAT = "soundlib-checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "name", "config", "state_dict", "audio_mean", "audio_std", "training")


@dataclass
class CheckpointInfo:
    """What identifies a loaded checkpoint.

    Attributes:
        path: the file read.
        name: the model's registry name.
        config: the model configuration stored in the file.
        sha256: hex digest of the file's bytes (identifies the weights, e.g. in a collection's metadata).
        training: plain-builtin facts about the training run (data, epochs, metric, date, code_version, ...).
        audio_mean, audio_std: the per-band log-mel statistics (``n_mels`` floats each).
    """

    path: Path
    name: str
    config: ModelConfig
    sha256: str
    training: dict[str, Any] = field(default_factory=dict)
    audio_mean: list[float] = field(default_factory=list)
    audio_std: list[float] = field(default_factory=list)
    has_bridge_fit: bool = False




def _plain(value: Any, where: str) -> Any:
    """``value`` as plain builtins (numpy/torch scalars -> Python numbers, paths -> str, tuples -> lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"training facts: key {k!r} in {where or 'training'} is not a string")
            out[k] = _plain(v, f"{where}.{k}" if where else k)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalar or one-element tensor
    if callable(item):
        try:
            return _plain(item(), where)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise ValueError(f"training facts: {where or 'training'} has type {type(value).__name__}; use plain builtins")


def _floats(t: Any) -> list[float]:
    """A tensor's values as a list of Python floats (``[]`` for a model without audio stats)."""
    return [] if t is None else [float(x) for x in t.detach().cpu().reshape(-1)]


def save_checkpoint(path: str | os.PathLike, model: "nn.Module", training: dict[str, Any] | None = None) -> str:
    """Write ``model`` (anything with ``config`` and a state dict, e.g. :class:`~encoders.model.AVModel`) to one file.

    The file is written to a temporary name in the same folder, flushed to disk and renamed over ``path``, so a
    reader never sees a half-written checkpoint. ``training`` facts are stored as plain builtins; ``date`` (UTC, ISO
    8601) and ``code_version`` are filled in when missing.

    Args:
        path: destination file (parent folders are created).
        model: the model; its ``config`` must be a :class:`~encoders.config.ModelConfig`.
        training: e.g. ``{"data": "lists/train.csv", "epochs": 12, "metric": {"val_top10": 0.31}}``.

    Returns:
        the hex sha256 of the written file.

    Raises:
        ValueError: ``training`` holds something that is not a plain builtin (and cannot be converted to one).
    """
    import torch

    config: ModelConfig = model.config  # type: ignore[assignment]
    facts = _plain(dict(training or {}), "")
    facts.setdefault("date", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    facts.setdefault("code_version", package_version())
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "name": config.name,
        "config": config.to_dict(),
        "state_dict": state,
        "audio_mean": _floats(getattr(model, "audio_mean", None)),
        "audio_std": _floats(getattr(model, "audio_std", None)),
        "training": facts,
    }
    fit = getattr(model, "bridge_fit", None)
    if fit is not None:
        payload["bridge_fit"] = fit.to_payload()
    with atomic_write(path, fsync=True) as tmp:
        torch.save(payload, tmp)
        digest = file_sha256(tmp)
    return digest


def _read_payload(path: Path) -> tuple[dict[str, Any], str]:
    """Read and safely unpickle the file; returns (payload, sha256). Every failure is a one-line CheckpointError."""
    import torch

    if not path.exists():
        raise CheckpointError("checkpoint not found", path)
    if path.is_dir():
        raise CheckpointError("is a folder, not a checkpoint file", path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint: {exc.strerror or exc}", path) from None
    if not data:
        raise CheckpointError("empty file, not a checkpoint", path)
    digest = hashlib.sha256(data).hexdigest()
    buf = io.BytesIO(data)
    if not zipfile.is_zipfile(buf):
        if data[:4] == b"PK\x03\x04":
            raise CheckpointError("truncated or corrupt checkpoint (incomplete zip archive)", path)
        if data[:1] == b"\x80":  # pickle PROTO opcode: a bare pickle (or a legacy torch file) -- never unpickled
            raise CheckpointError("not a soundlib checkpoint (a bare Python pickle; refused, nothing was run)", path)
        raise CheckpointError("not a soundlib checkpoint (unknown file format)", path)
    try:
        with zipfile.ZipFile(buf) as zf:
            bad = zf.testzip()  # CRC of every member: torch's reader does not check them
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"truncated or corrupt checkpoint ({exc})", path) from None
    if bad is not None:
        raise CheckpointError(f"corrupt checkpoint (checksum mismatch in {bad})", path)
    buf.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(buf, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            raise CheckpointError(
                f"refused to load: the file would import {found.group(1)} (a pickle carrying code or foreign "
                "objects, not a soundlib checkpoint; nothing was run)", path) from None
        raise CheckpointError("not a soundlib checkpoint (a torch file this safe loader refuses)", path) from None
    except RuntimeError:  # a sound zip (CRCs checked above) that torch cannot read: some other zip file
        raise CheckpointError("not a soundlib checkpoint (a zip archive that is not a torch file)", path) from None
    except Exception as exc:  # any other failure of the reader on foreign bytes
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"not a soundlib checkpoint ({first})", path) from None
    return payload, digest


def _check_header(payload: Any, path: Path) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("not a soundlib checkpoint (a torch file without the soundlib header)", path)
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"unsupported soundlib checkpoint version {payload.get('version')!r} (this build reads {VERSION})", path)
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"damaged soundlib checkpoint: missing {', '.join(missing)}", path)
    if not isinstance(payload["state_dict"], dict) or not isinstance(payload["config"], dict):
        raise CheckpointError("damaged soundlib checkpoint: config or state_dict is not a mapping", path)


def _state_mismatch(model: "nn.Module", state: dict[str, Any]) -> str | None:
    """A one-line description of how ``state`` fails to fit ``model`` (``None`` if it fits exactly)."""
    import torch

    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = []
    for k, v in expected.items():
        got = state.get(k)
        if got is None:
            continue
        if not isinstance(got, torch.Tensor):
            wrong.append(f"{k} is a {type(got).__name__}, not a tensor")
        elif tuple(got.shape) != tuple(v.shape):
            wrong.append(f"{k} has shape {list(got.shape)}, model expects {list(v.shape)}")

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    parts = []
    if missing:
        parts.append(f"missing weights {few(missing)}")
    if unexpected:
        parts.append(f"unexpected weights {few(unexpected)}")
    if wrong:
        parts.append(few(wrong))
    return "; ".join(parts) or None


def load_checkpoint(path: str | os.PathLike) -> tuple["nn.Module", CheckpointInfo]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint file.

    Returns:
        ``(model, info)``: the model (CPU, eval mode, weights and audio stats restored) and its
        :class:`CheckpointInfo`.

    Raises:
        CheckpointError: missing, empty, truncated or corrupt file; not a soundlib checkpoint (foreign torch file,
            random bytes, a pickle with objects beyond tensors); unsupported version; an invalid configuration; or
            weights that do not fit the configuration (names the model and the first offending keys).
    """
    from encoders.registry import build_model

    path = Path(path)
    payload, digest = _read_payload(path)
    _check_header(payload, path)
    name = payload["name"]
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid model configuration in checkpoint: {exc}", path) from None
    if config.name != name:
        raise CheckpointError(f"damaged soundlib checkpoint: name {name!r} but config for {config.name!r}", path)
    try:
        model = build_model(config)
    except ConfigError as exc:
        raise CheckpointError(f"invalid model configuration in checkpoint: {exc.reason}", path) from None
    state = payload["state_dict"]
    problem = _state_mismatch(model, state)
    if problem:
        raise CheckpointError(f"weights do not match model {name}: {problem}", path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        first = str(exc).splitlines()[0][:200]
        raise CheckpointError(f"weights do not match model {name}: {first}", path) from None
    model.eval()
    if payload.get("bridge_fit") is not None:
        bridge = getattr(model, "bridge", None)
        if bridge is None:
            raise CheckpointError(f"damaged soundlib checkpoint: a sound-classifier fit set but model {name} has no "
                                  f"concept bridge", path)
        from encoders.bridge import BridgeFitSet

        try:
            model.bridge_fit = BridgeFitSet.from_payload(payload["bridge_fit"], bridge.sound_mean.shape[0],
                                                         bridge.n_concepts)
        except ValueError as exc:
            raise CheckpointError(f"damaged soundlib checkpoint: {exc}", path) from None
    training = payload["training"] if isinstance(payload["training"], dict) else {}
    info = CheckpointInfo(
        path=path, name=name, config=config, sha256=digest, training=training,
        audio_mean=_floats(getattr(model, "audio_mean", None)), audio_std=_floats(getattr(model, "audio_std", None)),
        has_bridge_fit=getattr(model, "bridge_fit", None) is not None,
    )
    return model, info
