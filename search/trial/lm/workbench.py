"""What every trial of a language-model study shares, prepared once: the teacher and its tokenizer, the text in
blocks, the teacher's top-k next-token logits on the training blocks (computed once per study, cached on disk and
memory-mapped), its own continuations of training prompts (sequence-level distillation, made when a trial first
asks), everything checked before anything trains."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from squeezer import compressors
from squeezer.compressors.base import Report
from squeezer.compressors.device import Device, trim_heap
from squeezer.compressors.lm import LmContext, Sequences, TopK, surgery
from squeezer.compressors.lm.context import continue_prompts, prompt_lengths
from squeezer.compressors.lm.losses import BETAS
from squeezer.compressors.progress import Bar, note
from squeezer.search import hardware
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.config.objectives import COUNTS
from squeezer.search.config.teacher_section import CAUSAL_FACTORY, CAUSAL_GIVEN
from squeezer.search.data import lm
from squeezer.search.data.arrays import SYNC_BYTES, NpyRows, open_mapped
from squeezer.search.data.spec import LmText
from squeezer.search.defaults import cache_dir
from squeezer.search.errors import ConfigError
from squeezer.search.models import causal
from squeezer.search.runtime import lm as runtimes
from squeezer.search.runtime.lm import DeployedLm
from squeezer.search.runtime.lm.genai import NotExportable
from squeezer.search.trial.lm.metrics import LmReference, measure, perplexity as deployed_perplexity
from squeezer.search.trial.teacher import save_atomically, weights_digest
from squeezer.spaces import boundary_points

TOP_K = 32            # the teacher's logits kept per token (of the whole vocabulary)
#: training prompts the teacher continues once per study (sequence-level distillation): 1,024 blocks of 128 tokens is
#: 131 k tokens, about a minute of a 4 M-parameter teacher's generation on 2 CPU cores, once per study
CONTINUATIONS = 1024
CALIBRATION = 32      # training blocks importance is measured on
TOP_K_FILE = f"top{TOP_K}-tempered.pt"  # the top-k cache as one file: what earlier versions wrote (still read)
FOLDER = runtimes.HF_FOLDER  # a trial's save_pretrained folder, in its workdir (and its MLflow run's artifacts)


@dataclass
class LmWorkbench:
    """A language-model study's shared state (the teacher on the CPU; ``resident`` on the training device)."""

    config: ExperimentConfig
    splits: lm.LmSplits
    teacher: nn.Module
    tokenizer: Any
    top_k: TopK | None
    device: Device = field(default_factory=Device)
    task: list[lm.Question] | None = None  # the user's questions (``data.task_path``)
    tfidf: dict[str, float] | None = None  # a classifier's text baseline: none for a language model
    #: the teacher's (ttft, ms per token, ms per token at the batch) when the study started: students are timed
    #: against it
    timing: tuple[float, float, float] | None = None
    #: where the teacher's outputs on these blocks are cached (by its weights' and the data's digests)
    outputs: Path = field(default_factory=Path)
    #: where students are deployed and measured (``runtime.lm``): measure.runtime, or torch where the builder of
    #: ONNX Runtime GenAI cannot export the teacher's architecture
    runtime: str = runtimes.DEFAULT_LM_RUNTIME
    _sequences: Sequences | None = field(default=None, repr=False)
    _resident: nn.Module | None = field(default=None, repr=False)
    _deployed_teacher: DeployedLm | None = field(default=None, repr=False)
    _teacher_dir: Any = field(default=None, repr=False)
    #: pickled, the teacher's cached outputs travel as their file's path (worker processes of this machine)
    by_path: bool = field(default=False, repr=False)

    @property
    def calibration(self) -> torch.Tensor:
        return self.splits.train[:CALIBRATION]

    def prompts(self) -> torch.Tensor:
        """What generation is timed on: ``measure.batch`` prompts of ``measure.prompt_tokens`` validation tokens."""
        m = self.config.measure
        rows = self.splits.val[: m.batch, : m.prompt_tokens]
        return rows.repeat(-(-m.batch // len(rows)), 1)[: m.batch]

    def reference(self) -> LmReference | None:
        """The teacher to time students against; None before the study has timed it."""
        return None if self.timing is None else LmReference(self.deployed_teacher(), *self.timing)

    def deploy(self, model: nn.Module, workdir: Path, summary: str = "") -> DeployedLm:
        """``model`` deployed in the study's runtime under ``workdir``."""
        m = self.config.measure
        return runtimes.deploy(model, self.tokenizer, self.runtime, workdir, m.threads, m.device, summary)

    def deployed_teacher(self) -> DeployedLm:
        """The teacher deployed in the study's runtime in full precision (once per process): what students are
        timed against, and the study's baseline."""
        if self._deployed_teacher is None:
            self._teacher_dir = tempfile.TemporaryDirectory(prefix="squeezer-teacher-")
            self._deployed_teacher = self.deploy(self.teacher, Path(self._teacher_dir.name), "The teacher.")
        return self._deployed_teacher

    def resident(self) -> nn.Module:
        """The teacher on the training device (the CPU: itself), once per process."""
        if self._resident is None:
            self._resident = self.teacher if self.device.is_cpu else \
                copy.deepcopy(self.teacher).to(self.device.where).eval()
        return self._resident

    def context(self, seed: int, report: Report) -> LmContext:
        s = self.splits
        return LmContext(train=s.train, val=s.val, train_mask=s.train_mask, val_mask=s.val_mask,
                         teacher=self.resident(), top_k=self.top_k, sequences=self.sequences,
                         prompt_tokens=min(16, s.train.shape[1] // 2), pad_id=s.pad_id, seed=seed,
                         batch_size=self.config.batch_size, report=report, device=self.device)

    def sequences(self) -> Sequences:
        """The teacher's greedy continuations of ``CONTINUATIONS`` training prompts and its top-k on them: made
        once per study (cached on disk), the first time a trial asks."""
        if self._sequences is None:
            self._sequences = _continuations(self)
        return self._sequences

    def baseline(self) -> dict[str, float]:
        """The teacher measured as the students are (deployed in full precision in the study's runtime): the
        reference every student is compared with."""
        deployed = self.deployed_teacher()
        metrics = measure_deployed(self, deployed, self.teacher, reference=None)
        metrics["test_perplexity"] = self.test_perplexity(deployed)
        return metrics

    def time_against(self, teacher: Mapping[str, float]) -> None:
        """Time every student against the teacher from now on, whose measured figures are ``teacher``'s."""
        self.timing = (teacher["ttft_ms"], teacher["latency_ms"], teacher["latency_batch_ms"])

    @property
    def validation_count(self) -> int:
        """The validation tokens perplexity is measured on."""
        s = self.splits
        return int(s.val[:, 1:].numel() if s.val_mask is None else s.val_mask[:, 1:].sum())

    def test_quality(self, folder: Path) -> float:
        """The test perplexity of a trial's deployed model (under its workdir ``folder``)."""
        m = self.config.measure
        return self.test_perplexity(runtimes.load(self.runtime, folder, m.threads, m.device))

    def test_perplexity(self, model: DeployedLm) -> float:
        s = self.splits
        return deployed_perplexity(model, s.test, s.test_mask)

    def student(self, params: Mapping[str, Mapping[str, Any]], seed: int,
                report: Report = lambda step, metrics: None) -> tuple[nn.Module, LmContext]:
        """The untrained student ``params['student']`` describes, built from the teacher (``models.causal``,
        seeded), and the context its compressors run in."""
        torch.manual_seed(seed)
        return causal.build(params["student"], self.teacher, self.calibration), self.context(seed, report)

    def measure_untrained(self, model: nn.Module, only: list[str], workdir: Path) -> dict[str, float]:
        """The ``only`` metrics of an untrained (compressed) student, deployed in the study's runtime under
        ``workdir``: its bytes and parameters, and its speed where one is asked."""
        deployed = self.deploy(model.cpu().eval(), workdir)
        timed = any(name not in COUNTS for name in only)
        return {k: v for k, v in cheap_lm_metrics(self, deployed, model, timed).items()
                if k in only or k.endswith("_ci_ms")}

    def deploy_and_measure(self, model: nn.Module, params: Mapping[str, Mapping[str, Any]],
                           workdir: Path) -> dict[str, float]:
        """A trained student deployed as users take it (``runtime.lm``: ONNX Runtime GenAI, or torch) under
        ``workdir``, loaded from there and measured."""
        deployed = self.deploy(model, workdir, summary=f"Recipe: {dict((k, dict(v)) for k, v in params.items())}")
        return measure_deployed(self, deployed, model, self.reference())

    def sent_by_path(self) -> LmWorkbench:
        """This bench, pickled for worker processes of this machine: the tokenized text and the teacher's top-k
        outputs as the paths of their files, memory-mapped again where it is unpickled (every worker shares the page
        cache), not copied; pickled as it is, they travel by value (Ray's object store, to other machines)."""
        return dataclasses.replace(self, by_path=True, splits=self.splits.sent_by_path())

    def __getstate__(self) -> dict[str, Any]:  # each process has its device, its resident teacher, its deployed one
        state = {**self.__dict__, "_resident": None, "_deployed_teacher": None, "_teacher_dir": None,
                 "_sequences": None}
        if self.by_path:
            state["top_k"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.device = hardware.training_device(self.config.training.device, self.config.training.precision)
        if self.by_path:
            self.top_k = _open_top_k(self.outputs)  # None where the study has no cache (its teacher runs live)


def measure_deployed(bench: LmWorkbench, deployed: DeployedLm, model: nn.Module,
                     reference: LmReference | None) -> dict[str, float]:
    """A deployed model's metrics: validation perplexity, the bytes of its model files, generation speed (against
    ``reference``); and the parameters of the ``model`` it was deployed from."""
    s = bench.splits
    scored = {} if bench.task is None else {"task_accuracy": task_accuracy(deployed, bench.task)}
    return {"perplexity": deployed_perplexity(deployed, s.val, s.val_mask), **scored,
            **cheap_lm_metrics(bench, deployed, model, timed=True, reference=reference)}


def cheap_lm_metrics(bench: LmWorkbench, deployed: DeployedLm, model: nn.Module, timed: bool,
                     reference: LmReference | None = None) -> dict[str, float]:
    """What training does not change: the bytes of the deployed model's files and the parameters of the ``model``
    it was deployed from; and where ``timed``, its generation speed (against ``reference``, else the study's)."""
    speed = measure(deployed, bench.prompts(), bench.config.measure, reference or bench.reference()) if timed else {}
    return {"size_bytes": float(deployed.size_bytes()), **speed,
            "params": float(surgery.parameters(model)),
            "non_embedding_params": float(surgery.non_embedding_parameters(model))}


@torch.no_grad()
def task_accuracy(model: DeployedLm, questions: list[lm.Question]) -> float:
    """The share of ``questions`` whose answer is the choice the deployed model finds most likely (the sum of its
    tokens' log-probabilities after the context)."""
    right = 0
    for q in questions:
        scores = []
        for choice in q.choices:
            ids = torch.tensor([q.context + choice])
            log_probs = model.logits(ids)[0, :-1].log_softmax(-1)
            targets = ids[0, 1:]
            scores.append(float(log_probs[-len(choice):].gather(-1, targets[-len(choice):, None]).sum()))
        right += int(max(range(len(scores)), key=scores.__getitem__) == q.answer)
    return right / len(questions)


def prepare(config: ExperimentConfig, given_teacher: nn.Module | None = None, tokenizer: Any = None) -> LmWorkbench:
    """Load the teacher and its tokenizer, read the text into blocks, check every student and step the space allows
    against them, then compute (or load) the teacher's top-k logits on the training blocks."""
    assert isinstance(config.data, LmText)
    spec = config.teacher
    if spec.family == CAUSAL_GIVEN:
        if given_teacher is None or tokenizer is None:
            raise ConfigError("teacher", "stands for a language model passed as a Python object: pass it again with "
                              "its tokenizer (compress(teacher=model, tokenizer=...))", spec.given)
        causal.check_causal(given_teacher, "teacher")
        teacher = given_teacher.eval()
    elif spec.family == CAUSAL_FACTORY:
        teacher, tokenizer = causal.from_factory(spec.arch, spec.tokenizer or Path("."))
    else:
        teacher, tokenizer = causal.load_teacher(Path(spec.hub_dir or ""), "teacher.hf")
    limit = causal.positions(teacher)
    if limit is not None and config.data.block_size > limit:
        raise ConfigError("data.block_size", f"is beyond the teacher's {limit} positions", config.data.block_size)
    splits = lm.load(config.data, config.seed, tokenizer)
    if splits.vocab_size > teacher.config.vocab_size:
        raise ConfigError("teacher.hf", f"its tokenizer has {splits.vocab_size} tokens, more than the model's "
                          f"{teacher.config.vocab_size} embeddings", config.teacher.hub_dir)
    check_students(config, teacher, splits.train[:CALIBRATION])
    outputs = cache_dir() / "outputs" / f"lm-{weights_digest(teacher)}-{splits.fingerprint()}"
    if _cached_outputs_used(config) and _open_top_k(outputs) is None:  # the disk holds it: said before it starts
        _check_room(outputs / TOP_K_DIR, _top_k_shapes(*splits.train.shape))
    note(f"data: {splits.documents[0]} training, {splits.documents[1]} validation, {splits.documents[2]} test "
         f"document(s); {len(splits.train)} x {splits.train.shape[1]} training tokens")  # the input is good
    device = hardware.training_device(config.training.device, config.training.precision)
    questions = None if config.data.task is None else lm.task(config.data.task, tokenizer)
    bench = LmWorkbench(config, splits, teacher, tokenizer, None, device, task=questions, outputs=outputs,
                        runtime=config.measure.runtime)
    if bench.runtime == runtimes.GENAI:
        try:
            bench.deployed_teacher()
        except NotExportable as err:
            note(f"measure: ONNX Runtime GenAI cannot export this teacher ({err}); students are deployed and "
                 f"measured in torch (measure.runtime: torch)")
            bench.runtime, bench._deployed_teacher = "torch", None
    if _cached_outputs_used(config):
        bench.top_k = _top_k(bench)
    return bench


def _cached_outputs_used(config: ExperimentConfig) -> bool:
    """Whether any ``lm_distill`` setting the space allows trains from the teacher's cached outputs."""
    return any(point.get("teacher_outputs", "cached") == "cached" for step in config.pipeline
               if step.name == "lm_distill" for point in boundary_points(step.space))


def check_students(config: ExperimentConfig, teacher: nn.Module, calibration: torch.Tensor) -> None:
    """Every boundary student of the space is a family of a language model with sizes the teacher allows, and every
    pruning setting leaves at least one layer, group and channel (checked from the configs: nothing trains)."""
    try:
        surgery.layers_of(teacher)  # the Llama layout the families and lm_prune work on
    except compressors.InvalidConfig as err:
        raise ConfigError("teacher", err.rule, err.value) from None
    families = causal.families()
    for point in boundary_points(config.student):
        family = point["family"]
        if family not in families:
            raise ConfigError("student.family", f"must be one of {families} for a language model", family)
        if family == "smaller":  # its sizes resolved (a bad one refused); the hidden size a multiple of the heads
            causal.resolve_sizes(teacher, *(point.get(k) for k in ("layers", "hidden", "heads", "intermediate")))
        elif family not in causal.BUILT_IN:  # a registered family: built now, to check it keeps the vocabulary
            causal.build(point, teacher, calibration)
    for step in config.pipeline:
        for point in boundary_points(step.space):
            try:
                compressors.get(step.name)(point).check_models(teacher, [teacher], torch.zeros(1, 1))
            except compressors.InvalidConfig as err:
                raise ConfigError(f"{step.name}.{err.field}", err.rule, err.value) from None


@torch.no_grad()
def _top_k(bench: LmWorkbench) -> TopK:
    """The teacher's ``TOP_K`` largest logits and their ids at every training position, and what its tempered mass
    outside them needs: from the cache, else computed now (batch by batch, on the training device) into files that
    are filled a batch at a time and memory-mapped — larger than memory if need be. Its size is said first, and
    refused where the disk cannot hold it; a computation stopped part way resumes where it stopped."""
    found = _open_top_k(bench.outputs)
    if found is not None:
        note(f"teacher: top-{TOP_K} logits loaded from cache {bench.outputs}")
        return found
    train, device = bench.splits.train, bench.device
    rows, width = train.shape
    folder, shapes = bench.outputs / TOP_K_DIR, _top_k_shapes(rows, width)
    size = _check_room(folder, shapes)
    arrays = {name: NpyRows(folder / f"{name}.npy", shape, dtype) for name, (shape, dtype) in shapes.items()}
    start = min(a.done for a in arrays.values())
    note(f"teacher: top-{TOP_K} logits on {rows * width:,} training tokens take {_size(size)} on disk "
         f"({folder})" + (f"; resuming at block {start:,} of {rows:,}" if start else ""))
    teacher, batch = bench.resident(), _rows_at_once(width, bench.teacher.config.vocab_size)
    with Bar(f"teacher top-{TOP_K} logits", total=rows, unit="blocks", initial=start) as bar:
        for first in range(start, rows, batch):
            part = TopK.of(teacher(input_ids=device.put(train[first:first + batch])).logits, TOP_K)
            for name, array in arrays.items():
                array.write(first, getattr(part, name).cpu().numpy())
            done = min(first + batch, rows)
            if sum(a.unsynced for a in arrays.values()) >= SYNC_BYTES or done == rows:
                for array in arrays.values():
                    array.sync(done)
            bar.update(done - first)
            trim_heap()
    for array in arrays.values():
        array.finish()
    (folder / COMPLETE).write_text("")
    return _open_top_k(bench.outputs)


def _rows_at_once(width: int, vocabulary: int, most: int = 16) -> int:
    """Blocks the teacher scores at once for its cache: at most ``most``, and as many as keep the batch's logits
    (float32) within ``LOGIT_BYTES`` (at least one): what the cache costs in memory besides the teacher."""
    return max(1, min(most, LOGIT_BYTES // (width * vocabulary * 4)))


LOGIT_BYTES = 32 << 20
TOP_K_DIR, COMPLETE = f"top{TOP_K}", "complete"  # the cache's folder (one .npy per field), and its mark when whole


def _open_top_k(outputs: Path) -> TopK | None:
    """The teacher's top-k outputs cached under ``outputs``, memory-mapped (a cache of an earlier version: its one
    file); None where none is whole."""
    if (outputs / TOP_K_FILE).is_file():
        return _load_top_k(torch.load(outputs / TOP_K_FILE, map_location="cpu", weights_only=True, mmap=True))
    folder = outputs / TOP_K_DIR
    if not (folder / COMPLETE).is_file():
        return None
    return TopK(*(torch.from_numpy(open_mapped(folder / f"{name}.npy", writable=True))
                  for name in ("values", "indices", "rest", "rest_mean")))


def _top_k_shapes(rows: int, width: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """The cache's arrays for ``rows`` blocks of ``width`` tokens: their shapes and types (``TopK.of``'s)."""
    return {"values": ((rows, width, TOP_K), np.float16), "indices": ((rows, width, TOP_K), np.int32),
            "rest": ((rows, width, len(BETAS)), np.float32), "rest_mean": ((rows, width, len(BETAS)), np.float32)}


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _check_room(folder: Path, shapes: Mapping[str, tuple[tuple[int, ...], type]]) -> int:
    """The bytes of a cache of ``shapes``; refused (before computing anything) where the disk cannot hold it: what is
    already written of it counts."""
    size = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes.values())
    there = folder
    while not there.exists():
        there = there.parent
    written = sum(f.stat().st_blocks * 512 for f in folder.glob("*.npy")) if folder.is_dir() else 0
    free = shutil.disk_usage(there).free
    if size - written > free:
        raise ConfigError("lm_distill.teacher_outputs", f"cached needs {_size(size)} for the teacher's top-{TOP_K} "
                          f"outputs on the training text, and {there} has {_size(free)} free (free space, point "
                          "$SQUEEZER_CACHE at a larger disk, or set teacher_outputs: live)", "cached")
    return size


def _saved(top: TopK, **more: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"values": top.values, "indices": top.indices, "rest": top.rest, "rest_mean": top.rest_mean, **more}


def _load_top_k(saved: Mapping[str, torch.Tensor]) -> TopK:
    return TopK(saved["values"], saved["indices"], saved["rest"], saved["rest_mean"])


@torch.no_grad()
def _continuations(bench: LmWorkbench) -> Sequences:
    path = bench.outputs / f"continuations{CONTINUATIONS}-tempered.pt"
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return Sequences(saved["ids"], saved["mask"], _load_top_k(saved))
    s, device, teacher = bench.splits, bench.device, bench.resident()
    size = s.train.shape[1]
    chosen = torch.linspace(0, len(s.train) - 1, min(CONTINUATIONS, len(s.train))).long()
    rows, row_mask = s.train[chosen], None if s.train_mask is None else s.train_mask[chosen]
    lengths = prompt_lengths(rows, row_mask, min(16, size // 2)).clamp(1, size - 1)
    all_ids = torch.full((len(rows), size), s.pad_id, dtype=rows.dtype)  # each prompt continued to the block
    mask, top = torch.zeros(len(rows), size, dtype=torch.bool), TopK.empty((len(rows), size), TOP_K)
    with Bar("teacher continuations", total=len(rows), unit="prompts") as bar:
        for start in range(0, len(rows), 32):
            out, written = continue_prompts(teacher, device.put(rows[start:start + 32]),
                                            lengths[start:start + 32].to(device.where), lambda length: size - length,
                                            s.pad_id, do_sample=False)
            part = slice(start, start + len(out))
            top.put(part, TopK.of(teacher(input_ids=out).logits, TOP_K))
            all_ids[part], mask[part] = out.cpu(), written.cpu()
            bar.update(len(out))
    save_atomically(_saved(top, ids=all_ids, mask=mask), path)
    return Sequences(all_ids, mask, top)


__all__ = ["FOLDER", "LmWorkbench", "TOP_K", "cheap_lm_metrics", "check_students", "measure_deployed", "prepare"]
