"""What every trial of a study shares, prepared once: the data, the teachers and their cached outputs, everything
checked before anything trains; and, per process, what of it trains on the device (``Resident``)."""

from __future__ import annotations

import atexit
import copy
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from squeezer.compressors.progress import note
from squeezer import compressors
from squeezer.compressors.device import Device
from squeezer.compressors.distill import TeacherOutputs
from squeezer.compressors.base import Report, TrialContext
from squeezer.compressors.training import accuracy, predict
from squeezer.search import data, hardware, models
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.config.teacher_section import TeacherSpec
from squeezer.search.data import token_augment
from squeezer.search.data.augment import Augment
from squeezer.search.errors import ConfigError, TrialFailed
from squeezer.search.trial.metrics import Reference, deployed_for_timing, measure
from squeezer.search.models import text as text_models
from squeezer.search.runtime import Deployed, export
from squeezer.search.trial import tfidf
from squeezer.search.trial.teacher import DiskCache, check_checkpoint, ensemble_specs, get_teacher, teacher_tokenizer
from squeezer.spaces import boundary_points


@dataclass
class Workbench:
    """What every trial of a study shares, prepared once: the data, the teachers and their outputs."""

    config: ExperimentConfig
    splits: data.Splits
    outputs: TeacherOutputs  # the main teacher first, then the ensemble's; logits computed or loaded from the cache
    augment: Augment | None = None  # what training batches go through (``data.augment``)
    #: the teacher's (batch-1, batch) latencies when the study started: students are timed against the teacher
    timing: tuple[float, float] | None = None
    tfidf: dict[str, float] | None = None  # a text study's TF-IDF baseline (``trial.tfidf``)
    _deployed: tuple[Deployed, torch.Tensor] | None = field(default=None, repr=False, compare=False)
    _resident: Resident | None = field(default=None, repr=False, compare=False)
    _vocabulary: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _copies: dict[int, tuple[torch.Tensor, torch.Tensor, TeacherOutputs]] = field(default_factory=dict, repr=False,
                                                                                 compare=False)

    @property
    def teacher(self) -> nn.Module:
        return self.outputs.teachers[0]

    @property
    def device(self) -> Device:
        """Where this process trains (``training.device``, resolved here: a Ray worker has its own GPUs)."""
        return self.resident().device

    def resident(self) -> Resident:
        """What trials train with on the device, moved there once per process: the data (where it fits), the
        teacher, its outputs."""
        if self._resident is None:
            self._resident = Resident.of(self)
        return self._resident

    def vocabulary(self) -> torch.Tensor | None:
        """The token ids the training texts use (a student with ``vocab: seen`` keeps only those); None for other
        data. Found once, a chunk of rows at a time (the ids may be memory-mapped)."""
        if self.splits.tokens is None:
            return None
        if self._vocabulary is None:
            seen = torch.zeros(self.splits.tokens.vocab_size, dtype=torch.bool)
            for chunk in self.splits.train_x.split(65_536):
                seen[chunk.unique()] = True
            self._vocabulary = seen.nonzero().flatten()
        return self._vocabulary

    def copies(self, count: int) -> tuple[torch.Tensor, torch.Tensor, TeacherOutputs]:
        """The training texts followed by ``count`` augmented copies of each (``token_augment``), their labels (each
        copy its text's), and the teachers' outputs on them: made once per process, the outputs cached on disk."""
        if count not in self._copies:
            s, teachers = self.splits, self.outputs.teachers
            if s.tokens is None:
                raise ConfigError("distill.augment", "augments texts; this data is not text", count)
            note(f"data: {count} augmented copies of each of {len(s.train_y)} training texts (token dropout, swap, "
                 "span masking)")
            x = torch.cat([s.train_x, token_augment.copies(s.train_x, s.tokens, count, self.config.seed)])
            y = torch.cat([s.train_y, s.train_y.repeat(count)])
            cache = DiskCache(teachers, f"{s.fingerprint()}-copies{count}-seed{self.config.seed}")
            outputs = TeacherOutputs(teachers, x, cache, device=self.device)
            outputs.all_logits()
            self._copies[count] = (self.device.keep(x), self.device.keep(y), outputs)
        return self._copies[count]

    def deployed_teacher(self) -> tuple[Deployed, torch.Tensor]:
        """The teacher deployed as the students are, and the inputs latency is timed on: once per process, kept
        until it ends (``metrics.deployed_for_timing``)."""
        if self._deployed is None:
            folder = Path(tempfile.mkdtemp(prefix="squeezer-teacher-"))
            atexit.register(shutil.rmtree, folder, True)
            s = self.splits
            self._deployed = deployed_for_timing(self.teacher, s.val_raw, self.config.measure, folder, s.pad_id,
                                                 s.spec)
        return self._deployed

    def reference(self) -> Reference | None:
        """The deployed teacher to time students against (``metrics.Reference``); None before the study has timed
        its teacher."""
        return None if self.timing is None else Reference(self.deployed_teacher()[0], *self.timing)

    def baseline(self) -> dict[str, float]:
        """The teacher measured like a trial (plus its test accuracy): the reference every student is compared
        with."""
        s = self.splits
        metrics = measure(self.teacher, s.val_raw, s.val_y, self.config.measure, Path(), pad_id=s.pad_id,
                          spec=s.spec, deployed=self.deployed_teacher())  # the students' reference from now on
        return {**metrics, "test_accuracy": accuracy(self.resident().teacher, s.test_x, s.test_y)}  # on the device

    def time_against(self, teacher: Mapping[str, float]) -> None:
        """Time every student against the teacher from now on, whose measured latencies are ``teacher``'s."""
        self.timing = (teacher["latency_ms"], teacher["latency_batch_ms"])

    @property
    def validation_count(self) -> int:
        """The validation samples accuracy is measured on (its standard error depends on them)."""
        return len(self.splits.val_y)

    def test_quality(self, folder: Path) -> float:
        """The test accuracy of a trial's deployed artifact in ``folder``, fed the user's raw test input."""
        s = self.splits
        deployed = export.reload(folder, self.config.measure.runtime, s, template=self.teacher)
        return (deployed.predict(s.test_raw).argmax(1) == s.test_y).float().mean().item()

    def student(self, params: Mapping[str, Mapping[str, Any]], seed: int,
                report: Report = lambda step, metrics: None) -> tuple[nn.Module, TrialContext]:
        """The untrained student ``params['student']`` describes (checked to fit in memory first, seeded), and the
        context its compressors run in."""
        s = self.splits
        if params["student"].get("family") in (models.TEACHER, models.GIVEN):  # the teacher, its trained weights
            return copy.deepcopy(self.teacher), self._context(seed, report)
        models.check_fits(dict(params["student"]), s.input_shape, s.num_classes, self.config.batch_size,
                          tokens=s.tokens)
        torch.manual_seed(seed)
        model = models.build(dict(params["student"]), s.input_shape, s.num_classes, tokens=s.tokens,
                             teacher=self.teacher, vocabulary=self.vocabulary())
        return model, self._context(seed, report)

    def _context(self, seed: int, report: Report) -> TrialContext:
        r = self.resident()
        ctx = TrialContext(r.train_x, r.train_y, r.val_x, r.val_y, teacher=r.teacher, teachers=self.outputs,
                           seed=seed, batch_size=self.config.batch_size, report=report, augment=self.augment,
                           device=r.device)

        def copies(count: int) -> TrialContext:
            x, y, outputs = self.copies(count)
            return replace(ctx, train_x=x, train_y=y, teachers=outputs, copies=None)
        ctx.copies = copies if self.splits.tokens is not None else None
        return ctx

    def measure_untrained(self, model: nn.Module, only: list[str], workdir: Path) -> dict[str, float]:
        """The ``only`` metrics of an untrained (compressed) student, deployed under ``workdir``: on a few
        validation rows (size and speed do not depend on how many)."""
        s = self.splits
        return measure(model, s.val_raw[:64], s.val_y[:64], self.config.measure, workdir, pad_id=s.pad_id,
                       spec=s.spec, reference=self.reference(), only=only)

    def deploy_and_measure(self, model: nn.Module, params: Mapping[str, Mapping[str, Any]],
                           workdir: Path) -> dict[str, float]:
        """A trained student deployed in the study's runtime under ``workdir`` (model.onnx or model.pt: its bytes
        are ``size_bytes``), measured there on the user's raw validation input, and exported beside it
        (student.pt and architecture.json)."""
        s = self.splits
        if not torch.isfinite(predict(model, s.val_x[:256])).all():
            raise TrialFailed("the compressed model outputs NaN or inf")
        metrics = measure(model, s.val_raw, s.val_y, self.config.measure, workdir, pad_id=s.pad_id, spec=s.spec,
                          reference=self.reference())
        inputs = {"input_shape": list(s.input_shape), "num_classes": s.num_classes,
                  "tokens": None if s.tokens is None else vars(s.tokens), "spec": s.spec.describe()}
        built = models.resolve(dict(params["student"]), teacher_arch(self.config))  # a teacher student: its own
        export.save(model, built, workdir, inputs=inputs)  # beside the deployed file: users take it
        return metrics

    def sent_by_path(self) -> Workbench:
        """This bench, pickled for worker processes of this machine: memory-mapped data as its files' paths."""
        return replace(self, splits=self.splits.sent_by_path())

    def __getstate__(self) -> dict[str, Any]:  # sent to Ray workers: each deploys its own teacher, has its device
        return {**self.__dict__, "_deployed": None, "_resident": None, "_copies": {}}


