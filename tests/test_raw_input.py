"""The deployed model takes the user's raw input: the standardisation training used (per feature column by default)
is part of the exported ONNX graph and of the torch export, and their metadata say what the model takes. Fed the raw
test rows, an exported Pareto member scores exactly its logged test accuracy, in both runtimes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from mlflow.tracking import MlflowClient

from squeezer.search import data
from squeezer.search.cli import main
from squeezer.search.errors import ConfigError
from squeezer.search.runtime import export
from squeezer.search.runtime.eager import EagerModel
from squeezer.search.runtime.ort import OnnxModel
from squeezer.search.runtime.preprocess import onnx_metadata

from conftest import load_data, write_config

SCALES = np.array([1e-3, 1.0, 50.0, 1e3, 2e4, 0.2])  # columns on wildly different scales, as tables have them


def table(where: Path, rows: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, len(SCALES)))
    y = np.where(z[:, 0] + z[:, 3] - z[:, 4] > 0, "good", "bad")
    path = where / f"table{seed}.npz"
    np.savez(path, X=(z * SCALES + 10 * SCALES).astype(np.float32), y=y)
    return path


def study(where: Path, runtime: str) -> dict:
    return {
        "name": "table", "seed": 0,
        "data": {"path": str(table(where, 600, 0)), "test_path": str(table(where, 200, 1)), "val_fraction": 0.2},
        "teacher": {"family": "mlp", "arch": {"depth": 1, "width": 32}, "epochs": 20, "lr": 0.01},
        "student": {"family": "mlp", "depth": 1, "width": {"int": [4, 16]}},
        "pipeline": [{"distill": {"epochs": 10, "lr": 0.01}}, {"quantize": {"bits": {"choice": [32, 8]}}}],
        "search": {"sampler": "random", "trials": 2, "scheduler": "none"},
        "measure": {"runtime": runtime, "repeats": 5, "warmup": 1, "batch": 8},
    }


def test_features_are_standardised_per_column_by_default() -> None:
    x = np.stack([np.arange(10.0), 1000 + 100 * np.arange(10.0)], 1).astype(np.float32)
    splits = data.split((x, np.arange(10) % 2), None, 0.2, 0.2, 0, None)
    assert splits.standardize.mode == "feature" and len(splits.standardize.mean) == 2
    assert abs(float(splits.train_x[:, 1].mean())) < 1e-5 and abs(float(splits.train_x[:, 1].std()) - 1) < 0.2
    assert np.allclose(splits.standardize(splits.val_raw.numpy()), splits.val_x.numpy(), atol=1e-6)


@pytest.mark.parametrize("runtime, fmt, deployed", [("onnxruntime", "onnx", "model.onnx"),
                                                     ("torch", "torch", "student.pt")])
def test_an_exported_member_fed_raw_rows_scores_its_logged_test_accuracy(
        tmp_path: Path, capsys, runtime: str, fmt: str, deployed: str) -> None:
    config = write_config(tmp_path, study(tmp_path, runtime))
    assert main(["search", str(config)]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # absolute: MLflow caches stores by URI
    experiment = client.get_experiment_by_name("squeezer-table")
    member = client.search_runs([experiment.experiment_id], "tags.pareto = 'true'")[0]
    logged = member.data.metrics["test_accuracy"]
    assert logged > 0.8  # the rule is learnable once each column is on its own scale
    out = tmp_path / "handed-over"
    assert main(["export", "--study-name", "table", "--trial", member.data.tags["squeezer.trial"], "--out", str(out),
                 "--format", fmt]) == 0

    with np.load(tmp_path / "table1.npz") as raw:  # the user's own test file, untouched
        x, names = raw["X"], raw["y"]
    if fmt == "onnx":
        model = OnnxModel(out / deployed)
        meta = onnx_metadata(onnx.load(str(out / deployed)))
        assert meta["input"] == "input" and meta["input_shape"] == ["N", 6] and meta["dtype"] == "float32"
        assert meta["classes"] == ["bad", "good"] and meta["preprocessing"]["standardize"] == "feature"
        assert len(meta["preprocessing"]["mean"]) == 6
        classes = np.array(meta["classes"])
    else:
        model = EagerModel(export.load(out), out / deployed)
        classes = np.array(export.spec(out).classes)
        assert json.loads((out / "architecture.json").read_text())["inputs"]["spec"]["classes"] == ["bad", "good"]
    predicted = model.predict(torch.from_numpy(x)).argmax(1).numpy()
    assert (classes[predicted] == names).mean() == pytest.approx(logged, abs=1e-6)
    readme = (out / "README.md").read_text()
    assert "raw" in readme and "['bad', 'good']" in readme  # it says what to feed and what comes out


def csv_table(where: Path, rows: int, seed: int, fmt: str = "csv") -> Path:
    """The same kind of table as a CSV or Parquet file, as users export them from a spreadsheet or a database."""
    import pandas as pd

    with np.load(table(where, rows, seed)) as arrays:
        frame = pd.DataFrame(arrays["X"], columns=[f"f{i}" for i in range(len(SCALES))]).assign(outcome=arrays["y"])
    path = where / f"table{seed}.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_numeric_csv_or_parquet_table_is_read_by_its_columns(tmp_path: Path, fmt: str) -> None:
    path = csv_table(tmp_path, 100, 0, fmt)
    splits = load_data({"path": str(path), "label_column": "outcome", "val_fraction": 0.2}, seed=0)
    assert splits.tokens is None and splits.input_shape == (6,) and splits.classes == ("bad", "good")
    assert len(splits.standardize.mean) == 6  # per column
    picked = load_data({"path": str(path), "label_column": "outcome", "feature_columns": ["f0", "f3"]}, seed=0)
    assert picked.input_shape == (2,)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_table_larger_than_memory_is_read_in_chunks_into_a_mapped_array_with_the_same_values(
        tmp_path: Path, fmt: str, monkeypatch) -> None:
    from squeezer.search.data import tables

    path = csv_table(tmp_path, 100, 0, fmt)
    spec = {"path": str(path), "label_column": "outcome", "val_fraction": 0.2}
    whole = load_data(spec, seed=0)
    monkeypatch.setattr(tables, "STREAM_BYTES", 0)  # "larger than memory": any size
    monkeypatch.setattr(tables, "STREAM_ROWS", 7)
    streamed = load_data(spec, seed=0)
    assert streamed.classes == whole.classes and torch.equal(streamed.test_y, whole.test_y)
    for name in ("train_x", "val_x", "test_x", "val_raw", "test_raw"):
        assert torch.allclose(getattr(streamed, name), getattr(whole, name), rtol=1e-5, atol=1e-5), name
    [cached] = (tmp_path / "cache" / "tables").glob("*[0-9a-f].npy")
    assert np.load(cached, mmap_mode="r").shape == (100, 6)


def test_a_bad_row_deep_in_a_streamed_table_is_named_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    from squeezer.search.data import tables

    path = csv_table(tmp_path, 100, 0, "csv")
    lines = path.read_text().splitlines()
    lines[60] = "nan," + lines[60].split(",", 1)[1]  # the 60th data row
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(tables, "STREAM_BYTES", 0)
    monkeypatch.setattr(tables, "STREAM_ROWS", 7)
    with pytest.raises(ConfigError, match="row 60"):
        load_data({"path": str(path), "label_column": "outcome"}, seed=0)
    assert not (tmp_path / "cache").exists()


def test_an_exported_member_of_a_csv_table_study_takes_the_csv_rows(tmp_path: Path) -> None:
    import pandas as pd

    config = study(tmp_path, "onnxruntime")
    config["data"] = {"path": str(csv_table(tmp_path, 600, 0)), "test_path": str(csv_table(tmp_path, 200, 1)),
                      "label_column": "outcome", "val_fraction": 0.2}
    assert main(["search", str(write_config(tmp_path, config))]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    member = client.search_runs([client.get_experiment_by_name("squeezer-table").experiment_id],
                                "tags.pareto = 'true'")[0]
    assert main(["export", "--study-name", "table", "--trial", member.data.tags["squeezer.trial"], "--out",
                 str(tmp_path / "out")]) == 0
    rows = pd.read_csv(tmp_path / "table1.csv")
    x = torch.from_numpy(rows.drop(columns="outcome").to_numpy(dtype=np.float32))
    classes = np.array(onnx_metadata(onnx.load(str(tmp_path / "out" / "model.onnx")))["classes"])
    predicted = classes[OnnxModel(tmp_path / "out" / "model.onnx").predict(x).argmax(1).numpy()]
    assert (predicted == rows["outcome"].to_numpy()).mean() == pytest.approx(member.data.metrics["test_accuracy"],
                                                                             abs=1e-6)
