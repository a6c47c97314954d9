"""The counter-based, integer-only noise of QES: reference side (numpy) and the law's tables.

A member's noise on a tensor is u_i = sign(seed) * R(|seed|, tensor, i): a pure function of the seed,
the tensor (by a 64-bit key from its name) and the element index. R has the law of stochastic
rounding of sigma * z, z ~ N(0, 1): floor(x) + Bernoulli(frac(x)) with x = sigma * z, so
P(R = k) = E[max(0, 1 - |x - k|)]; at small sigma it is ternary with P(+1) = P(-1) = sigma/sqrt(2 pi).

How R is drawn, so that its cost is proportional to the nonzero entries:
- A tensor is cut into streams of CHUNK = 65536 elements; stream c of a tensor is keyed by
  key = mix64(mix64(mix64(seed + GOLDEN) ^ tensor_key) ^ (c * CHUNK_MUL)), and draw t of it is
  mix64(key + (t + 1) * GOLDEN) (64-bit wrapping arithmetic; mix64 is the SplitMix64 finaliser).
- Each draw places the next nonzero: its high 32 bits pick the gap g (zeros skipped) by comparing
  against the cumulative table gap[g] = floor(2^32 * P(G <= g)) of a geometric law with
  P(G = g) = p0^g * (1 - p0), g < GAP_LEN, closed by gap[GAP_LEN] = 2^32; a draw at or above
  gap[GAP_LEN - 1] skips GAP_LEN zeros and emits nothing (the geometric law is memoryless, so this
  is exact). Its low 32 bits pick the value:
  bit 0 the sign, bits 1..31 the magnitude m >= 1 against mag[m-1] = floor(2^31 * P(|R| <= m | R != 0)).
- A law may have a step s >= 1 (quants.noise_law: the codes of finer types move s at a time): the
  value is then sign * min(127, s * m), so it still fits int8. The bound binds only at s = 16 and
  m >= 8, i.e. |sigma z| > 7: never at the sigmas training uses.
- Tables are computed here with +, -, *, / only (IEEE-exact everywhere, no libm), so every machine
  gets the same integers; C takes the same tables, so C and Python draw identical noise.

Golden values (also in native/noise.c): mix64(0) = 0, mix64(1) = 0x5692161d100b05e5,
stream_key(1, 0, 0) = 0x0a385ef24fa6a992; tables(0.01).gap[0] = 34268880; the stream of
(seed 1, key 0, chunk 0) over 65536 elements at sigma 0.01 has 555 nonzeros, the first three at
(58, -1), (113, -1), (171, +1); with step 16 the same positions carry -16, -16, +16.
tests/test_noise.py pins these on both sides.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 16
GAP_LEN = 1024
INDEX_LEN = 4096
MAG_LEN = 127  # |R| <= 127 so values fit int8; the tail beyond is lumped into 127
GOLDEN = 0x9E3779B97F4A7C15
CHUNK_MUL = 0xD1B54A32D192ED03
M64 = (1 << 64) - 1


# ---------------------------------------------------------------- hashing (scalar, exact ints)

def mix64(x: int) -> int:
    """SplitMix64 finaliser on a 64-bit int."""
    x &= M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def tensor_key(name: str) -> int:
    """64-bit key of a tensor: first 8 bytes (little-endian) of sha256(name)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def stream_key(seed: int, tkey: int, chunk: int) -> int:
    k = mix64(mix64((seed + GOLDEN) & M64) ^ tkey)
    return mix64(k ^ ((chunk * CHUNK_MUL) & M64))


def _mix64_np(x_n: np.ndarray) -> np.ndarray:
    x_n = x_n ^ (x_n >> np.uint64(30))
    x_n = x_n * np.uint64(0xBF58476D1CE4E5B9)
    x_n = x_n ^ (x_n >> np.uint64(27))
    x_n = x_n * np.uint64(0x94D049BB133111EB)
    return x_n ^ (x_n >> np.uint64(31))


def draws(key: int, start: int, count: int) -> np.ndarray:
    """Draws start .. start+count-1 of the stream with this key, as uint64."""
    t_n = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix64_np(np.uint64(key) + t_n * np.uint64(GOLDEN))


