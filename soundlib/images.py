"""Visual front end: pictures and video frames -> float32 RGB tensors ``(3, H, W)`` in [0, 1].

Images (Pillow)
    JPEG, PNG, WebP, GIF (first frame), BMP, TIFF. The EXIF orientation is applied. Palette, greyscale, 1-bit,
    CMYK and 16-bit images become 8-bit-equivalent RGB (16-bit greyscale keeps its precision: value / 65535).
    Transparent pixels are composited on **white** (:data:`ALPHA_BACKGROUND`): cut-outs, icons and clip art are
    drawn to be seen on a light page, and on black dark line art would vanish.

Sizing
    ``size=None`` keeps the image as it is. ``size=S`` scales the *short* side to ``S`` (bilinear, antialiased)
    and crops the centre ``S`` x ``S`` (torchvision's ``Resize(S)`` + ``CenterCrop(S)``): the aspect ratio is kept
    and the edges of the long side are lost.

Errors (:class:`soundlib.errors.ImageError` / :class:`soundlib.errors.VideoError`, one reason each)
    ``"file not found"``, ``"is a folder"``, ``"permission denied"``, ``"empty file (0 bytes)"``,
    ``"not an image (format not recognised)"``, ``"truncated or corrupt (...)"``,
    ``"too small (W x H px; need at least 8 px a side)"`` (:data:`MIN_SIDE`),
    ``"too large (W x H = N MP; limit 100 MP)"`` (:data:`MAX_PIXELS`; checked on the header, before decoding,
    and Pillow's own decompression-bomb warning/error never reaches the caller).
    Videos: ``"not a video file, or damaged (FFmpeg: ...)"`` (FFmpeg cannot open it: an MP4 cut before its index
    looks like any other non-video), ``"not a video file (a still image)"``, ``"no video stream"``,
    ``"no frames decoded"``, ``"truncated or corrupt (...)"`` (many packets fail to decode). A video damaged
    after some frames yields the frames before the damage.

Videos (PyAV)
    :func:`video_frames` decodes once, front to back (threaded), and yields the first frame at or after each of
    ``0, every, 2 every, ...`` seconds, with its own timestamp; the display rotation (phone videos) is applied.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from encoders.atomic import atomic_write
from encoders.config import ImageConfig
from soundlib.errors import ImageError, VideoError
from soundlib.media import check_file, decoded_frames

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image as PILImage

#: Images with a side shorter than this (pixels) are refused.
MIN_SIDE: int = 8
#: Images with more pixels than this are refused before decoding (decompression-bomb guard).
MAX_PIXELS: int = 100_000_000
#: RGB (0-255) that transparent pixels are composited on.
ALPHA_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
#: A frame this close (seconds) before a target time counts as at the target (timestamp rounding).
_TIME_TOLERANCE = 1e-3
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclass(frozen=True)
class VideoInfo:
    """Container facts of a video (no frame decoded).

    Attributes:
        path: the file, as given.
        duration: seconds (container duration, else the video stream's; 0.0 when unknown).
        fps: average frame rate (0.0 when unknown).
        width, height: coded frame size in pixels (before any display rotation; 0 without video).
        has_video: a video stream exists.
        has_audio: an audio stream exists.
        frames: frame count from the header, else ``round(duration * fps)`` (an estimate).
    """

    path: str
    duration: float
    fps: float
    width: int
    height: int
    has_video: bool
    has_audio: bool
    frames: int


# --- images ------------------------------------------------------------------------------------------------------

def _fit(im: "PILImage.Image", size: int) -> "PILImage.Image":
    """Scale the short side to ``size`` and crop the centre square."""
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def _to_tensor(im: "PILImage.Image") -> "torch.Tensor":
    """A PIL image in mode RGB (uint8) or F (greyscale in [0, 1]) -> float32 (3, H, W) in [0, 1].

    The arithmetic is done in numpy: small torch ops contend for the intra-op thread pool while FFmpeg's decoder
    threads run.
    """
    import torch

    if im.mode == "F":
        g = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return torch.from_numpy(np.ascontiguousarray(np.broadcast_to(g, (3, *g.shape))))
    a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    chw = np.empty((3, a.shape[0], a.shape[1]), np.float32)
    np.multiply(a.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=chw)
    return torch.from_numpy(chw)


def _normalise_mode(im: "PILImage.Image") -> "PILImage.Image":
    """Any Pillow mode -> RGB (uint8), or F in [0, 1] for 16-bit/float greyscale; alpha composited."""
    from PIL import Image

    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(im).astype(np.float32) / 65535.0
        return Image.fromarray(np.clip(a, 0.0, 1.0), mode="F")
    if mode == "F":
        return Image.fromarray(np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0), mode="F")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    elif mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
    elif mode == "RGB" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def open_image(path: str | Path, fit: int | None = None) -> "PILImage.Image":
    """Decode ``path`` into a Pillow image in mode ``RGB`` (or ``F``, 16-bit greyscale), orientation applied.

    Same checks and errors as :func:`load_image`; use it when a PIL image is wanted (e.g. to re-save frames).

    Args:
        path: the file.
        fit: the caller will scale the short side down to ``fit`` pixels: a JPEG is then decoded at the smallest of
            Pillow's 1/2, 1/4, 1/8 draft scales whose short side is still at least ``fit`` (scaling in the DCT domain,
            an area average; timings in ``bench/README.md``). Pictures under ``2 * fit`` a side decode exactly as
            without it.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = check_file(path, ImageError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except UnidentifiedImageError:
            raise ImageError("not an image (format not recognised)", path) from None
        except Image.DecompressionBombError:
            raise ImageError(f"too large (over {MAX_PIXELS // 1_000_000} MP)", path) from None
        except PermissionError:
            raise ImageError("permission denied", path) from None
        except Exception as e:  # noqa: BLE001 - Pillow raises many types for damaged headers
            raise ImageError(f"truncated or corrupt ({e})", path) from None
        with im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"too large ({w} x {h} = {w * h / 1e6:.0f} MP; limit {MAX_PIXELS // 1_000_000} MP)",
                                 path)
            if min(w, h) < MIN_SIDE:
                raise ImageError(f"too small ({w} x {h} px; need at least {MIN_SIDE} px a side)", path)
            try:
                im.seek(0)
                if fit and im.format == "JPEG" and min(w, h) >= 2 * fit:
                    scale = fit / min(w, h)
                    im.draft(None, (math.ceil(w * scale), math.ceil(h * scale)))
                im.load()
            except Exception as e:  # noqa: BLE001 - OSError "image file is truncated", SyntaxError, zlib.error...
                raise ImageError(f"truncated or corrupt ({e})", path) from None
            try:
                oriented = ImageOps.exif_transpose(im)
            except Exception:  # noqa: BLE001 - a broken EXIF block: keep the pixels as stored
                oriented = im
            out = _normalise_mode(oriented if oriented is not None else im)
            return out.copy() if out is im else out  # ``im`` is closed on leaving the block


