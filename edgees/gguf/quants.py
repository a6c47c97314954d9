"""Read and write the integer weight codes packed inside GGML quant blocks (numpy reference codecs).

One table lists the trainable types; each type registers an unpack/pack pair that mirrors its
dequantize_row_* in llama.cpp's ggml-quants.c. A "code" is the stored integer a weight decodes from
before scales and mins apply; element i of a tensor is the i-th value dequantize_row_* writes, so it
lives in block i // block_elems. pack_codes rewrites only code bytes: scale, min and super-block
bytes stay byte-for-byte as they were. native/codes.c is the fast twin, pinned to this file by
tests/test_quants.py; `dequantize` exists for the tests, to check these layouts against gguf-py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class QType:
    type_id: int  # ggml_type id (ggml.h)
    name: str
    block_elems: int  # weights per block
    block_bytes: int  # bytes per block
    lo: int  # smallest code
    hi: int  # largest code


QTYPES: dict[int, QType] = {q.type_id: q for q in [
    QType(2, "Q4_0", 32, 18, 0, 15),        # d f16 | qs[16] = 18 bytes / 32 weights
    QType(3, "Q4_1", 32, 20, 0, 15),        # d f16 | m f16 | qs[16] = 20 bytes / 32 weights
    QType(6, "Q5_0", 32, 22, 0, 31),        # d f16 | qh[4] | qs[16] = 22 bytes / 32 weights
    QType(7, "Q5_1", 32, 24, 0, 31),        # d f16 | m f16 | qh[4] | qs[16] = 24 bytes / 32 weights
    QType(8, "Q8_0", 32, 34, -128, 127),    # d f16 | qs[32] int8 = 34 bytes / 32 weights
    QType(10, "Q2_K", 256, 84, 0, 3),       # scales[16] | qs[64] | d f16 | dmin f16 = 84 / 256
    QType(11, "Q3_K", 256, 110, 0, 7),      # hmask[32] | qs[64] | scales[12] | d f16 = 110 / 256
    QType(12, "Q4_K", 256, 144, 0, 15),     # d f16 | dmin f16 | scales[12] | qs[128] = 144 / 256
    QType(13, "Q5_K", 256, 176, 0, 31),     # d | dmin | scales[12] | qh[32] | qs[128] = 176 / 256
    QType(14, "Q6_K", 256, 210, 0, 63),     # ql[128] | qh[64] | scales[16] int8 | d f16 = 210 / 256
    QType(20, "IQ4_NL", 32, 18, 0, 15),     # d f16 | qs[16] = 18 bytes / 32 weights
    QType(23, "IQ4_XS", 256, 136, 0, 15),   # d f16 | scales_h u16 | scales_l[4] | qs[128] = 136 / 256
]}
BY_NAME: dict[str, QType] = {q.name: q for q in QTYPES.values()}

# Names of the ggml types we leave alone (ggml.h ids), for frozen_reason().
_FROZEN_NAMES = {
    0: "F32", 1: "F16", 30: "BF16", 9: "Q8_1", 15: "Q8_K", 24: "I8", 25: "I16", 26: "I32",
    27: "I64", 28: "F64", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 21: "IQ3_S",
    22: "IQ2_S", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4", 41: "Q1_0",
}

# The 16 ascending levels IQ4_NL and IQ4_XS codes index (kvalues_iq4nl in ggml-common.h).
KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                         dtype=np.float32)


def qtype(type_id: int) -> QType | None:
    """The table row of a trainable type, or None."""
    return QTYPES.get(type_id)


def is_trainable(type_id: int) -> bool:
    return type_id in QTYPES


def frozen_reason(type_id: int) -> str:
    """One line saying why a tensor of this type is not trained ("" if it is trainable)."""
    if type_id in QTYPES:
        return ""
    name = _FROZEN_NAMES.get(type_id, f"#{type_id}")
    if name in ("F32", "F16", "BF16"):
        return "float tensor (norms, biases): left as is"
    if name.startswith(("IQ1_", "IQ2_", "IQ3_")):
        return "grid-codebook type: codes are not ordered levels"
    if name.startswith("TQ"):
        return "ternary type"
    if name == "MXFP4":
        return "MXFP4: shared-exponent fp4"
    return f"type {name} is not trainable"


# ---- bit-field helpers: fields are stored low bits first --------------------------------------

def _split(q: np.ndarray, width: int) -> np.ndarray:
    """(..., L) uint8 -> (..., 8 // width, L): field k is bits [width*k, width*(k+1)) of each byte."""
    shifts = np.arange(0, 8, width, dtype=np.uint8)[:, None]
    return (q[..., None, :] >> shifts) & np.uint8((1 << width) - 1)


def _join(f: np.ndarray, width: int) -> np.ndarray:
    """Inverse of _split: (..., 8 // width, L) fields -> (..., L) uint8."""
    shifts = np.arange(0, 8, width, dtype=np.uint8)[:, None]
    return np.bitwise_or.reduce((f.astype(np.uint8) & np.uint8((1 << width) - 1)) << shifts, axis=-2)


def _bitplanes(q: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 -> (n, 256) bits: element 32*b + l is bit b of byte l (Q3_K hmask, Q5_K qh)."""
    return _split(q, 1).reshape(len(q), 256)


def _from_bitplanes(bits: np.ndarray) -> np.ndarray:
    return _join(bits.reshape(len(bits), 8, 32), 1)


def _bits_le(q: np.ndarray) -> np.ndarray:
    """(n, 4) uint8 little-endian u32 -> (n, 32) bits: element j is bit j (Q5_0, Q5_1 qh)."""
    return np.unpackbits(q, axis=-1, bitorder="little")


def _bits_le_pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.astype(np.uint8) & 1, axis=-1, bitorder="little")


# ---- codecs: unpack(blocks (n, block_bytes) u8) -> (n, block_elems); pack(blocks, codes) in place

_Unpack = Callable[[np.ndarray], np.ndarray]
_Pack = Callable[[np.ndarray, np.ndarray], None]
_CODECS: dict[int, tuple[_Unpack, _Pack]] = {}


def _register(*names: str):
    def deco(pair_factory):
        for name in names:
            _CODECS[BY_NAME[name].type_id] = pair_factory(name)
        return pair_factory
    return deco


# Q4_0, IQ4_NL: qs at byte 2; Q4_1: qs at byte 4 (after d, m). Element j < 16 is the low nibble of
# qs[j], element j + 16 its high nibble.
@_register("Q4_0", "Q4_1", "IQ4_NL")
def _nibbles32(name):
    o = 4 if name == "Q4_1" else 2

    def unpack(b):
        return _split(b[:, o:o + 16], 4).reshape(len(b), 32)

    def pack(b, c):
        b[:, o:o + 16] = _join(c.reshape(len(b), 2, 16), 4)
    return unpack, pack


# Q5_0: d | qh[4] @2 | qs[16] @6; Q5_1: d | m | qh[4] @4 | qs[16] @8. Low 4 bits as Q4_0;
# bit 4 of element j is bit j of qh read as a little-endian u32.
@_register("Q5_0", "Q5_1")
def _q5_legacy(name):
    h = 4 if name == "Q5_1" else 2

    def unpack(b):
        return _split(b[:, h + 4:h + 20], 4).reshape(len(b), 32) | (_bits_le(b[:, h:h + 4]) << 4)

    def pack(b, c):
        b[:, h + 4:h + 20] = _join(c.reshape(len(b), 2, 16), 4)
        b[:, h:h + 4] = _bits_le_pack(c >> 4)
    return unpack, pack


# Q8_0: d f16 | qs[32] int8 @2, in element order.
@_register("Q8_0")
def _q8_0(name):
    def unpack(b):
        return b[:, 2:34].view(np.int8)

    def pack(b, c):
        b[:, 2:34] = c.astype(np.int8).view(np.uint8)
    return unpack, pack


# Q2_K: qs[64] @16 as 2 halves x 32 bytes; element 128*h + 32*j + l = bits 2j..2j+1 of qs[32h + l].
# Q3_K: the same 2-bit field from qs[64] @32, plus bit 2 = bit (4h + j) of hmask[l] @0 (which is
# bit e // 32 of hmask[e % 32]): value = code - 4, i.e. a clear hmask bit subtracts 4 as in ggml.
@_register("Q2_K", "Q3_K")
def _q23_k(name):
    o = 32 if name == "Q3_K" else 16

    def unpack(b):
        c = _split(b[:, o:o + 64].reshape(len(b), 2, 32), 2).reshape(len(b), 256)
        return c | (_bitplanes(b[:, 0:32]) << 2) if name == "Q3_K" else c

    def pack(b, c):
        b[:, o:o + 64] = _join(c.reshape(len(b), 2, 4, 32), 2).reshape(len(b), 64)
        if name == "Q3_K":
            b[:, 0:32] = _from_bitplanes(c >> 2)
    return unpack, pack


# Q4_K: qs[128] @16 as 4 chunks x 32 bytes; element 64*c + l is the low nibble of qs[32c + l],
# element 64*c + 32 + l its high nibble. Q5_K: qs[128] @48 the same, plus bit 4 = bit (2c + hi)
# of qh[l] @16 (which is bit e // 32 of qh[e % 32]).
@_register("Q4_K", "Q5_K")
def _q45_k(name):
    o = 48 if name == "Q5_K" else 16

    def unpack(b):
        c = _split(b[:, o:o + 128].reshape(len(b), 4, 32), 4).reshape(len(b), 256)
        return c | (_bitplanes(b[:, 16:48]) << 4) if name == "Q5_K" else c

    def pack(b, c):
        b[:, o:o + 128] = _join(c.reshape(len(b), 4, 2, 32), 4).reshape(len(b), 128)
        if name == "Q5_K":
            b[:, 16:48] = _from_bitplanes(c >> 4)
    return unpack, pack


# Q6_K: ql[128] @0 | qh[64] @128. Element 128*h + 32*k + l (k = 0..3): low 4 bits are nibble k // 2
# of ql[64h + 32*(k % 2) + l], high 2 bits are bits 2k..2k+1 of qh[32h + l].
@_register("Q6_K")
def _q6_k(name):
    def unpack(b):
        n = len(b)
        lo = _split(b[:, 0:128].reshape(n, 2, 64), 4).reshape(n, 2, 4, 32)  # (h, 2*nib + k%2, l)
        hi = _split(b[:, 128:192].reshape(n, 2, 32), 2)                      # (h, k, l)
        return (lo | (hi << 4)).reshape(n, 256)

    def pack(b, c):
        n = len(b)
        c = c.reshape(n, 2, 4, 32)
        b[:, 0:128] = _join((c & 15).reshape(n, 2, 2, 64), 4).reshape(n, 128)
        b[:, 128:192] = _join(c >> 4, 2).reshape(n, 64)
    return unpack, pack


# IQ4_XS: qs[128] @8 as 8 sub-blocks x 16 bytes; element 32*ib + j is the low nibble of
# qs[16ib + j], element 32*ib + 16 + j its high nibble.
@_register("IQ4_XS")
def _iq4_xs(name):
    def unpack(b):
        return _split(b[:, 8:136].reshape(len(b), 8, 16), 4).reshape(len(b), 256)

    def pack(b, c):
        b[:, 8:136] = _join(c.reshape(len(b), 8, 2, 16), 4).reshape(len(b), 128)
    return unpack, pack


# ---- public API -------------------------------------------------------------------------------

def _blocks(type_id: int, raw_u8: np.ndarray) -> tuple[QType, np.ndarray]:
    """(QType, (n_blocks, block_bytes) uint8 view of raw_u8)."""
    q = QTYPES.get(type_id)
    if q is None:
        raise ValueError(f"ggml type {type_id} is not trainable ({frozen_reason(type_id)}); "
                         f"trainable ids are {sorted(QTYPES)}")
    if raw_u8.dtype != np.uint8 or not raw_u8.flags.c_contiguous or raw_u8.size % q.block_bytes:
        raise ValueError(f"{q.name}: expected contiguous uint8 bytes of whole {q.block_bytes}-byte "
                         f"blocks, got {raw_u8.dtype} of size {raw_u8.size}; pass the tensor's raw bytes")
    blocks = raw_u8.view()
    blocks.shape = (raw_u8.size // q.block_bytes, q.block_bytes)  # raises rather than copy
    return q, blocks


def unpack_codes(type_id: int, raw_u8: np.ndarray) -> np.ndarray:
    """All codes of whole blocks, in ggml's dequantized element order, as int8."""
    _, blocks = _blocks(type_id, raw_u8)
    return _CODECS[type_id][0](blocks).astype(np.int8).reshape(-1)


def pack_codes(type_id: int, raw_u8: np.ndarray, codes_int8: np.ndarray) -> None:
    """Write codes into raw_u8 (modified in place); scale/min/super-block bytes are not touched."""
    q, blocks = _blocks(type_id, raw_u8)
    codes = np.asarray(codes_int8).reshape(-1)
    if codes.size != len(blocks) * q.block_elems:
        raise ValueError(f"{q.name}: {codes.size} codes for {len(blocks)} blocks of {q.block_elems}")
    if codes.size and (codes.min() < q.lo or codes.max() > q.hi):
        raise ValueError(f"{q.name}: codes must lie in [{q.lo}, {q.hi}]; clip them before packing")
    c = codes.astype(np.int8 if q.lo < 0 else np.uint8).reshape(len(blocks), q.block_elems)
    _CODECS[type_id][1](blocks, c)



# ---- reference dequantizer (tests only): codes from unpack_codes, scales decoded here ----------

def _f16(b: np.ndarray, o: int) -> np.ndarray:
    """(n, 1) float32 from the f16 at byte o of each block."""
    return b[:, o:o + 2].copy().view("<f2").astype(np.float32)


def _scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K scales[12] -> 8 six-bit scales and 8 mins (get_scale_min_k4): sub-blocks 0..3 are
    the low 6 bits of bytes 0..3 (scales) and 4..7 (mins); sub-blocks 4..7 take their low 4 bits
    from bytes 8..11 (scale low nibble, min high nibble) and their top 2 bits from bits 6..7 of
    bytes 0..3 (scales) and 4..7 (mins)."""
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _scales_q3_k(s: np.ndarray) -> np.ndarray:
    """Q3_K scales[12] -> 16 signed scales: low 4 bits of scale k are nibble k // 8 of byte k % 8,
    the top 2 bits are bits 2*(k // 4) of byte 8 + k % 4; stored with a +32 offset."""
    low = np.concatenate([s[:, 0:8] & 15, s[:, 0:8] >> 4], axis=1)
    high = _split(s[:, 8:12], 2).reshape(len(s), 16)
    return (low | (high << 4)).astype(np.float32) - 32


def dequantize(type_id: int, raw_u8: np.ndarray) -> np.ndarray:
    """float32 weights of whole blocks, as ggml's dequantize_row_* computes them."""
    q, b = _blocks(type_id, raw_u8)
    n = len(b)
    c = unpack_codes(type_id, raw_u8).reshape(n, q.block_elems).astype(np.float32)
    if q.name in ("Q4_0", "Q5_0", "Q8_0"):
        y = _f16(b, 0) * (c - {"Q4_0": 8, "Q5_0": 16, "Q8_0": 0}[q.name])
    elif q.name in ("Q4_1", "Q5_1"):
        y = _f16(b, 0) * c + _f16(b, 2)
    elif q.name == "IQ4_NL":
        y = _f16(b, 0) * KVALUES_IQ4NL[c.astype(np.int64)]
    elif q.name == "Q2_K":  # scales[16]: low nibble scale, high nibble min, one per 16 weights
        s = np.repeat(b[:, 0:16], 16, axis=1)
        y = (_f16(b, 80) * (s & 15)) * c - _f16(b, 82) * (s >> 4)
    elif q.name == "Q3_K":
        y = (_f16(b, 108) * np.repeat(_scales_q3_k(b[:, 96:108]), 16, axis=1)) * (c - 4)
    elif q.name in ("Q4_K", "Q5_K"):  # one scale and min per 32 weights
        sc, mn = (np.repeat(a, 32, axis=1) for a in _scale_min_k4(b[:, 4:16]))
        y = (_f16(b, 0) * sc) * c - _f16(b, 2) * mn
    elif q.name == "Q6_K":  # scales[16] int8 @192, one per 16 weights
        sc = np.repeat(b[:, 192:208].view(np.int8).astype(np.float32), 16, axis=1)
        y = (_f16(b, 208) * sc) * (c - 32)
    else:  # IQ4_XS: 6-bit scale of sub-block ib = nibble ib % 2 of scales_l[ib // 2] | 2 bits of scales_h
        low = _split(b[:, 4:8], 4).transpose(0, 2, 1).reshape(n, 8)
        sh = b[:, 2:4].copy().view("<u2").astype(np.uint32)
        high = (sh >> (2 * np.arange(8, dtype=np.uint32))) & 3
        ls = np.repeat((low | (high << 4)).astype(np.float32) - 32, 32, axis=1)
        y = (_f16(b, 0) * ls) * KVALUES_IQ4NL[c.astype(np.int64)]
    return y.astype(np.float32).reshape(-1)