@dataclass(frozen=True)
class Resident:
    """A study's training data and teacher on the device of this process (the CPU: the objects themselves)."""

    device: Device
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    teacher: nn.Module

    @classmethod
    def of(cls, bench: Workbench) -> "Resident":
        training, s = bench.config.training, bench.splits
        device = hardware.training_device(training.device, training.precision)
        bench.outputs.use(device)
        teacher = bench.teacher if device.is_cpu else copy.deepcopy(bench.teacher).to(device.where).eval()
        return cls(device, *(device.keep(t) for t in (s.train_x, s.train_y, s.val_x, s.val_y)), teacher)


@dataclass(frozen=True)
class Given:
    """What a Python caller passes as objects (``compress``): the teacher module, the data already split."""

    teacher: nn.Module | None = None
    splits: data.Splits | None = None
    tokenizer: Any = None  # a causal language model teacher's


def prepare(config: ExperimentConfig, given: Given | None = None) -> Workbench:
    """Load the data and the teachers, check every student the space allows against the pipeline, then train (or
    load) the teachers and compute (or load) their logits on the training split. ``given``: objects that stand
    in for the config's data and teacher (``data.given``, ``teacher.family: given``)."""
    given = given or Given()
    augment = config.data.augment
    # a teacher trained here is trained on augmented batches too (and cached under that)
    specs = [(replace(spec, augment=augment), seed) for spec, seed in ensemble_specs(config.teacher, config.seed)]
    template = given.teacher
    for i, (spec, _) in enumerate(specs):  # a Hugging Face directory that is not there: said before anything else
        if spec.hub_dir is not None:
            text_models.model_dir(spec.hub_dir, f"{_teacher_key(i)}.model")
    ahead = given.splits or data.preview(config.data)  # an image folder's shape and classes, from its headers
    if ahead is not None:  # checked before the folder is decoded (and cached)
        check_models(config, ahead, specs, template, augment)
    splits = given.splits or data.load(config.data, config.seed, tokenizer=teacher_tokenizer(config.teacher),
                                       ahead=ahead)
    if ahead is None:
        check_models(config, splits, specs, template, augment)
    for step in config.pipeline:
        for point in boundary_points(step.space):
            with named_by(step.name):
                compressors.get(step.name)(point).check_data(len(splits.train_y))
    device = hardware.training_device(config.training.device, config.training.precision)
    teachers = [template.eval() if spec.family == models.GIVEN else
                get_teacher(spec, splits, seed, config.batch_size, key=_teacher_key(i).removesuffix(".arch"),
                            device=device)
                for i, (spec, seed) in enumerate(specs)]
    if splits.classes:  # once the input is known to be good: a bad-input error stays one line
        note(f"data: class indices {dict(enumerate(splits.classes))}")
    baseline = simple_baseline(splits)
    if baseline is not None:  # the TF-IDF baseline teaches too where it knows more than the teacher
        config, known, said = tfidf.as_teacher(config, splits, baseline,
                                               accuracy(teachers[0], splits.val_x, splits.val_y))
        teachers += [known] if known is not None else []
        if said:
            note(said)
    outputs = TeacherOutputs(teachers, splits.train_x, DiskCache(teachers, splits.fingerprint()), device=device)
    outputs.all_logits()
    return Workbench(config, splits, outputs, augment, tfidf=baseline)