def load_image(path: str | Path, size: int | None = None, detail: int | None = None) -> "torch.Tensor":
    """Load a picture as an RGB tensor.

    Args:
        path: JPEG, PNG, WebP, GIF, BMP or TIFF (content decides, not the extension).
        size: output side: short side scaled to ``size``, centre crop ``size`` x ``size``. ``None`` keeps the size.
        detail: short side a large JPEG may be decoded at before it is scaled to ``size`` (draft decoding, see
            :func:`open_image`); default ``size``. A model that reads pictures at 256 but only looks at their centre
            224 passes 224: a 640 x 480 photo then decodes at half scale.

    Returns:
        image (torch.Tensor, float32, shape (3, H, W), values in [0, 1]): ``H = W = size`` when ``size`` is given.

    Raises:
        ImageError: see the module docstring.
    """
    im = open_image(path, fit=detail if (detail and size) else size)
    if size is not None:
        im = _fit(im, int(size))
    return _to_tensor(im)


def load_images(paths: Sequence[str | Path], size: int | None = None) -> tuple["torch.Tensor", list[ImageError]]:
    """Load many pictures into one batch, skipping the ones that fail.

    Args:
        paths: image files.
        size: side of every output image; default ``ImageConfig().size``.

    Returns:
        images (torch.Tensor, float32, shape (N_ok, 3, size, size)): the paths that loaded, in their order.
        errors (list of ImageError): one per skipped path (``err.path == str(path)``), in order.
    """
    import torch

    side = int(size or ImageConfig().size)
    good: list[torch.Tensor] = []
    errors: list[ImageError] = []
    for path in paths:
        try:
            good.append(load_image(path, side))
        except ImageError as e:
            errors.append(e)
    batch = torch.stack(good) if good else torch.zeros((0, 3, side, side), dtype=torch.float32)
    return batch, errors



