"""The reference code's audio normalisation file, ``lists/vggsound_train_mean_var.npy`` (``--norm-stats FILE.npy``).

The file holds the training set's per-band log-mel **mean** (row 0) and **variance** (row 1): shape ``(2, 64)``.
The reference code normalises with ``mean = mv[0]`` and ``std = sqrt(mv[1]) + 1e-8`` [eval/gen_aud_embs.py readmv,
l. 24-32; data/vggsound_dataset_contrast.py VGGSound.getAudTransform], subtracting along the 64 mel bands
[gen_aud_embs.py gen_emb_wav]. The file itself could not be read here (it is a binary in that repository), so the
shape is inferred from that code: anything that squeezes to ``(2, n_mels)`` is taken, anything else is refused.

The values only fit a model whose log-mels are computed as ours (:class:`encoders.frontend.LogMel`: natural log of
the 64-band mel power at 48 kHz, 100 frames per second, as the paper describes); the reference code's own feature
files were made by a script that is not in its repository.

Only the paper family (:class:`encoders.model.AVModel`) normalises log-mels with band statistics; the pretrained
family normalises its backbone features itself, so giving it such a file is refused (:func:`apply_norm_stats`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from soundlib.errors import SoundlibError

__all__ = ["STD_EPS", "read_norm_stats", "write_norm_stats", "check_accepts_norm_stats", "apply_norm_stats"]

#: Added to ``sqrt(variance)``, as the reference code does.
STD_EPS = 1e-8


def read_norm_stats(path: str | os.PathLike, n_mels: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Read a mean/variance file.

    Args:
        path: the ``.npy`` file (row 0 mean, row 1 variance per mel band).
        n_mels: the model's number of mel bands.

    Returns:
        ``(mean (n_mels,), std (n_mels,))`` float32, ``std = sqrt(variance) + 1e-8``.

    Raises:
        SoundlibError: missing or unreadable file, not a numeric ``.npy``, another shape, non-finite values or a
            negative variance (one line naming the file).
    """
    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise SoundlibError("norm stats file not found", str(p)) from None
    except IsADirectoryError:
        raise SoundlibError("is a folder, not a .npy file", str(p)) from None
    except (OSError, ValueError, EOFError) as e:
        raise SoundlibError(f"not a numeric .npy file ({e})", str(p)) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise SoundlibError("not a numeric .npy array", str(p))
    squeezed = arr.reshape([d for d in arr.shape if d != 1]) if arr.ndim > 2 else arr
    if squeezed.shape != (2, n_mels):
        raise SoundlibError(f"expected shape (2, {n_mels}) (row 0: mean, row 1: variance per mel band), "
                            f"got {tuple(arr.shape)}", str(p))
    mean, var = squeezed.astype(np.float64)
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise SoundlibError("non-finite values", str(p))
    if (var < 0).any():
        raise SoundlibError("negative variance", str(p))
    return mean.astype(np.float32), (np.sqrt(var) + STD_EPS).astype(np.float32)


def write_norm_stats(path: str | os.PathLike, mean: Any, var: Any) -> None:
    """Write ``np.stack([mean, var])`` (float32, shape ``(2, n_mels)``) as the reference code reads it."""
    from encoders.atomic import atomic_write

    arr = np.stack([np.asarray(mean, dtype=np.float32).reshape(-1), np.asarray(var, dtype=np.float32).reshape(-1)])
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(p) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def check_accepts_norm_stats(name: str, config: Any) -> None:
    """Refuse band statistics for a model family that does not use them.

    Raises:
        SoundlibError: ``config`` is not the paper family.
    """
    if getattr(config, "family", "paper") != "paper":
        raise SoundlibError(f"--norm-stats applies to the paper models (m1..m7) only; {name} normalises its "
                            "backbone features itself")


def apply_norm_stats(model: Any, name: str, path: str | os.PathLike) -> None:
    """Replace a paper model's log-mel band statistics with those of a mean/variance file.

    Raises:
        SoundlibError: the model is not of the paper family, or the file is refused by :func:`read_norm_stats`.
    """
    check_accepts_norm_stats(name, model.config)
    mean, std = read_norm_stats(path, int(model.config.audio.n_mels))
    model.set_audio_stats(mean, std)
