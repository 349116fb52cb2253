"""Test fixture models: tiny, seeded, untrained ``AVModel`` checkpoints (NOT the bundled default).

``tests/conftest.py`` imports the fixtures, so every test module can ask for them. Each checkpoint is written once
per test session (session-scoped fixtures; the file embeds its save date, so saving again would give another sha256).
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: The architecture of every fixture model: the paper's best family, shrunk to run in milliseconds.
TINY_NAME = "m5-attention-linear-infonce"
TINY_OVERRIDES = {"width": 0.125, "image_size": 64}


def make_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``TINY_NAME`` model with weights from ``seed`` to ``folder/tiny-<seed>.pt``."""
    from encoders.checkpoint import save_checkpoint
    from encoders.registry import create_model

    model = create_model(TINY_NAME, seed=seed, **TINY_OVERRIDES)
    path = Path(folder) / f"tiny-{seed}.pt"
    save_checkpoint(path, model, training={"data": "none (test fixture)", "epochs": 0})
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the seed-0 tiny checkpoint."""
    return make_checkpoint(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a seed-1 tiny checkpoint: same architecture, other weights, other sha256."""
    return make_checkpoint(tmp_path_factory.mktemp("models"), seed=1)


@pytest.fixture
def tiny_model(tiny_checkpoint: Path):
    """A fresh :class:`soundlib.models.LoadedModel` of the seed-0 checkpoint (fresh: tests may wrap its methods)."""
    from soundlib.models import load_model

    return load_model(tiny_checkpoint)
