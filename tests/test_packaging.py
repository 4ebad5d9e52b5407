"""Installed, Squeezer is one import name: `squeezer` (its folders become squeezer.search/spaces/compressors)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from conftest import REPO


def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("squeezer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"squeezer"}
    assert {"squeezer/search/cli.py", "squeezer/spaces/knobs.py", "squeezer/compressors/base.py"} <= set(names)
    sources = {str(p.relative_to(REPO)) for folder in ("search", "spaces", "compressors")
               for p in (REPO / folder).rglob("*.py")}
    assert {f"squeezer/{s}" for s in sources} <= set(names)  # every subpackage (backends, data, distill, ...)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "squeezer = squeezer.search.cli:main" in entry_points


def test_the_editable_install_imports_the_same_way(tmp_path: Path) -> None:
    probe = ("import importlib.util, squeezer.search.cli, squeezer.compressors as c;"
             "print(squeezer.search.cli.__file__);"
             "print([n for n in ('search', 'spaces', 'compressors') if importlib.util.find_spec(n)]);"
             "print(c.available())")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert Path(out[0]) == REPO / "search" / "cli.py"  # the checkout's own files, not a copy
    assert out[1] == "[]"  # no generic top-level names leak into site-packages
    assert out[2] == "['distill', 'lm_distill', 'lm_prune', 'lm_quantize', 'lowrank', 'prune', 'quantize']"


def locked() -> dict[str, str]:
    """The lock's exact versions (constraints.txt), by normalised name."""
    pins = [line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


@pytest.mark.skipif(bool(os.environ.get("SQUEEZER_UNLOCKED")), reason="make test-latest: the newest releases, unlocked")
def test_the_environment_is_the_locked_one() -> None:
    lock = locked()
    assert {"optuna", "ray", "torch", "transformers", "mlflow", "scikit-learn"} <= set(lock)
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    drift = {name: (version, installed.get(name)) for name, version in lock.items()
             if installed.get(name, "").split("+")[0] != version}
    assert not drift, f"installed versions differ from constraints.txt (locked, installed): {drift}"


def test_the_lock_pins_every_dependency_exactly_once() -> None:
    lines = [line for line in (REPO / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all(line.count("==") == 1 and ";" not in line and "@" not in line for line in lines), lines
    assert len({canonicalize_name(line.split("==")[0]) for line in lines}) == len(lines)
    makefile, ci = (REPO / "Makefile").read_text(), (REPO / ".ci" / "run").read_text()
    assert "-c $(LOCK)" in makefile and "LOCK   := constraints.txt" in makefile and "make test" in ci


def test_transformers_imports_in_a_fresh_interpreter_of_the_venv(tmp_path: Path) -> None:
    """A user's notebook or an export's reload snippet imports transformers without passing through Squeezer."""
    probe = "from transformers import LlamaConfig, AutoModelForCausalLM; print(LlamaConfig().model_type)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "llama"
