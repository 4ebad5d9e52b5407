"""Pruning reaches its ratio and really shrinks the saved model; quantized models are smaller and still accurate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from squeezer import compressors
from squeezer.compressors.prune import sparsity
from squeezer.compressors.training import accuracy
from squeezer.search.trial.metrics import count_params, saved_size
from squeezer.search.runtime import eager

from conftest import cnn_student, mlp_student


def hidden_widths(model: nn.Module) -> list[int]:
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return [m.out_features if isinstance(m, nn.Linear) else m.out_channels for m in layers[:-1]]


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_structured_pruning_removes_the_requested_fraction_of_neurons(ctx, digits, ratio: float) -> None:
    model = mlp_student(digits, width=64, depth=2)
    pruned = compressors.Prune({"ratio": ratio, "structured": True}).apply(model, ctx)
    assert hidden_widths(pruned) == [round(64 * (1 - ratio))] * 2
    assert pruned(ctx.val_x[:3]).shape == (3, 10)


def test_structured_pruning_removes_conv_channels_and_their_batchnorm(ctx, digits) -> None:
    pruned = compressors.Prune({"ratio": 0.5, "structured": True}).apply(cnn_student(digits), ctx)
    assert hidden_widths(pruned) == [4, 8, 16]
    assert [m.num_features for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)] == [4, 8]


def test_structured_pruning_shrinks_the_saved_file(ctx, digits, tmp_path: Path) -> None:
    model = mlp_student(digits, width=128)
    pruned = compressors.Prune({"ratio": 0.5, "structured": True}).apply(model, ctx)
    before, after = saved_size(model, tmp_path / "a.pt"), saved_size(pruned, tmp_path / "b.pt")
    assert after < 0.45 * before  # the 128x128 middle layer keeps a quarter of its weights
    assert count_params(pruned) < 0.45 * count_params(model)


def test_unstructured_pruning_reaches_the_ratio_and_leaves_a_plain_state_dict(ctx, digits) -> None:
    pruned = compressors.Prune({"ratio": 0.6, "structured": False, "finetune_epochs": 1}).apply(
        mlp_student(digits), ctx)
    assert sparsity(pruned) == pytest.approx(0.6, abs=0.01)  # fine-tuning keeps pruned weights at zero
    assert not any(k.endswith(("_orig", "_mask")) for k in pruned.state_dict())


def test_finetuning_recovers_accuracy_after_heavy_pruning(ctx, digits) -> None:
    trained = compressors.Distill({"epochs": 8, "lr": 3e-3}).apply(mlp_student(digits, width=64), ctx)
    cut = compressors.Prune({"ratio": 0.8, "structured": True}).apply(trained, ctx)
    healed = compressors.Prune({"ratio": 0.8, "structured": True, "finetune_epochs": 5, "lr": 3e-3}).apply(
        trained, ctx)
    assert accuracy(healed, ctx.val_x, ctx.val_y) > accuracy(cut, ctx.val_x, ctx.val_y)


@pytest.fixture
def trained_mlp(ctx, digits) -> nn.Module:
    return compressors.Distill({"epochs": 8, "lr": 3e-3}).apply(mlp_student(digits, width=256), ctx)


def in_torch(model: nn.Module, ctx, tmp_path: Path, name: str) -> eager.EagerModel:
    """``model`` as the torch runtime deploys it (quantization realised with torch.ao), saved under ``name``."""
    return eager.deploy(model, tmp_path / name / "model.pt")


def test_int8_is_at_least_3x_smaller_on_disk_and_within_2_points(ctx, trained_mlp, tmp_path: Path) -> None:
    fp32 = in_torch(trained_mlp, ctx, tmp_path, "fp32")
    int8 = in_torch(compressors.Quantize({"bits": 8}).apply(trained_mlp, ctx), ctx, tmp_path, "int8")
    assert fp32.path.stat().st_size / int8.path.stat().st_size >= 3
    drop = accuracy(fp32.model, ctx.val_x, ctx.val_y) - accuracy(int8.model, ctx.val_x, ctx.val_y)
    assert drop <= 0.02
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8.model.modules())


@pytest.mark.parametrize("half, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_16_bit_halves_the_size_and_computes_in_16_bits(ctx, trained_mlp, tmp_path: Path, half, dtype) -> None:
    model = in_torch(compressors.Quantize({"bits": 16, "half": half}).apply(trained_mlp, ctx), ctx, tmp_path, "h")
    assert {p.dtype for p in model.model.parameters()} == {dtype}
    ratio = saved_size(trained_mlp, tmp_path / "a.pt") / model.path.stat().st_size
    assert 1.8 < ratio <= 2.0
    assert accuracy(model.model, ctx.val_x, ctx.val_y) >= accuracy(trained_mlp, ctx.val_x, ctx.val_y) - 0.02
    assert model(ctx.val_x[:2]).dtype == torch.float32  # callers keep a float32 interface


def test_cnn_int8_quantizes_the_convolutions_too(ctx, digits, tmp_path: Path) -> None:
    cnn = compressors.Distill({"epochs": 4, "lr": 3e-3}).apply(cnn_student(digits, channels=16, hidden=128), ctx)
    int8 = in_torch(compressors.Quantize({"bits": 8}).apply(cnn, ctx), ctx, tmp_path, "int8")
    assert any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in int8.model.modules())
    # Per-tensor scales and file headers are a fixed cost, so a small CNN gains less than 4x.
    assert saved_size(cnn, tmp_path / "a.pt") / int8.path.stat().st_size >= 2.5
    assert accuracy(int8.model, ctx.val_x, ctx.val_y) >= accuracy(cnn, ctx.val_x, ctx.val_y) - 0.03
