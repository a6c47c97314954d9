"""Facade over the C kernels (edgees._native): the same API as kernels_ref, fast and threaded.

perturb / restore / update here and in kernels_ref give identical bytes (tests/test_kernels.py);
results never depend on `threads`.
"""

from __future__ import annotations

import os

import numpy as np

from edgees import _native, noise
from edgees.kernels_ref import ChunkRecord, Slot, StepSpec, type_sigma

__all__ = ["Slot", "StepSpec", "ChunkRecord", "perturb", "restore", "swap", "update", "chunk_noise", "default_threads"]


def default_threads() -> int:
    env = os.environ.get("EDGEES_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(os.cpu_count() or 1, 8))


def _slot_args(slots: list[Slot], residual: list[np.ndarray] | None = None) -> list[tuple]:
    out = []
    for i, s in enumerate(slots):
        res = None
        if residual is not None:
            res = residual[i]
            if res.dtype != np.int16 or res.shape != (s.n_elements,) or not res.flags.c_contiguous:
                raise ValueError(f"residual of {s.name} must be a contiguous int16 array of {s.n_elements}")
        out.append((s.type_id, s.view, s.n_elements, s.key, res))
    return out


def _laws(slots: list[Slot], sigma: float) -> list[tuple]:
    laws = []
    for s in slots:
        sig_t = type_sigma(sigma, s.type_id)
        tab = noise.tables(sig_t)
        laws.append((tab.gap, tab.mag, tab.index, sig_t))
    return laws


def _record(raw: tuple[bytes, bytes, bytes]) -> ChunkRecord:
    """Read-only views of the bytes the kernel returned (a record is never written after)."""
    counts, pos, val = raw
    return ChunkRecord(np.frombuffer(counts, np.uint32), np.frombuffer(pos, np.uint16),
                       np.frombuffer(val, np.int8))


def _record_args(rec: ChunkRecord) -> tuple:
    return (np.ascontiguousarray(rec.counts, np.uint32), np.ascontiguousarray(rec.pos, np.uint16),
            np.ascontiguousarray(rec.val, np.int8))


def perturb(slots: list[Slot], seed: int, sigma: float, threads: int | None = None) -> ChunkRecord:
    """Add member noise in place (gated at the code range); return what was applied."""
    return _record(_native.perturb(_slot_args(slots), _laws(slots, sigma), int(seed), threads or default_threads()))


def restore(slots: list[Slot], applied: ChunkRecord, threads: int | None = None) -> None:
    """Exact inverse of the perturb that returned `applied`."""
    _native.restore(_slot_args(slots), _record_args(applied), threads or default_threads())


def swap(slots: list[Slot], applied: ChunkRecord, next_seed: int, sigma: float,
         threads: int | None = None) -> ChunkRecord:
    """restore(applied) then perturb(next_seed), fused into one pass: each chunk's blocks are
    touched once while in cache. Byte-identical to the two calls; returns next_seed's record."""
    return _record(_native.swap(_slot_args(slots), _laws(slots, sigma), _record_args(applied),
                                int(next_seed), threads or default_threads()))


def update(slots: list[Slot], history: list[tuple[StepSpec, ChunkRecord]], current: StepSpec,
           gamma: float = 0.9, residual: list[np.ndarray] | None = None,
           threads: int | None = None) -> tuple[ChunkRecord, dict]:
    """The QES update (see kernels_ref.update); returns (applied deltas, stats)."""
    if residual is not None and history:
        raise ValueError("residual mode takes no replay history")
    steps = []
    for spec in [h for h, _ in history] + [current]:
        seeds = np.asarray(spec.seeds, dtype=np.int64)
        coefs = np.asarray(spec.coefs, dtype=np.float64)
        steps.append((seeds, coefs, float(spec.alpha), _laws(slots, spec.sigma)))
    hist = [_record_args(rec) for _, rec in history]
    raw, stats = _native.update(_slot_args(slots, residual), steps, hist, float(gamma), threads or default_threads())
    return _record(raw), stats


def chunk_noise(seed: int, key: int, chunk: int, length: int, tab: noise.NoiseTables) -> tuple[np.ndarray, np.ndarray]:
    pos, val = _native.chunk_noise(int(seed), key, chunk, length, tab.gap, tab.mag, tab.index)
    return np.frombuffer(pos, np.int64), np.frombuffer(val, np.int8)


def slots_for(working_copy, include_embeddings: bool = False) -> list[Slot]:
    """Kernel slots for the trainable tensors of a WorkingCopy (writable views into its mapping)."""
    return [Slot(t.name, t.type_id, t.n_elements, working_copy.view(t.name))
            for t in working_copy.trainable_tensors(include_embeddings=include_embeddings)]
