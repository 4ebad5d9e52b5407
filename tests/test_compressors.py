"""Every compressor obeys one contract; the built-ins do what their names promise."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from squeezer import compressors
from squeezer.search.results.report import run_name
from squeezer.compressors import Compressor, CompressorConfig, InvalidConfig, TrialContext
from squeezer.compressors.training import accuracy

from conftest import install_plugin, mlp_student


class CompressorContract:
    """The conformance suite: subclass it with a compressor and a config to run every check on it."""

    compressor: type[Compressor]
    settings: dict = {}

    def make(self) -> Compressor:
        return self.compressor(self.settings)

    def test_input_model_is_untouched(self, ctx: TrialContext, digits) -> None:
        model = mlp_student(digits)
        before = copy.deepcopy(model.state_dict())
        self.make().apply(model, ctx)
        after = model.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)

    def test_output_runs_with_the_same_output_shape(self, ctx: TrialContext, digits) -> None:
        out = self.make().apply(mlp_student(digits), ctx)
        assert out(ctx.val_x[:5]).shape == (5, 10)

    def test_results_repeat_under_a_seed(self, ctx: TrialContext, digits) -> None:
        first = self.make().apply(mlp_student(digits), ctx)(ctx.val_x)
        second = self.make().apply(mlp_student(digits), ctx)(ctx.val_x)
        assert torch.allclose(first, second)

    def test_config_round_trips_through_a_dict(self) -> None:
        config = self.make().config
        assert type(config).from_dict(config.to_dict()) == config

    def test_is_registered_by_name(self) -> None:
        assert compressors.get(self.compressor.name) is self.compressor


class TestDistillContract(CompressorContract):
    compressor = compressors.Distill
    settings = {"epochs": 2}


class TestStructuredPruneContract(CompressorContract):
    compressor = compressors.Prune
    settings = {"ratio": 0.5, "structured": True, "finetune_epochs": 1}


class TestUnstructuredPruneContract(CompressorContract):
    compressor = compressors.Prune
    settings = {"ratio": 0.5, "structured": False, "finetune_epochs": 1}


class TestInt8Contract(CompressorContract):
    compressor = compressors.Quantize
    settings = {"bits": 8}


class TestHalfContract(CompressorContract):
    compressor = compressors.Quantize
    settings = {"bits": 16, "half": "bf16"}


def test_distillation_teaches_the_student(ctx: TrialContext, digits) -> None:
    student = mlp_student(digits, width=32)
    trained = compressors.Distill({"epochs": 8, "lr": 3e-3}).apply(student, ctx)
    assert accuracy(student, ctx.val_x, ctx.val_y) < 0.3  # untrained
    assert accuracy(trained, ctx.val_x, ctx.val_y) > 0.9


def test_distill_reports_per_epoch_curves(ctx: TrialContext, digits) -> None:
    seen = []
    ctx.report = lambda step, metrics: seen.append((step, dict(metrics)))
    compressors.Distill({"epochs": 3}).apply(mlp_student(digits), ctx)
    assert [step for step, _ in seen] == [0, 1, 2]
    assert {"distill.loss", "distill.val_accuracy", "distill.lr", "distill.temperature", "distill.weight.soft",
            "distill.weight.hard", "distill.loss.soft", "distill.loss.hard"} == set(seen[0][1])


@pytest.mark.parametrize("cls, settings, message", [
    (compressors.Distill, {"temperature": 0}, "temperature: must be > 0, but got 0"),
    (compressors.Distill, {"soft_weight": -0.5}, "soft_weight: must be >= 0, but got -0.5"),
    (compressors.Prune, {"ratio": 1.0}, "ratio: must be in [0, 1), but got 1.0"),
    (compressors.Quantize, {"bits": 3}, "bits: must be one of [32, 16, 8, 4, 2] (2 = ternary), but got 3"),
    (compressors.Quantize, {"group_size": 24}, "group_size: must be a power of two in [16, 1024], but got 24"),
    (compressors.Quantize, {"bits": 16, "qat_epochs": 1}, "qat_epochs: needs bits 8, 4 or 2, but got 1"),
    (compressors.LowRank, {"rank_ratio": 0}, "rank_ratio: must be in (0, 1], but got 0"),
    (compressors.Prune, {"importance": "random"},
     "importance: must be one of ['magnitude', 'taylor'], but got 'random'"),
    (compressors.Quantize, {"bitz": 8}, "bitz: unknown setting; known settings are"),
])
def test_configs_are_validated_on_construction(cls, settings: dict, message: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        cls(settings)
    assert str(err.value).startswith(message)


def test_configs_are_frozen() -> None:
    config = compressors.DistillConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.temperature = 0.1  # type: ignore[misc]


def test_unknown_compressor_lists_the_known_ones() -> None:
    with pytest.raises(compressors.UnknownCompressor) as err:
        compressors.get("sqeeze")
    known = "['distill', 'lm_distill', 'lm_prune', 'lm_quantize', 'lowrank', 'prune', 'quantize']"
    assert "'sqeeze'" in str(err.value) and known in str(err.value)


def test_a_plugin_registers_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compressors.registry, "_REGISTRY", dict(compressors.registry._REGISTRY))

    @dataclass(frozen=True)
    class ScaleConfig(CompressorConfig):
        factor: float = 1.0

    @compressors.register
    class Scale(Compressor):
        name = "test-scale"
        Config = ScaleConfig

        def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
            return nn.Sequential(copy.deepcopy(model), nn.Identity())

    assert compressors.get("test-scale") is Scale
    assert "test-scale" in compressors.available()
    # its part of a trial's run name: its name by default, or its own words for its settings
    flat = {"student.family": "mlp", "student.width": 16, "test-scale.factor": 2.0, "quantize.bits": 8}
    assert run_name(3, flat) == "t03 mlp w16 · test-scale · int8"
    Scale.label = lambda self: f"x{self.config.factor:g}"
    assert run_name(3, flat) == "t03 mlp w16 · x2 · int8"


def test_a_third_party_plugin_is_found_through_its_entry_point(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compressors.registry, "_REGISTRY", dict(compressors.registry._REGISTRY))
    install_plugin(tmp_path, monkeypatch, "squeezer_plugin_demo",
                   "from squeezer.compressors import Distill\n"
                   "class Gentle(Distill):\n"
                   "    name = 'gentle'\n",
                   "squeezer.compressors", "gentle = squeezer_plugin_demo:Gentle")
    assert compressors.get("gentle").__name__ == "Gentle"
    assert "gentle" in compressors.available()


def test_without_training_a_step_keeps_its_shape_changes_and_distillation_drops_out() -> None:
    assert compressors.Prune({"ratio": 0.5, "finetune_epochs": 3}).untrained().config == \
        compressors.PruneConfig(ratio=0.5, finetune_epochs=0)
    assert compressors.LowRank({"finetune_epochs": 2}).untrained().config.finetune_epochs == 0
    assert compressors.Quantize({"bits": 4, "qat_epochs": 2}).untrained().config.qat_epochs == 0
    assert compressors.Distill({"epochs": 5}).untrained() is None
