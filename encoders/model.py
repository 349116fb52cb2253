"""The paper's two-stream audio-visual model (:class:`AVModel`): encoders, projector/correlation head, loss.

Data flow::

    images [B,3,H,W] in [0,1] --image_features--> [B,3,S,S] --encode_image--> [B,D] L2-normalised
    waves [B,48000] @48k     --audio_features--> [B,64,100] raw log-mel --encode_audio--> [B,D] L2-normalised
    (v, a[, labels])         --pair_loss--> scalar (projector + the configured loss)

Each encoder is a conv stream (:mod:`encoders.streams`), a global feature (3x3 conv over the last map, averaged over
positions) and either the attention head (:mod:`encoders.attention`, models 2-7) or the baseline's FC-ReLU-FC
(model 1), then L2 normalisation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.attention import AttentionHead
from encoders.config import ModelConfig
from encoders.frontend import ImageNormalize
from encoders.twotower import TwoTower
from encoders.streams import AudioStream, ConvStream, GlobalFeature, VisualStream


class Encoder(nn.Module):
    """One modality's encoder: stream -> global feature -> attention head (or baseline MLP) -> L2-normalise.

    Args:
        stream: the conv stream (its taps are used when ``attention`` is true).
        attention: attention head (paper 4.2) or the baseline's FC-ReLU-FC on the global feature (4.1).
        embed_dim: embedding size ``D``.
        compatibility: attention score function (see :class:`~encoders.attention.AttentionPool`).
    """

    def __init__(self, stream: ConvStream, attention: bool, embed_dim: int, compatibility: str = "add") -> None:
        super().__init__()
        self.stream = stream
        self.attention = attention
        c = stream.out_channels
        self.global_feature = GlobalFeature(c, c)
        self.head: nn.Module
        if attention:
            self.head = AttentionHead(stream.tap_channels, c, embed_dim, compatibility)
        else:
            self.head = nn.Sequential(nn.Linear(c, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``x`` ``(B, C_in, H, W)`` -> ``(B, D)`` float32 unit vectors (and the per-tap attention maps
        ``[(B, H_i, W_i)]``, empty for the baseline, if ``return_attention``)."""
        out = self.stream(x)
        g = self.global_feature(out.last)
        maps: list[Tensor] = []
        if self.attention:
            feats, maps = self.head(out.taps, g)
        else:
            feats = self.head(g)
        emb = F.normalize(feats.float(), dim=1)
        return (emb, maps) if return_attention else emb


def _init_weights(module: nn.Module) -> None:
    """He-normal (fan-out) for conv layers, unit/zero batch norm; linear layers keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class AVModel(TwoTower, nn.Module):
    """The paper's audio-visual model for one :class:`~encoders.config.ModelConfig` (family ``"paper"``).

    Attributes:
        config: the configuration it was built from.
        visual, audio: the two :class:`Encoder` s.
        projector: shared projector of the contrastive families (``None`` for the BCE families).
        correlation: :class:`~encoders.projectors.CorrelationHead` of the BCE families (``None`` otherwise).
        audio_mean, audio_std: buffers ``(n_mels,)``, per-band log-mel statistics of the training set.
        inference_bf16: ``embed_audio`` / ``embed_images`` run the encoders under bfloat16 autocast with channels-last
            inputs; outputs stay float32 (cosine to the fp32 embedding > 0.999). Measured at full width, one thread:
            4 images 3.0 s -> 0.94 s, 16 audio windows 2.4 s -> 0.74 s. Set ``False`` for exact fp32.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.visual = Encoder(VisualStream(config), config.attention, d, config.compatibility)
        self.audio = Encoder(AudioStream(config), config.attention, d, config.compatibility)
        self._init_shared(config)
        _init_weights(self)
        self.image_norm = ImageNormalize(config.image, size=config.image_size)
        self._logmel: nn.Module | None = None  # built on first use (imports librosa)
        self.inference_bf16 = True

    # -- audio ------------------------------------------------------------------------------------------------
    def set_audio_stats(self, mean: Any, std: Any) -> None:
        """Store the training set's per-band log-mel mean and standard deviation.

        Args:
            mean: ``(n_mels,)`` array-like.
            std: ``(n_mels,)`` array-like, every value finite and > 0.

        Raises:
            ValueError: wrong shape, non-finite values or a non-positive std.
        """
        n = self.config.audio.n_mels
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if m.numel() != n or s.numel() != n:
            raise ValueError(f"audio stats must have {n} values each, got {m.numel()} and {s.numel()}")
        if not (torch.isfinite(m).all() and torch.isfinite(s).all()) or bool((s <= 0).any()):
            raise ValueError("audio stats must be finite with std > 0")
        self.audio_mean.copy_(m)
        self.audio_std.copy_(s)

    def audio_features(self, waves: Tensor) -> Tensor:
        """Raw log-mel of 1-second windows: ``(B, samples)`` float at ``config.audio.sample_rate`` ->
        ``(B, n_mels, frames)`` (natural log; NOT normalised, so it can be cached across models)."""
        if self._logmel is None:
            from encoders.frontend import LogMel

            self._logmel = LogMel(self.config.audio)
        waves = torch.as_tensor(waves)
        self._logmel.to(waves.device)
        return self._logmel(waves)

    def encode_audio(self, feats: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Normalise raw log-mel ``(B, n_mels, frames)`` with the stored band stats and encode it.

        Returns:
            ``(B, D)`` float32 unit vectors; with ``return_attention`` also the attention maps
            ``[(B, H_i, W_i)]`` (over mel x time positions; empty list for the baseline).
        """
        if feats.dim() == 4 and feats.shape[1] == 1:
            feats = feats[:, 0]
        if feats.dim() == 2:
            feats = feats.unsqueeze(0)
        x = (feats.float() - self.audio_mean[:, None]) / self.audio_std[:, None]
        return self.audio(x.unsqueeze(1), return_attention=return_attention)

    # -- images -----------------------------------------------------------------------------------------------
    def image_features(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float in [0, 1] -> ``(B, 3, S, S)`` resized and ImageNet-normalised (``S = image_size``)."""
        return self.image_norm(images)

    def encode_image(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Encode normalised images ``(B, 3, S, S)`` -> ``(B, D)`` float32 unit vectors (+ attention maps)."""
        if x.dim() == 3:
            x = x.unsqueeze(0)
        return self.visual(x, return_attention=return_attention)

    # -- inference helpers ------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_audio(self, waves: Tensor, fast: bool | None = None) -> Tensor:
        """Waveform windows ``(B, samples)`` -> ``(B, D)`` float32 embeddings (no grad; call ``eval()`` first).

        ``fast`` (default :attr:`inference_bf16`) runs the encoder under bf16 autocast; features are fp32.
        """
        feats = self.audio_features(waves)
        return self.embed_audio_features(feats, fast=fast)

    @torch.no_grad()
    def embed_images(self, images: Tensor, fast: bool | None = None) -> Tensor:
        """Images ``(B, 3, H, W)`` float in [0, 1] -> ``(B, D)`` float32 embeddings (no grad; call ``eval()``)."""
        x = self.image_features(images)
        use = self.inference_bf16 if fast is None else fast
        if use:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast(fast):
            return self.encode_image(x).float()


