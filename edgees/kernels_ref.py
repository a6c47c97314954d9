"""Reference (numpy) kernels of QES on packed tensors: perturb, exact restore, and the update.

These are the slow, clear oracle; native/kernels.c and native/update.c are the fast versions and
tests pin the two byte for byte. Everything works stream-chunk by stream-chunk (noise.CHUNK elements, a whole number
of blocks for every type), so transient buffers are bounded by the chunk, never by the tensor.

Shared data shapes (also what the C side takes and returns):
- a Slot describes one trainable tensor: its writable uint8 view, type, element count, noise key;
- a ChunkRecord is a sparse per-(tensor, chunk) list in slot order then chunk order:
  counts (n_chunks_total,) uint32 | pos (sum counts,) uint16 | val (sum counts,) int8 (or empty).
  Perturb returns what it applied this way (restore subtracts it: gating makes -u not the inverse
  of +u, and no noise need be drawn again); the update returns the code deltas it applied this way
  (replay rewinds with them).
The update follows DESIGN.md: g = sum_j a_j u_j (a_j in steps of 1/4096, summed exactly; u re-gated
against the codes of that step), v = alpha/(sigma_t P) * g + gamma * e (sigma_t the law's sigma: type_tables), step = round half away
from zero bounded to +-127, applied where the code stays in range, e = clamp(v - applied, -1.5, 1.5)
kept in fixed point: e_q = round(e * 8192) in int16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgees import noise, quants

E_SCALE = 8192.0  # error feedback fixed point: e = e_q / 8192, |e| <= 1.5 -> |e_q| <= 12288
E_CLAMP = 1.5
COEF_SCALE = 4096.0  # coefficients enter the update as a_q = round(a * 4096): g sums exactly in ints
MAX_STEP = 127.0  # a step moves a code by at most this (records keep deltas as int8)


@dataclass
class Slot:
    """One trainable tensor as the kernels see it."""

    name: str
    type_id: int
    n_elements: int
    view: np.ndarray  # (nbytes,) uint8, writable, the tensor's packed blocks
    key: int = 0
    qt: quants.QType = field(init=False)

    def __post_init__(self):
        self.qt = quants.qtype(self.type_id)
        if self.qt is None:
            raise ValueError(f"tensor {self.name}: type {self.type_id} is not trainable")
        if not self.key:
            self.key = noise.tensor_key(self.name)

    @property
    def n_chunks(self) -> int:
        return (self.n_elements + noise.CHUNK - 1) // noise.CHUNK

    def chunk_bytes(self, chunk: int) -> tuple[int, int, int]:
        """(first byte, end byte, element count) of a stream chunk."""
        start = chunk * noise.CHUNK
        length = min(noise.CHUNK, self.n_elements - start)
        be, bb = self.qt.block_elems, self.qt.block_bytes
        b0 = start // be * bb
        b1 = (start + length + be - 1) // be * bb
        return b0, b1, length


@dataclass
class ChunkRecord:
    counts: np.ndarray  # (n_chunks_total,) uint32
    pos: np.ndarray  # (total,) uint16
    val: np.ndarray  # (total,) int8, or (0,) when unused

    def split(self) -> list[tuple[np.ndarray, np.ndarray]]:
        ends = np.cumsum(self.counts.astype(np.int64))
        starts = ends - self.counts
        has_val = len(self.val) == len(self.pos)
        return [(self.pos[a:b], self.val[a:b] if has_val else None) for a, b in zip(starts, ends)]

    @staticmethod
    def join(parts: list[tuple[np.ndarray, np.ndarray | None]]) -> "ChunkRecord":
        counts = np.array([len(p) for p, _ in parts], dtype=np.uint32)
        pos = np.concatenate([p for p, _ in parts]).astype(np.uint16) if parts else np.zeros(0, np.uint16)
        vals = [v for _, v in parts if v is not None]
        val = np.concatenate(vals).astype(np.int8) if vals else np.zeros(0, np.int8)
        return ChunkRecord(counts, pos, val)

    @property
    def nbytes(self) -> int:
        return self.counts.nbytes + self.pos.nbytes + self.val.nbytes


@dataclass(frozen=True)
class StepSpec:
    """What an update needs of one logged step: the pair seeds and their coefficients."""

    seeds: tuple[int, ...]  # (P,) positive pair seeds; member +s and -s
    coefs: tuple[float, ...]  # (P,) a_j: normalised pair reward differences
    alpha: float
    sigma: float


def type_tables(sigma: float, type_id: int) -> noise.NoiseTables:
    """The noise law of a tensor of this type at sigma (in 4-bit code steps; quants.noise_law)."""
    scale, step = quants.noise_law(type_id)
    return noise.tables(sigma * scale, step)


# ---------------------------------------------------------------- perturb / restore

def perturb(slots: list[Slot], seed: int, sigma: float) -> ChunkRecord:
    """Add member noise u(seed) in place where the code stays in [lo, hi]; return what was applied
    (chunk-relative positions and values of the entries that moved a code)."""
    parts = []
    for s in slots:
        tab = type_tables(sigma, s.type_id)
        for c in range(s.n_chunks):
            b0, b1, length = s.chunk_bytes(c)
            pos, val = noise.chunk_noise(seed, s.key, c, length, tab)
            codes = quants.unpack_codes(s.type_id, s.view[b0:b1])
            new = codes[pos].astype(np.int16) + val
            ok = (new >= s.qt.lo) & (new <= s.qt.hi)
            codes[pos[ok]] = new[ok].astype(np.int8)
            quants.pack_codes(s.type_id, s.view[b0:b1], codes)
            parts.append((pos[ok], val[ok]))
    return ChunkRecord.join(parts)


def restore(slots: list[Slot], applied: ChunkRecord) -> None:
    """Exact inverse of the perturb that returned `applied`: no noise is drawn again."""
    per_chunk = iter(applied.split())
    for s in slots:
        for c in range(s.n_chunks):
            b0, b1, length = s.chunk_bytes(c)
            pos, val = next(per_chunk)
            codes = quants.unpack_codes(s.type_id, s.view[b0:b1])
            codes[pos.astype(np.int64)] = (codes[pos.astype(np.int64)].astype(np.int16) - val).astype(np.int8)
            quants.pack_codes(s.type_id, s.view[b0:b1], codes)


# ---------------------------------------------------------------- update

def round_away(v: np.ndarray) -> np.ndarray:
    """Round half away from zero, as C's trunc(v + copysign(0.5, v))."""
    return np.trunc(v + np.copysign(0.5, v))


