"""A real sound library behind ``soundlib serve`` for the API and browser tests: files written with soundfile,
ingested with the tiny test model into a real embedded Chroma store, and the server's engine over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures_library import build_library


@dataclass
class ServeWorld:
    """Library root, store folder, loaded model, open store, engine and its config."""

    lib: Path
    db: Path
    loaded: Any
    store: Any
    engine: Any

    def close(self) -> None:
        self.store.close()


def serve_world(base: Path, checkpoint: Path, **config: Any) -> ServeWorld:
    """Write the test library under ``base/lib``, ingest it into ``base/db`` and build an engine (``config``:
    :class:`soundlib.serve.config.ServeConfig` fields; the peaks cache goes to ``base/cache``)."""
    from soundlib.ingest import ingest
    from soundlib.models import load_model
    from soundlib.serve.config import ServeConfig
    from soundlib.serve.engine import Engine
    from soundlib.store import open_store

    lib = build_library(base / "lib").resolve()
    loaded = load_model(checkpoint)
    store = open_store(db=base / "db", create=True)
    ingest([lib], loaded, store)
    engine = Engine(loaded, store, ServeConfig(cache_dir=base / "cache", **config))
    return ServeWorld(lib, base / "db", loaded, store, engine)
