"""Arrays written to disk a chunk at a time, in NumPy's ``.npy`` format, for memory-mapping afterwards.

Written through the file, not through a writable memory map: every ``SYNC_BYTES`` the written pages are flushed and
dropped from the page cache, so a process under a memory limit never holds more than that in dirty pages (a memory
map's dirty pages are written back only when the kernel is already short of memory, and it stalls). The file is
complete or absent: it is written beside its name and renamed when whole. An ``.npz`` member is mapped in place, or
decompressed into a file once and mapped there (``map_member``)."""

from __future__ import annotations

import ctypes
import mmap
import os
import zipfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from squeezer.compressors.progress import note

SYNC_BYTES = 32 << 20


class NpyWriter:
    """``with NpyWriter(path, shape, dtype) as out: out.append(rows)`` ... the rows in order, ``shape[0]`` in all;
    a ``shape[0]`` of None takes as many rows as are appended (the header is rewritten at the end)."""

    def __init__(self, path: Path, shape: tuple[int | None, ...], dtype: np.dtype | type) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.partial = path.with_suffix(f".{os.getpid()}.partial")
        self.rows = self.unsynced = 0

    def __enter__(self) -> NpyWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.partial, "wb")
        self.file.write(self._header(self.shape))
        return self

    def _header(self, shape: tuple[int | None, ...], length: int | None = None) -> bytes:
        """The .npy 1.0 header of ``shape``, padded (as NumPy pads it) to a multiple of 64 bytes or to ``length``:
        an unknown row count is written as a 16-digit placeholder, so the real one fits in its place."""
        rows = 10 ** 15 if shape[0] is None else shape[0]
        text = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (rows, *shape[1:])})
        length = length or -(-(10 + len(text) + 1) // 64) * 64
        return b"\x93NUMPY\x01\x00" + (length - 10).to_bytes(2, "little") + \
            (text + " " * (length - 11 - len(text)) + "\n").encode("latin1")

    def append(self, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        full = self.shape[0] is not None and self.rows + len(data) > self.shape[0]
        if data.shape[1:] != self.shape[1:] or full:
            raise ValueError(f"rows of shape {data.shape} do not continue an array of shape {self.shape}")
        self.file.write(data.tobytes())
        self.rows, self.unsynced = self.rows + len(data), self.unsynced + data.nbytes
        if self.unsynced >= SYNC_BYTES:
            self._sync()

    def _sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        if hasattr(os, "posix_fadvise"):  # written: the pages need not stay in memory
            os.posix_fadvise(self.file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        self.unsynced = 0

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        whole = kind is None and self.rows == (self.rows if self.shape[0] is None else self.shape[0])
        try:
            if kind is None:
                if not whole:
                    raise ValueError(f"{self.rows} rows written of {self.shape[0]}")
                if self.shape[0] is None:
                    self.file.seek(0)
                    self.file.write(self._header((self.rows, *self.shape[1:]), len(self._header(self.shape))))
                self._sync()
        finally:
            self.file.close()
            if whole:
                os.replace(self.partial, self.path)
            else:
                self.partial.unlink(missing_ok=True)


class NpyRows:
    """A ``.npy`` array of a known ``shape`` filled in any order, a range of rows at a time, through the file (as
    ``NpyWriter``: its dirty pages synced and dropped every ``SYNC_BYTES``), resumable: ``done`` rows are recorded
    beside it (``<name>.done``) as they are synced, and an existing file of the same shape is written on, not
    begun again. ``finish`` marks it whole."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.progress = path.with_name(path.name + ".done")
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        header = NpyWriter(path, shape, dtype)._header(shape)
        self.offset, self.unsynced = len(header), 0
        fresh = not (path.is_file() and self.progress.is_file() and path.stat().st_size == self.nbytes)
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as file:
                file.write(header)
                file.truncate(self.nbytes)  # sparse: blocks are allocated as rows are written
            self.progress.write_text("0")
        self.file = open(path, "r+b")

    @property
    def nbytes(self) -> int:
        return self.offset + self.shape[0] * self.row_bytes

    @property
    def done(self) -> int:
        """The rows written and synced, from the first: where a resumed fill starts."""
        return int(self.progress.read_text() or 0) if self.progress.is_file() else self.shape[0]

    def write(self, start: int, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        if data.shape[1:] != self.shape[1:] or start + len(data) > self.shape[0]:
            raise ValueError(f"rows of shape {data.shape} at {start} do not fit an array of shape {self.shape}")
        self.file.seek(self.offset + start * self.row_bytes)
        self.file.write(data.tobytes())
        self.unsynced += data.nbytes

    def sync(self, done: int) -> None:
        """Flush what is written (rows ``[0, done)``: recorded as done) and drop it from the page cache."""
        self.file.flush()
        os.fsync(self.file.fileno())
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        self.progress.write_text(str(done))
        self.unsynced = 0

    def finish(self) -> None:
        self.sync(self.shape[0])
        self.file.close()
        self.progress.unlink()


@contextmanager
def leaving_nothing(path: Path) -> Iterator[None]:
    """Removes the folders made for ``path`` (its parent and grandparent) again if what runs inside fails."""
    created = [d for d in (path.parent.parent, path.parent) if not d.exists()]
    try:
        yield
    except BaseException:
        for made in reversed(created):
            if made.is_dir() and not any(made.iterdir()):
                made.rmdir()
        raise


def open_mapped(path: Path, writable: bool = False) -> np.memmap:
    """The ``.npy`` array at ``path``, memory-mapped for random access: the kernel reads the pages a row needs and
    nothing around them (read-ahead off: batches pick rows at random, and read-ahead pages would evict the ones in
    use when memory is short; under a 1.5 GiB limit a 3.5 GB training split read 20x its size per epoch with it).
    ``writable``: copy-on-write, so that a tensor op on it never writes the file."""
    array = np.load(path, mmap_mode="c" if writable else "r")
    advise = getattr(mmap, "MADV_RANDOM", None)
    if advise is not None and array.nbytes:
        start = array.ctypes.data - array.ctypes.data % mmap.PAGESIZE  # within the mapping: it starts on a page
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(array.ctypes.data + array.nbytes - start), advise)
    return array


def file_stamp(path: Path) -> str:
    """What a cache keyed on a user's file depends on: its resolved name, size and modification time."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def labelled_rows(path: Path, chunks: Iterable[tuple[np.ndarray, Any]], dtype: type, check: Callable[[np.ndarray],
                  None], announce: str) -> tuple[np.memmap, np.ndarray]:
    """Rows and their labels, written once a chunk at a time to ``path`` (then memory-mapped) and to
    ``<stem>.labels.npy`` beside it, ``announce`` printed as it starts; ``check`` sees every label before the rows'
    file is whole (a refusal leaves nothing). Read from there once written."""
    labels_file = path.with_name(f"{path.stem}.labels.npy")
    if not path.is_file():
        note(announce)
        with leaving_nothing(path), ExitStack() as stack:
            out, parts = None, []
            for rows, labels in chunks:
                out = out or stack.enter_context(NpyWriter(path, (None, *rows.shape[1:]), dtype))
                out.append(rows)
                parts.append(np.asarray(labels))
            every = np.concatenate(parts) if parts else np.array([])
            check(every)
            np.save(labels_file, every, allow_pickle=False)  # before the rows' file is whole
    return open_mapped(path, writable=True), np.load(labels_file, allow_pickle=False)


def member_bytes(archive: Path, name: str) -> int | None:
    """How many bytes the array ``name`` of an ``.npz`` archive takes unpacked (None if it has no such member)."""
    with zipfile.ZipFile(archive) as zipped:
        info = next((i for i in zipped.infolist() if i.filename == f"{name}.npy"), None)
    return None if info is None else info.file_size


def map_member(archive: Path, name: str, unpacked: Path) -> np.memmap | None:
    """The array ``name`` of an ``.npz`` archive, memory-mapped: where the archive stores it (``np.savez``), or, if
    it is compressed (``np.savez_compressed``), from ``unpacked``, where it is decompressed once a chunk at a time.
    None if it is not a plain array."""
    read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with zipfile.ZipFile(archive) as zipped:
        info = next(i for i in zipped.infolist() if i.filename == f"{name}.npy")
        with zipped.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in read_header:
                return None
            shape, fortran, dtype = read_header[version](member)
            if dtype.hasobject or not shape or fortran and len(shape) > 1:
                return None
            if info.compress_type == zipfile.ZIP_STORED:
                offset = _data_offset(archive, info) + member.tell()
                return np.memmap(archive, dtype=dtype, mode="c", shape=shape, offset=offset)
            if not unpacked.is_file():
                row = dtype.itemsize * int(np.prod(shape[1:]))
                with leaving_nothing(unpacked), NpyWriter(unpacked, shape, dtype) as out:
                    while out.rows < shape[0]:
                        rows = min(max(1, SYNC_BYTES // max(1, row)), shape[0] - out.rows)
                        out.append(np.frombuffer(_read_exactly(member, rows * row), dtype).reshape(rows, *shape[1:]))
    return open_mapped(unpacked, writable=True)


def _data_offset(archive: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start in the archive: after its local header, name and extra field."""
    with open(archive, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)  # the member's local header: its name and extra field lengths at bytes 26-29
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


def _read_exactly(stream: Any, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError(f"the archive ends {left} bytes early")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


__all__ = ["NpyWriter", "file_stamp", "labelled_rows", "leaving_nothing", "map_member", "member_bytes",
           "open_mapped"]
