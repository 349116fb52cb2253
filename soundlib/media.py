"""Which kind of media a path holds, judged by its extension (cheap: no file is opened).

The sets are lower-case suffixes without the dot. A suffix belongs to exactly one set: containers that may hold
sound only or pictures as well (``mp4``, ``webm``, ``mkv``) count as video; ``m4a``/``oga``/``opus`` count as audio.
The decoders themselves (:mod:`soundlib.audio`, :mod:`soundlib.images`) look at the content, not at the name, so
an audio-only ``.mp4`` still loads with :func:`soundlib.audio.load_audio`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, Literal

from soundlib.errors import SoundlibError

MediaKind = Literal["audio", "image", "video"]

#: Sound files: libsndfile formats (wav, flac, ogg/vorbis/opus, mp3, aiff, caf, au, w64, rf64) and the ones only
#: FFmpeg decodes (m4a/aac/alac, wma, ac3, amr, ape, wavpack).
AUDIO_EXTENSIONS: frozenset[str] = frozenset({
    "wav", "wave", "bwf", "rf64", "w64", "flac", "ogg", "oga", "opus", "spx", "mp3", "mp2",
    "aiff", "aif", "aifc", "caf", "au", "snd",
    "m4a", "m4b", "aac", "alac", "wma", "ac3", "amr", "ape", "wv", "mka",
})

#: Still images that :func:`soundlib.images.load_image` decodes with Pillow (GIF: first frame).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    "jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "dib", "tif", "tiff",
})

#: Videos that :func:`soundlib.images.video_frames` decodes with PyAV (FFmpeg).
VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    "mp4", "m4v", "mkv", "webm", "mov", "avi", "mpg", "mpeg", "m2v", "ts", "mts", "m2ts", "ogv", "flv",
    "wmv", "3gp", "3g2", "vob",
})


def extension(path: str | Path) -> str:
    """The lower-case suffix of ``path`` without the dot (``"Song.WAV"`` -> ``"wav"``; none -> ``""``)."""
    return Path(path).suffix.lower().lstrip(".")


def media_kind(path: str | Path) -> MediaKind | None:
    """Classify ``path`` by its extension.

    Args:
        path: any path; the file need not exist.

    Returns:
        kind ({"audio", "image", "video"} or None): ``None`` for an unknown or missing extension (e.g.
            ``notes.txt``, ``README``).
    """
    ext = extension(path)
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def check_file(path: str | Path, error: type[SoundlibError] = SoundlibError) -> Path:
    """Make sure ``path`` is a readable, non-empty regular file before a decoder sees it.

    Args:
        path: the file.
        error: (SoundlibError subclass) raised as ``error(reason, path)`` with one of the reasons ``"file not
            found"``, ``"is a folder"``, ``"not a regular file"``, ``"permission denied"``, ``"empty file (0
            bytes)"``.

    Returns:
        path (Path)
    """
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise error("file not found", path) from None
    except PermissionError:
        raise error("permission denied", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise error("is a folder", path)
    if not stat.S_ISREG(st.st_mode):
        raise error("not a regular file", path)
    if not os.access(p, os.R_OK):
        raise error("permission denied", path)
    if st.st_size == 0:
        raise error("empty file (0 bytes)", path)
    return p


def decoded_frames(container: Any, stream: Any, on_damage: Callable[[str], SoundlibError]) -> Iterator[Any]:
    """Decoded PyAV frames of ``stream``; damaged packets are skipped, a damaged container ends the stream.

    More than 3 undecodable packets that are also more than a tenth of those seen raise ``on_damage(detail)``
    (``detail``: FFmpeg's message), e.g. an :class:`~soundlib.errors.AudioError` "truncated or corrupt (...)".
    """
    import av

    good = bad = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError:  # a damaged container: treat as its end (callers check completeness)
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as e:
            bad += 1
            if bad > 3 and bad > 0.1 * (good + bad):
                raise on_damage(getattr(e, "strerror", None) or str(e)) from None
            continue
        good += 1
        yield from frames
