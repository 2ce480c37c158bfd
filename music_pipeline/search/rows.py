"""Rows of a 2-D ``.npy`` file read on demand, without mapping the file.

A compressed index searches its codes and reads float32 rows only for the few tracks it returns
(and for the query track, radio and path candidates). Memory-mapping ``vectors.npy`` would work,
but every page a process touches through a mapping counts in its resident memory — on kernels with
large page-cache folios one row brings megabytes around it — so a long-running query process
would look as big as the file. ``NpyRows`` reads rows with ``os.preadv`` into fresh arrays
instead: the process holds what it asked for; the page cache stays the operating system's.

It indexes like a read-only array of shape (n, d): an int (one row), a slice, an int array
(any order, repeats allowed) or a boolean mask; ``np.asarray`` reads everything.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from music_pipeline.artifacts import artifact_path


class NpyRows:
    ndim = 2

    def __init__(self, path: str | os.PathLike):
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(
                f"{path}: expected a 2-D C-ordered numeric array, found shape {shape}, dtype {dtype}, fortran order {fortran}"
            )
        self.path = str(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._offset = offset
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    @classmethod
    def open(cls, path) -> NpyRows:
        """A local file directly; a remote one (object store) is first copied to a temporary file
        that is unlinked at once (the open descriptor keeps it until the process lets go)."""
        path = artifact_path(path)
        if not hasattr(path, "fs"):
            return cls(path)
        fd, tmp = tempfile.mkstemp(prefix="music-pipeline-vectors-", suffix=".npy")
        os.close(fd)
        try:
            path.fs.get_file(path.path, tmp)
            return cls(tmp)
        finally:
            os.unlink(tmp)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._row_bytes

    def _read(self, start: int, out: np.ndarray) -> None:
        """Fill ``out`` (contiguous rows) with the rows from ``start`` on."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        done, offset = 0, self._offset + start * self._row_bytes
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got <= 0:
                raise OSError(f"{self.path}: file ended {len(view) - done} bytes early")
            done += got

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        n = self.shape[0]
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
            idx = np.flatnonzero(idx)
        if idx.dtype.kind not in "iu":
            raise IndexError(f"rows must be integers or a boolean mask, not {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        flat = idx.ravel()
        uniq, inverse = np.unique(flat, return_inverse=True)
        out = np.empty((len(uniq), self.shape[1]), dtype=self.dtype)
        cuts = np.flatnonzero(np.diff(uniq) != 1) + 1  # runs of consecutive rows: one read each
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(uniq)], strict=True) if len(uniq) else ():
            self._read(int(uniq[a]), out[a:b])
        if len(uniq) != len(flat) or (len(flat) and not np.array_equal(uniq, flat)):
            out = out[inverse]
        return out.reshape(idx.shape + (self.shape[1],))

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, rest = key[0], key[1:]
            got = self[rows]
            return got[(slice(None),) + rest] if np.ndim(got) == 2 else got[rest]
        if isinstance(key, (int, np.integer)):
            return self._rows(np.array([int(key)]))[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self._rows(np.arange(start, stop, step))
            out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype)
            if len(out):
                self._read(start, out)
            return out
        return self._rows(key)

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"NpyRows({self.path!r}, shape={self.shape}, dtype={self.dtype})"
