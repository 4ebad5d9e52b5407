"""The kind of model a study compresses — a classifier or a causal language model — as one object every layer asks:
what its students are judged by, its default objectives, pipeline and students, the compressors that fit it, the
metrics only it reports, its baselines, the setting that is its training budget, and the formats it exports to.

``ExperimentConfig.kind`` is the study's. The layers above ask it rather than testing which kind it is; what differs
in code (preparing the data and teacher, building, deploying and measuring a student) is the kind's bench in
``trial.benches``. A third kind (a seq2seq or vision-language teacher) is one more ``ModelKind`` here, one more bench
there, and its compressors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from squeezer.search.config.model_sections import (DEFAULT_LM_PIPELINE, DEFAULT_LM_STUDENT, DEFAULT_PIPELINE,
                                                   DEFAULT_STUDENT)
from squeezer.search.config.objectives import ACCURACY, PERPLEXITY, Quality


@dataclass(frozen=True)
class ModelKind:
    name: str                          # how the compressors' ``task`` and the benches' table name it
    title: str                         # in messages: "a classifier", "a language model"
    quality: Quality                   # what a student is judged by against its teacher
    objectives: Mapping[str, str]      # searched where the config names none
    pipeline: tuple[str, ...]          # the compressors run where the config names none
    student: Mapping[str, Any]         # the student space where the config has none
    metrics: tuple[str, ...]           # the metrics only this kind reports
    #: the baselines (the teacher as trained, quantized without training): name -> bits; their quantize step and its
    #: settings besides the bits
    baselines: Mapping[str, int]
    quantize_step: str
    baseline_settings: Mapping[str, Any] = field(default_factory=dict)
    budget: tuple[str, str] = ("", "")  # the training step and the setting that is its length (``squeezer finish``)
    formats: tuple[str, ...] = ()       # what ``export`` writes, the default first (the first its run holds)

    @property
    def budget_flag(self) -> str:
        """The command line's flag for the budget (``--steps``, ``--epochs``)."""
        return f"--{self.budget[1]}"


CLASSIFIER = ModelKind(
    "classifier", "a classifier", ACCURACY,
    {"accuracy": "maximize", "size_bytes": "minimize", "latency_ms": "minimize"},
    DEFAULT_PIPELINE, DEFAULT_STUDENT, ("accuracy", "f1_macro", "flops"), {"fp16": 16, "int8": 8}, "quantize",
    {"qat_epochs": 0}, ("distill", "epochs"), ("onnx", "torch"))
CAUSAL_LM = ModelKind(
    "language_model", "a language model", PERPLEXITY,
    {"perplexity": "minimize", "size_bytes": "minimize", "latency_ms": "minimize"}, DEFAULT_LM_PIPELINE,
    DEFAULT_LM_STUDENT, ("perplexity", "ttft_ms", "non_embedding_params", "task_accuracy"), {"int4": 4, "int8": 8},
    "lm_quantize", {}, ("lm_distill", "steps"), ("ort-genai", "hf"))
KINDS = {kind.name: kind for kind in (CLASSIFIER, CAUSAL_LM)}


def foreign(kind: ModelKind) -> tuple[str, ...]:
    """The metrics other kinds report and ``kind`` does not."""
    return tuple(m for other in KINDS.values() if other is not kind for m in other.metrics if m not in kind.metrics)


def owner(metric: str) -> ModelKind | None:
    """The kind that alone reports ``metric`` (None: every kind does)."""
    return next((kind for kind in KINDS.values() if metric in kind.metrics), None)


__all__ = ["CAUSAL_LM", "CLASSIFIER", "KINDS", "ModelKind", "foreign", "owner"]
