"""Parity of the code codecs: numpy reference (edgees.gguf.quants) == C (edgees._native), byte for byte,
and our dequantize == gguf-py's (written by the llama.cpp authors), which proves the bit layouts."""

import numpy as np
import pytest

from edgees import _native
from edgees.qes.trainable import noise_law
from edgees.gguf import quants

SEEDS = [0, 1, 2]
N_BLOCKS = 5

# Independent statement of each block layout: [start, end) of the code bytes, and the f16 fields.
CODE_BYTES = {
    "Q4_0": (2, 18), "Q4_1": (4, 20), "Q5_0": (2, 22), "Q5_1": (4, 24), "Q8_0": (2, 34),
    "Q2_K": (16, 80), "Q3_K": (0, 96), "Q4_K": (16, 144), "Q5_K": (16, 176), "Q6_K": (0, 192),
    "IQ4_NL": (2, 18), "IQ4_XS": (8, 136),
}
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
    "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "IQ4_NL": [0], "IQ4_XS": [0],
}
TYPES = sorted(quants.QTYPES.values(), key=lambda q: q.type_id)
CASES = [pytest.param(q, s, id=f"{q.name}-{s}") for q in TYPES for s in SEEDS]


def random_blocks(q, rng, n_blocks=N_BLOCKS):
    """Random block bytes with finite f16 scales, so every dequantized value is finite."""
    raw_bk = rng.integers(0, 256, size=(n_blocks, q.block_bytes), dtype=np.uint8)
    for o in F16_FIELDS[q.name]:
        d = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float16)
        raw_bk[:, o:o + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return raw_bk.reshape(-1)


def random_codes(q, rng, n):
    return rng.integers(q.lo, q.hi + 1, size=n).astype(np.int8)


def c_unpack(q, raw, start, n):
    out = np.zeros(n, dtype=np.int8)
    _native.unpack_codes(q.type_id, raw, start, out)
    return out


def code_mask(q, n_blocks=N_BLOCKS):
    mask_bk = np.zeros((n_blocks, q.block_bytes), dtype=bool)
    mask_bk[:, slice(*CODE_BYTES[q.name])] = True
    return mask_bk.reshape(-1)


@pytest.mark.parametrize("q,seed", CASES)
def test_unpack_c_equals_numpy_and_pack_inverts(q, seed):
    raw = random_blocks(q, np.random.default_rng(seed))
    codes = quants.unpack_codes(q.type_id, raw)
    assert codes.dtype == np.int8 and codes.size == N_BLOCKS * q.block_elems
    assert codes.min() >= q.lo and codes.max() <= q.hi
    np.testing.assert_array_equal(c_unpack(q, raw, 0, codes.size), codes)
    again = raw.copy()
    quants.pack_codes(q.type_id, again, codes)
    assert again.tobytes() == raw.tobytes()
    again = raw.copy()
    _native.pack_codes(q.type_id, again, 0, codes)
    assert again.tobytes() == raw.tobytes()


@pytest.mark.parametrize("q,seed", CASES)
def test_pack_random_codes_numpy_equals_c_and_keeps_scales(q, seed):
    rng = np.random.default_rng(seed)
    raw = random_blocks(q, rng)
    codes = random_codes(q, rng, N_BLOCKS * q.block_elems)
    by_np, by_c = raw.copy(), raw.copy()
    quants.pack_codes(q.type_id, by_np, codes)
    _native.pack_codes(q.type_id, by_c, 0, codes)
    assert by_np.tobytes() == by_c.tobytes()
    keep = ~code_mask(q)
    assert by_np[keep].tobytes() == raw[keep].tobytes()  # scales, mins, d: untouched
    np.testing.assert_array_equal(quants.unpack_codes(q.type_id, by_np), codes)


@pytest.mark.parametrize("q,seed", CASES)
def test_unaligned_ranges_match_numpy_slices(q, seed):
    rng = np.random.default_rng(100 + seed)
    raw = random_blocks(q, rng)
    total = N_BLOCKS * q.block_elems
    full = quants.unpack_codes(q.type_id, raw)
    be = q.block_elems
    spans = [(0, 1), (total - 1, 1), (3, be), (be - 1, 2), (be + 5, 2 * be + 3), (1, total - 1),
             (be, 2 * be), (0, 0)]
    spans += [(s, int(rng.integers(0, total - s + 1))) for s in rng.integers(0, total, size=6)]
    for start, n in spans:
        np.testing.assert_array_equal(c_unpack(q, raw, start, n), full[start:start + n])
        new = random_codes(q, rng, n)
        by_c = raw.copy()
        _native.pack_codes(q.type_id, by_c, start, new)
        want = full.copy()
        want[start:start + n] = new
        by_np = raw.copy()
        quants.pack_codes(q.type_id, by_np, want)
        assert by_c.tobytes() == by_np.tobytes(), (start, n)


@pytest.mark.parametrize("q", TYPES, ids=lambda q: q.name)
def test_single_elements_and_range_ends(q):
    rng = np.random.default_rng(7)
    raw = random_blocks(q, rng, n_blocks=2)
    total = 2 * q.block_elems
    for pattern in (np.full(total, q.lo), np.full(total, q.hi), np.where(np.arange(total) % 2, q.lo, q.hi)):
        buf = raw.copy()
        _native.pack_codes(q.type_id, buf, 0, pattern.astype(np.int8))
        np.testing.assert_array_equal(quants.unpack_codes(q.type_id, buf), pattern)
    # element-wise set then get, one length-1 range at a time (edg_set_code / edg_get_code path)
    buf, want = raw.copy(), quants.unpack_codes(q.type_id, raw)
    for i in rng.permutation(total)[:64]:
        code = int(rng.choice([q.lo, q.hi, rng.integers(q.lo, q.hi + 1)]))
        _native.pack_codes(q.type_id, buf, int(i), np.array([code], dtype=np.int8))
        want[i] = code
        assert c_unpack(q, buf, int(i), 1)[0] == code
    np.testing.assert_array_equal(quants.unpack_codes(q.type_id, buf), want)
    keep = ~code_mask(q, n_blocks=2)
    assert buf[keep].tobytes() == raw[keep].tobytes()


@pytest.mark.parametrize("q,seed", CASES)
def test_dequantize_matches_gguf_py(q, seed):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType
    raw = random_blocks(q, np.random.default_rng(200 + seed))
    ours = quants.dequantize(q.type_id, raw)
    theirs = gq.dequantize(raw, GGMLQuantizationType[q.name]).reshape(-1).astype(np.float32)
    assert np.isfinite(ours).all()
    np.testing.assert_array_equal(ours, theirs)  # bit-exact: same float ops in the same order


def test_table_and_frozen_reasons():
    gguf = pytest.importorskip("gguf")
    for q in TYPES:
        t = gguf.GGMLQuantizationType[q.name]
        assert t.value == q.type_id and gguf.GGML_QUANT_SIZES[t] == (q.block_elems, q.block_bytes)
        assert quants.qtype(q.type_id) is q and quants.is_trainable(q.type_id)
        assert quants.frozen_reason(q.type_id) == ""
    assert noise_law(12) == (1.0, 1) and noise_law(14) == (1.0, 4) and noise_law(8) == (1.0, 16)
    assert noise_law(10) == (0.25, 1) and noise_law(11) == (0.5, 1) and noise_law(6) == (1.0, 2)
    assert quants.frozen_reason(0) == "float tensor (norms, biases): left as is"
    assert quants.frozen_reason(16) == "grid-codebook type: codes are not ordered levels"
    assert quants.frozen_reason(34) == "ternary type"
    assert quants.frozen_reason(39) == "MXFP4: shared-exponent fp4"
    assert quants.frozen_reason(15) == "type Q8_K is not trainable"
    assert quants.qtype(0) is None and not quants.is_trainable(19)
    with pytest.raises(ValueError, match="clip"):
        quants.pack_codes(12, np.zeros(144, np.uint8), np.full(256, 16))
