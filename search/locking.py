"""A lock for a local SQLite store's first use: neither MLflow's nor Optuna's schema set-up is safe to run twice at
once, and several processes of one study may start together."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def sqlite_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock beside the database of a ``sqlite:///`` URL; other URLs need none."""
    if not url.startswith("sqlite:///"):
        yield
        return
    lock = Path(url.removeprefix("sqlite:///")).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
