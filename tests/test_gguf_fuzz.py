"""Fuzzing the GGUF validator: read_gguf on damaged headers and tensor tables of valid tiny GGUFs
of every type either accepts the file or refuses it with a one-line GGUFError. Never another
exception, never a hang (a per-case SIGALRM), never an accepted truncation.

What counts as behaving (run_case): an accepted file's GGUFFile describes its bytes (counts, spans,
shapes, sizes, every tensor inside the file, no overlap; `inconsistency`); a refusal reads
"PATH: byte N: problem; fix" on one line, N is inside the file and not before the damaged item.
read_gguf takes a path, so reads past the end show up as truncations it fails to refuse.

The mutator is seeded (random.Random per type): every case is deterministic and a failure names the
case that reproduces it. Field offsets come from `walk`, a small walker written here, independent
of the reader. Each case rewrites only the header of one scratch file and extends it (sparse) to
the original size: read_gguf reads headers, never tensor data.

Cases, per type (about 1,500): every field kind at every boundary value (0, 1, max-1, 2^32-1, 2^63,
2^64-1, just past the file, ...) and at values relative to the field, the file and its tensor;
duplicated keys and tensor names; random field/value pairs; truncations at the edges of every
field of the fixed header, the metadata and the tensor table, in a sample of string-array
elements and of the data; byte flips; stacks of 2-4 of these ("havoc"), some then cut.
"""

from __future__ import annotations

import os
import random
import re
import signal
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES

from edgees.errors import GGUFError
from edgees.gguf.header import StringArray
from edgees.gguf.reader import read_gguf
from edgees.gguf.tiny import make_tiny_model, tiny_model_types

TYPES = tiny_model_types()
# Small shapes keep each file ~300 KB; its header (~6.4 KB) is what the cases rewrite.
SHAPE = dict(n_embd=256, n_ff=256, n_layer=1, n_head=2, n_head_kv=1)
HANG_SECONDS = 20  # a hang detector, not a speed check: a case normally takes about a millisecond
RANDOM_FIELD_CASES, FLIPS, HAVOC, DUPLICATES = 150, 150, 80, 10  # per type, besides the sweeps


# ---- an independent walker: where each field of a valid header is -----------------------------

SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # gguf_type
STRING = 8


@dataclass(frozen=True)
class Field:
    role: str  # version n_tensors n_kv key_len vtype scalar alignment_type alignment str_len
    #            arr_type arr_count elem_len name_len n_dims ne ggml_type offset
    at: int
    width: int  # 4 (u32) or 8 (u64); 1 or 2 for small scalars
    value: int
    label: str  # for failure messages: "tensor 'blk.0.attn_q.weight' ne[1]"
    tensor: int = -1  # index of the tensor this field belongs to (tensor-table fields)
    unit: int = -1  # where the item it is part of starts: a tensor's shape is one item
    content: int = 0  # bytes after the field that belong to it (a string's bytes, array data)


@dataclass(frozen=True)
class Layout:
    fields: list[Field]
    infos_start: int  # where the tensor table begins
    infos_end: int  # where it ends: the end of the header proper
    data_offset: int
    alignment: int
    tensors: list[tuple[str, int, tuple[int, ...], int, int]]  # name, type, shape, rel offset, nbytes
    units: list[int]  # header byte -> the start of the item it belongs to (see run_case)


