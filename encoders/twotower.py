"""What every model family shares: identity, bf16 inference, the pair forward, the correlation head, the projector
and the configured loss.

A model class mixes :class:`TwoTower` in and provides ``config`` (:class:`~encoders.config.ModelConfig`),
``encode_image``, ``encode_audio``, ``inference_bf16``, ``correlation`` (a
:class:`~encoders.projectors.CorrelationHead` or ``None``) and ``projector`` (or ``None``).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from encoders.errors import ConfigError
from encoders.losses import bce_loss, infonce_loss, margin_loss, ntxent_loss
from encoders.projectors import CorrelationHead, make_projector, pair_distance


class TwoTower:
    """The part of an image tower + audio tower model that does not depend on the towers (see the module)."""

    #: Version of what :meth:`embed_audio` computes from a window besides the checkpoint's weights (the frozen
    #: front end and backbone). Stored on every window of a collection; ``soundlib ingest`` re-embeds windows
    #: made by another version. Families bump their own.
    audio_features_version: int = 1

    def _init_shared(self, config: Any) -> None:
        """After the towers: the projector (contrastive losses) or the correlation head (BCE losses), and the
        ``audio_mean`` / ``audio_std`` buffers (log-mel band statistics) that every checkpoint carries."""
        self.projector = make_projector(config.projector, config.embed_dim) if config.contrastive else None
        self.correlation = None if config.contrastive else CorrelationHead()
        self.register_buffer("audio_mean", torch.zeros(config.audio.n_mels))
        self.register_buffer("audio_std", torch.ones(config.audio.n_mels))

    @property
    def embed_dim(self) -> int:
        """Size ``D`` of the retrieval embedding."""
        return int(self.config.embed_dim)

    @property
    def picture_size(self) -> int:
        """Side (pixels) pictures are read at: short side scaled to it, centre square cropped
        (:func:`soundlib.images.load_image`). Here the network input, ``config.image_size``."""
        return int(self.config.image_size)

    @property
    def picture_detail(self) -> int:
        """Short side (pixels) a picture may be decoded at before it is scaled to :attr:`picture_size`
        (``load_image(path, picture_size, detail=picture_detail)``): the network input, ``config.image_size``."""
        return int(self.config.image_size)

    @property
    def name(self) -> str:
        """The registry name of the configuration."""
        return self.config.name

    def _autocast(self, fast: bool | None) -> Any:
        use = self.inference_bf16 if fast is None else fast
        return torch.autocast("cpu", dtype=torch.bfloat16) if use else nullcontext()

    @torch.no_grad()
    def embed_audio_features(self, feats: Tensor, fast: bool | None = None) -> Tensor:
        """Cached audio features (log-mel or packed backbone features) -> ``(B, D)`` float32 embeddings (no grad;
        call ``eval()`` first); ``fast`` (default :attr:`inference_bf16`) runs the encoder under bf16 autocast."""
        with self._autocast(fast):
            return self.encode_audio(feats).float()

    def forward(self, image_inputs: Tensor, audio_inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder inputs of both towers -> ``(v, a)`` embeddings."""
        return self.encode_image(image_inputs), self.encode_audio(audio_inputs)

    def correlation_logits(self, v: Tensor, a: Tensor) -> Tensor:
        """Logits ``(B, 2)`` ``[uncorrelated, correlated]`` for embedding pairs (BCE families only).

        Raises:
            ConfigError: the model is a contrastive one (no correlation head).
        """
        if self.correlation is None:
            raise ConfigError(f"model {self.config.name} has no correlation head (trained with {self.config.loss})")
        return self.correlation(v, a)

    def project(self, z: Tensor) -> Tensor:
        """The contrastive projector applied to embeddings ``(B, D)`` (identity for the BCE families)."""
        return z if self.projector is None else self.projector(z)

    def pair_loss(self, v: Tensor, a: Tensor, labels: Tensor | None = None) -> Tensor:
        """The configured training loss for a batch of embedding pairs.

        Args:
            v: ``(B, D)`` visual embeddings (from :meth:`encode_image`).
            a: ``(B, D)`` audio embeddings (from :meth:`encode_audio`).
            labels: ``(B,)`` 1 = correlated, 0 = not; required by ``bce``/``margin``, ignored by ``infonce``/``ntxent``
                (whose batches hold positives only: row ``i`` of ``v`` goes with row ``i`` of ``a``).

        Returns:
            scalar: ``bce`` -> BCE on the correlation head; ``margin`` -> BCE + margin loss on the embedding
            distance (``config.margin``); ``infonce`` / ``ntxent`` -> the loss on the projected vectors
            (``config.temperature``), image -> audio direction.
        """
        loss = self.config.loss
        if loss in ("bce", "margin"):
            if labels is None:
                raise ValueError(f"loss {loss!r} needs labels (1 = correlated, 0 = not)")
            dist = pair_distance(v, a)
            total = bce_loss(self.correlation.forward_distance(dist), labels)  # type: ignore[union-attr]
            if loss == "margin":
                total = total + margin_loss(dist, labels, margin=self.config.margin)
            return total
        zv, za = self.project(v), self.project(a)
        if loss == "infonce":
            return infonce_loss(zv, za, tau=self.config.temperature)
        if loss == "ntxent":
            return ntxent_loss(zv, za, tau=self.config.temperature)
        raise ConfigError(f"unknown loss {loss!r} in model {self.config.name}")
