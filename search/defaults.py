"""Where Squeezer keeps things unless told otherwise (a module of its own so the CLI starts without torch)."""

import os
from pathlib import Path

#: Optuna studies: a local SQLite file in the working directory, so a killed study resumes by name.
DEFAULT_STORAGE = "sqlite:///squeezer.db"
#: MLflow's own default for 3.x: an embedded SQLite store in the working directory.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def cache_dir() -> Path:
    """Where trained teachers, their outputs, decoded images and split data are kept: ``$SQUEEZER_CACHE`` or
    ``~/.cache/squeezer``."""
    return Path(os.environ.get("SQUEEZER_CACHE", Path.home() / ".cache" / "squeezer"))