def simple_baseline(splits: data.Splits) -> dict[str, float] | None:
    """A text study's TF-IDF baseline (``trial.tfidf``), measured once; None for other data, or where it cannot
    be fitted (said)."""
    if splits.texts is None:
        return None
    try:
        return tfidf.measure(splits)
    except tfidf.Unmeasured as why:
        note(f"TF-IDF baseline: not measured ({why})")
        return None


def teacher_arch(config: ExperimentConfig) -> dict[str, Any]:
    """The main teacher's family and settings."""
    return config.teacher.model


def check_models(config: ExperimentConfig, shape: data.Shape, specs: list[tuple[TeacherSpec, int]],
                 template: nn.Module | None = None, augment: Augment | None = None) -> None:
    """Everything about the models that the data's ``shape`` (its sample shape, classes and tokens) decides, before
    anything is allocated or trains: every teacher and every student the space allows fit in memory and give one
    score per class, the pipeline's settings work with them (on the meta device), every checkpoint loads."""
    if augment is not None:
        augment.check(shape.input_shape)
    archs = [spec.model for spec, _ in specs]
    for i, arch in enumerate(archs):  # teachers first: a `teacher` student is the teacher
        models.check_fits(arch, shape.input_shape, shape.num_classes, config.batch_size, key=_teacher_key(i),
                          tokens=shape.tokens, template=template)
    for arch in boundary_points(config.student):  # on the meta device: an absurd width allocates nothing
        models.check_fits(models.resolve(arch, archs[0]), shape.input_shape, shape.num_classes, config.batch_size,
                          tokens=shape.tokens, template=template)
    check_pipeline(config, shape, archs, template)
    for i, (spec, _) in enumerate(specs):  # every checkpoint, before any teacher trains (and is cached)
        check_checkpoint(spec, shape, key=_teacher_key(i).removesuffix(".arch"))


