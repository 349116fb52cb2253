"""The paper's seven models: shapes, unit embeddings, attention maps, losses, registry (tiny widths, 64 px)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from encoders import MODEL_NAMES, ConfigError, create_model, get_config
from encoders.attention import AttentionPool
from encoders.config import ModelConfig
from encoders.model import AVModel, Encoder
from encoders.registry import FAMILIES, MODELS, register_model
from encoders.streams import AudioStream, VisualStream, pool2x2, scaled_channels


pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"width": 0.125, "image_size": 64}
PAPER_NAMES = (
    "m1-baseline-linear-bce", "m2-attention-linear-bce", "m3-attention-linear-margin",
    "m4-attention-nonlinear-infonce", "m5-attention-linear-infonce", "m6-attention-nonlinear-ntxent",
    "m7-attention-linear-ntxent",
)


def _inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 64, 64, generator=g)
    feats = torch.randn(batch, 64, 100, generator=g) * 3 - 5  # raw log-mel scale
    return images, feats


@pytest.mark.parametrize("name", PAPER_NAMES)
def test_model_embeds_both_modalities_as_unit_vectors(name: str) -> None:
    model = create_model(name, seed=0, **TINY).eval()
    images, feats = _inputs(3)
    with torch.no_grad():
        v, vmaps = model.encode_image(model.image_features(images), return_attention=True)
        a, amaps = model.encode_audio(feats, return_attention=True)
    for emb in (v, a):
        assert emb.shape == (3, 128) and emb.dtype == torch.float32
        assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
        assert not torch.allclose(emb[0], emb[1], atol=1e-4)  # depends on the input
    if name.startswith("m1"):
        assert vmaps == [] and amaps == []
        return
    # visual taps c2, c3, c4 before their pools at 64 px; audio taps c3, c4, c5 on 64 x 100
    assert [tuple(m.shape) for m in vmaps] == [(3, 32, 32), (3, 16, 16), (3, 8, 8)]
    assert [tuple(m.shape) for m in amaps] == [(3, 16, 25), (3, 8, 13), (3, 4, 7)]
    for att in vmaps + amaps:
        assert (att >= 0).all()
        assert torch.allclose(att.sum(dim=(1, 2)), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("name", PAPER_NAMES)
def test_pair_loss_is_finite_and_trains_every_part(name: str) -> None:
    model = create_model(name, seed=1, **TINY).train()
    images, feats = _inputs(4, seed=1)
    v, a = model(model.image_features(images), feats)
    labels = torch.tensor([1, 0, 1, 0])
    loss = model.pair_loss(v, a, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    first_v = model.visual.stream.blocks[0].layers[0].weight.grad
    first_a = model.audio.stream.blocks[0].layers[0].weight.grad
    assert first_v is not None and first_v.abs().sum() > 0
    assert first_a is not None and first_a.abs().sum() > 0
    head = model.projector if model.config.contrastive else model.correlation
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    assert sum(p.grad.abs().sum() for p in head.parameters()) > 0


def test_pair_loss_values_follow_the_configured_loss() -> None:
    from encoders.losses import bce_loss, infonce_loss, margin_loss, ntxent_loss

    g = torch.Generator().manual_seed(5)
    v = F.normalize(torch.randn(4, 128, generator=g), dim=1)
    a = F.normalize(torch.randn(4, 128, generator=g), dim=1)
    labels = torch.tensor([1, 0, 0, 1])
    dist = (v - a).norm(dim=1)
    m2 = create_model("m2-attention-linear-bce", seed=0, **TINY)
    m3 = create_model("m3-attention-linear-margin", seed=0, **TINY)
    m5 = create_model("m5-attention-linear-infonce", seed=0, **TINY)
    m7 = create_model("m7-attention-linear-ntxent", seed=0, **TINY)
    with torch.no_grad():
        logits = m2.correlation_logits(v, a)
        # the head starts as "correlated when closer than 0.7": logit_1 - logit_0 = 2 (0.7 - d)
        assert torch.allclose(logits[:, 1] - logits[:, 0], 2 * (0.7 - dist), atol=1e-4)
        assert m2.pair_loss(v, a, labels).item() == pytest.approx(bce_loss(logits, labels).item(), abs=1e-6)
        expected = bce_loss(m3.correlation_logits(v, a), labels) + margin_loss(dist, labels, margin=0.1)
        assert m3.pair_loss(v, a, labels).item() == pytest.approx(expected.item(), abs=1e-5)
        zv, za = m5.projector(v), m5.projector(a)
        assert m5.pair_loss(v, a).item() == pytest.approx(infonce_loss(zv, za, tau=0.5).item(), abs=1e-6)
        zv, za = m7.projector(v), m7.projector(a)
        assert m7.pair_loss(v, a).item() == pytest.approx(ntxent_loss(zv, za, tau=0.5).item(), abs=1e-6)
    with pytest.raises(ValueError, match="labels"):
        m2.pair_loss(v, a)
    with pytest.raises(ConfigError, match="no correlation head"):
        m5.correlation_logits(v, a)


def _literal_attention(pool: AttentionPool, local: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The formula as written: project, add the broadcast global, 1x1 conv (or dot), softmax, weighted sum."""
    lp = pool.project(local)
    b, c, h, w = lp.shape
    if pool.compatibility == "add":
        scores = pool.compat(lp + g[:, :, None, None]).reshape(b, h * w)
    else:
        scores = (lp * g[:, :, None, None]).sum(1).reshape(b, h * w)
    att = torch.softmax(scores, dim=1)
    vec = (lp.reshape(b, c, h * w) * att[:, None, :]).sum(2)
    return vec, att.reshape(b, h, w)


