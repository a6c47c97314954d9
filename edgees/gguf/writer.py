"""Writing GGUF files: a header with metadata added, and a whole model streamed to a new file.

An exported model is its base GGUF with only tensor data changed: the base header's metadata
entries verbatim (minus keys with a given prefix), new entries appended, the tensor-info table
verbatim, padding to the alignment, then the data section. Tensor offsets are relative to the data
section, so the data section follows the new header unchanged. Nothing in it depends on the clock
or the machine, so the same bytes in give the same file out.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from pathlib import Path

from edgees.errors import EdgeesError, GGUFError
from edgees.fileio import fsync_dir
from edgees.gguf.header import _STRING, _U64, GGUF_MAGIC, U64_MAX, GGUFFile
from edgees.gguf.reader import read_gguf

CHUNK = 8 << 20  # bytes per read/write when streaming the data section


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


def write_with_metadata(src, out, meta: dict, drop_prefix: str) -> tuple[str, int]:
    """Write src (a GGUF) to out with `meta` appended to its header (keys starting with
    drop_prefix dropped first), atomically: a temp file beside out, fsync, checked to hold the same
    tensors at the same relative offsets, renamed over out, the directory fsynced. Returns
    (sha256, size) of what was written; out is the old file or the complete new one, never torn."""
    src, out = Path(src), Path(out)
    info = read_gguf(src)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    h, size = hashlib.sha256(), 0
    try:
        with open(src, "rb") as f, open(tmp, "xb") as g:
            head = rewrite_header(info, f.read(info.data_offset), meta, drop_prefix)
            f.seek(info.data_offset)
            block = head
            while block:
                g.write(block)
                h.update(block)
                size += len(block)
                block = f.read(CHUNK)
            g.flush()
            os.fsync(g.fileno())
        _check_same_model(info, read_gguf(tmp), meta)
        os.replace(tmp, out)
    except OSError as exc:
        raise EdgeesError(f"cannot write {out}: {exc.strerror or exc}; free space or choose another -o") from None
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    fsync_dir(out.parent)
    return h.hexdigest(), size


def _check_same_model(base: GGUFFile, new: GGUFFile, meta: dict) -> None:
    """The written file must hold the base's tensors (name, type, shape, size, order) at the same
    offsets relative to the data section, and the new metadata."""
    rel = lambda g: [(t.name, t.type_id, t.shape, t.nbytes, t.offset - g.data_offset) for t in g.tensors]  # noqa: E731
    if rel(base) != rel(new) or any(new.metadata.get(k) != v for k, v in meta.items()) \
            or new.file_size - new.data_offset != base.file_size - base.data_offset:
        raise GGUFError(f"{new.path}: the written file does not match its base model's layout "
                        "(an edgees bug); the output was not replaced")