def check_pipeline(config: ExperimentConfig, shape: data.Shape, teacher_archs: list[dict[str, Any]],
                   template: nn.Module | None = None) -> None:
    """Ask each compressor whether its settings work with every boundary student and the teachers, on the meta
    device, before anything trains (e.g. that a feature layer it names exists)."""
    dims, classes, tokens = shape.input_shape, shape.num_classes, shape.tokens
    with torch.device("meta"):
        example = torch.zeros(2, *dims, dtype=torch.int64 if tokens else torch.float32)  # two: a batch of any size
        teachers = [models.build(arch, dims, classes, key=_teacher_key(i), tokens=tokens, template=template)
                    for i, arch in enumerate(teacher_archs)]
        for i, teacher in enumerate(teachers if tokens is None else []):  # text models cut padding: not on meta
            check_output(teacher, example, classes, _teacher_key(i).removesuffix(".arch"))
        for arch in boundary_points(config.student):
            student = models.build(models.resolve(arch, teacher_archs[0]), dims, classes, tokens=tokens,
                                   template=template)
            if tokens is None:
                check_output(student, example, classes, "student")
            for step in config.pipeline:
                for point in boundary_points(step.space):
                    with named_by(step.name):
                        compressors.get(step.name)(point).check_models(student, teachers, example)


@contextmanager
def named_by(step: str) -> Iterator[None]:
    """A compressor's ``InvalidConfig`` as the config names it: ``ConfigError('<step>.<field>', ...)``."""
    try:
        yield
    except compressors.InvalidConfig as err:
        raise ConfigError(f"{step}.{err.field}", err.rule, err.value) from None


def check_output(model: nn.Module, example: torch.Tensor, num_classes: int, key: str) -> None:
    """A model (on the meta device) must take the data's input and give one score per class."""
    try:
        with torch.no_grad():
            out = model.eval()(example)
    except Exception as err:  # noqa: BLE001 - a user's model: whatever it raises on this input, say so
        raise ConfigError(key, f"does not run on the data's input of shape {list(example.shape)} "
                          f"({type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (example.shape[0], num_classes):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(key, f"must output one score per class, shape [N, {num_classes}] for the data's "
                          f"{num_classes} classes; it outputs {shape}")


def _teacher_key(index: int) -> str:
    return "teacher.arch" if index == 0 else f"teacher.ensemble[{index - 1}].arch"