# ---------------------------------------------------------------- the law (deterministic floats)

def _exp(x: float) -> float:
    """exp(x) with basic arithmetic only: x = n ln2 + r, Taylor series of e^r, times 2^n."""
    if x < -745.0:
        return 0.0
    ln2 = 0.6931471805599453
    n = int(x / ln2 + (0.5 if x >= 0 else -0.5))
    r = x - n * ln2
    term, total = 1.0, 1.0
    for k in range(1, 30):
        term = term * r / k
        total += term
    return total * 2.0**n


def _phi(z: float) -> float:
    """Standard normal density."""
    return _exp(-0.5 * z * z) * 0.3989422804014327


def _upper_tail(z: float) -> float:
    """P(Z > z) for the standard normal, z >= 0: series for small z, continued fraction beyond."""
    if z > 38.0:
        return 0.0
    if z < 3.0:
        # P(Z > z) = 1/2 - phi-series: integral of phi from 0 to z = phi(z) * sum z^(2k+1)/(1*3*...*(2k+1))
        term, total, k = z, z, 0
        while abs(term) > 1e-17 * abs(total):
            k += 1
            term = term * z * z / (2 * k + 1)
            total += term
        return 0.5 - _phi(z) * total
    # Lentz-free continued fraction, evaluated bottom-up with a fixed depth.
    frac = 0.0
    for k in range(80, 0, -1):
        frac = k / (z + frac)
    return _phi(z) / (z + frac)


def _hinge(a: float, sigma: float) -> float:
    """E[(x - a)+] for x ~ N(0, sigma^2)."""
    z = a / sigma
    tail = _upper_tail(z) if z >= 0 else 1.0 - _upper_tail(-z)
    return sigma * _phi(z) - a * tail


def level_probs(sigma: float, max_level: int = MAG_LEN) -> list[float]:
    """P(R = m) for m = 0..max_level (symmetric: P(R = -m) = P(R = m))."""
    h = [_hinge(float(m), sigma) for m in range(-1, max_level + 2)]  # h[i] = hinge(i - 1)
    # P(R = m) = hinge(m - 1) - 2 hinge(m) + hinge(m + 1)
    return [max(0.0, h[m] - 2.0 * h[m + 1] + h[m + 2]) for m in range(0, max_level + 1)]


@dataclass(frozen=True)
class NoiseTables:
    """The integer tables that define R for one sigma (in code steps), and the step each nonzero
    moves; what C and numpy consume."""

    sigma: float
    p_nonzero: float
    gap: np.ndarray  # (GAP_LEN,) uint64: floor(2^32 * P(G <= g)), values in [0, 2^32]
    mag: np.ndarray  # (MAG_LEN,) uint64: floor(2^31 * P(|R| <= m | R != 0)), last = 2^31
    index: np.ndarray  # (INDEX_LEN,) uint16: entries of gap <= k << 20; where the search starts
    step: int = 1  # codes per unit of R: the value of a nonzero is sign * min(127, step * |R|)


def _index(gap: np.ndarray) -> np.ndarray:
    """A lookup that turns the gap search into ~1 comparison: index[k] counts the gap entries at
    or below the bucket's lower edge k * 2^20, so the count for hi starts at index[hi >> 20]. It
    changes only the speed of the search, never its answer."""
    edges = np.arange(INDEX_LEN, dtype=np.int64) << 20
    return np.searchsorted(gap.astype(np.int64), edges, side="right").astype(np.uint16)


