"""The installed soundlib version, for what the code records about itself (checkpoints, collections, runs)."""

from __future__ import annotations


def package_version() -> str:
    """The installed ``soundlib`` package version; ``"unknown"`` when running from a plain checkout."""
    try:
        from importlib.metadata import version

        return version("soundlib")
    except Exception:  # noqa: BLE001 - not installed
        return "unknown"
