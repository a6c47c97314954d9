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

import numpy as np

from edgees.gguf import quants
from edgees.qes import noise
from edgees.qes.records import ChunkRecord, Slot, StepSpec
from edgees.qes.trainable import type_tables

E_SCALE = 8192.0  # error feedback fixed point: e = e_q / 8192, |e| <= 1.5 -> |e_q| <= 12288
E_CLAMP = 1.5
COEF_SCALE = 4096.0  # coefficients enter the update as a_q = round(a * 4096): g sums exactly in ints
MAX_STEP = 127.0  # a step moves a code by at most this (records keep deltas as int8)


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
