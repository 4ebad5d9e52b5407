"""Students are measured as deployed: exported to ONNX and run by ONNX Runtime (or eager torch), quantized by that
runtime's tools, stored packed where it pays, and every format keeps within its error bound."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from squeezer import compressors
from squeezer.compressors.quantize import grid
from squeezer.compressors.training import predict
from squeezer.search.config.experiment import MeasureSettings
from squeezer.search.trial.metrics import Reference, count_flops, count_params, measure
from squeezer.search.runtime import deploy
from squeezer.search.runtime.eager import packed_state, unpacked_state
from squeezer.search.runtime.onnx_export import ExportError, export_onnx

from conftest import cnn_student, mlp_student


def onnx_model(model: nn.Module, ctx, tmp_path: Path, name: str = "m"):
    return deploy(model, "onnxruntime", tmp_path / name, ctx.val_x[:1])


def size(deployed) -> int:
    return deployed.path.stat().st_size


def accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """Of a torch module or a deployed artifact."""
    logits = model.predict(x) if hasattr(model, "path") else predict(model, x)
    return (logits.argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def trained(digits, teacher):
    from squeezer.compressors import TeacherOutputs, TrialContext
    ctx = TrialContext(digits.train_x, digits.train_y, digits.val_x, digits.val_y, teacher=teacher,
                       teachers=TeacherOutputs([teacher], digits.train_x), seed=0, batch_size=64)
    return {"mlp": compressors.Distill({"epochs": 8, "lr": 3e-3}).apply(mlp_student(digits, width=256), ctx),
            "cnn": compressors.Distill({"epochs": 4, "lr": 3e-3}).apply(cnn_student(digits, 16, 128), ctx)}


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_onnx_runtime_computes_what_torch_computes(trained, ctx, tmp_path: Path, family: str) -> None:
    model = trained[family]
    with torch.no_grad():
        expected = model(ctx.val_x)
    assert torch.allclose(onnx_model(model, ctx, tmp_path).predict(ctx.val_x), expected, atol=1e-4)


def test_32_bits_and_pruning_0_are_exact_no_ops(trained, ctx, tmp_path: Path) -> None:
    model = trained["cnn"]
    untouched = compressors.Quantize({"bits": 32}).apply(compressors.Prune({"ratio": 0.0}).apply(model, ctx), ctx)
    a, b = onnx_model(model, ctx, tmp_path, "a"), onnx_model(untouched, ctx, tmp_path, "b")
    assert torch.equal(a.predict(ctx.val_x), b.predict(ctx.val_x))
    assert size(a) == size(b)


@pytest.mark.parametrize("bits, shrink, drop", [(16, 0.51, 0.01), (8, 0.28, 0.02), (4, 0.17, 0.05)])
def test_each_format_shrinks_the_onnx_file_and_keeps_accuracy(trained, ctx, tmp_path: Path, bits, shrink,
                                                              drop) -> None:
    model = trained["mlp"]
    fp32 = onnx_model(model, ctx, tmp_path, "fp32")
    small = onnx_model(compressors.Quantize({"bits": bits, "ends_bits": bits if bits < 8 else 8}).apply(model, ctx),
                       ctx, tmp_path, str(bits))
    assert size(small) <= shrink * size(fp32)
    assert accuracy(small, ctx.val_x, ctx.val_y) >= accuracy(fp32, ctx.val_x, ctx.val_y) - drop


def test_int8_static_quantizes_activations_with_calibration(trained, ctx, tmp_path: Path) -> None:
    q = onnx_model(compressors.Quantize({"bits": 8, "int8_mode": "static"}).apply(trained["cnn"], ctx), ctx, tmp_path)
    ops = {n.op_type for n in onnx.load(str(q.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert accuracy(q, ctx.val_x, ctx.val_y) >= accuracy(trained["cnn"], ctx.val_x, ctx.val_y) - 0.03


def linear_weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


@pytest.mark.parametrize("bits, scale_bytes", [(4, 4), (2, 2)])
def test_packed_low_bit_files_hold_bits_per_weight_plus_scales(digits, ctx, tmp_path: Path, bits,
                                                               scale_bytes) -> None:
    model = mlp_student(digits, width=512, depth=3)
    q = onnx_model(compressors.Quantize({"bits": bits, "ends_bits": bits, "group_size": 32}).apply(model, ctx), ctx,
                   tmp_path)
    weights = linear_weights(model)
    biases = sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Linear))
    # ONNX Runtime's 4-bit MatMulNBits keeps float32 scales; our ternary packing float16 ones.
    expected = weights * bits / 8 + weights / 32 * scale_bytes + biases * 4
    assert size(q) == pytest.approx(expected, rel=0.05)


def test_ninety_percent_unstructured_pruning_is_stored_as_survivors_only(digits, ctx, tmp_path: Path) -> None:
    model = mlp_student(digits, width=512, depth=3)
    sparse = compressors.Prune({"ratio": 0.9, "structured": False}).apply(model, ctx)
    dense, packed = onnx_model(model, ctx, tmp_path, "dense"), onnx_model(sparse, ctx, tmp_path, "sparse")
    weights = linear_weights(model)
    # a bitmap (1 bit per weight) plus 10 % of the float32 values
    assert size(packed) == pytest.approx(weights / 8 + 0.1 * weights * 4, rel=0.05)
    assert size(packed) < 0.15 * size(dense)
    with torch.no_grad():
        assert torch.allclose(packed.predict(ctx.val_x), sparse(ctx.val_x), atol=1e-4)
    state = sparse.state_dict()
    assert all(torch.equal(state[k], v) for k, v in unpacked_state(packed_state(state)).items())


@pytest.mark.parametrize("bits, group", [(8, 0), (4, 32), (4, 16), (2, 32)])
def test_quantize_dequantize_error_stays_within_the_format_bound(bits: int, group: int) -> None:
    w = torch.randn(64, 200)
    codes, scale = grid.quantize(w, bits, group)
    back = grid.dequantize(codes, scale, w.shape)
    low, high = grid.code_range(bits)
    assert codes.min() >= low and codes.max() <= high
    if bits == 2:  # ternary: each weight is -s, 0 or +s of its group; zero where |w| is under the threshold
        assert set(torch.unique(codes).tolist()) <= {-1, 0, 1}
        assert (back - w).abs().max() <= w.abs().max()
    else:  # rounding to the nearest step: at most half a step from the weight
        steps = scale.expand(grid.groups(w, group).shape).reshape(64, -1)[:, :200]
        assert ((back - w).abs() <= steps / 2 + 1e-6).all()
    unsigned = codes.flatten().to(torch.int32) - low
    assert torch.equal(grid.unpack(grid.pack(unsigned, bits), bits, codes.numel()), unsigned)


def test_quantization_aware_training_recovers_what_ternary_weights_lose(digits, ctx, tmp_path: Path) -> None:
    model = compressors.Distill({"epochs": 8, "lr": 3e-3}).apply(mlp_student(digits, width=64), ctx)
    ternary = {"bits": 2, "ends_bits": 2, "group_size": 16}
    ptq = onnx_model(compressors.Quantize(ternary).apply(model, ctx), ctx, tmp_path, "ptq")
    qat = onnx_model(compressors.Quantize({**ternary, "qat_epochs": 3, "qat_lr": 1e-3}).apply(model, ctx), ctx,
                     tmp_path, "qat")
    assert accuracy(qat, ctx.val_x, ctx.val_y) > accuracy(ptq, ctx.val_x, ctx.val_y) + 0.01


def test_first_and_last_layers_stay_at_8_bits_by_default_and_layer_bits_override(trained, ctx) -> None:
    plan = compressors.QuantizeConfig(bits=4, layer_bits={"3": 2}).plan(trained["mlp"])
    assert [plan.bits_of(n) for n in ("1", "3", "5")] == [8, 2, 8]
    with pytest.raises(compressors.InvalidConfig, match="layer_bits.9: is not a weight layer"):
        compressors.Quantize({"layer_bits": {"9": 8}}).check_models(trained["mlp"], [], ctx.val_x[:1])


def test_mixed_precision_puts_each_layer_at_its_own_bits(trained, ctx, tmp_path: Path) -> None:
    mixed = onnx_model(compressors.Quantize({"bits": 4}).apply(trained["mlp"], ctx), ctx, tmp_path, "mixed")
    ops = [n.op_type for n in onnx.load(str(mixed.path)).graph.node]
    assert ops.count("MatMulNBits") == 1 and ops.count("MatMulInteger") == 2  # the middle layer at 4, ends at 8
    kept = onnx_model(compressors.Quantize({"bits": 2, "ends_bits": 2, "layer_bits": {"5": 32}}).apply(
        trained["mlp"], ctx), ctx, tmp_path, "kept")
    graph = onnx.load(str(kept.path)).graph
    assert "5.weight" in {i.name for i in graph.initializer}  # the classifier stays a plain float weight
    assert {"1.weight.codes", "3.weight.codes"} <= {i.name for i in graph.initializer}


def test_low_rank_factorises_linear_layers_and_keeps_the_function_at_full_rank(trained, ctx) -> None:
    model = trained["mlp"]
    half = compressors.LowRank({"rank_ratio": 0.25, "finetune_epochs": 0}).apply(model, ctx)
    full = compressors.LowRank({"rank_ratio": 0.999, "finetune_epochs": 0}).apply(model, ctx)
    assert count_params(half) < 0.6 * count_params(model)
    assert half(ctx.val_x[:3]).shape == (3, 10)
    assert count_params(full) == count_params(model)  # factors would be larger: layers stay whole
    tuned = compressors.LowRank({"rank_ratio": 0.1, "finetune_epochs": 2, "lr": 2e-3}).apply(model, ctx)
    cut = compressors.LowRank({"rank_ratio": 0.1, "finetune_epochs": 0}).apply(model, ctx)
    assert accuracy(tuned, ctx.val_x, ctx.val_y) >= accuracy(cut, ctx.val_x, ctx.val_y)


@pytest.mark.parametrize("settings", [{"importance": "taylor"}, {"scope": "global"},
                                      {"importance": "taylor", "scope": "global", "steps": 3}])
def test_structured_pruning_variants_keep_output_shapes_and_remove_the_ratio(digits, ctx, settings) -> None:
    for model in (mlp_student(digits, width=64), cnn_student(digits)):
        pruned = compressors.Prune({"ratio": 0.5, **settings}).apply(model, ctx)
        assert pruned(ctx.val_x[:3]).shape == (3, 10)
        assert count_params(pruned) < 0.7 * count_params(model)


def test_iterative_unstructured_pruning_compounds_to_the_ratio(digits, ctx) -> None:
    from squeezer.compressors.prune import sparsity
    pruned = compressors.Prune({"ratio": 0.8, "structured": False, "steps": 3, "finetune_epochs": 1,
                                "importance": "taylor", "scope": "layer"}).apply(mlp_student(digits), ctx)
    assert sparsity(pruned) == pytest.approx(0.8, abs=0.01)


def test_measure_reports_the_three_dimensions_in_either_runtime(trained, ctx, tmp_path: Path) -> None:
    model = compressors.Quantize({"bits": 8}).apply(trained["mlp"], ctx)
    for runtime in ("onnxruntime", "torch"):
        m = measure(model, ctx.val_x, ctx.val_y, MeasureSettings(repeats=5, warmup=1, runtime=runtime),
                    tmp_path / runtime)
        assert 0.9 < m["accuracy"] <= 1 and 0.9 < m["f1_macro"] <= 1
        assert m["latency_p90_ms"] >= m["latency_ms"] > 0 and m["latency_batch_p90_ms"] >= m["latency_batch_ms"] > 0
        assert m["size_bytes"] == (tmp_path / runtime / ("model.onnx" if runtime == "onnxruntime" else "model.pt")
                                   ).stat().st_size
    assert m["flops"] == count_flops(trained["mlp"], ctx.val_x[:1]) == 2 * linear_weights(trained["mlp"])


class Spectral(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(x.reshape(len(x), 8, 8))


def test_a_layer_that_does_not_export_is_named(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), Spectral(), nn.Linear(8, 3))
    with pytest.raises(ExportError, match=r"layer '2' \(Spectral\) does not export to ONNX: .*svdvals"):
        export_onnx(model, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx")


def test_the_extended_space_composes_in_a_study_and_shows_in_mlflow(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from conftest import digits_config, write_config
    from test_study import runs, search, stores

    config = digits_config()
    config["pipeline"] = [
        {"distill": {"epochs": 2}},
        {"prune": {"ratio": {"float": [0.0, 0.6]}, "structured": {"choice": [True, False]},
                   "importance": {"choice": ["magnitude", "taylor"]}, "scope": {"choice": ["layer", "global"]}}},
        {"lowrank": {"rank_ratio": {"float": [0.2, 1.0]}, "finetune_epochs": 0}},
        {"quantize": {"bits": {"choice": [8, 4, 2]}, "group_size": {"choice": [16, 32]},
                      "ends_bits": {"choice": [8, 2]}}},
    ]
    assert search(write_config(tmp_path, config), tmp_path, 4) == 0
    children = runs(tmp_path, "trial")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        assert {"prune.importance", "prune.scope", "lowrank.rank_ratio", "quantize.bits", "quantize.group_size",
                "quantize.ends_bits"} <= set(child.data.params)
        assert {"f1_macro", "flops", "latency_batch_ms"} <= set(child.data.metrics)
    client = MlflowClient(stores(tmp_path)[0])
    assert {a.path for a in client.list_artifacts(children[0].info.run_id)} >= {"model.onnx", "student.pt",
                                                                                "architecture.json"}


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_latency_is_timed_against_the_teacher_in_the_same_rounds(tmp_path: Path, runtime: str) -> None:
    # a model timed against itself runs as fast as its reference, whatever else the machine does: its latency_ms is
    # the reference's figure, while latency_raw_ms keeps its own plain median
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    settings = MeasureSettings(repeats=40, warmup=5, batch=16, runtime=runtime)
    itself = deploy(model, runtime, tmp_path / "reference", x[:1])
    metrics = measure(model, x, y, settings, tmp_path / "timed", reference=Reference(itself, 5.0, 50.0))
    assert 0.7 * 5.0 < metrics["latency_ms"] < 1.4 * 5.0 and 0.7 * 50.0 < metrics["latency_batch_ms"] < 1.4 * 50.0
    assert metrics["latency_raw_ms"] < 1.0  # the model's own median: a small MLP takes microseconds
    assert metrics["throughput"] == pytest.approx(16 / (metrics["latency_batch_ms"] / 1e3))
