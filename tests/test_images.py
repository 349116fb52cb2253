"""Visual front end on real files: image formats and modes, sizing, errors, JPEG saving, video frames."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from soundlib import images
from soundlib.errors import ImageError, SoundlibError, VideoError
from soundlib.images import (load_image, load_images, open_image, save_jpeg, video_frames, video_has_audio,
                             video_info)
from soundlib.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, media_kind
from tests.conftest import frame_index, frame_red, halves, write_image, write_tone, write_video

RED = (200, 40, 40)


def rgb_at(t: torch.Tensor, y: int, x: int) -> np.ndarray:
    return (t[:, y, x].numpy() * 255).round()


# --- media kinds ---------------------------------------------------------------------------------------------------

def test_media_kind():
    assert media_kind("a/b/Song.WAV") == "audio"
    assert media_kind("x.m4a") == "audio" and media_kind("x.opus") == "audio"
    assert media_kind("pic.JPEG") == "image" and media_kind("p.webp") == "image"
    assert media_kind("clip.mkv") == "video" and media_kind("clip.mp4") == "video"
    assert media_kind("notes.txt") is None and media_kind("README") is None
    assert not (AUDIO_EXTENSIONS & IMAGE_EXTENSIONS or AUDIO_EXTENSIONS & VIDEO_EXTENSIONS
                or IMAGE_EXTENSIONS & VIDEO_EXTENSIONS)


# --- formats and modes ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, tol", [
    ("a.jpg", {"quality": 95}, 6), ("a.png", {}, 0), ("a.webp", {"lossless": True}, 0), ("a.gif", {}, 0),
    ("a.bmp", {}, 0), ("a.tiff", {}, 0),
])
def test_formats(make_image, name, kwargs, tol):
    path = make_image(name, halves(40, 30, RED, (30, 60, 220)), **kwargs)
    t = load_image(path)
    assert t.dtype == torch.float32 and tuple(t.shape) == (3, 30, 40)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert np.abs(rgb_at(t, 15, 5) - RED).max() <= tol
    assert np.abs(rgb_at(t, 15, 35) - (30, 60, 220)).max() <= tol


def test_rgba_composited_on_white(make_image):
    a = np.zeros((20, 30, 4), np.uint8)
    a[:, :10] = (255, 0, 0, 0)  # fully transparent red -> background
    a[:, 10:20] = (0, 0, 255, 255)  # opaque blue
    a[:, 20:] = (0, 0, 0, 128)  # half-transparent black -> mid grey on white
    t = load_image(make_image("a.png", a))
    assert tuple(t.shape) == (3, 20, 30)
    assert tuple(rgb_at(t, 5, 5)) == images.ALPHA_BACKGROUND == (255, 255, 255)
    assert tuple(rgb_at(t, 5, 15)) == (0, 0, 255)
    assert np.abs(rgb_at(t, 5, 25) - 127).max() <= 1


def test_palette_with_transparency_and_greyscale(make_image, tmp_path):
    im = Image.new("P", (16, 16), 0)
    im.putpalette([10, 200, 30] + [0, 0, 0] * 255)
    im.paste(1, (0, 0, 8, 16))  # left half: index 1, declared transparent
    p = tmp_path / "pal.png"
    im.save(p, transparency=1)
    t = load_image(p)
    assert tuple(rgb_at(t, 8, 2)) == (255, 255, 255)
    assert tuple(rgb_at(t, 8, 12)) == (10, 200, 30)
    g = load_image(make_image("g.png", np.full((12, 12), 77, np.uint8)))
    assert tuple(g.shape) == (3, 12, 12) and tuple(rgb_at(g, 3, 3)) == (77, 77, 77)
    one_bit = load_image(make_image("b.bmp", (10, 10), mode="1", color=(255, 255, 255)))
    assert tuple(rgb_at(one_bit, 1, 1)) == (255, 255, 255)


def test_sixteen_bit_greyscale_keeps_precision(make_image):
    a = np.full((10, 10), 1000, np.uint16)
    a[:, 5:] = 65535
    t = load_image(make_image("g16.png", a))
    assert Image.open(make_image("g16b.png", a)).mode.startswith("I")
    assert float(t[0, 0, 0]) == pytest.approx(1000 / 65535, abs=1e-6)
    assert float(t[2, 0, 9]) == pytest.approx(1.0)


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(p).n_frames == 2
    assert tuple(rgb_at(load_image(p), 8, 8)) == (255, 0, 0)


def test_exif_orientation(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:10] = (255, 0, 0)  # top half red, as stored
    a[10:] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    p = tmp_path / "rot.jpg"
    Image.fromarray(a).save(p, exif=exif, quality=95)
    t = load_image(p)
    assert tuple(t.shape) == (3, 40, 20)  # portrait once oriented
    assert rgb_at(t, 20, 17)[0] > 200 and rgb_at(t, 20, 2)[1] > 200  # the top went to the right


def test_size_resizes_short_side_and_crops_centre(make_image):
    t = load_image(make_image("w.png", halves(40, 20)), size=16)
    assert tuple(t.shape) == (3, 16, 16)
    # 40x20 -> 32x16, centre crop keeps columns 8..23: left 8 red, right 8 blue
    assert tuple(rgb_at(t, 8, 3)) == (255, 0, 0) and tuple(rgb_at(t, 8, 12)) == (0, 0, 255)
    tall = load_image(make_image("t.png", np.ascontiguousarray(halves(20, 40).transpose(1, 0, 2))), size=64)
    assert tuple(tall.shape) == (3, 64, 64)  # upscaled


def test_open_image_returns_rgb(make_image):
    im = open_image(make_image("a.png", (20, 10), color=(1, 2, 3, 255)))
    assert im.mode == "RGB" and im.size == (20, 10)


def photo_like(width: int, height: int, cell: int, seed: int) -> np.ndarray:
    """``(height, width, 3)`` uint8: colour gradients, a checkerboard of ``cell`` pixels and noise (JPEG-friendly)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    a = np.stack([x / width * 255, y / height * 255, (x // cell + y // cell) % 2 * 255], axis=-1)
    return np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8)


def test_large_jpeg_decodes_at_a_draft_scale_close_to_the_full_decode(tmp_path):
    a = photo_like(1600, 1200, 40, 0)
    p = tmp_path / "photo.jpg"
    Image.fromarray(a).save(p, quality=92)
    assert open_image(p).size == (1600, 1200)
    assert open_image(p, fit=224).size == (400, 300)  # 1/4: the smallest scale with a short side >= 224
    assert open_image(p, fit=700).size == (1600, 1200)  # under 2 x fit: decoded exactly
    fast = load_image(p, size=224)
    exact = images._to_tensor(images._fit(open_image(p), 224))  # the full decode, resized
    assert tuple(fast.shape) == (3, 224, 224)
    assert float((fast - exact).abs().mean()) < 0.02
    small = tmp_path / "small.jpg"
    Image.fromarray(a[:300, :400]).save(small, quality=92)
    assert torch.equal(load_image(small, size=224), images._to_tensor(images._fit(open_image(small), 224)))


def test_detail_lets_a_jpeg_decode_below_the_output_size(tmp_path):
    """``detail``: a 640 x 480 photo read at 256 for a 224 crop decodes at half scale (320 x 240), then is scaled
    up 1.07x; without it the full picture is decoded. PNGs and small pictures are unaffected."""
    a = photo_like(640, 480, 16, 1)
    p = tmp_path / "photo.jpg"
    Image.fromarray(a).save(p, quality=92)
    exact = load_image(p, size=256)
    assert torch.equal(exact, images._to_tensor(images._fit(open_image(p), 256)))  # 480 < 2 x 256: no draft
    draft = load_image(p, size=256, detail=224)
    assert torch.equal(draft, images._to_tensor(images._fit(open_image(p, fit=224), 256)))
    assert open_image(p, fit=224).size == (320, 240)
    assert tuple(draft.shape) == (3, 256, 256) and not torch.equal(draft, exact)
    assert float((draft - exact).abs().mean()) < 0.03
    png = tmp_path / "photo.png"
    Image.fromarray(a).save(png)
    assert torch.equal(load_image(png, size=256, detail=224), load_image(png, size=256))


# --- errors --------------------------------------------------------------------------------------------------------

def _reason(path, fn=load_image, cls=ImageError) -> str:
    with pytest.raises(cls) as info:
        fn(path)
    err = info.value
    assert isinstance(err, SoundlibError) and str(err) == f"{path}: {err.reason}" and "\n" not in str(err)
    return err.reason


def test_image_errors(tmp_path, make_image):
    assert _reason(tmp_path / "missing.png") == "file not found"
    assert _reason(tmp_path) == "is a folder"
    (tmp_path / "zero.jpg").write_bytes(b"")
    assert _reason(tmp_path / "zero.jpg") == "empty file (0 bytes)"
    (tmp_path / "text.png").write_text("not a picture at all\n" * 10)
    assert _reason(tmp_path / "text.png") == "not an image (format not recognised)"
    assert _reason(write_tone(tmp_path / "s.wav")) == "not an image (format not recognised)"
    jpg = make_image("big.jpg", (256, 256), color=(10, 120, 200))
    rng = np.random.default_rng(0)
    noisy = make_image("noisy.jpg", rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(noisy.read_bytes()[: noisy.stat().st_size // 2])
    assert _reason(cut).startswith("truncated or corrupt (")
    png = make_image("n.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    assert _reason(cut_png).startswith("truncated or corrupt (")
    assert load_image(jpg).shape[1:] == (256, 256)
    assert _reason(make_image("dot.png", (1, 1))) == "too small (1 x 1 px; need at least 8 px a side)"
    assert _reason(make_image("thin.png", (100, 7))).startswith("too small (100 x 7 px")


def _png_header(path, width: int, height: int):
    """A PNG whose header claims width x height (no need to hold the pixels: the size check comes first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("w, h", [(11_000, 10_000), (20_000, 20_000)])  # Pillow: warning / exception
def test_too_large_is_refused_cleanly(tmp_path, w, h):
    p = _png_header(tmp_path / f"bomb{w}.png", w, h)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reason = _reason(p)
    assert reason.startswith("too large (")
    assert not [c for c in caught if issubclass(c.category, Image.DecompressionBombWarning)]


def test_load_images_batch_skips_bad(tmp_path, make_image):
    good1 = make_image("a.png", halves(30, 20))
    good2 = make_image("b.jpg", (50, 50), color=RED)
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    batch, errors = load_images([good1, bad, good2], size=24)
    assert tuple(batch.shape) == (2, 3, 24, 24) and batch.dtype == torch.float32
    assert len(errors) == 1 and errors[0].path == str(bad)
    assert np.abs(rgb_at(batch[1], 12, 12) - RED).max() <= 6
    empty, errs = load_images([bad], size=8)
    assert tuple(empty.shape) == (0, 3, 8, 8) and len(errs) == 1


def test_save_jpeg_round_trip(tmp_path):
    t = torch.zeros(3, 20, 30)
    t[0] = 0.8
    t[2, :, 15:] = 1.0
    out = save_jpeg(t, tmp_path / "sub" / "f.jpg", quality=95)
    assert [p.name for p in out.parent.iterdir()] == ["f.jpg"]  # no temporary file left
    back = load_image(out)
    assert tuple(back.shape) == (3, 20, 30)
    assert np.abs(rgb_at(back, 10, 3) - (204, 0, 0)).max() <= 8
    assert np.abs(rgb_at(back, 10, 25) - (204, 0, 255)).max() <= 8
    save_jpeg(Image.new("RGBA", (10, 10), (0, 255, 0, 255)), tmp_path / "pil.jpg")
    assert np.abs(rgb_at(load_image(tmp_path / "pil.jpg"), 5, 5) - (0, 255, 0)).max() <= 4
    save_jpeg(halves(16, 8), tmp_path / "np.jpg")
    assert load_image(tmp_path / "np.jpg").shape == (3, 8, 16)


# --- video ---------------------------------------------------------------------------------------------------------

def test_video_info(test_video, video_no_audio):
    info = video_info(test_video)
    assert info.duration == pytest.approx(3.2, abs=0.05) and info.fps == pytest.approx(10)
    assert (info.width, info.height, info.has_video, info.has_audio) == (64, 48, True, True)
    assert info.frames == 32
    assert video_has_audio(test_video) and not video_has_audio(video_no_audio)


@pytest.mark.parametrize("fixture", ["test_video", "video_no_audio"])
def test_video_frames_every_second(request, fixture):
    path = request.getfixturevalue(fixture)
    frames = list(video_frames(path, every=1.0))
    assert [t for t, _ in frames] == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-3)
    for t, img in frames:
        assert tuple(img.shape) == (3, 48, 64) and img.dtype == torch.float32
        red = float(img[0].mean()) * 255
        assert frame_index(red) == round(t * 10), (t, red)  # the frame shown at t, not a neighbour


def test_video_frames_half_second_size_and_cap(test_video):
    half = list(video_frames(test_video, every=0.5, size=32))
    assert [t for t, _ in half] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], abs=1e-3)
    assert all(tuple(img.shape) == (3, 32, 32) for _, img in half)
    assert abs(float(half[3][1][0].mean()) * 255 - frame_red(15)) < 4
    assert len(list(video_frames(test_video, every=0.5, max_frames=2))) == 2
    coarse = list(video_frames(test_video, every=2.5))
    assert [t for t, _ in coarse] == pytest.approx([0.0, 2.5], abs=1e-3)
    with pytest.raises(ValueError):
        next(video_frames(test_video, every=0))


def test_video_frames_low_fps_never_repeats(make_video):
    path = make_video("slow.mp4", seconds=6.0, fps=1, audio=False)
    times = [t for t, _ in video_frames(path, every=0.4)]
    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], abs=1e-3)


def test_video_rotation_applied(make_video):
    path = make_video("rot.mp4", seconds=1.0, size=(64, 32), rotation=90, audio=False,
                      frame_fn=lambda i: halves(64, 32))  # stored: left half red, right half blue
    t, img = next(video_frames(path))
    assert tuple(img.shape) == (3, 64, 32)  # displayed portrait
    # the display matrix turns the picture 90 degrees counter-clockwise: the left side ends at the bottom
    assert rgb_at(img, 56, 16)[0] > 200 and rgb_at(img, 8, 16)[2] > 200


def test_video_errors(tmp_path, video_no_audio):
    assert _reason(tmp_path / "none.mp4", lambda p: list(video_frames(p)), VideoError) == "file not found"
    (tmp_path / "text.mp4").write_text("hello\n" * 50)
    assert _reason(tmp_path / "text.mp4", video_info, VideoError).startswith("not a video file")
    assert _reason(write_image(tmp_path / "still.png"), video_info, VideoError) == \
        "not a video file (a still image)"
    sound = write_tone(tmp_path / "sound.wav")
    assert _reason(sound, lambda p: list(video_frames(p)), VideoError) == "no video stream"
    assert video_info(sound).has_video is False
    data = video_no_audio.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])  # the index (moov) is at the end: lost
    with pytest.raises(VideoError):
        list(video_frames(tmp_path / "cut.mp4"))


def test_truncated_video_keeps_frames_before_damage(tmp_path):
    path = write_video(tmp_path / "v.mkv", seconds=3.2, audio=False)  # Matroska: header first
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    times = [t for t, _ in video_frames(cut)]
    assert times and times[0] == 0.0 and len(times) < 4
