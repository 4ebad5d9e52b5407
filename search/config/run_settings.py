"""The experiment's search, measure and training settings: their fields and defaults, each read and checked on its
own (the checks that need the whole config, such as which sampler and early stopping apply, are
``config.experiment``'s)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squeezer.compressors.device import PRECISIONS
from squeezer.search import hardware
from squeezer.search.errors import ConfigError
from squeezer.search.config.rules import LIMITS, MINIMA, integer, positive, section
from squeezer.search.runtime import RUNTIMES
from squeezer.search.runtime.lm import LM_RUNTIMES
from squeezer.search.config.plugins import BACKENDS, SAMPLERS
from squeezer.search.config.schedulers import SCHEDULERS

if TYPE_CHECKING:
    pass

TERNARY = {2: "2 (ternary)"}


@dataclass(frozen=True)
class SearchSettings:
    sampler: str | None = None          # squeezer (default where it can judge, else nsga2) | nsga2 | tpe | random
    trials: int = 20
    population_size: int = 8
    timeout_s: float | None = None
    backend: str = "optuna"
    address: str | None = None          # ray: a running cluster to join; default: start a local Ray
    max_concurrent: int | None = None   # ray: trials at once; default: as many as the CPUs allow
    cpus_per_trial: float = 1.0         # ray: CPUs reserved per trial (and torch threads in it)
    gpus_per_trial: float | None = None  # ray: GPUs reserved per trial (fractional: trials share a GPU); none
    scheduler: str | None = None        # pareto (default where it applies) | halving | shadow | asha (ray) | none
    stop_allowance: float = 0.02        # pareto: margin on the accuracy a trial's remaining training may still add
    rung_epochs: int = 1                # halving: epochs every trial trains before its first judgement
    reduction_factor: int = 3           # halving: of the trials reaching a rung, the top 1/this go on
    candidates: int = 16                # squeezer: recipes screened (size, speed before training) per trial
    warm_start: str | None = None       # an earlier study in the same storage: its Pareto members are tried first
    reference: dict[str, float] | None = None  # the hypervolume's reference point (default: from the teacher)
    min_accuracy_share: float = 0.97    # the recommended member keeps this share of the teacher's accuracy, if any does
    jobs: int = 1                       # optuna: processes running trials of the study at once on this machine
    repeats: int = 1                    # each recipe runs this many times, with its own seed each (mean ± std)


@dataclass(frozen=True)
class MeasureSettings:
    """How latency is measured: single-threaded by default so trials running side by side do not skew it."""

    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    batch: int = 64
    batch_repeats: int | None = None  # rounds timing the batch; default: repeats where a batch latency or throughput
    #                                   is an objective or budget, else repeats // 5 (reported, not searched on)
    runtime: str = "onnxruntime"  # or torch: where the students are deployed, and measured (a language model's:
    #                               onnxruntime-genai, the default, or torch)
    device: str = "cpu"           # or cuda (cuda:N): where latency is measured, for models deployed on a GPU
    prompt_tokens: int = 32       # language models: the prompt timed to its first token (ttft_ms), then decoded from
    new_tokens: int = 32          # ... this many generated tokens timed per token (latency_ms, throughput)

    @property
    def batch_rounds(self) -> int:
        return self.batch_repeats or max(2, self.repeats // 5)


@dataclass(frozen=True)
class TrainingSettings:
    """How trials and the teacher train (``squeezer.search.hardware``)."""

    batch_size: int = 128
    threads: int | None = None  # torch CPU threads per training process; default: the cores shared by the jobs
    device: str = "auto"        # auto (a CUDA GPU when there is one, else the CPU) | cpu | cuda | cuda:N
    precision: str = "fp32"     # fp32 | bf16 | fp16: autocast of the training passes


def settings_section(cls: type, raw: Any, key: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = section(raw or {}, key, set(fields))
    for name, value in values.items():
        kind = str(fields[name].type)
        if value is None and "None" in kind:
            continue
        if kind.startswith("int"):
            values[name] = integer(value, f"{key}.{name}", minimum=MINIMA.get(f"{key}.{name}", 1),
                                maximum=LIMITS.get(f"{key}.{name}"))
        elif kind.startswith("float"):
            values[name] = positive(value, f"{key}.{name}")
        elif kind.startswith("str") and not isinstance(value, str):
            raise ConfigError(f"{key}.{name}", "must be a string", value)
    if "device" in values:
        hardware.check_device(values["device"], f"{key}.device", auto=key == "training")
    if values.get("gpus_per_trial") is not None:
        gpus = values["gpus_per_trial"]
        if gpus > LIMITS["search.gpus_per_trial"] or (gpus > 1 and not gpus.is_integer()):
            raise ConfigError("search.gpus_per_trial", "must be a share of one GPU (0 < x <= 1, e.g. 0.125: eight "
                              f"trials per GPU) or a whole number of GPUs up to {LIMITS['search.gpus_per_trial']}",
                              values["gpus_per_trial"])
    for name, allowed in (("sampler", SAMPLERS), ("backend", BACKENDS), ("scheduler", SCHEDULERS),
                          ("runtime", {**RUNTIMES, **LM_RUNTIMES}), ("precision", PRECISIONS)):
        if name in fields and values.get(name, fields[name].default) not in (*allowed, None):
            raise ConfigError(f"{key}.{name}", f"must be one of {list(allowed)}", values[name])
    return cls(**values)

