"""The pretrained family (``family="pretrained"``): frozen EfficientNet-Lite0 + aisfx backbones, trainable heads.

Same interface as :class:`encoders.model.AVModel`, so ingest, query, train and eval use it unchanged. Data flow::

    images [B,3,H,W] in [0,1] --image_features--> [B, 24408] packed backbone features --encode_image--> [B,128]
    waves [B,48000] @48k     --audio_features--> [B, 22016] packed backbone features --encode_audio--> [B,128]

"Features" are the frozen backbones' outputs (:mod:`encoders.backbones`), one flat float vector per item so a
training run can cache them (``.npy``) and train the heads in seconds: for an image, EfficientNet-Lite0's blocks 4,
10 and 15 (40 ch 28x28, 112 ch 14x14, 320 ch 7x7, each average-pooled to 7x7) and its pooled 1280-d head feature;
for a 1-s window, aisfx's conv blocks 2-4 (128, 256, 512 ch, each pooled to 4 time x 6 frequency cells) and its
512-d embedding.

Each head (:class:`PretrainedEncoder`) follows the paper's attention encoder: the global feature is normalised and
projected to ``head_dim``; each tap's map is normalised (:class:`~torch.nn.GroupNorm` with one group, so positions
keep their relative strength) and attention-pooled with :class:`encoders.attention.AttentionPool` guided by the
projected global (``config.compatibility``; ``"dot"`` is the one where the global steers the attention, scaled by
``1/sqrt(head_dim)``); the taps' vectors and the projected global are concatenated, dropped out in training, and
mapped by Linear + ReLU to ``embed_dim``; the L2-normalised result is the retrieval embedding. The configured
projector (linear by default) and loss (InfoNCE, ``config.temperature``) act on it in :meth:`PretrainedAVModel.
pair_loss`, as in the paper's models.

The backbones are cached once per process and are NOT children of the module: ``state_dict()`` holds the heads only
(plus the ``audio_mean``/``audio_std`` buffers every checkpoint carries), so a checkpoint is a few MB.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.attention import AttentionPool
from encoders.backbones import (
    AISFX_BLOCK_CHANNELS,
    AISFX_HEAD_OUTPUTS,
    EFFNET_BLOCK_CHANNELS,
    AisfxFrontend,
    AisfxSpec,
    AisfxTaps,
    aisfx_net_bf16,
    EffNetSpec,
    EffNetTaps,
    Layout,
    effnet_input,
    effnet_load_size,
    effnet_lite0,
    effnet_lite0_bf16,
    aisfx_heads,
    imagenet_labels,
    layout_for,
    pack,
    unpack,
)
from encoders.bridge import ConceptBridge, blend, mix_concepts, unmix_concepts
from encoders.config import ModelConfig
from encoders.errors import ConfigError
from encoders.hashing import config_key
from encoders.twotower import TwoTower

#: The family name this module registers under (see :mod:`encoders.registry`).
FAMILY = "pretrained"
#: Bump when the features a spec produces change (part of :attr:`PretrainedAVModel.features_key`).
FEATURES_VERSION = 4  # 2: bf16 image features from the BN-folded backbone; 3: pictures read at 256, crop only;
#                       4: sound windows wrap-padded to 48 frames instead of 100 (AisfxSpec.frames)
#: Bump when the audio features change (stored on every window of a collection: ingest re-embeds older windows).
AUDIO_FEATURES_VERSION = 2  # 2: windows wrap-padded to 48 frames instead of 100 (features version 4)


@dataclass(frozen=True)
class PretrainedSpec:
    """Backbones and head sizes of the pretrained family.

    Attributes:
        image: EfficientNet-Lite0 taps and grids.
        audio: aisfx front end, taps and grids.
        head_dim: width the taps and the global feature are projected to inside each head (a tap with exactly
            this many channels is pooled unprojected, as :class:`~encoders.attention.AttentionPool` does; 192
            matches none of the default taps).
        dropout: dropout on the concatenated head vector while training.
        batch: items per backbone forward pass (bounds memory; results do not depend on it).
    """

    image: EffNetSpec = field(default_factory=EffNetSpec)
    audio: AisfxSpec = field(default_factory=AisfxSpec)
    head_dim: int = 192
    dropout: float = 0.1
    batch: int = 32


def image_layout(spec: PretrainedSpec | None = None) -> Layout:
    """The layout of :meth:`PretrainedAVModel.image_features` vectors (``size`` 24,408 by default)."""
    s = (spec or PretrainedSpec()).image
    return layout_for([EFFNET_BLOCK_CHANNELS[i] for i in s.taps], s.grids, s.global_channels)


def audio_layout(spec: PretrainedSpec | None = None) -> Layout:
    """The layout of :meth:`PretrainedAVModel.audio_features` vectors (``size`` 22,016 by default)."""
    s = (spec or PretrainedSpec()).audio
    return layout_for([AISFX_BLOCK_CHANNELS[i] for i in s.taps], s.grids, s.global_channels)


class PretrainedEncoder(nn.Module):
    """Trainable head over one modality's packed backbone features -> ``(B, embed_dim)`` unit vectors.

    Args:
        layout: the packed features' layout.
        head_dim: projection width ``d`` of the global feature and of each tap.
        embed_dim: embedding size ``D``.
        compatibility: ``"add"`` or ``"dot"`` (see :class:`encoders.attention.AttentionPool`).
        dropout: dropout probability on the concatenated vector (training only).
    """

    def __init__(self, layout: Layout, head_dim: int, embed_dim: int, compatibility: str = "dot",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layout = layout
        self.head_dim = int(head_dim)
        self.global_norm = nn.LayerNorm(layout.global_channels)
        self.global_proj = nn.Linear(layout.global_channels, head_dim)
        self.local_norms = nn.ModuleList(nn.GroupNorm(1, c) for c, _, _ in layout.grids)
        self.pools = nn.ModuleList(AttentionPool(c, head_dim, compatibility) for c, _, _ in layout.grids)
        self.dropout = nn.Dropout(dropout)
        self.embed = nn.Sequential(nn.Linear((len(layout.grids) + 1) * head_dim, embed_dim), nn.ReLU())

    def forward(self, feats: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Packed features ``(B, layout.size)`` -> ``(B, D)`` float32 unit vectors (and the attention maps
        ``[(B, h_i, w_i)]``, each summing to 1, if ``return_attention``)."""
        maps, g = unpack(feats.float(), self.layout)
        gq = self.global_proj(self.global_norm(g))
        query = gq / math.sqrt(self.head_dim)  # scaled dot-product; ignored by the softmax with "add"
        vectors, atts = [], []
        for norm, pool, local in zip(self.local_norms, self.pools, maps):
            v, a = pool(norm(local), query)
            vectors.append(v.to(gq.dtype))
            atts.append(a)
        h = self.dropout(torch.cat(vectors + [gq], dim=1))
        emb = F.normalize(self.embed(h).float(), dim=1)
        return (emb, atts) if return_attention else emb