#: Side (pixels) :func:`render_drawing` renders SVG drawings at.
DRAWING_SIDE: int = 512


def render_drawing(src: str | Path, dst: str | Path, side: int = DRAWING_SIDE,
                   background: tuple[int, int, int] | None = None) -> Path:
    """Render an SVG (or gzip-compressed SVGZ) drawing to a PNG: fitted into ``side`` x ``side`` and centred, so the
    square centre crop every model applies keeps the whole drawing.

    Args:
        src: the drawing.
        dst: the PNG to write (parents created; written whole or not at all).
        side: the PNG's side (pixels).
        background: RGB of the margins and of the drawing's transparent parts; ``None`` keeps them transparent
            (RGBA; :func:`load_image` composites them on white).

    Returns:
        ``dst``.

    Raises:
        ImageError: CairoSVG cannot be imported (it needs the system's libcairo2), cannot render the file, or the
            drawing is empty (nothing drawn).
    """
    import gzip
    import io

    src, dst = Path(src), Path(dst)
    try:
        import cairosvg
    except (ImportError, OSError) as e:
        raise ImageError(f"cannot render drawings: CairoSVG is unavailable ({e})", str(src)) from None
    from PIL import Image

    try:
        data = src.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        w, h = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=data))).size
        scale = {"output_width": side} if w >= h else {"output_height": side}
        im = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=data, **scale))).convert("RGBA")
    except Exception as e:  # noqa: BLE001 - CairoSVG raises many types on bad input (XML, value, zero size...)
        raise ImageError(f"cannot render the drawing ({type(e).__name__}: {e})".splitlines()[0], str(src)) from None
    if im.getchannel("A").getextrema()[1] == 0:
        raise ImageError("the drawing is empty (nothing drawn)", str(src))
    im.thumbnail((side, side))
    if background is None:
        canvas = Image.new("RGBA", (side, side), (255, 255, 255, 0))
        canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    else:
        canvas = Image.new("RGB", (side, side), tuple(background))
        canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2), im)
    with atomic_write(dst) as tmp:
        canvas.save(tmp, format="PNG")
    return dst


