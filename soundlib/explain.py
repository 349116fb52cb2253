"""Where a sound is in a picture: a heatmap over the picture for one recommended sound.

Pretrained family (``pt-effnet-aisfx-infonce``, and the heads' part of the default ``pt-effnet-aisfx-bridge``)
    The image head attention-pools three EfficientNet stages, each pooled to a 7 x 7 grid, and maps the pooled
    vectors (with the projected global feature) to the embedding. For every grid position ``p`` the head is run as
    if every tap's attention were one-hot at ``p``: the image embedding the model would give if it looked only
    there. Its cosine similarity to the sound's embedding is the heat at ``p``. The map is sound-specific: a dog's
    bark lights the dog, the rain lights the sky.

Paper family with attention (m2-m7)
    The image encoder's own attention maps (one per tap, each summing to 1, upsampled to the finest tap and
    averaged): where the model looked, the same for every sound.

Baseline (m1)
    No attention and no local features in the head: :class:`~soundlib.errors.SoundlibError` says so in one line.

The heat covers the part of the picture the model sees (:attr:`Explanation.box`: the centre crop of the pretrained
family; the whole square picture for the paper family). :func:`render_overlay` upsamples it and blends it over the
picture; the rest of the picture is dimmed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from soundlib.errors import SoundlibError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image as PILImage

#: Side (pixels) of a rendered overlay.
OVERLAY_SIZE = 512
#: Colour map anchors (an "inferno"-like ramp from black through purple and orange to pale yellow).
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                  [250, 193, 39], [252, 255, 164]], dtype=np.float32)


@dataclass(frozen=True)
class Explanation:
    """A heatmap for one picture (and, for the pretrained family, one sound).

    Attributes:
        heat: ``(h, w)`` float32 raw scores (cosine similarities, or attention weights).
        method: ``"one-hot attention"`` (sound-specific) or ``"attention map"`` (the model's own attention).
        box: ``(left, top, right, bottom)`` of the region the heat covers, in pixels of the picture given.
    """

    heat: np.ndarray
    method: str
    box: tuple[float, float, float, float]

    def normalised(self) -> np.ndarray:
        """``heat`` scaled to [0, 1] (min to max; a flat map is all zeros)."""
        h = np.asarray(self.heat, dtype=np.float32)
        lo, hi = float(h.min()), float(h.max())
        return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


def _is_pretrained(model: Any) -> bool:
    from encoders.pretrained import PretrainedEncoder

    return isinstance(getattr(model, "visual", None), PretrainedEncoder)


def explain_method(model: Any) -> str | None:
    """What :func:`explain_picture` gives for ``model``: ``"one-hot attention"``, ``"attention map"``, or ``None``
    (a baseline model has nothing to explain)."""
    if _is_pretrained(model):
        return "one-hot attention"
    return "attention map" if getattr(getattr(model, "visual", None), "attention", False) else None


def explain_picture(model: Any, picture: "torch.Tensor", sound: np.ndarray | None = None) -> Explanation:
    """Heatmap of ``picture`` for ``sound`` (see the module docstring for what each model family gives).

    Args:
        model: the model (``loaded.model``), in eval mode.
        picture: ``(3, S, S)`` float in [0, 1], read at ``model.picture_size`` (:func:`soundlib.images.load_image`).
        sound: ``(D,)`` the sound's embedding (a stored window); needed by the pretrained family, unused by the
            paper family's attention maps.

    Returns:
        :class:`Explanation`.

    Raises:
        SoundlibError: the model has no attention to explain (baseline), or the pretrained family without
            ``sound``, or a sound embedding of the wrong size.
    """
    import torch

    if picture.dim() == 3:
        picture = picture.unsqueeze(0)
    side = float(picture.shape[-1])
    with torch.no_grad():
        if _is_pretrained(model):
            if sound is None:
                raise SoundlibError("the pretrained family explains a picture for a sound: give its embedding")
            heat = _one_hot_scores(model, picture, np.asarray(sound, dtype=np.float32).reshape(-1))
            spec = model.spec.image
            crop = side * spec.size / model.picture_size if model.picture_size else side
            m = (side - crop) / 2
            return Explanation(heat, "one-hot attention", (m, m, m + crop, m + crop))
        visual = getattr(model, "visual", None)
        if not getattr(visual, "attention", False):
            raise SoundlibError(f"model {model.config.name} has no attention map to explain (a baseline model: "
                                "no local features reach its embedding)")
        _, maps = model.encode_image(model.image_features(picture.float()), return_attention=True)
        heat = _mean_maps([m[0].float() for m in maps])
        return Explanation(heat, "attention map", (0.0, 0.0, side, side))


def _mean_maps(maps: list["torch.Tensor"]) -> np.ndarray:
    """Maps ``[(h_i, w_i)]`` upsampled (bilinear) to the finest one and averaged -> ``(h, w)`` float32."""
    from torch.nn import functional as F

    h = max(m.shape[0] for m in maps)
    w = max(m.shape[1] for m in maps)
    up = [F.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
          * (m.numel() / (h * w)) for m in maps]  # each map keeps summing to 1
    return (sum(up) / len(up)).numpy().astype(np.float32)


def position_embeddings(model: Any, feats: "torch.Tensor") -> "torch.Tensor":
    """Pretrained family: the image embedding for attention one-hot at each grid position of every tap.

    Args:
        model: a pretrained-family model (its taps may have different grids: coarser ones are repeated).
        feats: ``(1, image_layout.size)`` packed image features (``model.image_features(pictures)``).

    Returns:
        ``(h, w, D)`` float32 unit vectors (``h x w`` the finest tap grid, 7 x 7 by default).
    """
    import torch
    from torch.nn import functional as F

    from encoders.backbones import unpack

    enc = model.visual
    maps, g = unpack(feats.float(), enc.layout)
    gq = enc.global_proj(enc.global_norm(g))  # (1, d)
    h = max(c_hw[1] for c_hw in enc.layout.grids)
    w = max(c_hw[2] for c_hw in enc.layout.grids)
    parts = []
    for norm, pool, local in zip(enc.local_norms, enc.pools, maps):
        x = norm(local)  # (1, C, h_i, w_i)
        if isinstance(pool.project, torch.nn.Conv2d):
            x = pool.project(x)  # one-hot attention at p pools exactly the (projected) local vector at p
        parts.append(F.interpolate(x, size=(h, w), mode="nearest")[0].reshape(x.shape[1], h * w).T)
    parts.append(gq.expand(h * w, -1))
    emb = F.normalize(enc.embed(torch.cat(parts, dim=1)).float(), dim=1)
    return emb.reshape(h, w, -1)


def _one_hot_scores(model: Any, picture: "torch.Tensor", sound: np.ndarray) -> np.ndarray:
    import torch

    emb = position_embeddings(model, model.image_features(picture.float()))
    if getattr(model, "bridge", None) is not None and sound.shape[0] == model.embed_dim:
        sound = model.heads_part(torch.from_numpy(np.asarray(sound, np.float32))[None])[0].numpy()
    if sound.shape[0] != emb.shape[-1]:
        raise SoundlibError(f"sound embedding has {sound.shape[0]} values, the model's have {emb.shape[-1]}")
    s = torch.from_numpy(sound / max(float(np.linalg.norm(sound)), 1e-12))
    return (emb @ s).numpy().astype(np.float32)


def colorize(values: np.ndarray) -> np.ndarray:
    """``(h, w)`` values in [0, 1] -> ``(h, w, 3)`` uint8 colours of an inferno-like ramp."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.floor(v).astype(int)
    hi = np.minimum(lo + 1, len(_RAMP) - 1)
    t = (v - lo)[..., None]
    return (_RAMP[lo] * (1 - t) + _RAMP[hi] * t).astype(np.uint8)


def render_overlay(picture: "torch.Tensor", explanation: Explanation, size: int = OVERLAY_SIZE,
                   ) -> "PILImage.Image":
    """The picture (``(3, S, S)`` in [0, 1]) scaled to ``size`` with the heat blended over its box (bicubic
    upsampling; 45 % heat colour) and the rest dimmed.

    Returns:
        A ``size`` x ``size`` RGB Pillow image.
    """
    from PIL import Image

    pic = (np.clip(picture.detach().float().cpu().numpy().transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    base = Image.fromarray(pic).resize((size, size), Image.Resampling.BICUBIC)
    out = np.asarray(base, dtype=np.float32) * 0.45
    scale = size / float(picture.shape[-1])
    left, top, right, bottom = (int(round(c * scale)) for c in explanation.box)
    heat = Image.fromarray(explanation.normalised()).resize((right - left, bottom - top), Image.Resampling.BICUBIC)
    color = colorize(np.asarray(heat)).astype(np.float32)
    region = np.asarray(base, dtype=np.float32)[top:bottom, left:right]
    out[top:bottom, left:right] = 0.55 * region + 0.45 * color
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def explain_file(loaded: Any, image: str | os.PathLike, sound: np.ndarray | None, out: str | os.PathLike,
                 size: int = OVERLAY_SIZE) -> Explanation:
    """``soundlib query IMAGE --explain OUT.png``: read ``image`` as the model does, explain it for ``sound``,
    write the overlay as a PNG to ``out``.

    Raises:
        ImageError: the picture cannot be read. SoundlibError: the model cannot explain (see
        :func:`explain_picture`), or ``out`` cannot be written.
    """
    from soundlib.images import load_image

    model = loaded.model
    picture = load_image(image, model.picture_size, detail=model.picture_detail)
    exp = explain_picture(model, picture, sound)
    path = Path(out)
    try:
        render_overlay(picture, exp, size).save(path, format="PNG")
    except (OSError, ValueError) as e:
        raise SoundlibError(f"cannot write ({getattr(e, 'strerror', None) or e})", str(path)) from None
    return exp
