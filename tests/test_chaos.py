"""Killed with SIGKILL at random moments and resumed each time, a study loses nothing (short runs of the script)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("chaos", REPO / "experiments" / "chaos.py")
chaos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chaos)


@pytest.mark.parametrize("backend, trials", [("optuna", 12), pytest.param("ray", 60, marks=pytest.mark.slow)])
def test_three_kills_lose_no_finished_trial(tmp_path: Path, backend: str, trials: int) -> None:
    result = chaos.run_chaos(backend, kills=3, trials=trials, workdir=tmp_path, seed=1)
    assert all(result["checks"].values())  # run_chaos raises on the first broken check; this names them
    assert result["complete"] + result["failed"] >= trials
