"""Streaming ``.npy`` files: written item by item with plain file writes, read memory-mapped.

Writing through ``numpy.memmap`` would keep every written page mapped (and counted in the
process's resident memory) until the file is closed; a sequential writer keeps memory flat
whatever the size of the dataset. The space is reserved up front, so a full disk is reported
before any tile is written instead of as a crash half way.
"""

import os

import numpy as np

from ..errors import FjordError


class NpyWriter:
    """Write an array of known shape ``(n, *item_shape)`` one item (or block) at a time."""

    def __init__(self, path, n, item_shape, dtype):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.item_shape = tuple(int(s) for s in item_shape)
        self.n = int(n)
        self.written = 0
        self._file = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (self.n,) + self.item_shape}
        np.lib.format.write_array_header_1_0(self._file, header)
        self._file.flush()
        size = self._file.tell() + self.n * int(np.prod(self.item_shape)) * self.dtype.itemsize
        try:
            if hasattr(os, "posix_fallocate") and size > self._file.tell():
                os.posix_fallocate(self._file.fileno(), 0, size)
        except OSError as exc:
            self.close()
            raise FjordError(f"Not enough disk space for {path!r} ({size / 2**20:.0f} MiB): "
                             f"{exc.strerror}. Free some space or choose another folder.") from None

    def write(self, items):
        items = np.ascontiguousarray(items, dtype=self.dtype)
        if items.shape[1:] != self.item_shape:
            items = items.reshape((-1,) + self.item_shape)
        if self.written + len(items) > self.n:
            raise ValueError(f"{self.path}: more items than the {self.n} announced")
        try:
            self._file.write(items.tobytes())
        except OSError as exc:
            raise FjordError(f"Writing {self.path!r} failed: {exc.strerror}.") from None
        self.written += len(items)

    def close(self):
        if not self._file.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        if exc_type is None and self.written != self.n:
            raise ValueError(f"{self.path}: {self.written} items written, {self.n} announced")
        return False


def open_npy(path):
    """A read-only memory map of a ``.npy`` file of a dataset; FjordError naming the file when
    it is missing, truncated or not an array file."""

    folder = os.path.dirname(os.path.abspath(path))
    rebuild = (f"The dataset {folder!r} is damaged: rebuild it with 'Make training tiles' "
               "(fjord:maketiles) into a new folder.")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(f))
            offset = f.tell()
    except FileNotFoundError:
        raise FjordError(f"The file {os.path.basename(path)} of the dataset is missing. {rebuild}") from None
    except (OSError, ValueError) as exc:
        raise FjordError(f"{os.path.basename(path)} is not a readable array file ({exc}). "
                         f"{rebuild}") from None
    expected = offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    size = os.path.getsize(path)
    if size < expected:
        raise FjordError(f"{os.path.basename(path)} is truncated: {size:,} bytes where its header "
                         f"announces {expected:,} ({shape} {np.dtype(dtype).name}); a copy or a "
                         f"tiling run was cut short. {rebuild}")
    return np.load(path, mmap_mode="r")
