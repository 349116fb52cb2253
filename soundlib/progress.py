"""Progress reporting from library code without depending on any UI.

Library functions that take long accept ``progress: ProgressFn | None``; they call it as
``progress(task, completed, total, **info)`` (``total`` may be ``None`` when unknown; ``info`` holds extra figures
such as ``windows=...``). The CLI turns these calls into Rich progress bars on stderr; tests may record them.
"""

from __future__ import annotations

from typing import Any, Protocol


class ProgressFn(Protocol):
    def __call__(self, task: str, completed: int, total: int | None, **info: Any) -> None: ...


def null_progress(task: str, completed: int, total: int | None, **info: Any) -> None:
    """A progress callback that does nothing."""
