"""Arrays written to disk a chunk at a time, in NumPy's ``.npy`` format, for memory-mapping afterwards.

Written through the file, not through a writable memory map: every ``SYNC_BYTES`` the written pages are flushed and
dropped from the page cache, so a process under a memory limit never holds more than that in dirty pages (a memory
map's dirty pages are written back only when the kernel is already short of memory, and it stalls). The file is
complete or absent: it is written beside its name and renamed when whole. An uncompressed ``.npz`` member is mapped
in place (``map_member``)."""

from __future__ import annotations

import ctypes
import mmap
import os
import zipfile
from pathlib import Path
from types import TracebackType

import numpy as np

SYNC_BYTES = 32 << 20


class NpyWriter:
    """``with NpyWriter(path, shape, dtype) as out: out.append(rows)`` ... the rows in order, ``shape[0]`` in all."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.partial = path.with_suffix(f".{os.getpid()}.partial")
        self.rows = self.unsynced = 0

    def __enter__(self) -> NpyWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.partial, "wb")
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                         "fortran_order": False, "shape": self.shape})
        return self

    def append(self, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        if data.shape[1:] != self.shape[1:] or self.rows + len(data) > self.shape[0]:
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
        try:
            if kind is None:
                if self.rows != self.shape[0]:
                    raise ValueError(f"{self.rows} rows written of {self.shape[0]}")
                self._sync()
        finally:
            self.file.close()
            if kind is None and self.rows == self.shape[0]:
                os.replace(self.partial, self.path)
            else:
                self.partial.unlink(missing_ok=True)


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


def map_member(archive: Path, name: str) -> np.memmap | None:
    """The array ``name`` of an ``.npz`` archive memory-mapped where the archive stores it uncompressed (as
    ``np.savez`` does); None where it is compressed (``np.savez_compressed``) or not a plain array."""
    with zipfile.ZipFile(archive) as zipped:
        info = next((i for i in zipped.infolist() if i.filename == f"{name}.npy"), None)
    if info is None or info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(archive, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)  # the member's local header: its name and extra field lengths at bytes 26-29
        handle.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                    + int.from_bytes(local[28:30], "little"))
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            return None
        shape, fortran, dtype = read_header[version](handle)
        offset = handle.tell()
    if dtype.hasobject or not shape:
        return None
    return np.memmap(archive, dtype=dtype, mode="c", shape=shape, order="F" if fortran else "C", offset=offset)


__all__ = ["NpyWriter", "map_member", "open_mapped"]
