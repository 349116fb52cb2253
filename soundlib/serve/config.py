"""Settings of ``soundlib serve``: where it listens and what it accepts, every default in one place."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

#: Environment variable holding the access token (never a command-line option).
TOKEN_ENV = "SOUNDLIB_SERVE_TOKEN"
#: Cookie the page keeps the token in after ``/?token=...`` (HttpOnly, SameSite=Strict).
TOKEN_COOKIE = "soundlib_token"


@dataclass(frozen=True)
class ServeConfig:
    """What the web page's server accepts.

    Attributes:
        host: address to listen on (loopback by default; any other needs ``$SOUNDLIB_SERVE_TOKEN``).
        port: TCP port (0: any free port).
        max_upload_bytes: bytes of one request body (all its files together); more -> 413.
        max_files: pictures or videos in one query.
        max_pixels: pixels of one picture or video frame, checked on the header before decoding (a
            decompression bomb never reaches the decoder).
        max_video_seconds: length of an uploaded video; longer -> 413.
        max_frames: pictures and video frames in one query, all uploads together (1 fps for videos).
        max_k: largest number of results a query may ask for.
        max_picks: sounds in one basket export.
        default_k: results when the page does not say.
        recent_queries: uploaded pictures kept in memory (as 8-bit frames) for the frame strip and the heatmaps.
        peaks_bins: bins of a waveform overview.
        cache_dir: cache of waveform overviews (default :func:`soundlib.peaks.default_cache_dir`).
        overlay_size: side of a heatmap overlay, pixels.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    max_upload_bytes: int = 64 * 2**20
    max_files: int = 16
    max_pixels: int = 40_000_000
    max_video_seconds: float = 300.0
    max_frames: int = 320
    max_k: int = 100
    max_picks: int = 500
    default_k: int = 10
    recent_queries: int = 8
    peaks_bins: int = 800
    cache_dir: Path | None = None
    overlay_size: int = 448


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """Host header values a server bound to ``host`` answers (DNS rebinding guard): the bound name, and every
    loopback name when it is a loopback address; ``["*"]`` for a wildcard bind (0.0.0.0, ::), where the token
    is the guard."""
    h = host.strip("[]").lower()
    if h in ("0.0.0.0", "::", ""):
        return ["*"]
    if is_loopback(h):
        return sorted({h, "127.0.0.1", "localhost", "::1"})
    return [h]