def save_jpeg(image: Any, path: str | Path, quality: int = 90) -> Path:
    """Write an image as JPEG (atomically: a temporary file, then rename), creating the folder.

    Args:
        image: torch.Tensor (3, H, W) float in [0, 1] or uint8, np.ndarray (H, W, 3) uint8, or a PIL image.
        path: the file.
        quality: (int in [1, 95]) Pillow JPEG quality.

    Returns:
        path (Path)
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        im = image if image.mode == "RGB" else _normalise_mode(image).convert("RGB")
    else:
        if hasattr(image, "detach"):  # torch tensors are channel-first
            a = image.detach().cpu().numpy()
            if a.ndim == 3:
                a = np.transpose(a, (1, 2, 0))
        else:
            a = np.asarray(image)
            if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
                a = np.transpose(a, (1, 2, 0))
        if a.dtype != np.uint8:
            a = np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        im = Image.fromarray(a).convert("RGB")
    out = Path(path)
    with atomic_write(out) as tmp:
        im.save(tmp, format="JPEG", quality=int(quality))
    return out


# --- videos ------------------------------------------------------------------------------------------------------

def _open_video(path: str | Path) -> Any:
    import av

    p = check_file(path, VideoError)
    try:
        c = av.open(str(p), "r")
    except PermissionError:
        raise VideoError("permission denied", path) from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        detail = str(getattr(e, "strerror", None) or e).strip().rstrip(".")
        raise VideoError(f"not a video file, or damaged (FFmpeg: {detail})", path) from None
    name = c.format.name
    if name.endswith("_pipe") or name.startswith("image2"):
        c.close()
        raise VideoError("not a video file (a still image)", path)
    return c


def video_info(path: str | Path) -> VideoInfo:
    """Read a video's container facts without decoding.

    Returns:
        info (VideoInfo)

    Raises:
        VideoError: missing, folder, empty, not a video (a still image counts as not a video).
    """
    with contextlib.closing(_open_video(path)) as c:
        vs = c.streams.video[0] if c.streams.video else None
        duration = c.duration / 1_000_000 if c.duration else 0.0
        fps = width = height = frames = 0
        if vs is not None:
            if not duration and vs.duration and vs.time_base:
                duration = float(vs.duration * vs.time_base)
            rate = vs.average_rate or vs.guessed_rate
            fps = float(rate) if rate else 0.0
            cc = vs.codec_context
            width, height = (int(cc.width), int(cc.height)) if cc is not None else (0, 0)
            frames = int(vs.frames or round(duration * fps))
        return VideoInfo(path=str(path), duration=float(duration), fps=fps, width=width, height=height,
                         has_video=vs is not None, has_audio=bool(c.streams.audio), frames=frames)


def video_has_audio(path: str | Path) -> bool:
    """True when the video has an audio stream (:func:`video_info`)."""
    return video_info(path).has_audio


def _frame_image(frame: Any) -> "PILImage.Image":
    """An ``av.VideoFrame`` -> PIL RGB image with the display rotation applied."""
    from PIL import Image

    a = frame.to_ndarray(format="rgb24")
    rotation = int(getattr(frame, "rotation", 0) or 0)
    k = round(rotation / 90) % 4
    if k:
        a = np.ascontiguousarray(np.rot90(a, k=k))  # the display matrix rotates counter-clockwise
    return Image.fromarray(a, mode="RGB")


def video_frames(path: str | Path, every: float = 1.0, size: int | None = None,
                 max_frames: int | None = None) -> Iterator[tuple[float, "torch.Tensor"]]:
    """Yield one frame every ``every`` seconds of a video.

    Args:
        path: the file.
        every: (float > 0) seconds between target times ``0, every, 2 every, ...``.
        size: as in :func:`load_image` (short side + centre crop); ``None`` keeps the frame size.
        max_frames: stop after this many frames.

    Yields:
        seconds: the frame's own presentation time from the start of the stream (e.g. 1.001 for a target of 1.0).
        frame (torch.Tensor, float32, shape (3, H, W), values in [0, 1])

    Notes:
        For each target the first decoded frame with time >= target (1 ms tolerance) is taken; a frame never
        counts twice, so a 0.5 fps video at ``every=1`` yields a frame every 2 s. The whole stream is decoded once,
        front to back.

    Raises:
        VideoError: missing, empty, not a video, no video stream, no frames decoded, corrupt.
    """
    if not (every > 0 and math.isfinite(every)):
        raise ValueError(f"every must be a positive number of seconds, got {every}")
    c = _open_video(path)
    yielded = 0
    try:
        if not c.streams.video:
            raise VideoError("no video stream", path)
        stream = c.streams.video[0]
        if stream.codec_context is None:
            raise VideoError("unsupported video codec", path)
        stream.thread_type = "AUTO"
        t0 = float(stream.start_time * stream.time_base) if (stream.start_time is not None and stream.time_base) \
            else 0.0
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        target, count = 0.0, 0
        for frame in decoded_frames(c, stream, lambda d: VideoError(f"truncated or corrupt ({d})", path)):
            t = (float(frame.pts * frame.time_base) - t0) if (frame.pts is not None and frame.time_base) \
                else count / rate
            count += 1
            if t < target - _TIME_TOLERANCE:
                continue
            im = _frame_image(frame)
            if size is not None:
                im = _fit(im, int(size))
            yield round(max(t, 0.0), 6), _to_tensor(im)
            yielded += 1
            if max_frames is not None and yielded >= max_frames:
                return
            target = (math.floor((t + _TIME_TOLERANCE) / every) + 1) * every
    finally:
        c.close()
    if yielded == 0:
        raise VideoError("no frames decoded", path)
