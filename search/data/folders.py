"""Image folders, however large: one sub-folder per class (its name is the class), PNG or JPEG files in it; or a
CSV, JSONL or Parquet file listing image paths and their classes.

Reading one is two passes. The scan reads every file's header only (size, colour mode). The decode runs once per
folder contents and size: worker processes of a ``DataLoader`` decode and resize the images in parallel, and each
batch is written straight into a ``uint8`` array on disk (``<cache>/images/<digest>.npy``), which is then
memory-mapped. No pass holds more than one batch of images in memory, and a resumed or repeated study skips the
decode."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from squeezer.compressors.progress import note
from squeezer.search.data.arrays import NpyWriter, leaving_nothing, open_mapped
from squeezer.search.data.rows import ROW_SUFFIXES, read_rows
from squeezer.search.defaults import cache_dir
from squeezer.search.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GRAY_MODES = {"L", "1", "I;16", "I"}
DECODE_BATCH = 256
ANNOUNCE = 2000  # images: a decode this long is announced


@dataclass(frozen=True)
class Folder:
    """What the scan found: the image files (relative to ``directory``), their class names, and the shape every
    image is decoded to (``channels``, height, width)."""

    directory: Path
    files: tuple[str, ...]
    labels: np.ndarray
    channels: int
    size: tuple[int, int]  # (H, W)

    def digest(self) -> str:
        """A hash of what the decoded array depends on: the files (names, sizes, modification times) and the
        shape they are decoded to."""
        h = hashlib.sha256(f"{self.directory.resolve()}|{self.channels}|{self.size}".encode())
        for name in self.files:
            stat = (self.directory / name).stat()
            h.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return h.hexdigest()[:20]


def scan(directory: Path, key: str, image_size: tuple[int, int] | None = None,
         channels: int | None = None) -> Folder:
    """The image files and classes of ``directory``, from their headers; the decoded shape: ``image_size`` (H, W),
    or the images' one size; ``channels`` 1 or 3 (default: 3 unless every image is grayscale)."""
    folders = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise ConfigError(key, "an image folder needs one sub-folder per class, at least two", str(directory))
    files: list[tuple[str, str]] = []
    for folder in folders:
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ConfigError(key, f"class folder {folder.name!r} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                              str(folder))
        files += [(str(p.relative_to(directory)), folder.name) for p in found]
    return _headers(directory, files, key, image_size, channels)


def is_listed(spec: Mapping[str, Any]) -> bool:
    """Whether ``spec['path']`` is a file listing images: a CSV, JSONL or Parquet file with an ``image_column``."""
    return "image_column" in spec and str(spec.get("path") or "").endswith(ROW_SUFFIXES)


def listed(table: Path, key: str, image_column: str, label_column: str, image_size: tuple[int, int] | None = None,
           channels: int | None = None) -> Folder:
    """The images a CSV, JSONL or Parquet file lists: a column of image paths (relative to the file's folder, or
    absolute) and a label column; then as ``scan``."""
    rows = read_rows(table, key, f"a column of image paths ({image_column}) and a label column ({label_column})")
    if not rows:
        raise ConfigError(key, "lists no images", str(table))
    files: list[tuple[str, str]] = []
    for number, row in enumerate(rows, 1):
        for column, setting in ((image_column, "data.image_column"), (label_column, "data.label_column")):
            if row.get(column) is None or str(row[column]).strip() == "":
                raise ConfigError(setting, f"must name {'an image' if column == image_column else 'a class'} in "
                                  f"every row of {table.name}; row {number} has {row.get(column)!r} (its columns: "
                                  f"{sorted(row)[:8]})", column)
        files.append((str(row[image_column]).strip(), str(row[label_column]).strip()))
    return _headers(table.parent, files, key, image_size, channels)


def _headers(directory: Path, files: list[tuple[str, str]], key: str, image_size: tuple[int, int] | None,
             channels: int | None) -> Folder:
    """``files`` (path under ``directory``, class) read by their headers only: their colour modes and sizes."""
    from PIL import Image, UnidentifiedImageError

    modes, sizes = set(), set()
    for name, _ in files:
        try:
            with Image.open(directory / name) as image:  # the header only: nothing is decoded here
                modes.add(image.mode)
                sizes.add(image.size)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise ConfigError(key, f"cannot read the image {name} ({reason(err)})", str(directory)) from None
    if image_size is None and len(sizes) > 1:
        raise ConfigError("data.image_size", f"is needed: the images have {len(sizes)} sizes (e.g. "
                          f"{sorted(sizes)[:3]} as width x height); set image_size: [H, W] to resize them", None)
    width, height = (image_size[1], image_size[0]) if image_size else next(iter(sizes))
    return Folder(directory, tuple(f for f, _ in files), np.array([c for _, c in files]),
                  channels or (1 if modes <= GRAY_MODES else 3), (height, width))


def decode(folder: Folder, key: str) -> np.ndarray:
    """Every image of ``folder`` as ``uint8`` pixels (N, C, H, W), memory-mapped from the decode cache (decoded
    now, in worker processes, if not there yet)."""
    return decoded(FolderImages(folder), folder.digest(), len(folder.files), (folder.channels, *folder.size), key,
                   str(folder.directory))


class FolderImages:
    """Image ``i`` of a folder, opened (picklable: DataLoader workers call it)."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder

    def __call__(self, i: int) -> Any:
        from PIL import Image

        return Image.open(self.folder.directory / self.folder.files[i])

    def name(self, i: int) -> str:
        return self.folder.files[i]


def decoded(images: Any, digest: str, count: int, shape: tuple[int, int, int], key: str, where: str) -> np.ndarray:
    """``count`` images (``images(i)`` opens image i as a PIL image; ``images.name(i)`` names it) as ``uint8``
    pixels of ``shape`` (C, H, W), memory-mapped from ``<cache>/images/<digest>.npy``, decoded there first if
    missing."""
    path = cache_dir() / "images" / f"{digest}.npy"
    if not path.is_file():
        _decode_to(images, count, shape, key, where, path)
    return open_mapped(path)


def _decode_to(images: Any, count: int, shape: tuple[int, int, int], key: str, where: str, path: Path) -> None:
    workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if count > DECODE_BATCH else 0
    if count >= ANNOUNCE:
        note(f"data: decoding {count} images of {where} once (kept in {path.parent})")
    loader = torch.utils.data.DataLoader(_Decoder(images, count, shape), batch_size=DECODE_BATCH,
                                         num_workers=workers, collate_fn=list)
    with leaving_nothing(path), NpyWriter(path, (count, *shape), np.uint8) as out:  # an unreadable image: nothing
        for batch in loader:
            for offset, (_, error) in enumerate(batch):
                if error is not None:
                    raise ConfigError(key, f"cannot read the image {images.name(out.rows + offset)} ({error})", where)
            out.append(np.stack([pixels for pixels, _ in batch]))


class _Decoder(torch.utils.data.Dataset):
    """One image, decoded, converted and resized: ``(pixels (C, H, W) uint8, None)`` or ``(None, reason)``."""

    def __init__(self, images: Any, count: int, shape: tuple[int, int, int]) -> None:
        self.images, self.count, self.shape = images, count, shape

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, str | None]:
        from PIL import Image, UnidentifiedImageError

        channels, height, width = self.shape
        try:
            with self.images(i) as image:
                image = image.convert("L" if channels == 1 else "RGB")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            return None, reason(err)
        return (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)), None


def reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'corrupt'}"


__all__ = ["Folder", "GRAY_MODES", "IMAGE_SUFFIXES", "decode", "decoded", "is_listed", "listed",
           "reason", "scan"]
