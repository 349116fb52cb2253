"""The convolutional streams of the paper: stacks of blocks (two 3x3 conv+BN+ReLU, then a 2x2 max-pool).

:class:`VisualStream` reads ``(B, 3, S, S)`` normalised images, :class:`AudioStream` reads ``(B, 1, n_mels, frames)``
normalised log-mel spectrograms. Both return the last (pooled) map, which the encoder turns into the global feature,
and the maps of the tap blocks taken BEFORE their pool (the paper's "local features", section 4.2).

Pooling: every block halves each spatial dim with ``ceil_mode=True`` and leaves a dim of size 1 alone (kernel 1
along it). So no size ever reaches 0: the audio input 64 x 100 goes 64x100 -> 32x50 -> 16x25 -> 8x13 -> 4x7 -> 2x4
-> 1x2 -> 1x1 through its seven blocks (pre-pool sizes of blocks 0..6 are the first seven), and a 224 image goes
224 -> 112 -> 56 -> 28 -> 14 -> 7 -> 4 through six (a 64 image ends at 1 x 1).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from encoders.config import ModelConfig


def scaled_channels(channels: Sequence[int], width: float, minimum: int = 4) -> tuple[int, ...]:
    """Channel counts multiplied by ``width``, rounded, at least ``minimum`` each.

    >>> scaled_channels((64, 128, 512), 0.125)
    (8, 16, 64)
    """
    return tuple(max(minimum, int(round(c * width))) for c in channels)


def pool2x2(x: Tensor) -> Tensor:
    """2x2 max-pool, stride 2, ``ceil_mode`` (odd sizes keep their last row/column); dims of size 1 are kept.

    Args:
        x: ``(B, C, H, W)``.

    Returns:
        ``(B, C, ceil(H/2), ceil(W/2))`` (a dim of size 1 stays 1).
    """
    kernel = tuple(2 if s > 1 else 1 for s in x.shape[-2:])
    return F.max_pool2d(x, kernel_size=kernel, stride=kernel, ceil_mode=True)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions (padding 1), each followed by batch norm and ReLU. Spatial size is unchanged."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class StreamOutput(NamedTuple):
    """What a stream returns.

    Attributes:
        last: the last block's pooled map, ``(B, channels[-1], h, w)``.
        taps: the pre-pool maps of the tap blocks, in tap order, each ``(B, channels[i], H_i, W_i)``.
    """

    last: Tensor
    taps: list[Tensor]


class ConvStream(nn.Module):
    """A stack of :class:`ConvBlock` + :func:`pool2x2`, returning the last map and the pre-pool tap maps.

    Args:
        in_channels: channels of the input (3 for RGB, 1 for a spectrogram).
        channels: output channels of each block (already scaled).
        taps: 0-based indices of the blocks whose pre-pool output is returned, in increasing order.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], taps: Sequence[int]) -> None:
        super().__init__()
        if not channels:
            raise ValueError("a stream needs at least one block")
        if any(t < 0 or t >= len(channels) for t in taps):
            raise ValueError(f"tap indices {list(taps)} out of range for {len(channels)} blocks")
        self.channels = tuple(channels)
        self.taps = tuple(taps)
        blocks = []
        prev = in_channels
        for c in channels:
            blocks.append(ConvBlock(prev, c))
            prev = c
        self.blocks = nn.ModuleList(blocks)

    @property
    def out_channels(self) -> int:
        """Channels of :attr:`StreamOutput.last`."""
        return self.channels[-1]

    @property
    def tap_channels(self) -> tuple[int, ...]:
        """Channels of each tap map, in tap order."""
        return tuple(self.channels[t] for t in self.taps)

    def forward(self, x: Tensor) -> StreamOutput:
        taps: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                taps.append(x)
            x = pool2x2(x)
        return StreamOutput(x, taps)


class VisualStream(ConvStream):
    """The visual stream: 3-channel input, ``config.visual_channels`` x ``config.width``, taps ``visual_taps``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(3, scaled_channels(config.visual_channels, config.width), config.visual_taps)


class AudioStream(ConvStream):
    """The audio stream: 1-channel log-mel input, ``config.audio_channels`` x ``config.width``, taps ``audio_taps``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(1, scaled_channels(config.audio_channels, config.width), config.audio_taps)


class GlobalFeature(nn.Module):
    """The global feature ``g``: a 3x3 convolution (with bias) over the last map, averaged over positions.

    Input ``(B, C_in, h, w)``; output ``(B, C_out)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).mean(dim=(2, 3))
