"""Heatmaps (soundlib.explain, ``query --explain``) and waveform overviews (soundlib.peaks) on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from soundlib.errors import SoundlibError
from tests.cli_process import one_line, run_cli
from tests.conftest import write_audio, write_image
from tests.fixtures_library import build_library

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photo(path: Path, seed: int = 0) -> Path:
    """A picture with structure: a bright disc on a gradient with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:320]
    a = np.stack([x / 320 * 200, y / 240 * 200, np.full_like(x, 60.0)], axis=-1) + rng.normal(0, 10, (240, 320, 3))
    a[(x - 220) ** 2 + (y - 80) ** 2 < 40 ** 2] = (250, 240, 40)
    return write_image(path, np.clip(a, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def default_model():
    from soundlib.models import load_model

    return load_model(None)


# --- explain: the default (pretrained) family -------------------------------------------------------------------

def test_position_embeddings_equal_the_embedding_when_every_position_is_alike(default_model) -> None:
    from soundlib.explain import position_embeddings

    model = default_model.model
    lay = model.visual.layout
    rng = np.random.default_rng(0)
    parts = [np.broadcast_to(rng.normal(size=(c, 1, 1)), (c, h, w)).reshape(-1) for c, h, w in lay.grids]
    feats = torch.from_numpy(np.concatenate(parts + [rng.normal(size=lay.global_channels)]).astype(np.float32))[None]
    with torch.no_grad():
        whole = model.heads_part(model.encode_image(feats))[0]  # the heads; a bridge adds whole-picture concepts
        per = position_embeddings(model, feats)
    assert per.shape == (7, 7, whole.shape[0])
    assert torch.allclose(per, whole.expand_as(per), atol=1e-5)


def test_the_heat_peaks_where_the_sound_matches(default_model, tmp_path: Path) -> None:
    from soundlib.explain import explain_picture, position_embeddings
    from soundlib.images import load_image

    model = default_model.model
    picture = load_image(photo(tmp_path / "p.png"), model.picture_size)
    with torch.no_grad():
        per = position_embeddings(model, model.image_features(picture[None]))
    for r, c in ((1, 5), (4, 2)):
        exp = explain_picture(model, picture, per[r, c].numpy())
        assert exp.method == "one-hot attention" and exp.heat.shape == (7, 7)
        assert np.unravel_index(np.argmax(exp.heat), exp.heat.shape) == (r, c)
        assert exp.heat[r, c] == pytest.approx(1.0, abs=1e-4)
    assert exp.box == (16.0, 16.0, 240.0, 240.0)  # the centre 224 of the 256 picture the backbone sees
    with pytest.raises(SoundlibError, match="give its embedding"):
        explain_picture(model, picture, None)
    with pytest.raises(SoundlibError, match="3 values"):
        explain_picture(model, picture, np.ones(3, np.float32))


def test_overlay_is_the_picture_with_heat_inside_the_box(default_model, tmp_path: Path) -> None:
    from soundlib.explain import Explanation, render_overlay
    from soundlib.images import load_image

    picture = load_image(photo(tmp_path / "p.png"), 256)
    heat = np.zeros((7, 7), np.float32)
    heat[0, 6] = 1.0  # top right
    img = np.asarray(render_overlay(picture, Explanation(heat, "x", (16, 16, 240, 240)), size=512), np.float32)
    pic = np.asarray(torch.nn.functional.interpolate(picture[None], size=512, mode="bicubic")[0]
                     .clamp(0, 1).permute(1, 2, 0).numpy() * 255, np.float32)
    assert img.shape == (512, 512, 3)
    corner = np.abs(img[:20, :20] - 0.45 * pic[:20, :20]).mean()  # outside the box: the picture dimmed
    assert corner < 8
    hot, cold = img[40:80, 420:470].mean(axis=(0, 1)), img[420:470, 40:80].mean(axis=(0, 1))
    assert hot[0] > cold[0] + 40  # the hot corner is brighter red-yellow than the cold one


# --- explain: the paper family and the baseline -----------------------------------------------------------------

def test_the_paper_family_shows_its_attention_and_the_baseline_says_it_has_none(tiny_model, tmp_path) -> None:
    from encoders.registry import create_model
    from soundlib.explain import explain_picture
    from soundlib.images import load_image

    model = tiny_model.model
    picture = load_image(photo(tmp_path / "p.png"), model.picture_size)
    exp = explain_picture(model, picture)
    with torch.no_grad():
        _, maps = model.encode_image(model.image_features(picture[None]), return_attention=True)
    finest = max(m.shape[-1] for m in maps)
    assert exp.method == "attention map" and exp.heat.shape == (finest, finest)
    assert exp.heat.sum() == pytest.approx(1.0, abs=1e-4)  # the mean of maps that each sum to 1
    assert exp.box == (0.0, 0.0, float(model.picture_size), float(model.picture_size))
    base = create_model("m1-baseline-linear-bce", width=0.125, image_size=64).eval()
    with pytest.raises(SoundlibError, match="no attention map to explain"):
        explain_picture(base, picture)


def test_query_explain_writes_the_heatmap(tiny_checkpoint, tmp_path: Path) -> None:
    from PIL import Image

    lib = build_library(tmp_path / "lib")
    db = tmp_path / "db"
    run_cli("ingest", lib, "--db", db, "--model", tiny_checkpoint, "--json")
    pic = photo(tmp_path / "p.png")
    out = tmp_path / "heat.png"
    result = run_cli("query", pic, "--db", db, "--model", tiny_checkpoint, "-k", "2", "--explain", out, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["explain"]["path"] == str(out) and doc["explain"]["sound"] == doc["results"][0]["path"]
    assert doc["explain"]["method"] == "attention map" and Image.open(out).size == (512, 512)
    two = run_cli("query", pic, pic, "--db", db, "--model", tiny_checkpoint, "--explain", out)
    one_line(two, 2, "--explain takes exactly one picture")
    bad = run_cli("query", pic, "--db", db, "--model", tiny_checkpoint, "--explain", tmp_path / "no" / "x.png")
    one_line(bad, 2, "x.png", "cannot write")


# --- peaks ------------------------------------------------------------------------------------------------------

def test_peaks_and_loudness_of_a_known_signal() -> None:
    from soundlib.peaks import compute_peaks, preview_gain_db

    sr = 8000
    t = np.arange(2 * sr) / sr
    y = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    y[:sr] = 0.0  # a silent first second does not pull the level down (gated)
    p = compute_peaks(y, sr, bins=100)
    assert p.bins == 100 and p.duration == pytest.approx(2.0)
    assert max(p.maxs[:50]) == 0.0 and min(p.mins[:50]) == 0.0
    assert min(p.maxs[50:]) == pytest.approx(0.5, abs=0.01) and max(p.mins[50:]) == pytest.approx(-0.5, abs=0.01)
    assert p.loudness_db == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    assert p.peak_db == pytest.approx(20 * np.log10(0.5), abs=0.01)
    assert preview_gain_db(p.loudness_db) == pytest.approx(-20 - p.loudness_db)
    assert preview_gain_db(-35.0) == 0.0  # quieter sounds are never turned up
    assert compute_peaks(y[:10], sr, bins=100).bins == 10


def test_file_peaks_are_cached_by_content(tmp_path: Path) -> None:
    from encoders.hashing import file_sha256
    from soundlib.errors import AudioError
    from soundlib.peaks import file_peaks

    sr = 22_050
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    path = write_audio(tmp_path / "a.flac", y, sr)
    sha = file_sha256(path)
    first = file_peaks(path, bins=50, cache_dir=tmp_path / "cache")
    assert first.sample_rate == sr and first.bins == 50
    assert len(list((tmp_path / "cache" / "peaks").rglob("*.json"))) == 1
    moved = path.rename(tmp_path / "moved.flac")
    assert file_peaks(moved, sha256=sha, bins=50, cache_dir=tmp_path / "cache") == first
    moved.unlink()  # only the cache can answer now
    assert file_peaks(path, sha256=sha, bins=50, cache_dir=tmp_path / "cache") == first
    with pytest.raises(AudioError, match="file not found"):
        file_peaks(path, sha256="0" * 64, bins=50, cache_dir=tmp_path / "cache")
