"""Read a TF1 checkpoint (a TensorFlow "tensor bundle") with the standard library and numpy.

A checkpoint prefix ``P`` is two files:

* ``P.index`` — an SSTable (the leveldb table format TensorFlow's ``lib/io/table`` writes): data
  blocks of prefix-compressed key/value entries, an index block pointing at them, and a 48-byte
  footer. The key ``""`` holds the ``BundleHeaderProto``; every other key is a variable name whose
  value is a ``BundleEntryProto`` (dtype, shape, shard, offset, size, crc32c).
* ``P.data-00000-of-00001`` — the tensors' raw little-endian bytes, one after another.

Only the protobuf fields needed are decoded, from the wire format by hand. TensorFlow writes the
index uncompressed; a snappy-compressed block is refused with a clear error (no snappy here).
Integrity is the caller's business: the musicnn files are pinned by SHA-256 (``pretrained``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5  # compression type byte + masked crc32c
# tensorflow/core/framework/types.proto -> numpy (little-endian)
_DTYPES = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


class CheckpointError(ValueError):
    """The checkpoint cannot be read by this reader (damaged, or a feature it does not handle)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varint/fixed fields, bytes for
    length-delimited ones."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + _BLOCK_TRAILER_LEN > len(data):
        raise CheckpointError("index block lies past the end of the file")
    kind = data[offset + size]
    if kind == 1:
        raise CheckpointError("index block is snappy-compressed; this reader handles uncompressed tables only")
    if kind != 0:
        raise CheckpointError(f"index block has unknown compression type {kind}")
    return data[offset : offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointError("index block too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        n_value, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + n_value]))
        pos += n_value
    return entries


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_index(index: bytes) -> dict[str, bytes]:
    """Every key/value of an SSTable's data blocks, keys decoded as UTF-8."""
    if len(index) < _FOOTER_LEN:
        raise CheckpointError("index file too short for a table footer")
    footer = index[-_FOOTER_LEN:]
    if struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)[0] != _TABLE_MAGIC:
        raise CheckpointError("not a TensorFlow checkpoint index (bad table magic)")
    _meta_offset, _meta_size, pos = _handle(footer)
    index_offset, index_size, _ = _handle(footer, pos)
    out = {}
    for _last_key, handle in _block_entries(_block(index, index_offset, index_size)):
        offset, size, _ = _handle(handle)
        for key, value in _block_entries(_block(index, offset, size)):
            out[key.decode("utf-8")] = value
    return out


def _entry(name: str, value: bytes) -> tuple[np.dtype, tuple[int, ...], int, int, int]:
    """(dtype, shape, shard, offset, size) of one BundleEntryProto."""
    dtype = None
    shape: tuple[int, ...] = ()
    shard = offset = size = 0
    for number, v in _fields(value):
        if number == 1:
            if v not in _DTYPES:
                raise CheckpointError(f"{name}: unsupported dtype enum {v}")
            dtype = _DTYPES[v]
        elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}
            dims = []
            for n, dim in _fields(v):
                if n == 2:
                    dims.append(next((int(s) for k, s in _fields(dim) if k == 1), 0))
                elif n == 3 and v:
                    raise CheckpointError(f"{name}: unknown rank")
            shape = tuple(dims)
        elif number == 3:
            shard = v
        elif number == 4:
            offset = v
        elif number == 5:
            size = v
        elif number == 7:
            raise CheckpointError(f"{name}: partitioned (sliced) variables are not supported")
    if dtype is None:
        raise CheckpointError(f"{name}: entry without a dtype")
    return dtype, shape, shard, offset, size


def read_checkpoint_prefix(index_path: str | Path, data_paths: list[str | Path]) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint: ``index_path`` is the ``.index`` file, ``data_paths`` its data
    shards in order (``.data-00000-of-00001`` …). Arrays are native-endian copies."""
    entries = read_index(Path(index_path).read_bytes())
    header = entries.pop("", None)
    if header is not None:
        fields = dict(_fields(header))
        n_shards = fields.get(1, 1)
        if fields.get(2, 0) != 0:
            raise CheckpointError("checkpoint written big-endian")
        if n_shards != len(data_paths):
            raise CheckpointError(f"checkpoint has {n_shards} data shards, {len(data_paths)} given")
    shards = [Path(p).read_bytes() for p in data_paths]
    out = {}
    for name, value in entries.items():
        dtype, shape, shard, offset, size = _entry(name, value)
        count = int(np.prod(shape, dtype=np.int64))
        if size != count * dtype.itemsize or shard >= len(shards) or offset + size > len(shards[shard]):
            raise CheckpointError(f"{name}: entry does not fit its data file (shape {shape}, {size} bytes)")
        arr = np.frombuffer(shards[shard], dtype=dtype, count=count, offset=offset).reshape(shape)
        out[name] = arr.astype(dtype.newbyteorder("="), copy=True)
    return out


def read_checkpoint(folder: str | Path, stem: str = "") -> dict[str, np.ndarray]:
    """The tensors of the single-shard checkpoint ``<folder>/<stem>.index`` (the musicnn wheel's
    files have an empty stem: ``.index``, ``.data-00000-of-00001``)."""
    folder = Path(folder)
    return read_checkpoint_prefix(folder / f"{stem}.index", [folder / f"{stem}.data-00000-of-00001"])
