"""The README's Ray command, as a user runs it: `squeezer search experiments/digits.yaml --backend ray`, in a fresh
process, once per sampler the config allows (Tune pickles its searcher, and with it the sampler). The shipped file's
own sampler runs in the default suite, the others in the slow set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from squeezer.search.config.plugins import SAMPLERS

from conftest import DIGITS_YAML, digits_config

SQUEEZER = Path(sys.executable).parent / "squeezer"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every sampler's study: the teacher is trained by the first and read from its cache after."""
    return tmp_path_factory.mktemp("readme-ray")


SHIPPED = digits_config()["search"]["sampler"]


@pytest.mark.parametrize("sampler", [pytest.param(s, marks=[] if s == SHIPPED else [pytest.mark.slow])
                                     for s in sorted(SAMPLERS)])
def test_the_readme_ray_command_runs_the_shipped_experiment_with_every_sampler(sampler: str, workdir: Path) -> None:
    config = digits_config()
    if sampler == SHIPPED:
        experiment = DIGITS_YAML  # the shipped file itself
    else:
        experiment = workdir / f"digits-{sampler}.yaml"
        search = {k: v for k, v in config["search"].items() if k != "population_size"}  # NSGA-II's own setting
        experiment.write_text(yaml.safe_dump({**config, "search": {**search, "sampler": sampler}}))
    name = f"digits-{sampler}"
    done = subprocess.run([str(SQUEEZER), "search", str(experiment), "--backend", "ray", "--trials", "2",
                           "--study-name", name], cwd=workdir, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SQUEEZER_CACHE": str(workdir / "cache")})
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    assert "Traceback" not in done.stderr
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'squeezer.db'}")
    assert [t.state.name for t in study.trials].count("COMPLETE") == 2
    assert "Pareto front (2 of 2 completed trials" in done.stdout
