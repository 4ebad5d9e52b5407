"""The experiment's data, teacher, student and pipeline sections, checked into what the study builds from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from squeezer import compressors
from squeezer.search.data import STANDARDIZE, TEXT_KEYS, is_text, saved
from squeezer.search.data.augment import Augment
from squeezer.search.data.folders import is_listed
from squeezer.search.data.images import MAX_SIDE
from squeezer.search.data.tables import is_table
from squeezer.search.data.text import MAX_LENGTH, TRUNCATIONS
from squeezer.search.errors import ConfigError
from squeezer.search.models import hub, text
from squeezer.search.models.registry import SEARCHED
from squeezer.search.config.rules import LIMITS, MAX_SEED, integer, is_number, positive, section
from squeezer.spaces import Space, boundary_points, parse_space

DEFAULT_PIPELINE = ("distill", "prune", "quantize")


DATA_KEYS = {"name", "path", "test_path", "dir", "val_fraction", "test_fraction", "train_size", "text_column",
             "label_column", "max_length", "standardize", "image_size", "channels", "given", "feature_columns",
             "augment", "image_column", "truncation"}


TEACHER_KEYS = {"family", "arch", "path", "epochs", "lr", "ensemble", "model", "torchvision", "kwargs", "weights",
                "given", "program", "hf"}


ENSEMBLE_KEYS = {"family", "arch", "path", "epochs", "lr", "seed"}


MAX_TEACHERS = 16


@dataclass(frozen=True)
class Step:
    """One pipeline stage: a registered compressor and the space of its config."""

    name: str
    space: Space


def pretrained_elsewhere(teacher: Mapping[str, Any]) -> bool:
    """Whether the teacher was trained outside Squeezer (the user's model with its weights, or a Python object):
    it expects the data as the user has it, so the data is not standardised unless ``data.standardize`` says so.
    (A Hugging Face image classifier does its own preprocessing of raw pixels.)"""
    family = teacher.get("family")
    return family in ("given", "program", "hf_image") or (family in ("factory", "torchvision")
                                                           and bool(teacher.get("path")))


def data_section(raw: Any, base_dir: Path) -> dict[str, Any]:
    data = section(raw, "data", DATA_KEYS)
    if not data.get("name") and not data.get("path") and not data.get("given"):
        raise ConfigError("data", "needs `name` (digits, fashion_mnist or rotten_tomatoes) or `path` (an image folder, "
                          "an .npz with X and y, or a .csv / .jsonl of texts and labels)")
    for key in ("path", "test_path", "dir"):
        if data.get(key):
            data[key] = str((base_dir / str(data[key])).resolve())
    for key in ("name", "path", "test_path", "dir", "text_column", "label_column", "image_column"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"data.{key}", "must be a string", data[key])
    for key in ("val_fraction", "test_fraction"):
        if key in data and not (is_number(data[key]) and 0 < data[key] < 1):
            raise ConfigError(f"data.{key}", "must be a number in (0, 1)", data[key])
    held_out = data.get("val_fraction", 0.1) + (0 if data.get("test_path") else data.get("test_fraction", 0.2))
    if held_out > 0.9:
        fractions = f"val {data.get('val_fraction', 0.1)} + test {data.get('test_fraction', 0.2)}"
        raise ConfigError("data.val_fraction", "together with data.test_fraction must leave at least 10% of the data "
                          "for training", fractions)
    if "train_size" in data:
        integer(data["train_size"], "data.train_size", minimum=1, maximum=LIMITS["data.train_size"])
    if "max_length" in data:
        integer(data["max_length"], "data.max_length", minimum=2, maximum=MAX_LENGTH)
    if "truncation" in data and data["truncation"] not in TRUNCATIONS:
        raise ConfigError("data.truncation", f"must be one of {list(TRUNCATIONS)} (what of a longer text is read)",
                          data["truncation"])
    for key in ("image_size", "channels"):
        if key in data and not (data.get("path") and Path(data["path"]).is_dir() or is_listed(data)):
            raise ConfigError(f"data.{key}", "is a setting of image folders (data.path: a folder of class folders, "
                              "or a file listing images with image_column)", data[key])
    size = data.get("image_size")
    if size is not None:
        sides = [size] if isinstance(size, int) and not isinstance(size, bool) else size
        if not isinstance(sides, list) or len(sides) not in (1, 2) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= MAX_SIDE for v in sides):
            raise ConfigError("data.image_size", f"must be a side or [H, W], each in [4, {MAX_SIDE}]", size)
    if "channels" in data and data["channels"] not in (1, 3):
        raise ConfigError("data.channels", "must be 1 (grayscale) or 3 (RGB)", data["channels"])
    if "standardize" in data and data["standardize"] not in STANDARDIZE:
        raise ConfigError("data.standardize", f"must be one of {list(STANDARDIZE)} (per feature column or image "
                          "channel; one mean and std for all; none)", data["standardize"])
    if "feature_columns" in data and not (isinstance(data["feature_columns"], list) and data["feature_columns"]
                                          and all(isinstance(c, str) for c in data["feature_columns"])):
        raise ConfigError("data.feature_columns", "must be a list of column names", data["feature_columns"])
    if "feature_columns" in data and "text_column" in data:
        raise ConfigError("data.feature_columns", "is a setting of numeric tables; text_column names text data",
                          data["feature_columns"])
    folder = saved.is_saved(data.get("path"))  # a Hugging Face datasets folder
    given = sorted(TEXT_KEYS & set(data) - ({"label_column"} if is_table(data) or folder or is_listed(data) else set()))
    if given and not is_text(data):
        raise ConfigError(f"data.{given[0]}", "is a setting of text data (rotten_tomatoes, or a .csv / .jsonl path)",
                          data[given[0]])
    if "image_column" in data and not is_listed(data) and (not folder or is_text(data)):
        raise ConfigError("data.image_column", "names the image column of a Hugging Face datasets folder, or the "
                          "column of image paths in a .csv, .jsonl or .parquet file", data["image_column"])
    if "standardize" in data and is_text(data):
        raise ConfigError("data.standardize", "is a setting of feature and image data; text is token ids",
                          data["standardize"])
    if Augment.parse(data.get("augment")) is not None and is_text(data):
        raise ConfigError("data.augment", "flips and crops images; text is token ids", data["augment"])
    return data


def teacher_section(raw: Any, base_dir: Path) -> dict[str, Any]:
    teacher = _teacher_by_file(_user_model(section(raw, "teacher", TEACHER_KEYS), base_dir, "teacher"), base_dir)
    if "weights" in teacher:
        if "path" in teacher:
            raise ConfigError("teacher.weights", "is another name for teacher.path: give one of them",
                              teacher["weights"])
        teacher["path"] = teacher.pop("weights")
    teacher = _teacher_settings(teacher, base_dir, "teacher")
    if not teacher.get("family"):
        raise ConfigError("teacher.family", "is required to build or load the teacher: a family (e.g. mlp or cnn), "
                          "model: \"my_models.py:factory\", or torchvision: NAME")
    teacher.setdefault("arch", {})
    ensemble = teacher.get("ensemble")
    if ensemble is not None:
        if not isinstance(ensemble, list) or not 1 <= len(ensemble) < MAX_TEACHERS:
            raise ConfigError("teacher.ensemble", f"must be a list of 1 to {MAX_TEACHERS - 1} teachers (each a "
                              "mapping of family, arch, path, epochs, lr, seed; unset ones are the main teacher's)",
                              ensemble)
        teacher["ensemble"] = [_teacher_settings(section(m if m is not None else {}, f"teacher.ensemble[{i}]",
                                                          ENSEMBLE_KEYS), base_dir, f"teacher.ensemble[{i}]")
                               for i, m in enumerate(ensemble)]
    return teacher


def _teacher_by_file(teacher: dict[str, Any], base_dir: Path) -> dict[str, Any]:
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


def _user_model(section: dict[str, Any], base_dir: Path, key: str, own: str = "model") -> dict[str, Any]:
    """``model: "pkg.mod:fn"`` (or ``"file.py:fn"``, relative to the experiment file) or ``torchvision: NAME``, with
    ``kwargs``: the families ``factory`` and ``torchvision`` with those settings."""
    given = [k for k in (own, "torchvision") if k in section]
    if not given:
        if "kwargs" in section:
            raise ConfigError(f"{key}.kwargs", f"goes with {own} or torchvision", section["kwargs"])
        return section
    clash = sorted({"family", "arch", *given[1:]} & set(section))
    if clash:
        raise ConfigError(f"{key}.{given[0]}", f"names the model on its own: drop {key}.{clash[0]}", section[clash[0]])
    kwargs = section.pop("kwargs", None) or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{key}.kwargs", "must be a mapping of the constructor's arguments", kwargs)
    reference = section.pop(given[0])
    if given[0] == own:
        if isinstance(reference, str) and reference.split(":")[0].endswith(".py"):
            where, _, name = reference.partition(":")
            reference = f"{(base_dir / where).resolve()}:{name}"
        section["family"], settings = "factory", {"model": reference, **kwargs}
    else:
        section["family"], settings = "torchvision", {"name": reference, **kwargs}
    if key == "teacher":
        section["arch"] = settings
        return section
    return {**section, **settings}


def student_space(raw: Any, base_dir: Path = Path(".")) -> Space:
    if isinstance(raw, dict):
        raw = _user_model(dict(raw), base_dir, "student", own="factory")
    if not isinstance(raw, dict) or "family" not in raw:
        raise ConfigError("student", "needs a `family` (e.g. mlp, teacher, or {choice: {mlp: {...}, cnn: {...}}}), "
                          "or factory: \"my_models.py:student\" or torchvision: NAME", raw)
    return parse_space(with_searched_families(raw), "student")


def with_searched_families(student: dict[str, Any]) -> dict[str, Any]:
    """A family named without settings searches its default ranges (``models.SEARCHED``): ``family: cnn`` alone,
    each ``{}`` option of ``family: {choice: {teacher: {}, cnn: {}}}``, each name of ``{choice: [mlp, cnn]}``."""
    family = student["family"]
    if isinstance(family, str):
        return {**SEARCHED.get(family, {}), **student} if len(student) == 1 else student
    choice = family.get("choice") if isinstance(family, dict) and len(family) == 1 else None
    if isinstance(choice, list) and len(student) == 1 and all(isinstance(o, str) for o in choice) \
            and len(set(choice)) == len(choice):
        choice = {option: {} for option in choice}
    if isinstance(choice, dict):
        options = {option: dict(SEARCHED.get(option, {})) if settings in ({}, None) else settings
                   for option, settings in choice.items()}
        return {**student, "family": {"choice": options}}
    return student


def pipeline_steps(raw: Any) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("pipeline", "must be a non-empty list of compressor steps, e.g. [distill, prune, quantize]",
                          raw)
    steps = tuple(_step(item, i) for i, item in enumerate(raw))
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ConfigError("pipeline", "each compressor may appear once", names)
    for step in steps[:-1]:
        if compressors.get(step.name).final:
            raise ConfigError("pipeline", f"{step.name!r} must be the last step (its output cannot be trained or "
                              "compressed further)", names)
    return steps


def _step(item: Any, index: int) -> Step:
    if isinstance(item, str):
        item = {item: {}}
    if not isinstance(item, dict) or len(item) != 1:
        raise ConfigError(f"pipeline[{index}]", "must be a compressor name or {name: {settings}}", item)
    (name, settings), = item.items()
    try:
        compressor = compressors.get(name)
    except compressors.UnknownCompressor as err:
        raise ConfigError(f"pipeline[{index}]", str(err)) from None
    space = parse_space(settings or dict(compressor.searched), name)
    for point in boundary_points(space):
        try:
            compressor.Config.from_dict(point)
        except compressors.InvalidConfig as err:
            raise ConfigError(f"{name}.{err.field}", err.rule, err.value) from None
        except TypeError as err:
            raise ConfigError(name, f"a setting has the wrong type ({err})", point) from None
    return Step(name, space)
