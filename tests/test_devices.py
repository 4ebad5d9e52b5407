"""Where training runs: the device a study trains on, its precision, and trials sharing GPUs.

The CI has no GPU: these specifications run on the CPU (device resolution against a machine with and without GPUs,
bf16 and fp16 training on the CPU, the jobs' GPUs, Ray packing trials onto declared GPUs). Those that need CUDA are
marked ``gpu`` and skip without it; run them on a GPU machine with ``pytest -m gpu``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from squeezer.compressors import TrialContext
from squeezer.compressors.device import Device, device_of
from squeezer.compressors.training import Optim, accuracy, fit, hard_labels
from squeezer.search import hardware, models
from squeezer.search.config.experiment import parse_config
from squeezer.search.errors import ConfigError
from squeezer.search.runner import run_study

from conftest import digits_config

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def with_gpus(monkeypatch: pytest.MonkeyPatch, count: int, bf16: bool = True) -> None:
    """This machine, as if torch saw ``count`` GPUs (without bfloat16 when ``bf16`` is False)."""
    monkeypatch.setattr(hardware, "gpus", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")


def test_auto_trains_on_the_gpu_where_torch_sees_one_else_on_the_cpu() -> None:
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")  # what this machine has
    assert hardware.training_device("auto", "fp32") == Device(expected, "fp32")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="training.device: needs a CUDA GPU, and torch sees no CUDA GPU"):
            hardware.training_device("cuda", "fp32")


def test_auto_takes_the_gpu_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with_gpus(monkeypatch, 1)
    assert hardware.resolve("auto", "training.device") == torch.device("cuda")
    assert hardware.resolve("cpu", "training.device") == torch.device("cpu")


def test_a_gpu_the_machine_does_not_have_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with_gpus(monkeypatch, 1)
    with pytest.raises(ConfigError, match=r"names a GPU this machine does not have: it has 1 \(cuda:0 to cuda:0\)"):
        hardware.resolve("cuda:7", "training.device")


def test_bf16_on_a_gpu_without_it_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with_gpus(monkeypatch, 1, bf16=False)
    with pytest.raises(ConfigError, match="training.precision: bf16 needs a GPU .* Tesla V100 does not: use fp16"):
        hardware.training_device("cuda", "bf16")
    assert hardware.training_device("cuda", "fp16").precision == "fp16"


def test_measuring_on_a_gpu_needs_the_runtimes_gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    with_gpus(monkeypatch, 1)
    config = digits_config() | {"measure": {"device": "cuda"}}
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        with pytest.raises(ConfigError, match="measure.device: ONNX Runtime needs onnxruntime-gpu"):
            parse_config(config, base_dir=Path("experiments"))
    config["measure"]["runtime"] = "torch"
    config["pipeline"] = ["distill", "prune", {"quantize": {"bits": 8}}]
    with pytest.raises(ConfigError, match=r"quantize.bits: the torch runtime runs \[32, 16\] bits on a GPU"):
        parse_config(config, base_dir=Path("experiments"))


def test_jobs_are_spread_over_the_gpus_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    with_gpus(monkeypatch, 2)
    assert [hardware.for_job("auto", job) for job in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert hardware.for_job("cuda:1", 2) == "cuda:1"  # a GPU the user named: every job on it
    assert hardware.for_job("cpu", 1) == "cpu"
    with_gpus(monkeypatch, 1)
    assert hardware.for_job("auto", 3) == "auto"


def test_the_device_does_not_change_the_studys_recipe() -> None:
    base = parse_config(digits_config(), base_dir=Path("experiments"))
    on_cpu_ = parse_config(digits_config() | {"training": {"device": "cpu", "threads": 1}}, base_dir=Path("."))
    in_bf16 = parse_config(digits_config() | {"training": {"precision": "bf16"}}, base_dir=Path("."))
    assert on_cpu_.digest() == base.digest()  # resuming it on a GPU machine continues the study
    assert in_bf16.digest() != base.digest()  # another precision trains other students


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_cpu(digits, precision: str) -> None:  # noqa: ANN001 - a fixture
    torch.manual_seed(0)
    model = models.build({"family": "mlp", "depth": 1, "width": 64}, digits.input_shape, digits.num_classes)
    ctx = TrialContext(digits.train_x, digits.train_y, digits.val_x, digits.val_y, batch_size=64,
                       device=Device(torch.device("cpu"), precision))
    before = accuracy(model, digits.val_x, digits.val_y)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what autocast computes in: not fp32
        assert model(digits.val_x[:2]).dtype == torch.bfloat16
    fit(model, ctx, hard_labels(model, ctx), Optim(epochs=3, lr=3e-3), stage="train")
    assert next(model.parameters()).dtype == torch.float32  # the weights stay fp32; only the passes autocast
    assert accuracy(model, digits.val_x, digits.val_y) > max(0.8, before)


def test_a_study_trains_in_bf16_and_says_where(tmp_path: Path) -> None:
    config = digits_config()
    config["training"] = {"device": "auto", "precision": "bf16"}
    config["pipeline"] = [{"distill": {"epochs": 5, "lr": 0.003}}]
    lines: list[str] = []
    result = run_study(parse_config(config, base_dir=Path(__file__).parents[1] / "experiments"), trials=2,
                       storage=f"sqlite:///{tmp_path}/s.db", tracking_uri=f"sqlite:///{tmp_path}/m.db",
                       out=lines.append)
    where = "training on cuda:0" if torch.cuda.is_available() else "training on cpu ("  # auto: what the machine has
    assert any(line.startswith(where) and line.endswith("bf16") for line in lines), lines
    assert all(t.state.name == "COMPLETE" for t in result.study.trials)
    assert max(t.values[0] for t in result.study.trials) > 0.8


# -- on a CUDA GPU (pytest -m gpu) -------------------------------------------------------------------------------


@CUDA
@pytest.mark.gpu
def test_training_on_the_gpu_matches_the_cpu(digits) -> None:  # noqa: ANN001 - a fixture
    results = {}
    for where in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = models.build({"family": "cnn", "channels": [8, 16]}, (1, 8, 8), digits.num_classes)
        x = digits.train_x.reshape(-1, 1, 8, 8)
        ctx = TrialContext(x, digits.train_y, digits.val_x.reshape(-1, 1, 8, 8), digits.val_y, batch_size=64,
                           device=hardware.training_device(where, "bf16" if where == "cuda" else "fp32"))
        fit(model, ctx, hard_labels(model, ctx), Optim(epochs=4, lr=3e-3), stage="train")
        assert device_of(model).type == where
        results[where] = accuracy(model, ctx.val_x, ctx.val_y)
    assert abs(results["cuda"] - results["cpu"]) < 0.05, results


@CUDA
@pytest.mark.gpu
def test_a_study_on_the_gpu_with_two_jobs_measured_on_it(tmp_path: Path) -> None:
    config = digits_config()
    config["training"] = {"device": "cuda", "precision": "bf16"}
    config["measure"] = {"runtime": "torch", "device": "cuda"}
    config["pipeline"] = [{"distill": {"epochs": 3}}, {"prune": {"ratio": {"float": [0.0, 0.5]}}}]
    config["search"] = {**config.get("search", {}), "jobs": 2}
    lines: list[str] = []
    result = run_study(parse_config(config, base_dir=Path(__file__).parents[1] / "experiments"), trials=4,
                       storage=f"sqlite:///{tmp_path}/s.db", tracking_uri=f"sqlite:///{tmp_path}/m.db",
                       out=lines.append)
    assert any(line.startswith("training on cuda:0") for line in lines), lines
    finished = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(finished) == 4 and max(t.values[0] for t in finished) > 0.8