@pytest.mark.parametrize("compat", ["add", "dot"])
@pytest.mark.parametrize("local_channels", [6, 10])
def test_attention_pool_equals_the_literal_formula(compat: str, local_channels: int) -> None:
    torch.manual_seed(0)
    pool = AttentionPool(local_channels, 10, compat)
    local, g = torch.randn(2, local_channels, 5, 7), torch.randn(2, 10)
    vec, att = pool(local, g)
    ref_vec, ref_att = _literal_attention(pool, local, g)
    assert vec.shape == (2, 10) and att.shape == (2, 5, 7)
    assert torch.allclose(att, ref_att, atol=1e-6)
    assert torch.allclose(vec, ref_vec, atol=1e-5)
    assert torch.allclose(att.sum(dim=(1, 2)), torch.ones(2), atol=1e-6)
    # with the paper's additive score, the global feature shifts every position equally: softmax cancels it
    vec2, att2 = pool(local, g + torch.randn(2, 10))
    if compat == "add":
        assert torch.allclose(att2, att, atol=1e-6)
    else:
        assert not torch.allclose(att2, att, atol=1e-3)


def test_pooling_never_fails_on_small_dims() -> None:
    assert pool2x2(torch.zeros(1, 2, 1, 3)).shape == (1, 2, 1, 2)
    assert pool2x2(torch.zeros(1, 2, 5, 1)).shape == (1, 2, 3, 1)
    assert pool2x2(torch.zeros(1, 2, 1, 1)).shape == (1, 2, 1, 1)
    config = get_config("m5-attention-linear-infonce", width=0.125)
    out = AudioStream(config)(torch.zeros(2, 1, 64, 100))
    assert out.last.shape == (2, 64, 1, 1)  # 64x100 -> ... -> 1x2 -> 1x1 through seven pools
    assert [tuple(t.shape[1:]) for t in out.taps] == [(32, 16, 25), (64, 8, 13), (64, 4, 7)]
    out = VisualStream(dataclasses.replace(config, image_size=40))(torch.zeros(1, 3, 40, 40))
    assert out.last.shape == (1, 64, 1, 1)  # 40 -> 20 -> 10 -> 5 -> 3 -> 2 -> 1
    assert [tuple(t.shape[2:]) for t in out.taps] == [(20, 20), (10, 10), (5, 5)]


