"""GGUF files: strict header validation, read-only tensor views, and the writable RAM working copy.

This is the only module in edgees that knows file offsets. Everything else asks for a tensor by name.

File layout (little-endian; GGUF v2/v3, see gguf.md in llama.cpp):

    magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
    n_kv x       key: str | value_type u32 | value
    n_tensors x  name: str | n_dims u32 | ne[n_dims] u64 | ggml_type u32 | offset u64
    padding to general.alignment (default 32)  -> data_offset
    tensor data: tensor i lives at data_offset + offset_i, nbytes_i = n_elements / block * block_bytes

    str   = len u64 | utf-8 bytes
    array = elem_type u32 | count u64 | elements (nested arrays are rejected, as llama.cpp does)

`read_gguf` never trusts a size field: every count and length is checked against what the rest of
the file could hold before anything is allocated, all arithmetic is in Python ints, and each check
fails with a one-line GGUFError naming the file, the byte offset, the field, the problem and a fix.
The PyPI `gguf` reader is not used for reading: it can hang or overflow on hostile input.

Metadata values: scalars as Python int/float/bool/str; numeric arrays as lists; string arrays as a
lazy `StringArray` (a Sequence[str] that decodes on access), so a 262k-token vocabulary costs one
walk over the lengths, not 262k Python objects.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES

from edgees.errors import GGUFError
from edgees.gguf.header import (_ARRAY, _MIN_KV_BYTES, _MIN_TENSOR_INFO_BYTES, _NUMPY, _SCALAR, _STRING,
                                _STRUCTS, _VALUE_TYPE_NAMES, DEFAULT_ALIGNMENT, GGUF_MAGIC,
                                MAX_DIMS, MAX_NAME, MAX_STRING, U64_MAX, GGUFFile, StringArray,
                                TensorInfo, _HINT_DAMAGED, _HINT_TRUNCATED, _short, _type_name)


# ---- the reader -----------------------------------------------------------------------------


class _Reader:
    """Bounds-checked cursor over a file; reads the header incrementally, never past EOF."""

    def __init__(self, f, path: Path, size: int):
        self.f, self.path, self.size = f, path, size
        self.buf = bytearray()
        self.pos = 0

    def error(self, at: int, what: str, hint: str = _HINT_DAMAGED) -> GGUFError:
        return GGUFError(f"{self.path}: byte {at}: {what}; {hint}")

    def need(self, n: int, what: str) -> int:
        """Make bytes [pos, pos+n) available; return pos. Truncation is a GGUFError."""
        end = self.pos + n
        if end > self.size:
            raise self.error(self.pos, f"{what} needs {n} bytes but the file ends at byte "
                                       f"{self.size}", _HINT_TRUNCATED)
        if end > len(self.buf):
            want = min(self.size, max(end, 2 * len(self.buf), 1 << 16))
            self.f.seek(len(self.buf))
            self.buf += self.f.read(want - len(self.buf))
            if len(self.buf) < end:
                raise self.error(self.pos, f"{what}: the file shrank while being read",
                                 "is another program writing it? try again when it is done")
        return self.pos

    def left(self) -> int:
        return self.size - self.pos

    def scalar(self, fmt: str, what: str):
        st = _STRUCTS[fmt]
        p = self.need(st.size, what)
        self.pos += st.size
        return st.unpack_from(self.buf, p)[0]

    def u32(self, what: str) -> int:
        return self.scalar("I", what)

    def u64(self, what: str) -> int:
        return self.scalar("Q", what)

    def raw_string(self, what: str, limit: int = MAX_STRING) -> bytes:
        at = self.pos
        n = self.u64(f"{what} length")
        if n > self.left():
            raise self.error(at, f"{what} length {n} exceeds the {self.left()} bytes left in "
                                 "the file", _HINT_TRUNCATED if n < (1 << 40) else _HINT_DAMAGED)
        if n > limit:
            raise self.error(at, f"{what} length {n} exceeds the limit of {limit} bytes")
        p = self.need(n, what)
        self.pos += n
        return bytes(self.buf[p:p + n])

    def name(self, what: str, limit: int = MAX_STRING) -> str:
        at = self.pos
        b = self.raw_string(what, limit)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(at, f"{what} is not valid UTF-8: {b[:40]!r}") from None

    def value(self, vtype: int, what: str, at: int):
        if vtype in _SCALAR:
            v = self.scalar(_SCALAR[vtype], what)
            return bool(v) if vtype == 7 else v
        if vtype == _STRING:
            return self.raw_string(what).decode("utf-8", "replace")
        if vtype == _ARRAY:
            return self.array(what)
        raise self.error(at, f"{what}: unknown value type {vtype} (known: 0..12)")

    def array(self, what: str):
        at = self.pos
        etype = self.u32(f"{what} element type")
        count = self.u64(f"{what} element count")
        if etype == _ARRAY:
            raise self.error(at, f"{what}: nested arrays are not supported (llama.cpp rejects "
                                 "them too)")
        if etype in _SCALAR:
            size = struct.calcsize("<" + _SCALAR[etype])
        elif etype == _STRING:
            size = 8
        else:
            raise self.error(at, f"{what}: unknown array element type {etype} (known: 0..12)")
        if count * size > self.left():
            raise self.error(at + 4, f"{what}: {count} elements of {_VALUE_TYPE_NAMES[etype]} "
                                     f"need at least {count * size} bytes but only "
                                     f"{self.left()} are left", _HINT_TRUNCATED)
        if etype != _STRING:
            p = self.need(count * size, what)
            self.pos += count * size
            a = np.frombuffer(self.buf, dtype=_NUMPY[etype], count=count, offset=p)
            return (a != 0).tolist() if etype == 7 else a.tolist()
        # strings: walk the lengths (bounded by the file) without decoding them. The fast loop
        # reads each u64 length through 8 memoryviews of the loaded buffer, one per byte phase;
        # IndexError means it ran off the loaded bytes: load more (or fail on truncation), go on.
        start = pos = self.pos
        i = 0
        while i < count:
            k, j = min(count - i, 1 << 15), 0
            with memoryview(self.buf) as mv:
                q = [mv[s:s + (len(mv) - s) // 8 * 8].cast("Q") for s in range(8)]
                try:
                    for j in range(k):
                        pos += 8 + q[pos & 7][pos >> 3]
                    j = k
                except IndexError:
                    pass
                finally:
                    for v in q:
                        v.release()
            i += j
            if pos > self.size:  # element i-1 ran past: name the byte of its length
                at = start
                for _ in range(i - 1):
                    at += 8 + int.from_bytes(self.buf[at:at + 8], "little")
                raise self.error(at, f"{what}[{i - 1}] length runs past the end of the file "
                                     f"({self.size} bytes)", _HINT_TRUNCATED)
            if j < k:
                self.pos = pos
                self.need(8, f"{what}[{i}] length")
        self.pos = start
        self.need(pos - start, what)
        self.pos = pos
        return StringArray(bytes(self.buf[start:self.pos]), count)


def read_gguf(path) -> GGUFFile:
    """Validate a GGUF file's header and tensor table; return what it says. Reads only the header."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not stat.S_ISREG(path.stat().st_mode):
            raise GGUFError(f"{path}: not a regular file (a pipe or device?); give a .gguf file")
        f = open(path, "rb")
    except FileNotFoundError:
        raise GGUFError(f"{path}: no such file; check the path (or `edgees models ls`)") from None
    except IsADirectoryError:
        raise GGUFError(f"{path}: is a directory, not a .gguf file; give the model file") from None
    except OSError as exc:
        raise GGUFError(f"{path}: cannot open: {exc.strerror}; check the permissions") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        return _parse(_Reader(f, path, size))


