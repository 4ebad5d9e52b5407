"""The Python API: a notebook user's own trained module and arrays in, the front out, one member exported; the same
study storage and MLflow layout as the command line. Wrong objects raise ValueError with the CLI's one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_digits
from torch import nn

from squeezer.search import compress
from squeezer.search.runtime.ort import OnnxModel


class Mine(nn.Module):
    """A user's model that scales its own input (raw 0-16 pixels)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 16)


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 1, 8, 8).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    parts = {"train": order[:1000], "val": order[1000:1400], "test": order[1400:]}
    return {name: (x[i], y[i]) for name, i in parts.items()}


@pytest.fixture(scope="module")
def trained(digits) -> nn.Module:
    torch.manual_seed(0)
    model, (x, y) = Mine(), digits["train"]
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        optimizer.step()
    return model.eval()


CONFIG = {"name": "notebook", "student": {"family": "teacher"},
          "pipeline": [{"distill": {"epochs": 1}}, {"quantize": {"bits": {"choice": [32, 8]}}}],
          "search": {"sampler": "random", "scheduler": "none"}, "measure": {"repeats": 5, "warmup": 1, "batch": 8}}


def test_compress_my_module_on_my_arrays_then_export_the_recommended_member(tmp_path: Path, digits, trained) -> None:
    result = compress(CONFIG, teacher=trained, train=digits["train"], val=digits["val"], test=digits["test"],
                      trials=2, quiet=True, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                      storage=f"sqlite:///{tmp_path}/optuna.db")
    assert result.front and result.recommended in result.front
    member = result.recommended
    assert member.number == member["number"] and 0 <= member.test_accuracy <= 1 and member["size_bytes"] > 0
    assert member.accuracy > 0.85  # the user's own model, compressed: it kept its accuracy
    readme = result.export(member, tmp_path / "out")
    x, y = digits["test"]  # fed as the user has it: the module scales its own input
    predicted = OnnxModel(readme.parent / "model.onnx").predict(torch.from_numpy(x)).argmax(1).numpy()
    assert (predicted == y).mean() == pytest.approx(member.test_accuracy, abs=1e-6)

    # the command line's layout: one study, one parent run, a child run for the teacher and one per trial
    study = optuna.load_study(study_name="notebook", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("squeezer-notebook").experiment_id])
    assert sorted(r.data.tags["squeezer.role"] for r in runs) == ["study", "teacher", "trial", "trial"]


@pytest.mark.parametrize("arguments, message", [
    ({"teacher": "resnet18"}, "teacher: must be a torch.nn.Module"),
    ({"train": [1, 2, 3]}, "train: must be (x, y) arrays"),
    ({"train": (np.zeros((10, 4)), np.zeros(9))}, "train: y must be one label per sample"),
    ({"val": (np.zeros((10, 4)), np.zeros(10))}, "train: is needed when val or test are given"),
    ({"trials": 0}, "trials: must be an integer >= 1"),
    ({"config": 42}, "config: must be a path"),
])
def test_wrong_objects_raise_value_error_with_one_line(tmp_path: Path, arguments: dict, message: str) -> None:
    arguments = {"config": CONFIG, **arguments}
    with pytest.raises(ValueError) as raised:
        compress(arguments.pop("config"), quiet=True, storage=f"sqlite:///{tmp_path}/o.db", **arguments)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_the_docs_python_api_example_runs_as_written(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "docs" / "own-model-and-data.md").read_text()  # its example
    start = readme.index("import numpy as np, torch\nfrom sklearn.datasets import load_digits")
    (tmp_path / "example.py").write_text(readme[start:readme.index("```", start)])
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "SQUEEZER_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
    printed = [line.split() for line in run.stdout.splitlines()]
    assert any(len(row) == 4 and row[0].isdigit() for row in printed)  # a member: number, accuracies, bytes
    assert (tmp_path / "notebook-model" / "model.onnx").is_file()