def test_channel_scaling() -> None:
    assert scaled_channels((64, 128, 128, 256, 512, 512), 0.125) == (8, 16, 16, 32, 64, 64)
    assert scaled_channels((64, 128), 0.01) == (4, 4)  # never below 4
    assert scaled_channels((64, 128), 1.0) == (64, 128)
    half = AudioStream(get_config("m2-attention-linear-bce", width=0.5))
    assert half.channels == (32, 64, 128, 256, 256, 256, 256) and half.tap_channels == (128, 256, 256)


def _visual_param_count(ch: tuple[int, ...], taps: tuple[int, ...], embed: int) -> int:
    """Parameters of the attention visual encoder, counted by hand from the architecture."""
    total, prev = 0, 3
    for c in ch:  # two 3x3 convs without bias + two batch norms (weight, bias)
        total += 9 * prev * c + 9 * c * c + 4 * c
        prev = c
    g = ch[-1]
    total += 9 * g * g + g  # global 3x3 conv with bias
    for t in taps:
        total += (ch[t] * g if ch[t] != g else 0) + g  # 1x1 projection where needed + 1x1 compatibility
    total += len(taps) * g * embed + embed  # Linear(3 g -> 128)
    return total


def test_full_width_m5_visual_stream_at_224_builds() -> None:
    cfg = get_config("m5-attention-linear-infonce")
    assert cfg.image_size == 224 and cfg.width == 1.0
    visual = Encoder(VisualStream(cfg), cfg.attention, cfg.embed_dim, cfg.compatibility)  # no forward at full width
    n_stream = sum(p.numel() for p in visual.stream.parameters())
    n_visual = sum(p.numel() for p in visual.parameters())
    print(f"\nfull-width m5 visual @224: stream {n_stream:,} parameters, encoder {n_visual:,}")
    assert n_visual == _visual_param_count(cfg.visual_channels, cfg.visual_taps, cfg.embed_dim)
    assert visual.stream.tap_channels == (128, 128, 256)
    # the 224 px geometry, checked on a narrow copy: taps at 112, 56, 28 (before the pools of c2, c3, c4)
    narrow = create_model("m5-attention-linear-infonce", width=0.0625, seed=0).eval()
    with torch.no_grad():
        v, maps = narrow.encode_image(torch.zeros(1, 3, 224, 224), return_attention=True)
    assert v.shape == (1, 128)
    assert [tuple(m.shape) for m in maps] == [(1, 112, 112), (1, 56, 56), (1, 28, 28)]


def test_audio_stats_normalise_the_log_mel() -> None:
    model = create_model("m5-attention-linear-infonce", seed=0, **TINY).eval()
    _, feats = _inputs(2)
    mean, std = torch.linspace(-8, -2, 64), torch.linspace(0.5, 3, 64)
    with torch.no_grad():
        model.set_audio_stats(mean, std)
        stored = model.encode_audio(feats)
        model.set_audio_stats(torch.zeros(64), torch.ones(64))
        manual = model.encode_audio((feats - mean[:, None]) / std[:, None])
        raw = model.encode_audio(feats)
    assert torch.allclose(stored, manual, atol=1e-5)
    assert not torch.allclose(stored, raw, atol=1e-3)
    assert "audio_mean" in model.state_dict() and "audio_std" in model.state_dict()
    with pytest.raises(ValueError):
        model.set_audio_stats(torch.zeros(63), torch.ones(63))
    with pytest.raises(ValueError):
        model.set_audio_stats(torch.zeros(64), torch.zeros(64))