def _one_step(codes, e_q, slot: Slot, chunk: int, length: int, spec: StepSpec, gamma: float,
              recorded: tuple[np.ndarray, np.ndarray] | None = None):
    """One QES update of a chunk's codes (int8, modified) and error (int16, modified): the applied deltas.

    A replayed step passes the deltas it `recorded` when it ran: the codes move by them (what really
    happened), while e is v minus the step this window's optimiser would have taken. (Booking the
    recorded moves instead would count error spent before the window as negative error and push
    those codes back the next step.)
    """
    tab = type_tables(spec.sigma, slot.type_id)
    sig_t = tab.sigma
    lo, hi = slot.qt.lo, slot.qt.hi
    gsum = np.zeros(length, dtype=np.int64)
    cur = codes.astype(np.int16)
    for seed, a in zip(spec.seeds, spec.coefs):
        pos, val = noise.chunk_noise(int(seed), slot.key, chunk, length, tab)
        new = cur[pos] + val
        ok = (new >= lo) & (new <= hi)  # u re-gated against this step's codes
        a_q = int(round_away(np.float64(a) * COEF_SCALE))
        gsum[pos[ok]] += a_q * val[ok].astype(np.int64)
    coef = spec.alpha / (sig_t * float(len(spec.seeds)) * COEF_SCALE)
    v = coef * gsum.astype(np.float64) + gamma * (e_q.astype(np.float64) / E_SCALE)
    v = np.clip(v, -1e9, 1e9)
    step = np.clip(round_away(v), -MAX_STEP, MAX_STEP)  # records keep deltas as int8
    target = cur + step.astype(np.int64)
    applied = np.where((step != 0) & (target >= lo) & (target <= hi), step, 0.0)
    r = np.clip(v - applied, -E_CLAMP, E_CLAMP)
    e_q[:] = round_away(r * E_SCALE).astype(np.int16)
    if recorded is not None:  # a replayed step: e is the window's own, codes follow what happened
        applied = np.zeros(length, dtype=np.float64)
        applied[recorded[0].astype(np.int64)] = recorded[1]
        moved = cur + applied.astype(np.int16)
        if np.any((moved < lo) | (moved > hi) | (cur < lo) | (cur > hi)):
            raise RuntimeError(f"replay diverged: a recorded delta of {slot.name} chunk {chunk} leaves the code range")
    codes[:] = (cur + applied.astype(np.int16)).astype(np.int8)
    nz = np.flatnonzero(applied)
    return nz, applied[nz].astype(np.int8)


def update(slots: list[Slot], history: list[tuple[StepSpec, ChunkRecord]], current: StepSpec,
           gamma: float = 0.9, residual: list[np.ndarray] | None = None) -> ChunkRecord:
    """Apply the QES update of `current` in place; return its code deltas.

    replay mode: `history` holds the window's earlier steps (oldest first) with the deltas each
    applied; codes are rewound through them, e starts at 0 before the oldest, and every step is
    re-run with its recorded deltas as the applied steps. residual mode: history is empty and
    `residual` holds one int16 e array per slot, updated in place. off mode: neither (e = 0).
    """
    hist_parts = [rec.split() for _, rec in history]
    out, k = [], 0
    for si, s in enumerate(slots):
        for c in range(s.n_chunks):
            b0, b1, length = s.chunk_bytes(c)
            codes = quants.unpack_codes(s.type_id, s.view[b0:b1])[:length].copy()
            for parts in reversed(hist_parts):  # rewind to the start of the window
                pos, val = parts[k]
                codes[pos.astype(np.int64)] -= val
            if residual is not None:
                e_q = residual[si][c * noise.CHUNK: c * noise.CHUNK + length]
            else:
                e_q = np.zeros(length, dtype=np.int16)
            for (spec, _), parts in zip(history, hist_parts):
                _one_step(codes, e_q, s, c, length, spec, gamma, recorded=parts[k])
            pos, val = _one_step(codes, e_q, s, c, length, current, gamma)
            out.append((pos, val))
            full = quants.unpack_codes(s.type_id, s.view[b0:b1])
            full[:length] = codes
            quants.pack_codes(s.type_id, s.view[b0:b1], full)
            k += 1
    return ChunkRecord.join(out)
