"""Bad input gets one clear message naming the problem, exit code 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from squeezer.compressors.quantize.compressor import QuantizeConfig
from squeezer.search.cli import main
from squeezer.search.config.experiment import load_config
from squeezer.search.config.objectives import parse_constraints

from conftest import DIGITS_YAML, digits_config, write_config


def mutate(change) -> dict:
    config = digits_config()
    change(config)
    return config


BAD = {
    "malformed yaml": ("name: [unclosed", "is not valid YAML"),
    "not a mapping": ("- just\n- a list\n", "<config>: must be a YAML mapping"),
    "unknown top-level key": (mutate(lambda c: c.update(studnet={})), "unknown key 'studnet'"),
    "inverted range": (mutate(lambda c: c["student"].update(depth={"int": [3, 1]})),
                       "student.depth: `low <= high` must hold, but got '(low=3, high=1)'"),
    "range outside the compressor's domain": (
        mutate(lambda c: c["pipeline"][1]["prune"].update(ratio={"float": [0.5, 1.5]})),
        "prune.ratio: must be in [0, 1), but got 1.5"),
    "unknown compressor": (mutate(lambda c: c["pipeline"].append({"sqeeze": {}})),
                           "unknown compressor 'sqeeze'; known compressors are "
                           "['distill', 'lm_distill', 'lm_prune', 'lm_quantize', 'lowrank', 'prune', 'quantize']"),
    "unknown compressor setting": (mutate(lambda c: c["pipeline"][2]["quantize"].update(bitz=8)),
                                   "quantize.bitz: unknown setting"),
    "unknown student setting": (mutate(lambda c: c["student"].update(heads=4)),
                                "student.heads: is not a setting of family 'mlp'"),
    "missing data file": (mutate(lambda c: c.update(data={"path": "nowhere.npz"})),
                          "data.path: file not found"),
    "missing teacher file": (mutate(lambda c: c["teacher"].update(path="teacher.pt")),
                             "teacher.path: file not found"),
    "unknown objective": (mutate(lambda c: c.update(objectives={"acc": "maximize"})),
                          "objectives.acc: unknown metric"),
    "unknown training key": (mutate(lambda c: c.update(training={"batchsize": 64})),
                             "training: unknown key 'batchsize'"),
    "zero batch size": (mutate(lambda c: c.update(training={"batch_size": 0})),
                        "training.batch_size: must be an integer >= 1, but got 0"),
    "quote in the name": (mutate(lambda c: c.update(name="it's")), "name: is required: letters, digits"),
    "4 bits in the torch runtime": (
        mutate(lambda c: (c["pipeline"][2]["quantize"].update(bits={"choice": [8, 4]}),
                          c.update(measure={"runtime": "torch"}))),
        "quantize.bits: the torch runtime on CPU runs [32, 16, 8] bits; 4 and 2 (ternary) need "
        "measure.runtime: onnxruntime"),
    "bf16 in ONNX Runtime": (mutate(lambda c: c["pipeline"][2]["quantize"].update(bits=16, half="bf16")),
                             "quantize.half: ONNX Runtime on CPU runs ['fp16']; bf16 needs measure.runtime: torch"),
    "unknown runtime": (mutate(lambda c: c.update(measure={"runtime": "tensorrt"})),
                        "measure.runtime: must be one of ['onnxruntime', 'torch', 'onnxruntime-genai'], "
                        "but got 'tensorrt'"),
    "unknown layer for layer_bits": (
        mutate(lambda c: c["pipeline"][2]["quantize"].update(layer_bits={"9": 8})),
        "quantize.layer_bits.9: is not a weight layer; the student's are"),
    "bad sampler": (mutate(lambda c: c["search"].update(sampler="grid")),
                    "search.sampler: must be one of ['squeezer', 'nsga2', 'tpe', 'random']"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_config_exits_2_with_a_clear_message_and_writes_nothing(case: str, tmp_path: Path, capsys) -> None:
    config, message = BAD[case]
    path = write_config(tmp_path, config)
    before = set(tmp_path.iterdir())
    assert main(["search", str(path), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("squeezer: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert set(tmp_path.iterdir()) == before  # no mlflow.db, no squeezer.db, no artifacts


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main(["search", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_the_shipped_experiments_are_valid() -> None:
    for path in sorted((DIGITS_YAML.parent).glob("*.yaml")):
        config = load_config(path)
        assert config.name and config.pipeline


def test_pareto_of_a_missing_study_database_creates_nothing(tmp_path: Path, capsys) -> None:
    assert main(["pareto", "--study-name", "digits", "--storage", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "no such database file" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_a_study_name_with_odd_characters_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["search", str(DIGITS_YAML), "--study-name", "a'b", "--trials", "1"]) == 2
    assert "--study-name: is required: letters, digits" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_storage_that_cannot_be_opened_is_bad_input(tmp_path: Path, capsys) -> None:
    # No server listens on port 1; without the driver installed the message says which one to install.
    assert main(["search", str(DIGITS_YAML), "--trials", "1", "--storage", "postgresql://nobody@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("squeezer: error: --storage: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_layer_bits_may_name_a_layer_by_a_bare_number_as_the_readme_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    bare = DIGITS_YAML.read_text().replace("bits: {choice: [32, 16, 8]}", "bits: 8\n      layer_bits: {3: 32}")
    path.write_text(bare)
    quantize = next(step for step in load_config(path).pipeline if step.name == "quantize")
    assert QuantizeConfig.from_dict({"bits": 8, "layer_bits": {3: 32}}).layer_bits == {"3": 32}
    assert quantize.space  # parsed; the layer is checked against the student before training


def test_one_metric_may_have_both_a_floor_and_a_ceiling() -> None:
    assert [str(c) for c in parse_constraints({"size_bytes": {"min": 1000, "max": 50000}})] == \
        ["size_bytes <= 50000", "size_bytes >= 1000"]
