"""A space is declared once as data, validated with errors that name the knob, and translated to Optuna."""

import optuna
import pytest

from squeezer.spaces import (Branch, Choice, Fixed, Float, Int, SpaceError, boundary_points, leaves, parse_space,
                             plain_names)
from squeezer.spaces.optuna import distributions, from_distribution, suggest, to_distribution


def test_every_knob_form_parses() -> None:
    space = parse_space({
        "depth": {"int": [1, 4]}, "width": {"int": [8, 256], "log": True}, "lr": {"float": [1e-4, 1e-1], "log": True},
        "alpha": {"float": [0, 1]}, "bits": {"choice": [32, 16, 8]}, "epochs": 5, "arch": {"hidden": [64]},
    })
    assert space == {"depth": Int(1, 4), "width": Int(8, 256, log=True), "lr": Float(1e-4, 1e-1, log=True),
                     "alpha": Float(0.0, 1.0), "bits": Choice((32, 16, 8)), "epochs": Fixed(5),
                     "arch": Fixed({"hidden": [64]})}


@pytest.mark.parametrize("spec, message", [
    ({"int": [3, 1]}, "width: `low <= high` must hold, but got '(low=3, high=1)'"),
    ({"int": [1.5, 3]}, "width: `int` bounds must be integers"),
    ({"float": [0, 1], "log": True}, "width: a log range needs `low > 0`"),
    ({"float": [1]}, "width: `float` needs a list [low, high]"),
    ({"choice": []}, "width: `choice` needs a non-empty list"),
    ({"int": [1, 3], "lg": True}, "width: unknown range keys ['lg']"),
])
def test_bad_ranges_name_the_knob_the_rule_and_the_value(spec: dict, message: str) -> None:
    with pytest.raises(SpaceError) as err:
        parse_space({"width": spec})
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("knob", [Int(1, 9), Int(2, 64, log=True), Int(0, 10, step=2), Float(0.1, 0.9),
                                  Float(1e-4, 1.0, log=True), Choice((32, 16, 8)), Choice(("a", True, None))])
def test_optuna_translation_round_trips(knob) -> None:
    assert from_distribution(to_distribution(knob)) == knob


def test_bounds_are_inclusive_in_optuna() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {suggest(study.ask(), {"k": Int(0, 2)})["k"] for _ in range(60)}
    assert seen == {0, 1, 2}


def test_conditional_knobs_are_sampled_only_under_their_branch() -> None:
    space = parse_space({"family": {"choice": {"mlp": {"width": {"int": [8, 16]}},
                                               "cnn": {"channels": {"int": [4, 8]}, "kernel": 3}}}})
    assert isinstance(space["family"], Branch)
    assert set(distributions(space)) == {"family", "family.mlp.width", "family.cnn.channels"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    samples = [suggest(study.ask(), space, "student.") for _ in range(20)]
    for values in samples:
        expected = {"family", "width"} if values["family"] == "mlp" else {"family", "channels", "kernel"}
        assert set(values) == expected
    assert {v["family"] for v in samples} == {"mlp", "cnn"}


def test_branch_options_may_not_redeclare_a_sibling() -> None:
    with pytest.raises(SpaceError, match="redeclares sibling knobs"):
        parse_space({"depth": 2, "family": {"choice": {"mlp": {"depth": {"int": [1, 2]}}}}})


def test_boundary_points_reach_every_extreme() -> None:
    space = parse_space({"a": {"int": [1, 5]}, "b": {"choice": ["x", "y"]}, "c": 7})
    points = boundary_points(space)
    assert {p["a"] for p in points} == {1, 5} and {p["b"] for p in points} == {"x", "y"}
    assert all(p["c"] == 7 for p in points)
    assert set(leaves(space)) == {"a", "b"}


def test_plain_names_drop_the_branch_segment() -> None:
    params = {"student.family": "cnn", "student.family.cnn.depth": 2, "prune.ratio": 0.3}
    assert plain_names(params) == {"student.family": "cnn", "student.depth": 2, "prune.ratio": 0.3}


def test_plain_names_drop_every_branch_segment_of_choices_nested_in_choices() -> None:
    params = {"distill.method": "kd", "distill.method.kd.weighting": "fixed",
              "distill.method.kd.weighting.fixed.temperature_schedule": "gap",
              "distill.method.kd.weighting.fixed.temperature_schedule.gap.temperature_end": 1.5}
    assert plain_names(params) == {"distill.method": "kd", "distill.weighting": "fixed",
                                   "distill.temperature_schedule": "gap", "distill.temperature_end": 1.5}
