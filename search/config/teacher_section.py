"""The experiment's ``teacher`` section, checked and typed (``TeacherSpec``): the family it names (a built-in one,
``factory``, ``torchvision``, ``hf`` / ``hf_image``, ``program``, ``given``) is decided here, once, and builds through
the model registry's table of families; ensemble members inherit what they do not set here too."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from squeezer.search.data.augment import Augment
from squeezer.search.errors import ConfigError
from squeezer.search.models import causal, hub, text
from squeezer.search.config.model_sections import user_model
from squeezer.search.config.rules import LIMITS, MAX_SEED, integer, positive, section

TEACHER_KEYS = {"family", "arch", "path", "epochs", "lr", "ensemble", "model", "torchvision", "kwargs", "weights",
                "given", "program", "hf", "tokenizer"}


ENSEMBLE_KEYS = {"family", "arch", "path", "epochs", "lr", "seed"}


MAX_TEACHERS = 16
CAUSAL = "hf_causal"  # the family of a causal language model teacher (``hf: DIR`` of a ...ForCausalLM)
#: A causal LM from the user's factory (``model: "file.py:fn"`` with ``tokenizer: DIR``), or passed to compress().
CAUSAL_FACTORY, CAUSAL_GIVEN = "factory_causal", "given_causal"
LANGUAGE_MODELS = (CAUSAL, CAUSAL_FACTORY, CAUSAL_GIVEN)
#: Families whose model is a Hugging Face directory (``arch.model``), with its own tokenizer or image processor.
HUB_FAMILIES = ("hf", "hf_image", CAUSAL)


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher: its family and the family's settings (``arch``), a checkpoint to load (``path``) or how to
    train it here (``epochs``, ``lr``); the main teacher's ``ensemble`` members, each a whole spec."""

    family: str
    arch: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None
    epochs: int | None = None
    lr: float | None = None
    seed: int | None = None  # an ensemble member's own seed (default: the study's + its index + 1)
    given: str | None = None  # a Python module passed to compress(), by its weights' digest
    tokenizer: Path | None = None  # a language model factory's tokenizer folder
    augment: Augment | None = None  # what a teacher trained here trains on (the data's augmentation)
    ensemble: tuple[TeacherSpec, ...] = ()

    @property
    def model(self) -> dict[str, Any]:
        """What ``models.build`` builds: the family with its settings."""
        return {"family": self.family, **self.arch}

    @property
    def hub_dir(self) -> str | None:
        """The Hugging Face model (directory or packaged name) of an ``hf`` / ``hf_image`` teacher; else None."""
        return str(self.arch.get("model", text.DEFAULT_MODEL)) if self.family in HUB_FAMILIES else None

    @property
    def language_model(self) -> bool:
        """Whether the teacher is a causal language model (the study distils next-token distributions)."""
        return self.family in LANGUAGE_MODELS

    @property
    def pretrained_elsewhere(self) -> bool:
        """Whether the teacher was trained outside Squeezer (the user's model with its weights, or a Python object):
        it expects the data as the user has it, so the data is not standardised unless ``data.standardize`` says
        so. (A Hugging Face image classifier does its own preprocessing of raw pixels.)"""
        return self.family in ("given", "program", "hf_image") or (self.family in ("factory", "torchvision")
                                                                    and self.path is not None)

    def settings(self) -> dict[str, Any]:
        """What the trained weights depend on, as plain values (the teacher cache's key): the settings given, not
        the checkpoint, the member seed or the members."""
        given = {"family": self.family, "arch": dict(self.arch), "epochs": self.epochs, "lr": self.lr,
                 "given": self.given, "augment": None if self.augment is None else self.augment.describe()}
        return {k: v for k, v in given.items() if v is not None}


def teacher_section(raw: Any, base_dir: Path, language_model: bool = False) -> TeacherSpec:
    """The teacher section typed. ``language_model``: the data section names a language model's text, so an
    ``hf`` folder not there yet (a shipped experiment's, made by a script) is a causal LM's, checked at the start."""
    teacher = _teacher_by_file(user_model(section(raw, "teacher", TEACHER_KEYS), base_dir, "teacher"), base_dir,
                               language_model)
    if "tokenizer" in teacher:  # the user's factory makes a causal language model; its tokenizer is a folder
        where = teacher.pop("tokenizer")
        if teacher.get("family") != "factory" or not isinstance(where, str) or not where:
            raise ConfigError("teacher.tokenizer", "goes with model: \"file.py:function\" returning a causal "
                              "language model: the folder of its tokenizer (tokenizer.save_pretrained)", where)
        folder = (base_dir / where).resolve()
        if not any((folder / name).is_file() for name in causal.TOKENIZER_FILES):
            raise ConfigError("teacher.tokenizer", "holds no tokenizer (tokenizer.save_pretrained(DIR) writes one)",
                              str(folder))
        teacher.update(family=CAUSAL_FACTORY, tokenizer=str(folder))
    if "weights" in teacher:
        if "path" in teacher:
            raise ConfigError("teacher.weights", "is another name for teacher.path: give one of them",
                              teacher["weights"])
        teacher["path"] = teacher.pop("weights")
    teacher = _teacher_settings(teacher, base_dir, "teacher")
    if not teacher.get("family"):
        raise ConfigError("teacher.family", "is required to build or load the teacher: a family (e.g. mlp or cnn), "
                          "model: \"my_models.py:factory\", or torchvision: NAME")
    ensemble = teacher.pop("ensemble", None)
    main = _spec(teacher)
    if main.language_model:
        for k in ("epochs", "lr", "path"):
            if teacher.get(k) is not None:
                raise ConfigError(f"teacher.{k}", "does not go with a language model teacher, used as it is (not "
                                  "trained here)", teacher[k])
        if ensemble is not None:
            raise ConfigError("teacher.ensemble", "is not supported for a language model teacher", ensemble)
    if ensemble is None:
        return main
    if not isinstance(ensemble, list) or not 1 <= len(ensemble) < MAX_TEACHERS:
        raise ConfigError("teacher.ensemble", f"must be a list of 1 to {MAX_TEACHERS - 1} teachers (each a "
                          "mapping of family, arch, path, epochs, lr, seed; unset ones are the main teacher's)",
                          ensemble)
    members = []
    for i, member in enumerate(ensemble):
        own = _teacher_settings(section(member if member is not None else {}, f"teacher.ensemble[{i}]",
                                        ENSEMBLE_KEYS), base_dir, f"teacher.ensemble[{i}]")
        # a member inherits the main teacher's settings it does not give, except its checkpoint (and its arch when
        # the family differs)
        inherited = {k: v for k, v in teacher.items() if k != "path"} \
            if own.get("family", main.family) == main.family else {}
        members.append(_spec({**inherited, **own}))
    return replace(main, ensemble=tuple(members))


