"""Read a YAML file safely: plain data only (``SafeLoader``), and refused up front when it is too big, not text,
repeats a key, or expands (through aliases) into more nodes than any experiment needs (a "YAML bomb")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from squeezer.search.errors import ConfigError

MAX_BYTES = 1 << 20
MAX_NODES = 100_000


def read_yaml(path: Path) -> Any:
    """The data in the YAML file at ``path``; every problem is one ``ConfigError`` naming the file."""
    where = str(path)
    if not path.is_file():
        raise ConfigError(where, "config file not found; pass the path of an experiment YAML file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(where, f"is larger than an experiment file can be ({MAX_BYTES} bytes)", size)
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError as err:
        raise ConfigError(where, f"is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ConfigError(where, f"is not valid YAML ({err})".replace("\n", " ")) from None
    if root is None:
        return None
    expanded = _expanded_size(root, {})
    if expanded > MAX_NODES:
        raise ConfigError(where, f"expands to more than {MAX_NODES} YAML nodes through aliases", expanded)
    _no_duplicate_keys(root, where)
    try:
        return yaml.SafeLoader(text).get_single_data()
    except yaml.YAMLError as err:  # e.g. a tag that would construct a Python object
        raise ConfigError(where, f"is not valid YAML ({err})".replace("\n", " ")) from None


def _expanded_size(node: yaml.Node, seen: dict[int, int]) -> int:
    """Nodes after alias expansion, counted without expanding (each shared node is sized once)."""
    if id(node) in seen:
        return seen[id(node)]
    seen[id(node)] = 1  # a cycle counts once
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, seen) + _expanded_size(v, seen) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, seen) for v in node.value)
    else:
        size = 1
    seen[id(node)] = size
    return size


def _no_duplicate_keys(node: yaml.Node, where: str, done: set[int] | None = None) -> None:
    done = set() if done is None else done
    if id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            line = node.start_mark.line + 1
            raise ConfigError(where, f"repeats the key {repeated[0]!r} in the mapping at line {line}; "
                              "YAML would silently keep only the last value")
        for key, value in node.value:
            _no_duplicate_keys(key, where, done)
            _no_duplicate_keys(value, where, done)
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            _no_duplicate_keys(value, where, done)
