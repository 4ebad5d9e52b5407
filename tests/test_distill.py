"""Distillation: every loss equals its formula, every schedule follows its definition, every method trains."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from squeezer import compressors
from squeezer.compressors import TeacherOutputs, TrialContext
from squeezer.compressors.distill import losses
from squeezer.compressors.distill.controller import AdaptiveController, Transfer
from squeezer.compressors.distill.features import Projection, hint_layers, output_shapes, pair_layers
from squeezer.compressors.distill.schedules import DynamicWeightAverage, temperature_at
from squeezer.compressors.distill.teacher_outputs import ema_update
from squeezer.compressors.training import Optim, accuracy
from squeezer.search import models
from squeezer.search.trial.teacher import train

from conftest import cnn_student, mlp_student
from squeezer.search.config.teacher_section import TeacherSpec

S = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
T1 = torch.tensor([[1.0, 1.5, 0.0], [3.0, -2.0, 0.5]])
T2 = torch.tensor([[0.0, 2.0, 1.0], [1.0, 1.0, -1.0]])
Y = torch.tensor([0, 2])


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p * (p.log() - q.log())).sum(1).mean()


# --- losses ---------------------------------------------------------------------------------------------------------

def test_kd_loss_equals_hintons_formula() -> None:
    T, ws, wh = 3.0, 0.25, 0.6
    soft = T**2 * kl(F.softmax(T1 / T, 1), F.softmax(S / T, 1))
    ce = -F.log_softmax(S, 1)[torch.arange(2), Y].mean()
    assert losses.kd_loss(S, T1, Y, T, ws, wh).item() == pytest.approx((ws * soft + wh * ce).item(), rel=1e-6)


def test_soft_only_kd_is_the_scaled_kl() -> None:
    assert losses.kd_loss(S, T1, Y, 2.0, 1.0, 0.0).item() == pytest.approx(
        (4 * kl(F.softmax(T1 / 2, 1), F.softmax(S / 2, 1))).item(), rel=1e-6)


def test_ensemble_soft_labels_average_the_teachers_probabilities() -> None:
    T = 2.0
    mean = (F.softmax(T1 / T, 1) + F.softmax(T2 / T, 1)) / 2
    assert torch.allclose(losses.soft_targets([T1, T2], T, "mean").exp(), mean, atol=1e-6)


def test_confidence_weighted_soft_labels_weigh_each_teacher_by_its_top_probability() -> None:
    T = 2.0
    c1, c2 = F.softmax(T1, 1).amax(1, keepdim=True), F.softmax(T2, 1).amax(1, keepdim=True)
    expected = (c1 * F.softmax(T1 / T, 1) + c2 * F.softmax(T2 / T, 1)) / (c1 + c2)
    assert torch.allclose(losses.soft_targets([T1, T2], T, "confidence").exp(), expected, atol=1e-6)


def test_masked_hard_loss_averages_over_the_kept_samples_only() -> None:
    mask = torch.tensor([False, True])
    assert losses.hard_loss(S, Y, mask).item() == pytest.approx(-F.log_softmax(S, 1)[1, 2].item(), rel=1e-6)
    assert losses.hard_loss(S, Y, torch.tensor([False, False])).item() == 0.0


def test_feature_losses_equal_mse_and_one_minus_cosine() -> None:
    a, b = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[2.0, 2.0], [1.0, 0.0]])
    assert losses.feature_loss(a, b, "mse").item() == pytest.approx(((a - b) ** 2).mean().item())
    cos = torch.tensor([(2 + 4) / (math.sqrt(5) * math.sqrt(8)), 0.0])
    assert losses.feature_loss(a, b, "cosine").item() == pytest.approx((1 - cos).mean().item(), rel=1e-6)


def test_attention_transfer_equals_zagoruykos_formula() -> None:
    fs, ft = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    q_s = fs.pow(2).mean(1).flatten(1)
    q_t = ft.pow(2).mean(1).flatten(1)
    expected = (q_s / q_s.norm(dim=1, keepdim=True) - q_t / q_t.norm(dim=1, keepdim=True)).pow(2).mean()
    got = losses.attention_loss(losses.attention_map(fs), losses.attention_map(ft))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_attention_maps_of_different_sizes_are_pooled_to_the_smaller() -> None:
    big, small = torch.rand(2, 8, 8), torch.rand(2, 4, 4)
    pooled = F.avg_pool2d(big.unsqueeze(1), 2).squeeze(1)
    assert losses.attention_loss(big, small).item() == pytest.approx(losses.attention_loss(pooled, small).item())


def test_pseudo_labels_keep_true_labels_and_add_only_confident_guesses() -> None:
    log_probs = torch.log(torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9]]))
    labels, mask = losses.pseudo_labels(log_probs, torch.tensor([1, 1, 0]), torch.tensor([True, False, False]), 0.9)
    assert labels.tolist() == [1, 0, 1] and mask.tolist() == [True, False, True]


# --- schedules, DWA, the controller, EMA ---------------------------------------------------------------------------

def test_temperature_schedules() -> None:
    assert [temperature_at("constant", e, 5, 4.0, 1.0) for e in range(5)] == [4.0] * 5
    assert [temperature_at("linear", e, 5, 4.0, 1.0) for e in range(5)] == [4.0, 3.25, 2.5, 1.75, 1.0]
    cosine = [temperature_at("cosine", e, 3, 4.0, 1.0) for e in range(3)]
    assert cosine == pytest.approx([4.0, 2.5, 1.0])
    assert temperature_at("gap", 3, 5, 4.0, 1.0, gap_ratio=0.5) == 2.5
    assert temperature_at("gap", 3, 5, 4.0, 1.0, gap_ratio=3.0) == 4.0  # the gap ratio is clipped to [0, 1]


def test_dwa_weights_follow_their_definition_on_a_scripted_history() -> None:
    dwa = DynamicWeightAverage(["soft", "hard"], temperature=2.0)
    assert dwa.multipliers() == {"soft": 1.0, "hard": 1.0}
    dwa.record({"soft": 1.0, "hard": 2.0})
    assert dwa.multipliers() == {"soft": 1.0, "hard": 1.0}  # two epochs of history are needed
    dwa.record({"soft": 0.5, "hard": 1.8})
    r_soft, r_hard = 0.5 / 1.0, 1.8 / 2.0
    e_soft, e_hard = math.exp(r_soft / 2), math.exp(r_hard / 2)
    got = dwa.multipliers()
    assert got["soft"] == pytest.approx(2 * e_soft / (e_soft + e_hard))
    assert got["hard"] == pytest.approx(2 * e_hard / (e_soft + e_hard))
    assert got["hard"] > got["soft"]  # the loss that falls slower gets more weight


def test_the_controller_moves_weight_to_the_labels_as_the_student_catches_up() -> None:
    controller = AdaptiveController(start=4.0, end=1.0, gain=1.0)
    t0, m0 = controller.update(Transfer(agreement=0.2, kl=2.0))
    t1, m1 = controller.update(Transfer(agreement=0.6, kl=0.8))
    assert t0 == 4.0 and t1 == pytest.approx(1.0 + 3.0 * 0.4 / 0.8)
    assert m0 == pytest.approx({"soft": 1.8, "feature": 1.8, "attention": 1.8, "hard": 1.2})
    assert m1 == pytest.approx({"soft": 1.4, "feature": 1.4, "attention": 1.4, "hard": 1.6})


def test_the_ema_update_is_exact() -> None:
    torch.manual_seed(0)
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = copy.deepcopy(ema.state_dict())
    ema_update(ema, model, decay=0.9)
    for name, value in ema.state_dict().items():  # equal to float32 rounding
        expected = 0.9 * before[name].double() + 0.1 * model.state_dict()[name].double()
        assert torch.allclose(value.double(), expected, rtol=0, atol=1e-7)


# --- layers and projections ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("student_arch, teacher_arch", [
    ({"family": "mlp", "depth": 2, "width": 16}, {"family": "mlp", "depth": 3, "width": 48}),
    ({"family": "cnn", "depth": 1, "channels": 4, "hidden": 8}, {"family": "cnn", "depth": 2, "channels": 12}),
    ({"family": "cnn", "depth": 2, "channels": 4, "hidden": 8}, {"family": "mlp", "depth": 2, "width": 40}),
    ({"family": "mlp", "depth": 1, "width": 16}, {"family": "cnn", "depth": 2, "channels": 6}),
])
def test_projections_fit_student_features_to_teacher_features(digits, student_arch: dict, teacher_arch: dict) -> None:
    torch.manual_seed(0)
    student, teacher = (models.build(a, digits.input_shape, 10) for a in (student_arch, teacher_arch))
    x = digits.train_x[:256]
    for s, t in pair_layers(student, teacher, "auto", "feature_layers"):
        projection = Projection(output_shapes(student, x, [s])[s], output_shapes(teacher, x, [t])[t])
        with torch.no_grad():
            fs, ft = (_tap(m, layer, x) for m, layer in ((student, s), (teacher, t)))
        target = projection.target(ft)
        assert projection(fs).shape == target.shape
        optimizer = torch.optim.Adam(projection.parameters(), lr=0.01)
        first = losses.feature_loss(projection(fs), target).item()
        for _ in range(100):
            loss = losses.feature_loss(projection(fs), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert loss.item() < 0.5 * first


def _tap(model: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    return model[: int(layer) + 1](x)


def test_auto_pairs_student_layers_with_the_teacher_layer_at_the_same_relative_depth(digits) -> None:
    student = models.build({"family": "mlp", "depth": 2, "width": 8}, digits.input_shape, 10)
    teacher = models.build({"family": "mlp", "depth": 4, "width": 8}, digits.input_shape, 10)
    assert hint_layers(teacher) == ["2", "4", "6", "8"]
    assert pair_layers(student, teacher, "auto", "feature_layers") == [("2", "4"), ("4", "8")]
    cnn = models.build({"family": "cnn", "depth": 2, "channels": 4}, digits.input_shape, 10)
    assert hint_layers(cnn) == ["3", "7", "10"]  # pooled block outputs, then the hidden layer


# --- methods, end to end on digits ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn_teacher(digits) -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.build({"family": "cnn", "depth": 2, "channels": 8, "hidden": 32}, digits.input_shape, 10)
    return train(model, TeacherSpec("mlp", epochs=6, lr=3e-3), digits, seed=0, batch_size=64)


@pytest.fixture
def cnn_ctx(digits, cnn_teacher, teacher) -> TrialContext:
    return TrialContext(digits.train_x, digits.train_y, digits.val_x, digits.val_y, teacher=cnn_teacher,
                        teachers=TeacherOutputs([cnn_teacher, teacher], digits.train_x), seed=0, batch_size=64)


METHODS = {
    "logit KD": {},
    "soft only": {"hard_weight": 0.0, "soft_weight": 1.0},
    "features (mse)": {"feature_weight": 1.0},
    "features (cosine)": {"feature_weight": 1.0, "feature_loss": "cosine", "feature_layers": ["3:7"]},
    "attention": {"attention_weight": 100.0},
    "multi-teacher mean": {"ensemble": "mean"},
    "multi-teacher confidence": {"ensemble": "confidence"},
    "EMA self-KD": {"method": "ema", "ema_decay": 0.9},
    "mutual learning": {"method": "dml"},
    "pseudo-labels": {"label_fraction": 0.3, "pseudo_threshold": 0.8},
    "linear T": {"temperature_schedule": "linear"},
    "gap T": {"temperature_schedule": "gap", "probe_size": 200},
    "DWA": {"weighting": "dwa", "feature_weight": 0.5},
    "adaptive": {"weighting": "adaptive", "probe_size": 200},
    "warm-up, cosine lr, accumulation": {"warmup_epochs": 1, "lr_schedule": "cosine", "accumulate": 2, "lr": 6e-3},
}


@pytest.mark.parametrize("settings", METHODS.values(), ids=METHODS.keys())
def test_each_method_trains_a_cnn_student(settings: dict, cnn_ctx: TrialContext, digits) -> None:
    seen: list[dict] = []
    cnn_ctx.report = lambda step, metrics: seen.append(dict(metrics))
    trained = compressors.Distill({"epochs": 4, "lr": 3e-3, **settings}).apply(cnn_student(digits), cnn_ctx)
    assert accuracy(trained, digits.val_x, digits.val_y) > 0.75  # untrained: about 0.1
    assert len(seen) == 4 and all(math.isfinite(v) for m in seen for v in m.values())
    assert "distill.temperature" in seen[0] and any(k.startswith("distill.weight.") for k in seen[0])


def test_each_epochs_temperature_and_weights_are_reported(cnn_ctx: TrialContext, digits) -> None:
    seen: list[dict] = []
    cnn_ctx.report = lambda step, metrics: seen.append(dict(metrics))
    compressors.Distill({"epochs": 3, "weighting": "adaptive", "probe_size": 200, "temperature": 5.0,
                         "feature_weight": 0.5}).apply(cnn_student(digits), cnn_ctx)
    assert seen[0]["distill.temperature"] == 5.0
    assert seen[-1]["distill.temperature"] < 5.0  # the student caught up, so T sharpened
    assert seen[-1]["distill.weight.hard"] > seen[0]["distill.weight.hard"]
    assert {"distill.agreement", "distill.probe_kl", "distill.weight.feature", "distill.loss.feature"} <= set(seen[0])


def test_soft_only_distillation_never_reads_the_labels(ctx: TrialContext, digits) -> None:
    settings = {"epochs": 2, "hard_weight": 0.0, "soft_weight": 1.0}
    first = compressors.Distill(settings).apply(mlp_student(digits), ctx)(digits.val_x)
    ctx.train_y = torch.zeros_like(ctx.train_y)
    assert torch.equal(first, compressors.Distill(settings).apply(mlp_student(digits), ctx)(digits.val_x))


def test_pseudo_label_kd_never_reads_the_hidden_labels(ctx: TrialContext, digits) -> None:
    settings = {"epochs": 2, "label_fraction": 0.1}
    first = compressors.Distill(settings).apply(mlp_student(digits), ctx)(digits.val_x)
    from squeezer.compressors.distill.trainer import _labeled
    hidden = ~_labeled(0.1, len(ctx.train_y))
    ctx.train_y = torch.where(hidden, (ctx.train_y + 1) % 10, ctx.train_y)
    assert torch.equal(first, compressors.Distill(settings).apply(mlp_student(digits), ctx)(digits.val_x))


def test_teacher_outputs_are_computed_once_and_then_come_from_the_cache(digits, cnn_teacher) -> None:
    class Memory:
        def __init__(self) -> None:
            self.store: dict = {}

        def get(self, teacher: int, name: str):  # noqa: ANN201
            return self.store.get((teacher, name))

        def put(self, teacher: int, name: str, value: torch.Tensor) -> None:
            self.store[(teacher, name)] = value

    cache = Memory()
    first = TeacherOutputs([cnn_teacher], digits.train_x, cache)
    first.logits(), first.features("7"), first.attention("3")
    assert first.forward_passes == 3
    second = TeacherOutputs([cnn_teacher], digits.train_x, cache)  # another trial, or another process
    assert torch.equal(second.logits(), first.logits()) and torch.equal(second.features("7"), first.features("7"))
    second.attention("3")
    assert second.forward_passes == 0
    assert second.features("7").dtype == torch.float16  # targets kept at half the memory


def test_optim_schedule_warms_up_then_decays() -> None:
    optim = Optim(epochs=4, lr=1.0, warmup_epochs=1, lr_schedule="cosine")
    factors = [optim.factor(step, steps_per_epoch=2) for step in range(8)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert all(a >= b for a, b in zip(factors[1:], factors[2:], strict=False))
