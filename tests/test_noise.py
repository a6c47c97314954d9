"""The noise generator: golden values, C == numpy, antithetic sign, density and law vs theory."""

import math

import numpy as np
import pytest

from edgees import _native
from edgees.qes import kernels
from edgees.qes import noise


def test_golden_values():
    assert noise.mix64(0) == 0
    assert noise.mix64(1) == 0x5692161D100B05E5
    assert _native.mix64(1) == 0x5692161D100B05E5
    assert noise.stream_key(1, 0, 0) == 0x0A385EF24FA6A992
    tab = noise.tables(0.01)
    assert int(tab.gap[0]) == 34268880
    for pos, val in (noise.chunk_noise(1, 0, 0, noise.CHUNK, tab), kernels.chunk_noise(1, 0, 0, noise.CHUNK, tab)):
        assert len(pos) == 555
        assert [(int(p), int(v)) for p, v in zip(pos[:3], val[:3])] == [(58, -1), (113, -1), (171, 1)]
    tab16 = noise.tables(0.01, 16)
    for pos, val in (noise.chunk_noise(1, 0, 0, noise.CHUNK, tab16), kernels.chunk_noise(1, 0, 0, noise.CHUNK, tab16)):
        assert len(pos) == 555
        assert [(int(p), int(v)) for p, v in zip(pos[:3], val[:3])] == [(58, -16), (113, -16), (171, 16)]


@pytest.mark.parametrize("sigma", [0.01, 2.0, 20.0])
@pytest.mark.parametrize("step", [2, 4, 16])
def test_a_step_scales_the_values_and_nothing_else(sigma, step):
    """Same positions as step 1, values step * R clipped to +-127, identical in C and numpy,
    antithetic; at sigma 20 (step 16) the clip is reached."""
    one, tab = noise.tables(sigma), noise.tables(sigma, step)
    for seed in (3, -3):
        p1, v1 = noise.chunk_noise(seed, 77, 2, noise.CHUNK, one)
        p_ref, v_ref = noise.chunk_noise(seed, 77, 2, noise.CHUNK, tab)
        p_c, v_c = kernels.chunk_noise(seed, 77, 2, noise.CHUNK, tab)
        assert np.array_equal(p_ref, p_c) and np.array_equal(v_ref, v_c)
        assert np.array_equal(p1, p_ref)
        assert np.array_equal(v_ref, np.sign(v1) * np.minimum(127, step * np.abs(v1.astype(np.int64))))
    a, b = noise.dense_noise(5, 1, 70_000, tab), noise.dense_noise(-5, 1, 70_000, tab)
    assert np.array_equal(a, -b)
    if sigma == 20.0 and step == 16:
        assert np.any(np.abs(a) == 127)


def test_a_step_outside_1_to_127_is_refused():
    for bad in (0, 128, 2.0):
        with pytest.raises(ValueError):
            noise.tables(0.01, bad)


def test_tensor_key_is_stable():
    assert noise.tensor_key("blk.0.attn_q.weight") == 9946302668431712869


@pytest.mark.parametrize("sigma", [0.005, 0.01, 0.05, 0.5, 2.0, 20.0])
def test_native_stream_equals_reference(sigma):
    tab = noise.tables(sigma)
    for seed in (1, -1, 2, 2**62 + 11, -(2**40)):
        for chunk, length in ((0, noise.CHUNK), (3, 1000), (9, 1)):
            p_ref, v_ref = noise.chunk_noise(seed, 12345, chunk, length, tab)
            p_c, v_c = kernels.chunk_noise(seed, 12345, chunk, length, tab)
            assert np.array_equal(p_ref, p_c) and np.array_equal(v_ref, v_c)


def test_antithetic_seed_negates_noise():
    tab = noise.tables(0.5)
    a = noise.dense_noise(77, 5, 100_000, tab)
    b = noise.dense_noise(-77, 5, 100_000, tab)
    assert np.array_equal(a, -b)
    assert np.any(a)


def test_prefix_stability():
    """Element i's value does not depend on the tensor's length (a pure function of seed, tensor, i)."""
    tab = noise.tables(0.05)
    long = noise.dense_noise(3, 9, 200_000, tab)
    short = noise.dense_noise(3, 9, 70_000, tab)
    assert np.array_equal(long[:70_000], short)


def test_seed_zero_is_refused():
    with pytest.raises(ValueError):
        noise.chunk_noise(0, 1, 0, 10, noise.tables(0.01))


@pytest.mark.parametrize("sigma", [0.005, 0.01, 0.05, 0.5, 2.0])
def test_density_within_3_percent_of_theory(sigma):
    tab = noise.tables(sigma)
    n = 4_000_000 if sigma < 0.05 else 1_000_000
    nonzero = 0
    for seed in (1, 2, 3):
        pos, _ = noise.tensor_noise(seed, 99, n, tab)
        nonzero += len(pos)
    density = nonzero / (3 * n)
    # stochastic rounding of sigma * z: P(R != 0) = 1 - E[max(0, 1 - |sigma z|)]
    theory = 1.0 - noise.level_probs(sigma)[0]
    assert abs(density / theory - 1.0) < 0.03
    if sigma <= 0.05:  # the ternary regime: P(R = +1) = P(R = -1) = sigma / sqrt(2 pi)
        assert abs(theory / (2 * sigma / math.sqrt(2 * math.pi)) - 1.0) < 1e-6


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_law_matches_stochastic_rounding(sigma):
    """Mean 0 and variance sigma^2 + E[frac (1 - frac)]: the law of floor(x) + Bernoulli(frac(x))."""
    vals = noise.dense_noise(11, 1, 2_000_000, noise.tables(sigma)).astype(np.float64)
    x = sigma * np.random.default_rng(0).standard_normal(2_000_000)
    frac = x - np.floor(x)
    want_var = sigma**2 + np.mean(frac * (1 - frac))
    assert abs(vals.mean()) < 0.01 * sigma + 0.002
    assert abs(vals.var() / want_var - 1.0) < 0.02


def test_tables_are_integers_from_exact_arithmetic():
    tab = noise.tables(0.01)
    assert tab.gap.dtype == np.uint64 and np.all(np.diff(tab.gap.astype(np.int64)) >= 0)
    assert int(tab.mag[-1]) == 1 << 31
    assert noise._upper_tail(1.0) == pytest.approx(0.5 * math.erfc(1 / math.sqrt(2)), rel=1e-12)
    assert noise._upper_tail(5.0) == pytest.approx(0.5 * math.erfc(5 / math.sqrt(2)), rel=1e-9)
    assert noise._exp(-3.7) == pytest.approx(math.exp(-3.7), rel=1e-14)
