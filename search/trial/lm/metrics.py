"""A causal language model as it is deployed (``runtime.lm``: ONNX Runtime GenAI, or torch), measured there: its
perplexity on token blocks (the deployed model's logits: its quantization error is in the number), the time to the
first token of a prompt (prefill), the milliseconds per generated token at batch 1 with the KV cache (greedy
decoding), and the generated tokens per second at a batch. With a reference (the study's teacher, deployed in the
same runtime in full precision), each model is timed in the same rounds as it, alternating, and its figure is its
median ratio to the reference times the reference's own figure — as ``trial.metrics`` times classifiers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterator

import torch

from squeezer.compressors.lm.context import perplexity_of
from squeezer.search.config.run_settings import MeasureSettings
from squeezer.search.runtime.lm import DeployedLm
from squeezer.search.trial.metrics import median_interval


@dataclass(frozen=True)
class LmReference:
    """The deployed model students are timed against, and its figures when the study started."""

    model: DeployedLm
    ttft_ms: float
    token_ms: float
    batch_token_ms: float


def perplexity(model: DeployedLm, ids: torch.Tensor, mask: torch.Tensor | None = None, batch: int = 16) -> float:
    """exp of the mean next-token cross-entropy of the deployed ``model`` on blocks ``ids`` (the tokens ``mask``
    keeps)."""
    return perplexity_of(model.logits, ids, mask, batch)


def _rounds(models: list[DeployedLm], prompts: torch.Tensor, settings: MeasureSettings) -> Iterator[list[tuple]]:
    """Each round: for each model, its (ttft, ms per token at batch 1, ms per token at the batch), the order of the
    models alternating between rounds."""
    single, batch = prompts[:1], prompts
    for model in models:  # warm-up
        for _ in range(max(1, settings.warmup // 5)):
            model.generate(single, 4)
            model.generate(batch, 4)
    for r in range(max(2, settings.repeats // 5)):
        order = list(range(len(models)))
        if r % 2:
            order.reverse()
        found: dict[int, tuple] = {}
        for i in order:
            ttft, token = models[i].generate(single, settings.new_tokens)
            _, batch_token = models[i].generate(batch, settings.new_tokens)
            found[i] = (ttft, token, batch_token)
        yield [found[i] for i in range(len(models))]


def measure(model: DeployedLm, prompts: torch.Tensor, settings: MeasureSettings,
            reference: LmReference | None = None) -> dict[str, float]:
    """``latency_ms`` (per generated token, batch 1), ``latency_raw_ms`` (its plain median), ``latency_p90_ms``,
    ``ttft_ms``, ``latency_batch_ms`` (per token at the batch) and ``throughput`` (tokens per second at the batch) of
    the deployed ``model`` generating from ``prompts`` ``[batch, prompt_tokens]``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        models = [model] if reference is None else [model, reference.model]
        rounds = list(_rounds(models, prompts, settings))
    finally:
        torch.set_num_threads(threads)
    mine = [r[0] for r in rounds]
    ttft, token, batch_token = ([m[i] for m in mine] for i in range(3))
    if reference is None:
        per_token = token
        figures = statistics.median(ttft), statistics.median(token), statistics.median(batch_token)
    else:
        theirs = [r[1] for r in rounds]
        ratios = [[m[i] / max(t[i], 1e-9) for m, t in zip(mine, theirs, strict=True)] for i in range(3)]
        refs = (reference.ttft_ms, reference.token_ms, reference.batch_token_ms)
        figures = tuple(statistics.median(r) * ref for r, ref in zip(ratios, refs, strict=True))
        per_token = [r * reference.token_ms for r in ratios[1]]
    low, high = median_interval(per_token)
    return {"ttft_ms": figures[0], "latency_ms": figures[1], "latency_ci_ms": (high - low) / 2,
            "latency_raw_ms": statistics.median(token),
            "latency_p90_ms": statistics.quantiles(token, n=10)[-1] if len(token) > 1 else token[0],
            "latency_batch_ms": figures[2], "throughput": len(prompts) * 1e3 / figures[2]}


__all__ = ["LmReference", "measure", "perplexity"]