def walk(blob: bytes) -> Layout:
    """Fields of a well-formed GGUF header (trusted input: the unmutated tiny models)."""
    fields: list[Field] = []

    def u(at, width):
        return int.from_bytes(blob[at:at + width], "little")

    def add(role, at, width, label, tensor=-1, unit=None, content=None):
        v = u(at, width)
        c = v if content is None and role.endswith("_len") else content or 0
        fields.append(Field(role, at, width, v, label, tensor, at if unit is None else unit, c))
        return v

    add("version", 4, 4, "version")
    n_tensors = add("n_tensors", 8, 8, "tensor count")
    n_kv = add("n_kv", 16, 8, "metadata count")
    pos, alignment = 24, 32
    for i in range(n_kv):
        klen = add("key_len", pos, 8, f"key #{i} length")
        key = blob[pos + 8:pos + 8 + klen].decode()
        pos += 8 + klen
        vtype = add("alignment_type" if key == "general.alignment" else "vtype", pos, 4,
                    f"{key} type")
        pos += 4
        if vtype in SCALAR_SIZE:
            role = "alignment" if key == "general.alignment" else "scalar"
            v = add(role, pos, SCALAR_SIZE[vtype], f"{key} value")
            alignment = v if role == "alignment" else alignment
            pos += SCALAR_SIZE[vtype]
        elif vtype == STRING:
            pos += 8 + add("str_len", pos, 8, f"{key} length")
        else:
            etype = add("arr_type", pos, 4, f"{key} element type")
            count = u(pos + 4, 8)
            add("arr_count", pos + 4, 8, f"{key} count", content=0 if etype == STRING else
                count * SCALAR_SIZE[etype])
            pos += 12
            if etype == STRING:
                for j in range(count):
                    pos += 8 + add("elem_len", pos, 8, f"{key}[{j}] length")
            else:
                pos += count * SCALAR_SIZE[etype]
    infos_start = pos
    tensors = []
    for i in range(n_tensors):
        nlen = add("name_len", pos, 8, f"tensor #{i} name length", i)
        name = blob[pos + 8:pos + 8 + nlen].decode()
        pos += 8 + nlen
        q = repr(name)
        n_dims = add("n_dims", pos, 4, f"tensor {q} n_dims", i)
        pos += 4
        shape = tuple(add("ne", pos + 8 * d, 8, f"tensor {q} ne[{d}]", i, unit=pos)
                      for d in range(n_dims))
        pos += 8 * n_dims
        type_id = add("ggml_type", pos, 4, f"tensor {q} type", i)
        rel = add("offset", pos + 4, 8, f"tensor {q} offset", i)
        pos += 12
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
        n = 1
        for ne in shape:
            n *= ne
        tensors.append((name, type_id, shape, rel, n // block * block_bytes))
    data_offset = -(-pos // alignment) * alignment
    units = list(range(pos))
    for f in fields:
        units[f.at:f.at + f.width + f.content] = [f.unit] * (f.width + f.content)
    return Layout(fields, infos_start, pos, data_offset, alignment, tensors, units)


def with_alignment_kv(blob: bytes, size: int, alignment: int = 32) -> tuple[bytes, int]:
    """The same model with an explicit general.alignment (u32) appended to the metadata: the tiny
    models rely on the default, and the fuzzer needs the field to exist to break it."""
    lay = walk(blob)
    key = b"general.alignment"
    kv = struct.pack("<Q", len(key)) + key + struct.pack("<II", 4, alignment)
    n_kv = struct.unpack_from("<Q", blob, 16)[0]
    head = (blob[:16] + struct.pack("<Q", n_kv + 1) + blob[24:lay.infos_start] + kv
            + blob[lay.infos_start:lay.infos_end])
    head += b"\0" * (-len(head) % alignment)
    return head, len(head) + size - lay.data_offset


# ---- running one case ----------------------------------------------------------------------------


class Hang(Exception):
    pass


@contextmanager
def hang_guard(seconds: float):
    def alarm(signum, frame):
        raise Hang
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def write_case(path: Path, head: bytes, size: int) -> None:
    """The file is `head` then zeros up to `size` (sparse; a shorter size truncates the head).
    Rewritten in place, never truncated to zero first (ext4 would flush it to disk each time)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, head[:size], 0)
        os.ftruncate(fd, min(size, len(head)))
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def inconsistency(g, head: bytes, size: int) -> str | None:
    """What is wrong with an accepted file's GGUFFile, or None: it must describe the bytes."""
    n_tensors, n_kv = struct.unpack_from("<QQ", head, 8)
    if len(g.tensors) != n_tensors or len(g.metadata) != n_kv or len(g.kv_spans) != n_kv:
        return f"{len(g.tensors)} tensors, {len(g.metadata)} keys for counts {n_tensors}, {n_kv}"
    ends = [24] + [e for _, _, e in g.kv_spans]
    if [s for _, s, _ in g.kv_spans] != ends[:-1] or ends[-1] != g.infos_span[0]:
        return f"kv spans {g.kv_spans[:3]}... are not contiguous up to the tensor table"
    if not g.infos_span[0] <= g.infos_span[1] <= g.data_offset or g.data_offset % g.alignment:
        return f"tensor table {g.infos_span}, data offset {g.data_offset}, alignment {g.alignment}"
    if g.alignment < 1 or g.alignment & (g.alignment - 1):
        return f"alignment {g.alignment} is not a power of two"
    for key, start, _ in g.kv_spans:  # gguf.md: general.alignment is a uint32 (llama.cpp checks)
        if key == "general.alignment" and head[start + 8 + len(key.encode()):][:4] != b"\4\0\0\0":
            return "a general.alignment that is not a uint32 accepted"
    if g.file_size != size:
        return f"file_size {g.file_size} != {size}"
    spans = []
    for t in g.tensors:
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(t.type_id)]
        n = 1
        for ne in t.shape:
            n *= ne
        if not (1 <= len(t.shape) <= 4 and min(t.shape) >= 1 and t.n_elements == n
                and t.nbytes == n // block * block_bytes and t.shape[0] % block == 0):
            return f"tensor {t.name!r}: shape {t.shape}, {t.n_elements} elements, {t.nbytes} bytes"
        if not (g.data_offset <= t.offset and t.end <= size
                and (t.offset - g.data_offset) % g.alignment == 0):
            return f"tensor {t.name!r} data [{t.offset}, {t.end}) in a {size}-byte file"
        spans.append((t.offset, t.end))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        return "overlapping tensors accepted"
    if len({t.name for t in g.tensors}) != len(g.tensors):
        return "duplicate tensor names accepted"
    for k, v in g.metadata.items():
        if isinstance(v, StringArray) and len(v) and (len(list(v)) != len(v) or v[-1] != list(v)[-1]):
            return f"{k}: string array of {len(v)} does not decode to as many strings"
    return None


def run_case(path: Path, head: bytes, size: int, expect: str = "", damage_at: int = -1) -> str | None:
    """None if read_gguf behaved (and gave the `expect`ed "accept" or "reject"); else what went
    wrong. A refusal is one line, "PATH: byte N: problem; fix", and N lies in the file; when the
    damage is known and past the fixed header, N is not before the start of the damaged item (the
    reader reads in order: the bytes before it are a valid file's)."""
    write_case(path, head, size)
    try:
        with hang_guard(HANG_SECONDS):
            g = read_gguf(path)
            bad = inconsistency(g, head, size)
    except GGUFError as exc:
        msg = str(exc)
        m = re.fullmatch(re.escape(f"{path}: byte ") + r"(\d+): [^;]+.*; .+", msg)
        if len(msg.splitlines()) != 1 or "\r" in msg or not m:
            return f"GGUFError not one line 'PATH: byte N: problem; fix': {msg[:300]!r}"
        if int(m[1]) > size:
            return f"the error points past the end of the file: {msg}"
        if damage_at >= 24 and int(m[1]) < damage_at:
            return f"the error points before the damage at byte {damage_at}: {msg}"
        return f"refused, but it is valid: {msg}" if expect == "accept" else None
    except Hang:
        return f"no answer within {HANG_SECONDS} s (a hang)"
    except Exception as exc:  # noqa: BLE001 (the point of the test)
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if expect == "reject":
        return "accepted, but it must be refused"
    return bad and f"accepted but inconsistent: {bad}"


# ---- the mutations -------------------------------------------------------------------------------

U32_EDGES = (0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 255, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1)
U64_EDGES = (0, 1, 2, 3, 7, 8, 255, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**63,
             2**63 + 1, 2**64 - 2, 2**64 - 1)


def limits(f: Field) -> set[int]:
    """Boundary values of a field's kind: its integer type's limits and the kind's special values."""
    bits = 8 * f.width
    out = set(U32_EDGES if f.width == 4 else U64_EDGES if f.width == 8 else (0, 1, 2**bits - 1))
    out.add(2**(bits - 1) - 1)
    out |= {"vtype": set(range(14)), "arr_type": set(range(14)), "alignment_type": set(range(14)),
            "ggml_type": set(range(43)),
            "n_dims": set(range(7)),
            "alignment": {16, 31, 33, 48, 64, 128, 4096, 2**16, 2**31}}.get(f.role, set())
    return {v for v in out if 0 <= v < 2**bits}


def neighbours(f: Field, lay: Layout, size: int) -> list:
    """Values relative to this field, the file and its tensor, in a fixed order (None: n/a)."""
    bits = 8 * f.width
    v = f.value
    out = [v - 1, v + 1, v * 2, v ^ (1 << (bits - 1)), v << 32]
    left = size - f.at - f.width  # bytes after this field
    out += [size, size + 1, left - 1, left, left + 1, (left + 1) // 8 + 1]
    if f.role in ("ne", "offset"):
        name, type_id, shape, rel, nbytes = lay.tensors[f.tensor]
        block = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)][0]
        out += [block - 1, block + 1, v + block, v * 2**31, 2**63 // block * block]
    if f.role == "offset":
        end_rel = size - lay.data_offset - nbytes  # the data would end exactly at the end of file
        a = lay.alignment
        others = [t[3] for i, t in enumerate(lay.tensors) if i != f.tensor]
        out += [end_rel, end_rel + 1, end_rel // a * a, end_rel // a * a + a, rel + a, rel - a,
                rel + 1, others[0], others[-1]]  # another tensor's offset: an overlap
    return [x if 0 <= x < 2**bits and x != v else None for x in out]


def set_field(head: bytearray, f: Field, value: int) -> None:
    head[f.at:f.at + f.width] = value.to_bytes(f.width, "little")


def truncation_points(lay: Layout, size: int, rng: random.Random) -> list[int]:
    """Cuts at the edges of every field but string-array elements (a sample of those), every
    byte of the fixed header, and a sample of the tensor data."""
    elems = [f for f in lay.fields if f.role == "elem_len"]
    fields = [f for f in lay.fields if f.role != "elem_len"] + rng.sample(elems, min(24, len(elems)))
    cuts = set(range(0, 25))
    for f in fields:
        cuts |= {f.at - 1, f.at, f.at + 1, f.at + f.width - 1, f.at + f.width}
    cuts |= {lay.infos_end - 1, lay.infos_end, lay.data_offset - 1, lay.data_offset}
    data_end = lay.data_offset + max(rel + nbytes for _, _, _, rel, nbytes in lay.tensors)
    cuts |= {rng.randrange(lay.data_offset, data_end) for _ in range(8)} | {data_end - 1}
    return sorted(c for c in cuts if 0 <= c < size)


def flip(head: bytearray, lay: Layout, rng: random.Random) -> tuple[str, int]:
    """Xor one byte with a random non-zero mask: half at a random header byte, half inside a field."""
    if rng.random() < 0.5:
        at = rng.randrange(lay.infos_end)
    else:
        f = rng.choice(lay.fields)
        at = f.at + rng.randrange(f.width)
    mask = rng.choice([1 << rng.randrange(8), rng.randrange(1, 256)])
    head[at] ^= mask
    return f"byte {at} ^= {mask:#04x}", lay.units[at]


def duplicate(head: bytearray, lay: Layout, rng: random.Random) -> tuple[str, int]:
    """Copy a key or tensor name over a later one of the same length (a duplicate)."""
    role = rng.choice(["key_len", "name_len"])
    by_len: dict[int, list[Field]] = {}
    for f in lay.fields:
        if f.role == role:
            by_len.setdefault(f.value, []).append(f)
    pairs = [fs for fs in by_len.values() if len(fs) > 1]  # the tiny models have some
    a, b = sorted(rng.sample(rng.choice(pairs), 2), key=lambda f: f.at)
    head[b.at + 8:b.at + 8 + b.value] = head[a.at + 8:a.at + 8 + a.value]
    return f"{b.label.replace(' length', '')} := a copy of {a.label.replace(' length', '')}", b.unit


def mutate_field(head: bytearray, lay: Layout, size: int, rng: random.Random) -> tuple[str, int]:
    f = rng.choice(lay.fields)
    values = sorted((limits(f) | set(neighbours(f, lay, size))) - {None, f.value})
    v = rng.choice(values)
    set_field(head, f, v)
    return f"{f.label} = {v}", f.unit


# ---- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_models(tmp_path_factory) -> dict[str, tuple[bytes, int, Path]]:
    """type -> (header bytes up to the data, file size, a scratch path for the cases)."""
    d = tmp_path_factory.mktemp("fuzz")
    out = {}
    for i, t in enumerate(TYPES):
        src = make_tiny_model(d / f"{t}.gguf", t, seed=i, **SHAPE)
        g = read_gguf(src)
        out[t] = (src.read_bytes()[:g.data_offset], g.file_size, d / f"case-{t}.gguf")
    return out


def _report(failures: list[str], n: int) -> None:
    assert not failures, f"{len(failures)} of {n} cases failed, e.g.:\n" + "\n".join(failures[:25])


def _refusal(path: Path) -> str:
    with pytest.raises(GGUFError) as info:
        read_gguf(path)
    return str(info.value)


# ---- regressions: what the fuzzer found -------------------------------------------------------


def test_a_string_array_element_running_past_the_end_is_named_at_its_own_byte(fuzz_models):
    """Found by the fuzzer: the error named the array's first byte, thousands of bytes before."""
    head, size, path = fuzz_models["Q4_0"]
    lay = walk(head)
    f46 = next(f for f in lay.fields if f.label == "tokenizer.ggml.tokens[46] length")
    h = bytearray(head)
    set_field(h, f46, 2)  # shorter: element 47's length is read from inside element 46's text
    write_case(path, bytes(h), size)
    at47 = f46.at + 8 + 2
    assert f"byte {at47}: value of 'tokenizer.ggml.tokens'[47] length runs past" in _refusal(path)
    last = [f for f in lay.fields if f.role == "elem_len"][-1]  # tokenizer.ggml.merges[39]
    set_field(h := bytearray(head), last, 2**63)
    write_case(path, bytes(h), size)
    assert f"byte {last.at}: value of 'tokenizer.ggml.merges'[39] length runs past" in _refusal(path)


def test_general_alignment_must_be_a_uint32_power_of_two(fuzz_models):
    """Found by the fuzzer: an int32 or float32 alignment was accepted or misreported (llama.cpp
    refuses any type but uint32), and a bad value was reported at byte 16, not where it is."""
    head, size, path = fuzz_models["Q8_0"]
    head, size = with_alignment_kv(head, size)
    lay = walk(head)
    vtype = next(f for f in lay.fields if f.role == "alignment_type")
    value = next(f for f in lay.fields if f.role == "alignment")
    for type_id, name in ((5, "int32"), (6, "float32"), (7, "bool")):
        h = bytearray(head)
        set_field(h, vtype, type_id)
        write_case(path, bytes(h), size)
        assert f"byte {vtype.at}: general.alignment has type {name}, not uint32" in _refusal(path)
    for bad in (0, 3, 48, 2**32 - 1):
        h = bytearray(head)
        set_field(h, value, bad)
        write_case(path, bytes(h), size)
        assert f"byte {value.at}: general.alignment = {bad} is not a power of two" in _refusal(path)
    write_case(path, head, size)
    assert read_gguf(path).alignment == 32


# ---- the fuzzer ------------------------------------------------------------------------------


def test_walker_agrees_with_the_reader_on_the_unmutated_models(fuzz_models):
    for t, (head, size, path) in fuzz_models.items():
        lay = walk(head)
        write_case(path, head, size)
        g = read_gguf(path)
        assert (lay.infos_start, lay.infos_end) == g.infos_span and lay.data_offset == g.data_offset
        assert [(s, e) for _, s, e in g.kv_spans][-1][1] == lay.infos_start
        assert [(n, ty, sh) for n, ty, sh, _, _ in lay.tensors] == \
            [(x.name, x.type_id, x.shape) for x in g.tensors]
        assert inconsistency(g, head, size) is None
        assert t in {x.type_name for x in g.tensors}
        head2, size2 = with_alignment_kv(head, size)
        lay2 = walk(head2)
        write_case(path, head2, size2)
        g2 = read_gguf(path)
        assert g2.metadata["general.alignment"] == 32 and g2.data_offset == lay2.data_offset
        assert [x.nbytes for x in g2.tensors] == [x.nbytes for x in g.tensors]


@pytest.mark.parametrize("type_name", TYPES)
def test_fuzz_fields_truncations_flips(fuzz_models, type_name):
    """Every field kind at every boundary value, random field values, truncations at every field's
    edges, byte flips and stacks of them: accepted and consistent, or one GGUFError line."""
    head0, size0, path = fuzz_models[type_name]
    rng = random.Random(f"gguf-fuzz-{type_name}")
    failures, n = [], 0

    def case(head, size, what, expect="", damage_at=-1):
        nonlocal n
        n += 1
        bad = run_case(path, bytes(head), size, expect, damage_at)
        if bad:
            failures.append(f"{type_name}: {what}: {bad}")

    # odd types carry an explicit general.alignment, so that field gets broken too
    head, size = with_alignment_kv(head0, size0) if TYPES.index(type_name) % 2 else (head0, size0)
    lay = walk(head)
    # 1. every kind of field at each of its boundary values, and at each value relative to
    # the field, the file and the tensor (each on a random field of that kind)
    by_role: dict[str, list[Field]] = {}
    for f in lay.fields:
        by_role.setdefault(f.role, []).append(f)
    for role, fs in by_role.items():
        for v in sorted(set().union(*(limits(f) for f in fs))):
            f = rng.choice([f for f in fs if v < 2 ** (8 * f.width) and v != f.value] or [None])
            if f is not None:
                h = bytearray(head)
                set_field(h, f, v)
                case(h, size, f"{f.label} = {v}", damage_at=f.unit)
        for k in range(len(neighbours(fs[0], lay, size))):
            f = rng.choice(fs)
            v = neighbours(f, lay, size)[k]
            if v is not None:
                h = bytearray(head)
                set_field(h, f, v)
                case(h, size, f"{f.label} = {v}", damage_at=f.unit)
    # 2. duplicate keys and tensor names, then random fields at random boundary values
    for _ in range(DUPLICATES):
        h = bytearray(head)
        what, at = duplicate(h, lay, rng)
        case(h, size, what, "reject", damage_at=at)
    for _ in range(RANDOM_FIELD_CASES):
        h = bytearray(head)
        what, at = mutate_field(h, lay, size, rng)
        case(h, size, what, damage_at=at)
    # 3. truncations: anything cut before the end of the last tensor's data is refused
    data_end = lay.data_offset + max(rel + nbytes for _, _, _, rel, nbytes in lay.tensors)
    for cut in truncation_points(lay, size, rng):
        case(head, cut, f"truncated to {cut} bytes", "reject" if cut < data_end else "")
    case(head, size, "unmutated", "accept")
    case(head, data_end, "truncated right after the data", "accept")
    # 4. byte flips, and 5. havoc: 2-4 mutations of any kind stacked, maybe then a cut
    for _ in range(FLIPS):
        h = bytearray(head)
        what, at = flip(h, lay, rng)
        case(h, size, what, damage_at=at)
    for _ in range(HAVOC):
        h, done = bytearray(head), []
        for _ in range(rng.randint(2, 4)):
            done.append(flip(h, lay, rng) if rng.random() < 0.4 else mutate_field(h, lay, size, rng))
        cut = size if rng.random() < 0.7 else rng.randrange(size)
        what = ", ".join(w for w, _ in done) + (f", cut at {cut}" if cut < size else "")
        case(h, cut, what, damage_at=min(at for _, at in done) if cut == size else -1)
    assert n > 1000
    _report(failures, n)
