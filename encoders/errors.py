"""The error types every layer raises: one clear line naming the file and the reason."""

from __future__ import annotations

from pathlib import Path


class SoundlibError(Exception):
    """Base of every expected error. ``str(err)`` is one line: ``"<path>: <reason>"`` (or just the reason)."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class CheckpointError(SoundlibError):
    """A checkpoint that is missing, truncated, foreign, tampered with or made for another model."""


class ConfigError(SoundlibError):
    """An unknown model name or an invalid configuration override."""