def test_inference_helpers_from_waves_and_raw_images() -> None:
    model = create_model("m2-attention-linear-bce", seed=0, **TINY).eval()
    g = torch.Generator().manual_seed(2)
    t = torch.arange(48_000) / 48_000
    waves = torch.stack([0.3 * torch.sin(2 * torch.pi * 440 * t), 0.1 * torch.randn(48_000, generator=g)])
    feats = model.audio_features(waves)
    assert feats.shape == (2, 64, 100)
    exact = model.embed_audio(waves, fast=False)
    assert torch.allclose(exact, model.encode_audio(feats).detach(), atol=1e-6)
    fast = model.embed_audio(waves, fast=True)
    assert fast.dtype == torch.float32 and not fast.requires_grad
    assert (fast * exact).sum(1).min() > 0.99  # bf16 autocast stays close to fp32
    images = torch.rand(3, 3, 90, 120, generator=g)  # any size: resized to image_size
    e32, e16 = model.embed_images(images, fast=False), model.embed_images(images, fast=True)
    assert e32.shape == (3, 128) and e16.dtype == torch.float32
    assert torch.allclose(e16.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (e32 * e16).sum(1).min() > 0.99
    assert model.embed_dim == 128


# -- registry --------------------------------------------------------------------------------------------------


def test_registry_holds_the_papers_seven() -> None:
    assert tuple(MODEL_NAMES) == PAPER_NAMES
    for name in PAPER_NAMES:
        cfg = get_config(name)
        assert cfg.name == name and cfg.lr == 0.01 and cfg.family == "paper"
        assert cfg.batch_size == (128 if name.startswith("m1") else 32)
        assert cfg.attention == (not name.startswith("m1"))
        assert cfg.projector == ("nonlinear" if "nonlinear" in name else "linear")
        assert cfg.loss == name.rsplit("-", 1)[1]
    assert get_config("m4-attention-nonlinear-infonce").temperature == 0.5
    assert get_config("m3-attention-linear-margin").margin == 0.1


def test_get_config_overrides_and_errors() -> None:
    cfg = get_config("m5-attention-linear-infonce", width=0.25, image_size=96, visual_taps=[2, 3, 4])
    assert (cfg.width, cfg.image_size, cfg.image.size, cfg.visual_taps) == (0.25, 96, 96, (2, 3, 4))
    assert get_config("m5-attention-linear-infonce").width == 1.0  # the registry entry is untouched
    with pytest.raises(ConfigError) as err:
        get_config("m9-nope")
    assert all(n in str(err.value) for n in PAPER_NAMES) and "m9-nope" in str(err.value)
    with pytest.raises(ConfigError) as err:
        get_config("m5-attention-linear-infonce", widht=0.5)
    assert "widht" in str(err.value) and "width" in str(err.value).replace("widht", "")
    for bad in ({"name": "x"}, {"projector": "deep"}, {"loss": "hinge"}, {"width": 0}, {"image_size": 0},
                {"audio_taps": (2, 9, 4)}, {"compatibility": "mul"}, {"temperature": -1.0}):
        with pytest.raises(ConfigError):
            get_config("m5-attention-linear-infonce", **bad)
    with pytest.raises(ConfigError):
        create_model("m5-attention-linear-infonce", width=-1)


def test_create_model_seed_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = create_model("m7-attention-linear-ntxent", seed=7, **TINY)
    after = torch.rand(1)
    b = create_model("m7-attention-linear-ntxent", seed=7, **TINY)
    c = create_model("m7-attention-linear-ntxent", seed=8, **TINY)
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert isinstance(a, AVModel) and a.config.width == 0.125


def test_create_model_dispatches_on_family(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ModelConfig] = []

    def builder(config: ModelConfig) -> torch.nn.Module:
        built.append(config)
        return torch.nn.Linear(2, 2)

    monkeypatch.setitem(FAMILIES, "toy", builder)
    monkeypatch.setattr("encoders.registry.MODELS", dict(MODELS))
    register_model(ModelConfig(name="toy-model", family="toy"))
    model = create_model("toy-model", width=0.5)
    assert isinstance(model, torch.nn.Linear) and built[0].family == "toy" and built[0].width == 0.5
    with pytest.raises(ConfigError, match="already registered"):
        register_model(ModelConfig(name="toy-model", family="toy"))
    with pytest.raises(ConfigError, match="unknown model family"):
        register_model(ModelConfig(name="other", family="nobody"))
