"""Datasets load by name or from a user's file; splits are fixed by seed and never overlap; teachers are cached."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezer.search import data
from squeezer.search.errors import ConfigError
from squeezer.search.config.teacher_section import TeacherSpec
from squeezer.search.trial.teacher import cache_dir, get_teacher
from conftest import load_data


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_files_read_back_exactly(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 4))
    write_idx(tmp_path / "x.gz", images)
    assert np.array_equal(data.read_idx(tmp_path / "x.gz"), images)


def test_any_directory_of_idx_files_loads_as_fashion_mnist(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, size=(n, 6, 6)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 3, size=n))
    splits = load_data({"name": "fashion_mnist", "dir": str(tmp_path), "val_fraction": 0.2}, seed=0)
    assert splits.input_shape == (1, 6, 6)
    assert (len(splits.train_x), len(splits.val_x), len(splits.test_x)) == (40, 10, 20)  # the t10k files are test


def test_a_missing_idx_directory_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        load_data({"name": "fashion_mnist", "dir": str(tmp_path)}, seed=0)


def test_user_npz_with_separate_test_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", X=rng.normal(size=(100, 12)), y=rng.integers(0, 4, 100))
    np.savez(tmp_path / "test.npz", X=rng.normal(size=(30, 12)), y=rng.integers(0, 4, 30))
    splits = load_data({"path": str(tmp_path / "train.npz"), "test_path": str(tmp_path / "test.npz")}, seed=0)
    assert splits.input_shape == (12,) and len(splits.test_x) == 30 and len(splits.train_x) == 90


def test_npz_without_labels_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", X=np.zeros((4, 2)))
    with pytest.raises(ConfigError, match=r"must hold arrays X and y; missing \['y'\]"):
        load_data({"path": str(tmp_path / "bad.npz")}, seed=0)


def test_splits_are_disjoint_and_fixed_by_seed(digits: data.Splits) -> None:
    again = load_data({"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2}, seed=0)
    other = load_data({"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2}, seed=1)
    assert torch.equal(digits.val_x, again.val_x) and not torch.equal(digits.val_x, other.val_x)
    rows = [{tuple(r.flatten().tolist()) for r in part} for part in (digits.train_x, digits.val_x, digits.test_x)]
    assert len(digits.train_x) + len(digits.val_x) + len(digits.test_x) == 1797
    # digits has a few duplicate images; the splits share no more than those
    assert len(rows[0] & rows[1]) + len(rows[0] & rows[2]) + len(rows[1] & rows[2]) <= 5


def test_the_teacher_is_trained_once_then_loaded_from_the_cache(digits: data.Splits, capsys) -> None:
    spec = TeacherSpec("mlp", {"depth": 1, "width": 32}, epochs=2)
    first = get_teacher(spec, digits, seed=0, batch_size=64)
    assert "epoch 2/2" in capsys.readouterr().err
    second = get_teacher(spec, digits, seed=0, batch_size=64)
    assert "loaded from cache" in capsys.readouterr().err
    assert torch.equal(first(digits.val_x), second(digits.val_x))
    assert len(list((cache_dir() / "teachers").glob("*.pt"))) == 1


def test_a_users_teacher_checkpoint_loads_with_weights_only(digits: data.Splits, tmp_path: Path) -> None:
    spec = TeacherSpec("mlp", {"depth": 1, "width": 32}, epochs=1)
    trained = get_teacher(spec, digits, seed=0, batch_size=64)
    torch.save(trained.state_dict(), tmp_path / "mine.pt")
    loaded = get_teacher(replace(spec, path=tmp_path / "mine.pt"), digits, seed=0, batch_size=64)
    assert torch.equal(trained(digits.val_x), loaded(digits.val_x))
    with pytest.raises(ConfigError, match=r"does not fit the declared family/arch: missing keys \['5.bias'"):
        get_teacher(replace(spec, arch={"depth": 2}, path=tmp_path / "mine.pt"), digits, seed=0, batch_size=64)


def test_npz_labels_must_be_class_indices(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", X=np.zeros((4, 2)), y=np.array([0.5, 1.0, 2.0, 0.0]))
    with pytest.raises(ConfigError, match=r"y must hold class indices 0..K-1 \(integers\) or class names"):
        load_data({"path": str(tmp_path / "bad.npz")}, seed=0)


def test_class_names_map_to_the_same_indices_in_the_train_and_test_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", X=rng.normal(size=(60, 3)), y=np.array(["cat", "dog", "emu"] * 20))
    np.savez(tmp_path / "test.npz", X=rng.normal(size=(4, 3)), y=np.array(["emu", "dog", "emu", "cat"]))
    splits = load_data({"path": str(tmp_path / "train.npz"), "test_path": str(tmp_path / "test.npz")}, seed=0)
    assert splits.test_y.tolist() == [2, 1, 2, 0] and splits.num_classes == 3
    assert splits.classes == ("cat", "dog", "emu")  # index i is class i (the study prints the mapping)


@pytest.mark.parametrize("content, settings, key", [
    ("a,b,label\n1,2,x\n3,4,y\n", {"label_column": "outcome"}, "data.label_column"),
    ("a,b,label\n1,2,x\n3,4,y\n", {"feature_columns": ["a", "z"]}, "data.feature_columns"),
    ("a,b,label\n1,2,x\n3,4,y\n", {"feature_columns": "a"}, "data.feature_columns"),
    ("a,b,label\n" + "1,,x\n3,4,y\n" * 10, {"feature_columns": ["a", "b"]}, "data.path"),
    ("a,b,label\n" + "1,red,x\n3,blue,y\n" * 10, {"feature_columns": ["a", "b"]}, "data.feature_columns"),
])
def test_a_table_that_cannot_work_names_its_column(tmp_path: Path, content: str, settings: dict, key: str) -> None:
    from squeezer.search.config.experiment import parse_config

    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config = parse_config({"name": "t", "data": {"path": str(tmp_path / "t.csv"), **settings},
                               "teacher": {"family": "mlp"}, "student": {"family": "mlp"}})
        data.load(config.data, seed=0)
