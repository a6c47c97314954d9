"""What a parsed GGUF file is: its constants, TensorInfo, GGUFFile and the lazy StringArray.

The layout these describe is in reader.py's docstring; reader.py fills them, writer.py writes
headers from them, working_copy.py maps tensors by them.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

from edgees.errors import GGUFError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: tensor names are at most 63 bytes
MAX_STRING = 64 << 20  # no sane metadata string is larger; refuse before reading it
U64_MAX = (1 << 64) - 1

# KV value types (gguf.h enum gguf_type): struct format and size of the scalar ones.
_STRING, _ARRAY = 8, 9
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
          10: "<u8", 11: "<i8", 12: "<f8"}
_VALUE_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32",
                     6: "float32", 7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64",
                     12: "float64"}
_U64 = struct.Struct("<Q")
_STRUCTS = {f: struct.Struct("<" + f) for f in _SCALAR.values()}
if sys.byteorder != "little":  # the string walk reads lengths with memoryview.cast("Q")
    raise ImportError("edgees.gguf supports little-endian hosts only (x86, ARM)")
# Smallest possible encodings, used to bound counts by the bytes left in the file.
_MIN_KV_BYTES = 8 + 4 + 1  # empty key, type, 1-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # empty name, n_dims, ne0, type, offset

_HINT_DAMAGED = "the file is damaged or not a GGUF model: re-download or re-convert it"
_HINT_TRUNCATED = "the file is truncated (interrupted download or copy?): download it again"



def _type_name(type_id: int) -> str:
    try:
        return GGMLQuantizationType(type_id).name
    except ValueError:
        return f"#{type_id}"


def _short(s: str, n: int = 60) -> str:
    r = repr(s)
    return r if len(r) <= n else r[: n - 4] + "...'"


# ---- data types -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_id: int
    type_name: str
    shape: tuple[int, ...]  # ggml order: ne0 (the contiguous row length) first
    n_elements: int
    offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def n_dims(self) -> int:
        return len(self.shape)

    @property
    def end(self) -> int:
        return self.offset + self.nbytes


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict
    tensors: list[TensorInfo]  # in header order
    alignment: int
    data_offset: int
    file_size: int
    architecture: str | None
    # Raw header spans, absolute byte ranges (for export, which copies them verbatim): each
    # metadata entry as (key, start, end), and the whole tensor-info table as (start, end).
    kv_spans: list = field(default_factory=list, repr=False)
    infos_span: tuple = (0, 0)
    _by_name: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_name = {t.name: t for t in self.tensors}

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise GGUFError(f"{self.path}: no tensor named {_short(name)}; "
                            f"`edgees info {self.path}` lists the tensors") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name


class StringArray(Sequence):
    """A GGUF string array kept as its raw bytes; elements decode (UTF-8, 'replace') on access."""

    def __init__(self, raw: bytes, count: int):
        self._raw = raw  # count x (len u64 | bytes)
        self._count = count
        self._starts: np.ndarray | None = None

    def __len__(self) -> int:
        return self._count

    def _index(self) -> np.ndarray:
        if self._starts is None:
            pos, raw, unpack = 0, self._raw, _U64.unpack_from
            ends = [pos := pos + 8 + unpack(raw, pos)[0] for _ in range(self._count)]
            self._starts = np.array([0] + ends, dtype=np.int64)
        return self._starts

    def raw(self, i: int) -> bytes:
        s = int(self._index()[i])
        n = int.from_bytes(self._raw[s:s + 8], "little")
        return self._raw[s + 8:s + 8 + n]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._count))]
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(i)
        return self.raw(i).decode("utf-8", "replace")

    def __iter__(self):
        pos, raw = 0, self._raw
        for _ in range(self._count):
            n = int.from_bytes(raw[pos:pos + 8], "little")
            yield raw[pos + 8:pos + 8 + n].decode("utf-8", "replace")
            pos += 8 + n

    def tolist(self) -> list[str]:
        return list(self)

    def __eq__(self, other):
        if isinstance(other, (StringArray, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"StringArray(len={self._count})"
