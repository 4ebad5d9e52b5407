"""Search: studies, the trial runner, MLflow tracking and the Pareto front; wires spaces and compressors together.

``from squeezer.search import compress`` is the Python API (``squeezer.search.api``), imported on first use so that
the command line starts without loading torch."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("compress", "Result", "Member"):
        from squeezer.search import api

        return getattr(api, name)
    raise AttributeError(name)
