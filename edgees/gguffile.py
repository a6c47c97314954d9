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

import hashlib
import mmap
import os
import re
import secrets
import shutil
import stat
import struct
import sys
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES

from edgees.errors import EdgeesError, GGUFError
from edgees.quants import frozen_reason, is_trainable

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
    raise ImportError("edgees.gguffile supports little-endian hosts only (x86, ARM)")
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
            if pos > self.size:
                raise self.error(start, f"{what}[{i - 1}] length runs past the end of the file "
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
    for i in range(n_kv):
        at = r.pos
        key = r.name(f"metadata key #{i}")
        if key in metadata:
            raise r.error(at, f"duplicate metadata key {_short(key)}")
        vat = r.pos
        vtype = r.u32(f"type of {_short(key)}")
        metadata[key] = r.value(vtype, f"value of {_short(key)}", vat)
        kv_spans.append((key, at, r.pos))

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in metadata:
        a = metadata["general.alignment"]
        if not (type(a) is int and a > 0 and a & (a - 1) == 0):
            raise r.error(16, f"general.alignment = {a!r} is not a power of two")
        alignment = a

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


def _encode_kv(key: str, value) -> bytes:
    """One metadata entry: key str | type u32 | value. str -> string, int -> uint64."""
    k = key.encode()
    out = _U64.pack(len(k)) + k
    if isinstance(value, str):
        v = value.encode()
        return out + struct.pack("<I", _STRING) + _U64.pack(len(v)) + v
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX:
        return out + struct.pack("<I", 10) + _U64.pack(value)
    raise TypeError(f"metadata {key}: only str and uint64 values can be added, not {value!r}")


def rewrite_header(info: GGUFFile, header: bytes, extra: dict, drop_prefix: str) -> bytes:
    """A new header (up to and including the padding before the data section) for `info`'s file:
    its metadata entries verbatim minus keys starting with drop_prefix, then `extra` appended in
    order; its tensor-info table verbatim. Tensor offsets are relative to the data section, so
    the same data section, copied from info.data_offset to the end, follows it unchanged.
    header: the file's bytes [0, info.data_offset)."""
    kvs = [header[s:e] for key, s, e in info.kv_spans if not key.startswith(drop_prefix)]
    kvs += [_encode_kv(k, v) for k, v in extra.items()]
    n_tensors = len(info.tensors)
    out = (GGUF_MAGIC + struct.pack("<I", info.version) + _U64.pack(n_tensors) + _U64.pack(len(kvs))
           + b"".join(kvs) + header[info.infos_span[0]:info.infos_span[1]])
    return out + bytes(-len(out) % info.alignment)


# ---- what is trained ------------------------------------------------------------------------

EMBEDDING_NAMES = ("token_embd.weight", "output.weight")


def tensor_status(t: TensorInfo) -> tuple[str, str]:
    """("trainable" | "on request" | "frozen", reason). Block linear weights of trainable types
    are trained by default; token_embd/output only on request; everything else is frozen."""
    if not is_trainable(t.type_id):
        return "frozen", frozen_reason(t.type_id)
    if t.name in EMBEDDING_NAMES:
        return "on request", "embedding/output head: trained only with --include-embeddings"
    if t.name.startswith("blk.") and t.name.endswith(".weight") and t.n_dims >= 2:
        return "trainable", ""
    return "frozen", "not a transformer-block linear weight"


def trainable_tensors(info: GGUFFile, include_embeddings: bool = False) -> list[TensorInfo]:
    """The tensors QES trains, in file order."""
    ok = ("trainable", "on request") if include_embeddings else ("trainable",)
    return sorted((t for t in info.tensors if tensor_status(t)[0] in ok), key=lambda t: t.offset)


# ---- mapped views ---------------------------------------------------------------------------


def _check_same_file(info: GGUFFile, f) -> None:
    size = os.fstat(f.fileno()).st_size
    if size != info.file_size:
        raise GGUFError(f"{info.path}: file size changed from {info.file_size} to {size} bytes "
                        "since it was validated; is another program writing it?")


def _release_map(mm: mmap.mmap | None) -> None:
    if mm is not None:
        try:
            mm.close()
        except BufferError:
            pass  # numpy views still alive: the mapping goes away with the last of them


class TensorMap:
    """Read-only numpy views of a GGUF file's tensors through one mmap (ACCESS_READ)."""

    def __init__(self, path_or_info):
        self.info = path_or_info if isinstance(path_or_info, GGUFFile) else read_gguf(path_or_info)
        with open(self.info.path, "rb") as f:
            _check_same_file(self.info, f)
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def view(self, name: str) -> np.ndarray:
        """(nbytes,) uint8, read-only, backed by the file's pages."""
        if self._mm is None:
            raise ValueError("TensorMap is closed")
        t = self.info.tensor(name)
        return np.frombuffer(self._mm, dtype=np.uint8, count=t.nbytes, offset=t.offset)

    def close(self) -> None:
        mm, self._mm = self._mm, None
        _release_map(mm)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---- the working copy -----------------------------------------------------------------------


def _free_bytes(d: str) -> int:
    try:
        st = os.statvfs(d)
        return st.f_bavail * st.f_frsize
    except (OSError, AttributeError):
        return -1


def workdir_for(nbytes: int) -> str:
    """Where a working copy of nbytes goes: $EDGEES_WORKDIR, else /dev/shm if it has room (plus
    a 64 MiB margin), else the temp dir."""
    env = os.environ.get("EDGEES_WORKDIR")
    if env:
        os.makedirs(env, exist_ok=True)
        return env
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and _free_bytes(shm) >= nbytes + (64 << 20):
        return shm
    return tempfile.gettempdir()


_COPY_NAME = re.compile(r"edgees-(\d+)-[0-9a-f]+\.gguf")


def remove_stale_copies(d: str) -> list[str]:
    """Unlink working copies in d left by edgees processes that no longer exist (killed, crashed);
    return their paths. Files of live processes, or of other users, are left alone."""
    removed = []
    try:
        names = os.listdir(d)
    except OSError:
        return removed
    for name in names:
        m = _COPY_NAME.fullmatch(name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # alive (or pid reused): keep
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, OSError):
            continue
        try:
            os.unlink(os.path.join(d, name))
            removed.append(os.path.join(d, name))
        except OSError:
            pass
    return removed


class _Held:
    """What the finalizer releases; holds no reference to the WorkingCopy itself."""

    def __init__(self):
        self.mm = None
        self.file = None
        self.path: str | None = None

    def release(self):
        mm, self.mm = self.mm, None
        _release_map(mm)
        f, self.file = self.file, None
        if f is not None:
            f.close()
        p, self.path = self.path, None
        if p is not None:
            try:
                os.unlink(p)
            except OSError:
                pass


class WorkingCopy:
    """A private, writable copy of a GGUF in RAM-backed storage, mapped MAP_SHARED.

    llama.cpp maps the same file (`.path`), so writes through `.view(name)` reach the model at
    its next decode. The base file is only ever opened "rb". The copy is unlinked on close(),
    on context-manager exit, at garbage collection and at interpreter exit.
    """

    def __init__(self, base_path):
        self.base_path = Path(base_path)
        base_info = read_gguf(self.base_path)
        self._held = _Held()
        self._finalizer = weakref.finalize(self, self._held.release)
        d = os.environ.get("EDGEES_WORKDIR") or "the temp dir"
        try:
            d = workdir_for(base_info.file_size)
            remove_stale_copies(d)
            path = os.path.join(d, f"edgees-{os.getpid()}-{secrets.token_hex(4)}.gguf")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise EdgeesError(f"cannot create a working copy in {d}: {exc.strerror}; set "
                              "EDGEES_WORKDIR to a writable directory") from None
        self._held.path = path
        self._held.file = f = os.fdopen(fd, "r+b")
        try:
            with open(self.base_path, "rb") as src:
                _check_same_file(base_info, src)
                shutil.copyfileobj(src, f, 8 << 20)
            f.flush()
        except OSError as exc:
            self.close()
            raise EdgeesError(f"cannot copy {self.base_path} to {d}: {exc.strerror} (needs "
                              f"{base_info.file_size} bytes); free space or set "
                              "EDGEES_WORKDIR") from None
        except BaseException:
            self.close()
            raise
        self.path = Path(path)
        try:
            self.info = read_gguf(self.path)
            if self.info.file_size != base_info.file_size:
                raise GGUFError(f"{self.base_path}: changed while being copied; try again")
            self._held.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE)
        except BaseException:
            self.close()
            raise

    @property
    def closed(self) -> bool:
        return self._held.mm is None

    def _map(self) -> mmap.mmap:
        if self._held.mm is None:
            raise ValueError("working copy is closed")
        return self._held.mm

    def view(self, name: str) -> np.ndarray:
        """(nbytes,) uint8, writable, aliasing the working file's pages."""
        t = self.info.tensor(name)
        return np.frombuffer(self._map(), dtype=np.uint8, count=t.nbytes, offset=t.offset)

    def trainable_tensors(self, include_embeddings: bool = False) -> list[TensorInfo]:
        return trainable_tensors(self.info, include_embeddings)

    def sha256(self, names=None) -> str:
        """sha256 of the concatenated bytes of the named tensors (default: all) in file order.
        Pages read here are released from this process's mapping as it goes (see release)."""
        ts = self.info.tensors if names is None else [self.info.tensor(n) for n in names]
        h = hashlib.sha256()
        with memoryview(self._map()) as mv:
            for t in sorted(ts, key=lambda t: t.offset):
                h.update(mv[t.offset:t.end])
                self.release_range(t.offset, t.end)
        return h.hexdigest()

    def release_range(self, start: int, end: int) -> None:
        """Drop this process's page-table entries for [start, end) of the mapping (MADV_DONTNEED).
        The bytes stay in the RAM-backed file (llama.cpp's own mapping sees them unchanged); only
        this second mapping stops counting them in our RSS until they are touched again."""
        mm = self._map()
        if not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        a = start // page * page
        b = min(len(mm), -(-end // page) * page)
        if b > a:
            mm.madvise(mmap.MADV_DONTNEED, a, b - a)

    def release(self, names=None) -> None:
        """release_range over the named tensors (default: all)."""
        ts = self.info.tensors if names is None else [self.info.tensor(n) for n in names]
        for t in ts:
            self.release_range(t.offset, t.end)

    def flush(self) -> None:
        self._map().flush()

    def close(self) -> None:
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"WorkingCopy({str(self.base_path)!r} -> {str(self.path) if hasattr(self, 'path') else '?'!r})"

