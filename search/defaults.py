"""Where Squeezer keeps things unless told otherwise (a module of its own so the CLI starts without torch)."""

#: Optuna studies: a local SQLite file in the working directory, so a killed study resumes by name.
DEFAULT_STORAGE = "sqlite:///squeezer.db"
#: MLflow's own default for 3.x: an embedded SQLite store in the working directory.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
