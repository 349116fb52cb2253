"""Content hashes of files (checkpoints, sound files, frames) and of configurations (cache keys): one
implementation for every layer, torch-free."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def config_key(config: Any, length: int = 12) -> str:
    """Short hex SHA-256 of a JSON-able value (keys sorted): a cache key for everything the value describes."""
    text = json.dumps(config, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte blocks (memory stays bounded for any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
