"""The experiment's ``data`` section, checked and typed: which kind of data it names is decided here, once (the
kinds are ``data.spec``'s types); the rest of Squeezer dispatches on the type."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from squeezer.search.data import IMAGE_SETS, STANDARDIZE, TEXT_KEYS, TEXT_SETS, saved
from squeezer.search.data.augment import Augment
from squeezer.search.data.folders import is_listed
from squeezer.search.data.images import FASHION_MNIST_DIR, MAX_SIDE
from squeezer.search.data.spec import (Arrays, DataSpec, Digits, FashionMnist, GivenData, ImageFolder, ImageList,
                                       LmText, RottenTomatoes, SavedImages, SavedTexts, Table, TextFile)
from squeezer.search.data.tables import is_table
from squeezer.search.data.text import MAX_LENGTH, TEXT_SUFFIXES, TRUNCATIONS
from squeezer.search.errors import ConfigError
from squeezer.search.config.rules import LIMITS, integer, is_number, section

DATA_KEYS = {"name", "path", "test_path", "dir", "val_fraction", "test_fraction", "train_size", "text_column",
             "label_column", "max_length", "standardize", "image_size", "channels", "given", "feature_columns",
             "augment", "image_column", "truncation", "val_path", "block_size", "prompt_column", "response_column",
             "task_path"}
#: The settings of text for a causal language model, and of no other data.
LM_KEYS = {"val_path", "block_size", "prompt_column", "response_column", "task_path"}
#: The settings of every kind of data but a language model's text.
NOT_LM_KEYS = {"name", "dir", "label_column", "max_length", "truncation", "standardize", "image_size", "channels",
               "feature_columns", "augment", "image_column", "given"}
MAX_BLOCK = 1 << 16


def data_section(raw: Any, base_dir: Path, standardize: str = "feature", language_model: bool = False) -> DataSpec:
    """The ``data`` section checked and typed: its kind decided here, once (``data.spec``). ``standardize``: the
    default where the section does not say (``none`` for a teacher trained elsewhere); ``language_model``: the
    teacher is a causal LM, so the data is its text (``LmText``)."""
    data = section(raw, "data", DATA_KEYS)
    if language_model:
        return _lm_text(data, base_dir)
    if LM_KEYS & set(data):
        key = sorted(LM_KEYS & set(data))[0]
        raise ConfigError(f"data.{key}", "is a setting of text for a causal language model teacher (teacher: {hf: "
                          "DIR} of a ...ForCausalLM)", data[key])
    if not data.get("name") and not data.get("path") and not data.get("given"):
        raise ConfigError("data", "needs `name` (digits, fashion_mnist or rotten_tomatoes) or `path` (an image folder, "
                          "an .npz with X and y, or a .csv / .jsonl of texts and labels)")
    for key in ("path", "test_path", "dir"):
        if data.get(key):
            data[key] = str((base_dir / str(data[key])).resolve())
    for key in ("name", "path", "test_path", "dir", "text_column", "label_column", "image_column"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"data.{key}", "must be a string", data[key])
    _split_settings(data)
    held_out = data.get("val_fraction", 0.1) + (0 if data.get("test_path") else data.get("test_fraction", 0.2))
    if held_out > 0.9:
        fractions = f"val {data.get('val_fraction', 0.1)} + test {data.get('test_fraction', 0.2)}"
        raise ConfigError("data.val_fraction", "together with data.test_fraction must leave at least 10% of the data "
                          "for training", fractions)
    if "max_length" in data:
        integer(data["max_length"], "data.max_length", minimum=2, maximum=MAX_LENGTH)
    if "truncation" in data and data["truncation"] not in TRUNCATIONS:
        raise ConfigError("data.truncation", f"must be one of {list(TRUNCATIONS)} (what of a longer text is read)",
                          data["truncation"])
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
    spec = _data_kind(data, "path", standardize)
    if data.get("test_path"):
        if isinstance(spec, (Digits, FashionMnist)):
            raise ConfigError("data.test_path", f"goes with data.path; {data['name']} has its own test split",
                              data["test_path"])
        spec = replace(spec, test=_data_kind({**data, "path": data["test_path"]}, "test_path", standardize))
    return spec


def _split_settings(data: dict[str, Any]) -> None:
    """How every kind of data is split: the held-out fractions in (0, 1), a training size within bounds."""
    for key in ("val_fraction", "test_fraction"):
        if key in data and not (is_number(data[key]) and 0 < data[key] < 1):
            raise ConfigError(f"data.{key}", "must be a number in (0, 1)", data[key])
    if "train_size" in data:
        integer(data["train_size"], "data.train_size", minimum=1, maximum=LIMITS["data.train_size"])


def _lm_text(data: dict[str, Any], base_dir: Path) -> LmText:
    """A language model's text: a file or folder (``path``), held-out parts (``val_path``, ``test_path``) or
    fractions by document, the block size, the text column or the prompt and response columns."""
    clash = sorted(NOT_LM_KEYS & set(data))
    if clash:
        raise ConfigError(f"data.{clash[0]}", "is not a setting of text for a causal language model (path, val_path, "
                          "test_path, text_column, prompt_column, response_column, block_size, val_fraction, "
                          "test_fraction, train_size)", data[clash[0]])
    if not data.get("path"):
        raise ConfigError("data.path", "is required: the text (a .txt file or a folder of them, a .csv / .jsonl / "
                          ".parquet file with a text column, or a datasets folder)", data.get("path"))
    for key in ("path", "val_path", "test_path", "task_path", "text_column", "prompt_column", "response_column"):
        if key in data and not (isinstance(data[key], str) and data[key]):
            raise ConfigError(f"data.{key}", "must be a non-empty string", data[key])
    if ("prompt_column" in data) != ("response_column" in data):
        given, missing = ("prompt_column", "response_column") if "prompt_column" in data else \
            ("response_column", "prompt_column")
        raise ConfigError(f"data.{missing}", f"is required with data.{given} (prompt/response pairs: the loss is on "
                          "the response)", data[given])
    if "text_column" in data and "prompt_column" in data:
        raise ConfigError("data.text_column", "does not go with prompt_column and response_column", data["text_column"])
    _split_settings(data)
    block = integer(data.get("block_size", 128), "data.block_size", minimum=8, maximum=MAX_BLOCK)
    # read (and a missing file refused) when the study starts: a shipped experiment's text is made by a script
    paths = {k: Path((base_dir / str(data[k])).resolve()) for k in ("path", "val_path", "test_path", "task_path")
             if data.get(k)}
    settings: dict[str, Any] = {k: data[k] for k in ("text_column", "prompt_column", "response_column") if k in data}
    part = {"block_size": block, **settings}
    return LmText(path=paths["path"], val_fraction=float(data.get("val_fraction", 0.1)),
                  test_fraction=float(data.get("test_fraction", 0.1)), train_size=data.get("train_size"), **part,
                  val=LmText(path=paths["val_path"], key="data.val_path", **part) if "val_path" in paths else None,
                  task=paths.get("task_path"),
                  test=LmText(path=paths["test_path"], key="data.test_path", **part) if "test_path" in paths else None)


def _data_kind(data: dict[str, Any], which: str, standardize: str) -> DataSpec:
    """The typed spec of the data ``data[which]`` (or ``data.name``) holds, its settings checked against its kind."""
    path, key = data.get("path"), f"data.{which}"
    listed, table, folder = is_listed(data), is_table(data), saved.is_saved(path)
    texts = saved.is_text(Path(path), str(data.get("text_column", "text"))) if folder else \
        not listed and (data.get("name") in TEXT_SETS or str(path or "").endswith(TEXT_SUFFIXES) and not table)
    images = bool(path) and not folder and (listed or Path(path).is_dir() and not texts and not table)
    if which == "path":  # the settings are checked against the main file; a test file is read with them
        if any(k in data for k in ("image_size", "channels")) and not (images or folder and not texts):
            k = next(k for k in ("image_size", "channels") if k in data)
            raise ConfigError(f"data.{k}", "is a setting of image folders (data.path: a folder of class folders, or a "
                              "file listing images with image_column)", data[k])
        given = sorted(TEXT_KEYS & set(data) - ({"label_column"} if table or folder or listed else set()))
        if given and not texts:
            raise ConfigError(f"data.{given[0]}", "is a setting of text data (rotten_tomatoes, or a .csv / .jsonl "
                              "path)", data[given[0]])
        if "image_column" in data and not listed and (not folder or texts):
            raise ConfigError("data.image_column", "names the image column of a Hugging Face datasets folder, or the "
                              "column of image paths in a .csv, .jsonl or .parquet file", data["image_column"])
    augment = Augment.parse(data.get("augment"))
    if texts and which == "path":
        for k, rule in (("standardize", "is a setting of feature and image data; text is token ids"),
                        ("augment", "flips and crops images; text is token ids")):
            if k in data and (k != "augment" or augment is not None):
                raise ConfigError(f"data.{k}", rule, data[k])
    common: dict[str, Any] = {"val_fraction": float(data.get("val_fraction", 0.1)),
                              "test_fraction": float(data.get("test_fraction", 0.2)),
                              "train_size": data.get("train_size"), "augment": augment}
    columns = {k: str(data[k]) for k in ("label_column",) if k in data}
    if texts:
        text = {**common, **columns, "max_length": int(data.get("max_length", 64)),
                "truncation": str(data.get("truncation", "head")),
                **({"text_column": str(data["text_column"])} if "text_column" in data else {})}
        if not path:
            return RottenTomatoes(**text)
        return (SavedTexts if folder else TextFile)(path=Path(path), key=key, **text)
    features = {**common, "standardize": str(data.get("standardize", standardize))}
    if data.get("given"):
        return GivenData(digest=str(data["given"]), **features)
    if not path:
        if data.get("name") == "digits":
            return Digits(**features)
        if data.get("name") == "fashion_mnist":
            return FashionMnist(dir=Path(data.get("dir") or FASHION_MNIST_DIR), **features)
        raise ConfigError("data.name", f"must be one of {[*IMAGE_SETS, *TEXT_SETS]}, or set `path` to an .npz, "
                          ".csv or .jsonl file", data.get("name"))
    where = {"path": Path(path), "key": key}
    if images or folder:
        size = data.get("image_size")
        image = {**where, **features, "image_size": (size, size) if isinstance(size, int) else
                 None if size is None else tuple(size), "channels": data.get("channels")}
        if folder:
            return SavedImages(**image, **columns, image_column=str(data.get("image_column", "image")))
        if listed:
            return ImageList(**image, **columns, image_column=str(data["image_column"]))
        return ImageFolder(**image)
    if table:
        chosen = data.get("feature_columns")
        return Table(**where, **features, **columns, feature_columns=None if chosen is None else tuple(chosen))
    return Arrays(**where, **features)


__all__ = ["DATA_KEYS", "LM_KEYS", "data_section"]
