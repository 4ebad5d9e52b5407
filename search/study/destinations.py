"""Check every store and destination a command names, within seconds and before anything is written: the MLflow
tracking URI, the Optuna storage URL and an output folder. A server that does not answer, a scheme nobody reads or
a local file of another kind is one ``ConfigError``, not minutes of silent retries ending in a traceback."""

from __future__ import annotations

import socket
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from squeezer.search.errors import ConfigError
from squeezer.search.locking import local_path

TIMEOUT_S = 5.0
#: The tracking stores Squeezer writes through MLflow's client: local SQLite, a folder, a server, a database.
TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql")
#: Optuna storages: SQLAlchemy databases and Optuna's journal file.
STORAGE_SCHEMES = ("sqlite", "journal", "postgresql", "mysql")
SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


def check_tracking_uri(uri: str, key: str = "--tracking-uri", must_exist: bool = False) -> None:
    """Refuse a tracking URI that MLflow cannot use: an unknown scheme, a server that does not answer, a local file
    that is not an SQLite database, or (``must_exist``, for commands that only read) a store that is not there."""
    scheme = _scheme(uri, TRACKING_SCHEMES, key, "sqlite:///mlflow.db, a folder, or http://host:5000")
    if scheme in ("http", "https"):
        _answers(uri.rstrip("/") + "/health", key, uri)
    elif scheme == "file" or scheme == "":
        folder = Path(urlsplit(uri).path if scheme == "file" else uri)
        if must_exist and not folder.is_dir():
            raise ConfigError(key, "no tracking store there; run `squeezer search` first or point at its store", uri)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(key, "names a file; a file store is a folder", uri)
    elif scheme == "sqlite":
        _sqlite_file(uri, key, must_exist, table="experiments", kind="an MLflow tracking store")
    else:
        _reachable(uri, key)


def check_storage(url: str, key: str = "--storage", must_exist: bool = False) -> None:
    """Refuse a study storage Optuna cannot open, found in seconds (a database server is reached once)."""
    scheme = _scheme(url, STORAGE_SCHEMES, key, "sqlite:///squeezer.db, journal:PATH or postgresql://...")
    if scheme == "sqlite":
        _sqlite_file(url, key, must_exist, table="studies", kind="an Optuna study storage")
    elif scheme == "journal":
        path = local_path(url)
        if path is None or str(path) in ("", "."):
            raise ConfigError(key, "must name a file: journal:PATH", url)
        if path.is_dir() or must_exist and not path.is_file():
            raise ConfigError(key, "must name a journal file" + (" that exists" if must_exist else ""), url)
        _parent_folder(path, key, url)
    else:
        _reachable(url, key)


def check_out(path: Path, key: str = "--out") -> None:
    """A folder to write into: new, or an existing folder; not a file, and inside a folder that exists."""
    if path.exists() and not path.is_dir():
        raise ConfigError(key, "names an existing file; give a folder to write the model into", str(path))
    _parent_folder(path, key, str(path))


def _scheme(url: str, allowed: tuple[str, ...], key: str, example: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(key, f"must be a URL, e.g. {example}", url)
    scheme = urlsplit(url).scheme.split("+")[0].lower()  # postgresql+psycopg:// is PostgreSQL
    if url.startswith("journal:"):
        scheme = "journal"
    elif len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme not in allowed and not (scheme == "" and "file" in allowed):  # a bare path is a file store
        raise ConfigError(key, f"has an unknown scheme; use one of {[s + ':' for s in allowed]} (e.g. {example})",
                          url)
    return scheme


def _sqlite_file(url: str, key: str, must_exist: bool, table: str, kind: str) -> None:
    """A local SQLite store: a new file, or a database holding ``table`` (``kind``'s); never someone else's
    database, which MLflow or Optuna would add their tables to."""
    path = local_path(url)
    if path is None:
        raise ConfigError(key, "an SQLite URL names a file with three slashes: sqlite:///PATH", url)
    if must_exist and not path.is_file():
        raise ConfigError(key, "no such database file; run `squeezer search` first or point at its file", url)
    if path.is_dir():
        raise ConfigError(key, "names a folder; an SQLite store is a file", url)
    _parent_folder(path, key, url)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise ConfigError(key, "names a file that is not an SQLite database", url)
    tables = _tables(path)
    if tables is None:
        raise ConfigError(key, "names an SQLite database that cannot be read", url)
    if tables and table not in tables:
        raise ConfigError(key, f"names an SQLite database that is not {kind} (its tables: {sorted(tables)[:5]})",
                          url)


def _tables(path: Path) -> set[str] | None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT_S) as connection:
            return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return None


def _parent_folder(path: Path, key: str, shown: str) -> None:
    parent = path.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(key, f"cannot be created: {parent} is a file", shown)


def _answers(url: str, key: str, shown: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S):  # noqa: S310 - a URL the user named, http(s) only
            return
    except urllib.error.HTTPError as err:
        raise ConfigError(key, f"the server answered {err.code} to {url}; is it an MLflow server?", shown) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(key, f"no MLflow server answers there within {TIMEOUT_S:g} s ({reason})", shown) from None


def _reachable(url: str, key: str) -> None:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0].lower()
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError as err:
        raise ConfigError(key, f"is not a valid URL ({err})", url) from None
    if not host or port is None:
        raise ConfigError(key, "must name a server: SCHEME://[user[:password]@]host[:port]/database", url)
    try:
        socket.create_connection((host, port), timeout=TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(key, f"no server answers at {host}:{port} within {TIMEOUT_S:g} s ({err})",
                          _without_password(url)) from None


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


__all__ = ["check_out", "check_storage", "check_tracking_uri"]
