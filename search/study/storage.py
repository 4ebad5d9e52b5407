"""Open the study storage named by ``--storage``: an SQLAlchemy URL (SQLite, PostgreSQL, MySQL) or an Optuna journal.

SQLite opens in WAL mode with ``synchronous=NORMAL``: a commit no longer waits for the disk, readers do not block
the writer (several processes share one study), and a killed process loses nothing (only a power cut could lose the
last commits). A ``journal:PATH`` storage is Optuna's append-only journal file: the cheapest per trial.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.exc import SQLAlchemyError

from squeezer.search.errors import ConfigError
from squeezer.search.locking import create_once, local_path


JOURNAL = "journal:"


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage at ``url``, created if it does not exist; a URL that cannot be opened is a ConfigError."""
    try:
        return _open(url)
    except ImportError as err:
        raise ConfigError("--storage", f"needs a database driver that is not installed ({err}); for postgresql:// "
                          "run pip install 'psycopg[binary]'", url) from None
    except SQLAlchemyError as err:
        raise ConfigError("--storage", f"cannot be opened ({str(err).splitlines()[0]})", url) from None


def _open(url: str) -> BaseStorage:
    path = local_path(url)
    if path is None:
        return RDBStorage(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith(JOURNAL):
        return JournalStorage(JournalFileBackend(str(path)))
    # SQLite; callers that may create it hold ``store_lock``
    create_once(path, lambda partial: RDBStorage(f"sqlite:///{partial}").engine.dispose())
    return RDBStorage(url, engine_kwargs={"creator": _SQLite(str(path))})


def exists(url: str) -> bool:
    """Whether a file-based storage's file is there (server storages always count as there)."""
    path = local_path(url)
    return path is None or path.is_file()


class _SQLite:
    """Opens connections to one SQLite file in WAL mode (a class, not a closure: Ray pickles the storage)."""

    def __init__(self, database: str) -> None:
        self.database = database

    def __call__(self) -> Any:
        connection = sqlite3.connect(self.database, timeout=60, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection


__all__ = ["JOURNAL", "exists", "open_storage"]
