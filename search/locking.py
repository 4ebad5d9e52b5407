"""A lock beside a local store (an SQLite file or an Optuna journal): several processes of one study may start
together, and neither MLflow's nor Optuna's schema set-up, nor creating a study and its parent run, is safe to run
twice at once. The OS frees the lock when its holder dies, so a killed process never blocks the next one."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


LOCAL = ("sqlite:///", "journal:")


def is_local(url: str) -> bool:
    """Whether ``url`` names a store in a local file (which a file lock can guard)."""
    return url.startswith(LOCAL)


def local_path(url: str) -> Path | None:
    """The file of a local store URL (``sqlite:///PATH`` or ``journal:PATH``); None for a server URL."""
    for prefix in LOCAL:
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix).removeprefix("//" if prefix == "journal:" else ""))
    return None


@contextmanager
def store_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock beside the file of a local store; server URLs need none (and get none)."""
    path = local_path(url)
    if path is None:
        yield
        return
    lock = path.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_once(path: Path, create: Callable[[Path], None]) -> None:
    """Make the store file ``path`` appear whole or not at all: ``create`` builds it in a temporary file that is then
    renamed into place. A schema migration killed halfway (MLflow's on SQLite is not one transaction) would otherwise
    leave a database that cannot be opened again. Call it under ``store_lock``."""
    if path.exists():
        return
    partial = path.with_name(f"{path.name}.creating")
    for leftover in path.parent.glob(f"{partial.name}*"):  # a killed creator's partial file
        leftover.unlink()
    create(partial)
    os.replace(partial, path)


def absolute(url: str) -> str:
    """A local store's URL with an absolute path: MLflow caches stores by URL, and the working directory may change."""
    path = local_path(url)
    if path is None or path.is_absolute():
        return url
    return f"{next(p for p in LOCAL if url.startswith(p))}{path.resolve()}"