def _spec(teacher: Mapping[str, Any]) -> TeacherSpec:
    return TeacherSpec(family=str(teacher["family"]), arch=dict(teacher.get("arch") or {}),
                       path=Path(teacher["path"]) if teacher.get("path") else None, epochs=teacher.get("epochs"),
                       lr=None if teacher.get("lr") is None else float(teacher["lr"]), seed=teacher.get("seed"),
                       given=teacher.get("given"),
                       tokenizer=Path(teacher["tokenizer"]) if teacher.get("tokenizer") else None)


def _teacher_by_file(teacher: dict[str, Any], base_dir: Path, language_model: bool = False) -> dict[str, Any]:
    """``program: model.pt2``: a ``torch.export`` program, used as exported (family ``program``); ``hf: DIR``: a
    local Hugging Face model directory (family ``hf``)."""
    if "hf" in teacher:
        clash = sorted({"family", "arch", "model", "torchvision", "kwargs", "program"} & set(teacher))
        if clash:
            raise ConfigError(f"teacher.{clash[0]}", "does not go with teacher.hf, which names the model",
                              teacher[clash[0]])
        where = teacher.pop("hf")
        if not isinstance(where, str) or not where:
            raise ConfigError("teacher.hf", "must be a local Hugging Face model directory", where)
        local = base_dir / where  # checked when the study starts (a shipped experiment's may not exist yet)
        model = where if where in text.PACKAGED else str(local.resolve())
        if Path(model).exists() and not Path(model).is_dir():
            raise ConfigError("teacher.hf", "must be a model directory (save_pretrained's folder), not a file", model)
        if causal.is_causal(Path(model)):  # a language model: its tokenizer is checked now, before anything
            causal.check_dir(Path(model), "teacher.hf")
            return {**teacher, "family": CAUSAL, "arch": {"model": model}}
        if language_model and not Path(model).exists():  # checked when the study starts
            return {**teacher, "family": CAUSAL, "arch": {"model": model}}
        image = any(a.endswith(hub.IMAGE_HEAD) for a in hub.architectures(Path(model)))
        return {**teacher, "family": "hf_image" if image else "hf", "arch": {"model": model}}
    if "program" not in teacher:
        return teacher
    clash = sorted({"family", "arch", "model", "torchvision", "kwargs", "path", "weights", "epochs"} & set(teacher))
    if clash:
        raise ConfigError(f"teacher.{clash[0]}", "does not go with teacher.program: a program is its own "
                          "architecture and weights, used as exported", teacher[clash[0]])
    file = teacher.pop("program")
    if not isinstance(file, str) or not file:
        raise ConfigError("teacher.program", "must be the path of a .pt2 file (torch.export.save)", file)
    path = (base_dir / file).resolve()
    if not path.is_file():
        raise ConfigError("teacher.program", "file not found", str(path))
    return {**teacher, "family": "program", "arch": {"file": str(path)}}


def _teacher_settings(teacher: dict[str, Any], base_dir: Path, key: str) -> dict[str, Any]:
    if teacher.get("path"):
        teacher["path"] = str((base_dir / str(teacher["path"])).resolve())
        if not Path(teacher["path"]).is_file():
            raise ConfigError(f"{key}.path", "file not found; give a state-dict checkpoint, or remove `path` to "
                              "train the teacher from the config", teacher["path"])
    if "epochs" in teacher:
        integer(teacher["epochs"], f"{key}.epochs", minimum=1, maximum=LIMITS["epochs"])
    if "lr" in teacher:
        positive(teacher["lr"], f"{key}.lr")
    if "seed" in teacher:
        integer(teacher["seed"], f"{key}.seed", maximum=MAX_SEED)
    if "arch" in teacher and not isinstance(teacher["arch"], dict):
        raise ConfigError(f"{key}.arch", "must be a mapping of the family's settings", teacher["arch"])
    return teacher


__all__ = ["CAUSAL", "CAUSAL_FACTORY", "CAUSAL_GIVEN", "HUB_FAMILIES", "LANGUAGE_MODELS", "TEACHER_KEYS",
           "TeacherSpec", "teacher_section"]
