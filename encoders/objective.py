"""The training objective shared by every model family: correlation head, projector and the configured loss.

A model class mixes :class:`PairObjective` in and provides ``config`` (:class:`~encoders.config.ModelConfig`),
``correlation`` (a :class:`~encoders.projectors.CorrelationHead` or ``None``) and ``projector`` (or ``None``).
"""

from __future__ import annotations

from torch import Tensor

from encoders.errors import ConfigError
from encoders.losses import bce_loss, infonce_loss, margin_loss, ntxent_loss
from encoders.projectors import pair_distance


class PairObjective:
    """``embed_dim``, ``name``, ``correlation_logits``, ``project`` and ``pair_loss`` for a two-tower model."""

    @property
    def embed_dim(self) -> int:
        """Size ``D`` of the retrieval embedding."""
        return int(self.config.embed_dim)

    @property
    def name(self) -> str:
        """The registry name of the configuration."""
        return self.config.name

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