class PretrainedAVModel(TwoTower, nn.Module):
    """Frozen EfficientNet-Lite0 (images) and aisfx (sounds) with trainable attention heads.

    Args:
        config: a :class:`~encoders.config.ModelConfig` with ``family="pretrained"`` (``projector``, ``loss``,
            ``temperature``, ``margin``, ``embed_dim``, ``compatibility`` and ``audio`` are used; the paper's stream
            fields ``width``, channels and taps do not apply).
        spec: backbone taps and head sizes (default :class:`PretrainedSpec`).

    Attributes:
        config: the configuration.
        spec: the backbone/head specification.
        visual, audio: the two :class:`PretrainedEncoder` heads.
        projector / correlation: as in :class:`encoders.model.AVModel`.
        audio_mean, audio_std: buffers kept for the checkpoint format; the heads normalise their inputs themselves,
            so :meth:`set_audio_stats` is a no-op and :attr:`needs_audio_stats` is ``False``.
        inference_bf16: run the backbones in bfloat16 (BatchNorm folded, channels-last:
            :func:`~encoders.backbones.effnet_lite0_bf16`, :func:`~encoders.backbones.aisfx_net_bf16`) in
            :meth:`image_features` and :meth:`audio_features`, and the heads under bfloat16 autocast in the
            ``embed_*`` helpers. Default: on when the CPU
            supports bf16 (:func:`bf16_supported`): measured here it halves the CPU time of both backbones and
            changes nothing that matters (``bench/README.md``). ``False`` gives exact fp32.

    Raises:
        ConfigError: ``config.image_size`` is not the backbone's 224.
    """

    needs_audio_stats = False
    audio_features_version = AUDIO_FEATURES_VERSION

    def __init__(self, config: ModelConfig, spec: PretrainedSpec | None = None) -> None:
        super().__init__()
        self.config = config
        self.spec = spec or PretrainedSpec()
        if config.image_size != self.spec.image.size:
            raise ConfigError(f"model {config.name}: image_size is fixed at {self.spec.image.size} by the "
                              f"pretrained EfficientNet-Lite0, got {config.image_size}")
        d, compat = config.embed_dim, config.compatibility
        self.visual = PretrainedEncoder(image_layout(self.spec), self.spec.head_dim, d, compat, self.spec.dropout)
        self.audio = PretrainedEncoder(audio_layout(self.spec), self.spec.head_dim, d, compat, self.spec.dropout)
        self._init_shared(config)
        # the concept bridge (encoders/bridge.py): active with a weight and at least one concept column
        self.bridge = None
        if config.bridge_weight > 0 and config.concepts:
            self.bridge = ConceptBridge(len(config.concepts), AisfxSpec().global_channels + AISFX_HEAD_OUTPUTS,
                                        config.bridge_picture_pool)
        self.inference_bf16 = bf16_supported()
        self.__dict__["_frontend"] = None  # AisfxFrontend, built on first use (imports librosa); not a child

    # -- identity ---------------------------------------------------------------------------------------------
    @property
    def features_key(self) -> str:
        """Short hash of everything the cached features depend on (backbones, taps, grids, precision, front end).

        Two models with the same key produce the same :meth:`image_features` / :meth:`audio_features`; use it in
        feature-cache keys (the heads' weights do not enter it).
        """
        return config_key({"family": FAMILY, "v": FEATURES_VERSION, "image": asdict(self.spec.image),
                           "audio": asdict(self.spec.audio), "input": asdict(self.config.audio),
                           "bf16": bool(self.inference_bf16)})

    @property
    def picture_size(self) -> int:
        """Side pictures are read at: 256, the short side ImageNet evaluation scales to before its 224 centre
        crop (:func:`~encoders.backbones.effnet_load_size`), so :func:`~encoders.backbones.effnet_input` crops a
        picture read at this size and never resizes it a second time."""
        return effnet_load_size(self.spec.image)

    @property
    def picture_detail(self) -> int:
        """224: the network sees only the centre 224 of a picture read at 256, so a large JPEG may be decoded at a
        draft scale down to a 224 short side (then scaled up to 256 at most 1.14x; the v2 path read at 224 and
        scaled up to 256 every picture)."""
        return int(self.spec.image.size)

    @property
    def embed_dim(self) -> int:
        """Size of the retrieval embedding: the heads' ``config.embed_dim``, plus one column per concept with the
        bridge."""
        return int(self.config.embed_dim) + (self.bridge.n_concepts if self.bridge is not None else 0)

    # -- the concept bridge -----------------------------------------------------------------------------------
    def heads_part(self, emb: Tensor) -> Tensor:
        """The heads' unit embedding inside a (possibly bridged) embedding ``(B, embed_dim) -> (B, D)``."""
        if self.bridge is None:
            return emb
        return emb[:, :self.config.embed_dim] / (1.0 - self.config.bridge_weight) ** 0.5

    def with_sound_evidence(self, emb: Tensor, concepts: Tensor, share: float) -> Tensor:
        """Sound embeddings of one file ``(B, embed_dim)`` with their concept part mixed with other ``(C,)``
        evidence for that file (:func:`encoders.bridge.mix_concepts`); unchanged without a bridge."""
        if self.bridge is None:
            return emb
        return mix_concepts(emb, concepts, int(self.config.embed_dim), self.config.bridge_weight, share)

    def without_sound_evidence(self, emb: Tensor, concepts: Tensor, share: float) -> Tensor:
        """:meth:`with_sound_evidence` undone: embeddings mixed with ``(C,)`` evidence at ``share`` -> the
        embeddings before (:func:`encoders.bridge.unmix_concepts`); unchanged without a bridge."""
        if self.bridge is None:
            return emb
        return unmix_concepts(emb, concepts, int(self.config.embed_dim), self.config.bridge_weight, share)

    def sound_classifier_input(self, feats: Tensor) -> Tensor:
        """Packed audio features ``(B, audio_layout.size)`` -> ``(B, 890)``: aisfx's 512-d embedding and its 9
        library classifiers' 378 log-probabilities (what the bridge's sound classifier reads)."""
        _, g = unpack(torch.as_tensor(feats).float(), audio_layout(self.spec))
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            return torch.cat([g, aisfx_heads()(g)], dim=1)

    def image_concepts(self, feats: Tensor) -> Tensor:
        """Packed image features -> ``(B, C)`` concept scores of the bridge (ImageNet softmax pooled per concept)."""
        _, g = unpack(torch.as_tensor(feats).float(), image_layout(self.spec))
        with torch.no_grad(), torch.autocast("cpu", enabled=False):  # fp32 even inside the bf16 inference
            return self.bridge.image_probs(effnet_lite0()._fc(g))

    def sound_concepts(self, feats: Tensor) -> Tensor:
        """Packed audio features -> ``(B, C)`` concept probabilities of the bridge's sound classifier."""
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            return self.bridge.sound_probs(self.sound_classifier_input(feats))

    def _bridged(self, out: Any, feats: Tensor, concepts: Any, return_attention: bool) -> Any:
        """A head's output (``emb`` or ``(emb, attention maps)``) with ``emb`` blended with ``concepts(feats)`` (the
        modality's concept probabilities) when the model has a bridge; unchanged without one."""
        if self.bridge is None:
            return out
        emb, atts = out if return_attention else (out, None)
        emb = blend(emb.float(), concepts(feats), self.config.bridge_weight)
        return (emb, atts) if return_attention else emb

    def pair_loss(self, v: Tensor, a: Tensor, labels: Tensor | None = None) -> Tensor:
        """The configured loss on the heads' part of the embeddings (the bridge is fitted apart, not trained)."""
        return super().pair_loss(self.heads_part(v), self.heads_part(a), labels)

    # -- helpers ----------------------------------------------------------------------------------------------
    def _batches(self, x: Tensor):
        step = max(1, int(self.spec.batch))
        for i in range(0, x.shape[0], step):
            yield x[i:i + step]

    # -- audio ------------------------------------------------------------------------------------------------
    def set_audio_stats(self, mean: Any, std: Any) -> None:
        """No-op: the heads normalise the backbone features per item (LayerNorm / GroupNorm), so no dataset
        statistics are needed. Kept so callers written for :class:`~encoders.model.AVModel` work unchanged."""
        return None

    def audio_features(self, waves: Tensor, fast: bool | None = None) -> Tensor:
        """Frozen aisfx features of 1-second windows.

        Args:
            waves: ``(B, samples)`` float at ``config.audio.sample_rate`` (rows of another length are wrap-padded or
                cut to one window).
            fast: the bfloat16 backbone (default :attr:`inference_bf16`).

        Returns:
            ``(B, audio_layout.size)`` float32 (22,016 by default), deterministic, no autograd history.
        """
        if self._frontend is None:
            self.__dict__["_frontend"] = AisfxFrontend(self.config.audio.sample_rate,
                                                       self.config.audio.window_samples, self.spec.audio)
        waves = torch.as_tensor(waves)
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        bf16 = self.inference_bf16 if fast is None else fast
        taps = AisfxTaps(net=aisfx_net_bf16() if bf16 else None, spec=self.spec.audio)
        layout = audio_layout(self.spec)
        outs = []
        with torch.inference_mode():
            for chunk in self._batches(waves):
                x = self._frontend(chunk.float().cpu())
                outs.append(pack(taps(x.to(torch.bfloat16) if bf16 else x), layout))
            feats = torch.cat(outs) if outs else torch.zeros(0, layout.size)
        return feats.clone()  # a normal tensor (usable in autograd), not an inference tensor

    def encode_audio(self, feats: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Packed audio features ``(B, audio_layout.size)`` -> ``(B, embed_dim)`` float32 unit vectors (+ attention
        maps ``[(B, time, freq)]`` per tap); with the bridge, the heads' vector blended with the sound's concepts."""
        feats = torch.as_tensor(feats)
        return self._bridged(self.audio(feats, return_attention=return_attention), feats, self.sound_concepts,
                             return_attention)

    # -- images -----------------------------------------------------------------------------------------------
    def image_features(self, images: Tensor, fast: bool | None = None) -> Tensor:
        """Frozen EfficientNet-Lite0 features.

        Args:
            images: ``(B, 3, H, W)`` float RGB in [0, 1], any size: short side scaled to 256 (skipped when it is
                256 already, as for pictures read at :attr:`picture_size`), centre-cropped to 224.
            fast: the bfloat16 backbone (default :attr:`inference_bf16`).

        Returns:
            ``(B, image_layout.size)`` float32 (24,408 by default), deterministic, no autograd history.
        """
        images = torch.as_tensor(images)
        if images.dim() == 3:
            images = images.unsqueeze(0)
        bf16 = self.inference_bf16 if fast is None else fast
        taps = EffNetTaps(net=effnet_lite0_bf16() if bf16 else None, spec=self.spec.image)
        layout = image_layout(self.spec)
        outs = []
        with torch.inference_mode():
            for chunk in self._batches(images):
                x = effnet_input(chunk.cpu(), self.spec.image).contiguous(memory_format=torch.channels_last)
                outs.append(pack(taps(x.to(torch.bfloat16) if bf16 else x), layout).float())
            feats = torch.cat(outs) if outs else torch.zeros(0, layout.size)
        return feats.clone()

    def encode_image(self, feats: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Packed image features ``(B, image_layout.size)`` -> ``(B, embed_dim)`` float32 unit vectors (+ attention
        maps ``[(B, 7, 7)]`` per tap); with the bridge, the heads' vector blended with the picture's concepts."""
        feats = torch.as_tensor(feats)
        return self._bridged(self.visual(feats, return_attention=return_attention), feats, self.image_concepts,
                             return_attention)

    # -- inference helpers ------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_image_features(self, feats: Tensor, fast: bool | None = None) -> Tensor:
        """Cached image features -> ``(B, D)`` float32 embeddings (no grad; call ``eval()`` first)."""
        with self._autocast(fast):
            return self.encode_image(feats).float()

    @torch.no_grad()
    def embed_audio(self, waves: Tensor, fast: bool | None = None) -> Tensor:
        """Waveform windows ``(B, samples)`` -> ``(B, D)`` float32 embeddings (no grad; call ``eval()`` first)."""
        return self.embed_audio_features(self.audio_features(waves, fast=fast), fast=fast)

    @torch.no_grad()
    def embed_images(self, images: Tensor, fast: bool | None = None) -> Tensor:
        """Images ``(B, 3, H, W)`` float in [0, 1] -> ``(B, D)`` float32 embeddings (no grad; call ``eval()``)."""
        return self.embed_image_features(self.image_features(images, fast=fast), fast=fast)

    def tags_from_features(self, feats: Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
        """ImageNet scene tags from cached image features (their global part through the backbone's classifier).

        Returns:
            per image, the ``k`` most probable ``(label, probability)`` pairs, most probable first.
        """
        _, g = unpack(torch.as_tensor(feats).float(), image_layout(self.spec))
        with torch.inference_mode():
            logits = effnet_lite0()._fc(g)
        return _top_labels(logits, k)




def bf16_supported() -> bool:
    """True when this CPU runs bfloat16 convolutions natively (oneDNN; AVX512-BF16/AMX or AVX512 emulation)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def _top_labels(logits: Tensor, k: int) -> list[list[tuple[str, float]]]:
    labels = imagenet_labels()
    probs = torch.softmax(logits.float(), dim=1)
    top = probs.topk(min(int(k), probs.shape[1]), dim=1)
    return [[(labels[int(i)], float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(top.values, top.indices)]


def imagenet_logits(images: Tensor, spec: EffNetSpec | None = None, fast: bool = False) -> Tensor:
    """EfficientNet-Lite0's 1000 ImageNet logits for ``(B, 3, H, W)`` images in [0, 1] -> ``(B, 1000)`` float32."""
    with torch.inference_mode():
        x = effnet_input(torch.as_tensor(images).cpu(), spec).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16) if fast else nullcontext():
            logits = EffNetTaps(spec=spec).forward(x).logits
    assert logits is not None
    return logits.float().clone()


def imagenet_tags(images: Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """Readable scene tags: the ``k`` most probable ImageNet classes of each image.

    Args:
        images: ``(B, 3, H, W)`` (or ``(3, H, W)``) float RGB in [0, 1].
        k: tags per image.

    Returns:
        per image, ``[(label, probability), ...]`` most probable first (labels from torchvision's ImageNet-1k list).
    """
    return _top_labels(imagenet_logits(images), k)