def _parse(r: _Reader) -> GGUFFile:
    if r.size < 4:
        raise r.error(0, f"file is {r.size} bytes, too short for a GGUF header", _HINT_TRUNCATED)
    magic = bytes(r.buf[r.need(4, "magic"):4])
    if magic != GGUF_MAGIC:
        raise r.error(0, f"magic is {magic!r}, not b'GGUF': not a GGUF file",
                      "give a .gguf model file (llama.cpp format)")
    r.pos = 4
    version = r.u32("version")
    if version not in (2, 3):
        if int.from_bytes(version.to_bytes(4, "little"), "big") in (2, 3):
            raise r.error(4, "big-endian GGUF is not supported",
                          "convert it to little-endian with llama.cpp's gguf tools")
        hint = ("GGUF v1 is obsolete: re-convert with a recent llama.cpp" if version == 1
                else _HINT_DAMAGED)
        raise r.error(4, f"unsupported GGUF version {version} (need 2 or 3)", hint)
    n_tensors = r.u64("tensor count")
    n_kv = r.u64("metadata key-value count")
    if n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES > r.left():
        raise r.error(8, f"header claims {n_tensors} tensors and {n_kv} metadata entries, more "
                         f"than the {r.left()} bytes after the header could hold")

    metadata: dict = {}
    kv_spans = []
    alignment = DEFAULT_ALIGNMENT
    for i in range(n_kv):
        at = r.pos
        key = r.name(f"metadata key #{i}")
        if key in metadata:
            raise r.error(at, f"duplicate metadata key {_short(key)}")
        vat = r.pos
        vtype = r.u32(f"type of {_short(key)}")
        metadata[key] = r.value(vtype, f"value of {_short(key)}", vat)
        kv_spans.append((key, at, r.pos))
        if key == "general.alignment":  # gguf.md: a uint32; llama.cpp refuses any other type
            if vtype != 4:
                raise r.error(vat, f"general.alignment has type {_VALUE_TYPE_NAMES[vtype]}, "
                                   "not uint32")
            alignment = metadata[key]
            if not (alignment > 0 and alignment & (alignment - 1) == 0):
                raise r.error(vat + 4, f"general.alignment = {alignment} is not a power of two")

    if n_tensors * _MIN_TENSOR_INFO_BYTES > r.left():
        raise r.error(r.pos, f"header claims {n_tensors} tensors, more than the {r.left()} "
                             "bytes left could describe", _HINT_TRUNCATED)
    raw_infos = []
    infos_start = r.pos
    names: set[str] = set()
    for i in range(n_tensors):
        at = r.pos
        name = r.name(f"tensor #{i} name")
        qn = _short(name)
        if len(name.encode()) >= MAX_NAME:
            raise r.error(at, f"tensor name {qn} is longer than {MAX_NAME - 1} bytes")
        if name in names:
            raise r.error(at, f"duplicate tensor name {qn}")
        names.add(name)
        dat = r.pos
        n_dims = r.u32(f"tensor {qn} n_dims")
        if not 1 <= n_dims <= MAX_DIMS:
            raise r.error(dat, f"tensor {qn} has n_dims = {n_dims} (must be 1..4)")
        shape = tuple(r.u64(f"tensor {qn} dim {d}") for d in range(n_dims))
        if any(not 1 <= ne < (1 << 63) for ne in shape):
            raise r.error(dat + 4, f"tensor {qn} has shape {shape}: every dimension "
                                   "must be at least 1 and below 2^63")
        tat = r.pos
        type_id = r.u32(f"tensor {qn} type")
        try:
            block_elems, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
        except (ValueError, KeyError):
            raise r.error(tat, f"tensor {qn} has unknown ggml type id {type_id}",
                          "the file is damaged or needs a newer llama.cpp/gguf than edgees "
                          "supports") from None
        if shape[0] % block_elems:
            raise r.error(dat + 4, f"tensor {qn} row length {shape[0]} is not a "
                                   f"multiple of the {_type_name(type_id)} block size "
                                   f"{block_elems}")
        n_elements = 1
        for ne in shape:
            n_elements *= ne
        nbytes = n_elements // block_elems * block_bytes
        if nbytes > U64_MAX:
            raise r.error(dat + 4, f"tensor {qn} shape {shape} is {nbytes} bytes, "
                                   "which does not fit in 64 bits")
        oat = r.pos
        rel = r.u64(f"tensor {qn} offset")
        if rel % alignment:
            raise r.error(oat, f"tensor {qn} data offset {rel} is not a multiple of "
                               f"the alignment {alignment}")
        raw_infos.append((name, type_id, shape, n_elements, rel, nbytes, oat))

    data_offset = -(-r.pos // alignment) * alignment
    tensors = []
    for name, type_id, shape, n_elements, rel, nbytes, oat in raw_infos:
        if data_offset + rel + nbytes > r.size:
            raise r.error(oat, f"tensor {_short(name)} data [{data_offset + rel}, "
                               f"{data_offset + rel + nbytes}) lies past the end of the file "
                               f"({r.size} bytes)", _HINT_TRUNCATED)
        tensors.append(TensorInfo(name, type_id, _type_name(type_id), shape, n_elements,
                                  data_offset + rel, nbytes))
    by_offset = sorted(tensors, key=lambda t: t.offset)
    for a, b in zip(by_offset, by_offset[1:]):
        if a.end > b.offset:
            raise r.error(b.offset, f"tensors {_short(a.name)} [{a.offset}, {a.end}) and "
                                    f"{_short(b.name)} [{b.offset}, {b.end}) overlap")

    arch = metadata.get("general.architecture")
    return GGUFFile(path=r.path, version=version, metadata=metadata, tensors=tensors,
                    alignment=alignment, data_offset=data_offset, file_size=r.size,
                    architecture=arch if isinstance(arch, str) else None,
                    kv_spans=kv_spans, infos_span=(infos_start, r.pos))


