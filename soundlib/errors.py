"""Error types of the library layer (all subclasses of :class:`encoders.errors.SoundlibError`)."""

from __future__ import annotations

from encoders.errors import CheckpointError, ConfigError, SoundlibError

__all__ = [
    "SoundlibError", "CheckpointError", "ConfigError", "AudioError", "ImageError", "VideoError",
    "ListError", "StoreError", "ModelMismatchError",
]


class AudioError(SoundlibError):
    """An audio file that cannot be used: missing, empty, unreadable, not audio, truncated, silent or non-finite."""


class ImageError(SoundlibError):
    """An image that cannot be decoded or is unusable (e.g. too small or absurdly large)."""


class VideoError(SoundlibError):
    """A video without frames, without an audio track (where one is needed), or undecodable."""


class ListError(SoundlibError):
    """A malformed pair list (missing column, bad number, missing file). ``line`` is the 1-based line number."""

    def __init__(self, reason: str, path: str | None = None, line: int | None = None) -> None:
        self.line = line
        where = f"{path}:{line}" if (path and line) else path
        super().__init__(reason, where)


class StoreError(SoundlibError):
    """The Chroma store cannot be opened, reached, or written."""


class ModelMismatchError(StoreError):
    """The collection was built with a different model than the one asked for."""