@functools.lru_cache(maxsize=64, typed=True)
def tables(sigma: float, step: int = 1) -> NoiseTables:
    if not (sigma >= 0.0 and sigma <= 64.0):
        raise ValueError(f"sigma {sigma} is outside 0..64 code steps")
    if not (isinstance(step, int) and 1 <= step <= 127):
        raise ValueError(f"noise step {step} is outside 1..127 codes")
    if sigma == 0.0:
        gap = np.zeros(GAP_LEN + 1, dtype=np.uint64)
        gap[GAP_LEN] = 1 << 32
        mag = np.full(MAG_LEN, 1 << 31, dtype=np.uint64)
        return NoiseTables(0.0, 0.0, gap, mag, _index(gap), step)
    probs = level_probs(sigma)
    p_nonzero = min(1.0, 2.0 * sum(probs[1:]))
    p0 = 1.0 - p_nonzero
    gap = np.empty(GAP_LEN + 1, dtype=np.uint64)
    p0_pow = 1.0
    for g in range(GAP_LEN):
        p0_pow *= p0  # P(G > g) = p0^(g+1)
        gap[g] = min(1 << 32, int((1.0 - p0_pow) * 4294967296.0))
    gap[GAP_LEN] = 1 << 32  # P(G < infinity) = 1: above every draw, it ends the C search loop
    mag = np.empty(MAG_LEN, dtype=np.uint64)
    cum = 0.0
    for m in range(1, MAG_LEN + 1):
        cum += 2.0 * probs[m]
        mag[m - 1] = min(1 << 31, int(cum / p_nonzero * 2147483648.0))
    mag[-1] = 1 << 31
    return NoiseTables(sigma, p_nonzero, gap, mag, _index(gap), step)


# ---------------------------------------------------------------- the sampler (reference)

def chunk_noise(seed: int, tkey: int, chunk: int, length: int, tab: NoiseTables) -> tuple[np.ndarray, np.ndarray]:
    """Nonzeros of one stream, restricted to positions < length: (positions int64, values int8).

    The sign of seed flips every value (antithetic pairs share |seed|). Vectorised in batches of
    draws; the result does not depend on the batch size.
    """
    if seed == 0:
        raise ValueError("seed 0 is reserved (it would have no antithetic partner)")
    key = stream_key(abs(seed), tkey, chunk)
    pos_out, val_out = [], []
    pos, t = 0, 0  # next candidate position, next draw index
    expected = max(64, int(length * max(tab.p_nonzero, 1.0 / GAP_LEN) * 1.1) + 64)
    while pos < length:
        d_n = draws(key, t, expected)
        t += expected
        hi_n = (d_n >> np.uint64(32)).astype(np.int64)
        g_n = np.searchsorted(tab.gap.astype(np.int64), hi_n, side="right")  # gap[g-1] <= hi < gap[g]
        emits_n = g_n < GAP_LEN
        advance_n = np.where(emits_n, g_n + 1, GAP_LEN)  # an emitted nonzero occupies one slot
        end_n = pos + np.cumsum(advance_n)  # position after each draw
        where_n = end_n - 1  # the nonzero's position, for emitting draws
        keep_n = emits_n & (where_n < length)
        lo_n = d_n & np.uint64(0xFFFFFFFF)
        mag_n = np.searchsorted(tab.mag.astype(np.int64), (lo_n >> np.uint64(1)).astype(np.int64), side="right") + 1
        sign_n = np.where((lo_n & np.uint64(1)) == 1, -1, 1)
        pos_out.append(where_n[keep_n])
        val_out.append((sign_n * np.minimum(127, tab.step * mag_n))[keep_n])
        pos = int(end_n[-1])
    positions = np.concatenate(pos_out).astype(np.int64)
    values = np.concatenate(val_out).astype(np.int64)
    if seed < 0:
        values = -values
    return positions, values.astype(np.int8)


def tensor_noise(seed: int, tkey: int, n_elements: int, tab: NoiseTables) -> tuple[np.ndarray, np.ndarray]:
    """All nonzeros of a member's noise on a tensor: (absolute positions int64, values int8)."""
    pos_parts, val_parts = [], []
    for chunk in range((n_elements + CHUNK - 1) // CHUNK):
        length = min(CHUNK, n_elements - chunk * CHUNK)
        p, v = chunk_noise(seed, tkey, chunk, length, tab)
        pos_parts.append(p + chunk * CHUNK)
        val_parts.append(v)
    if not pos_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int8)
    return np.concatenate(pos_parts), np.concatenate(val_parts)


def dense_noise(seed: int, tkey: int, n_elements: int, tab: NoiseTables) -> np.ndarray:
    """The same noise as a dense int8 vector (for tests and small tensors)."""
    out = np.zeros(n_elements, dtype=np.int8)
    pos, val = tensor_noise(seed, tkey, n_elements, tab)
    out[pos] = val
    return out
