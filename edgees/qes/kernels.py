"""Facade over the C kernels (edgees._native): the same API as qes/reference.py, fast and threaded.

perturb / restore / update here and in qes/reference.py give identical bytes (tests/test_kernels.py);
results never depend on `threads`.
"""

from __future__ import annotations

import os
import numpy as np

from edgees import _native
from edgees.qes import noise
from edgees.qes.records import ChunkRecord, PackedRecord, Slot, StepSpec
from edgees.qes.trainable import type_tables

__all__ = ["Slot", "StepSpec", "ChunkRecord", "PackedRecord", "ReplayDiverged", "perturb", "restore", "swap",
           "update", "pack", "chunk_noise", "default_threads"]


class ReplayDiverged(RuntimeError):
    """update's window history does not fit the weights: a recorded delta, rewound or replayed,
    leaves the code range (native/update.c), so the window is not the one these weights went
    through. run/rebuild.py turns it into a RunError naming the step."""


def pack(rec: ChunkRecord) -> PackedRecord:
    offsets, data = _native.pack_record(_record_args(rec))
    return PackedRecord(np.ascontiguousarray(rec.counts, np.uint32), np.frombuffer(offsets, np.uint64),
                        np.frombuffer(data, np.uint8))


def unpack(p: PackedRecord) -> ChunkRecord:
    """The ChunkRecord of a PackedRecord (reference decoder, numpy-free loops; for tests)."""
    pos, val = [], []
    raw = p.data.tobytes()
    for j in range(len(p.counts)):
        k, prev = int(p.offsets[j]), -1
        for _ in range(int(p.counts[j])):
            z, shift = 0, 0
            while True:
                b = raw[k]
                k += 1
                z |= (b & 127) << shift
                shift += 7
                if not b & 128:
                    break
            prev += 1 + (z >> 2)
            tag = z & 3
            v = 1 if tag == 0 else -1 if tag == 1 else int(np.int8(np.uint8(raw[k])))
            k += tag == 2
            pos.append(prev)
            val.append(v)
    return ChunkRecord(p.counts.copy(), np.array(pos, np.uint16), np.array(val, np.int8))


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
        tab = type_tables(sigma, s.type_id)
        laws.append((tab.gap, tab.mag, tab.index, tab.sigma, tab.step))
    return laws


def _record(raw: tuple[bytes, bytes, bytes]) -> ChunkRecord:
    """Read-only views of the bytes the kernel returned (a record is never written after)."""
    counts, pos, val = raw
    return ChunkRecord(np.frombuffer(counts, np.uint32), np.frombuffer(pos, np.uint16),
                       np.frombuffer(val, np.int8))


def _record_args(rec) -> tuple:
    if isinstance(rec, PackedRecord):
        return (b"packed", rec.counts, rec.offsets, rec.data)
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


def update(slots: list[Slot], history: list[tuple[StepSpec, "ChunkRecord | PackedRecord"]], current: StepSpec,
           gamma: float = 0.9, residual: list[np.ndarray] | None = None,
           threads: int | None = None) -> tuple[ChunkRecord, dict]:
    """The QES update (see qes/reference.py.update); returns (applied deltas, stats). History records
    may be ChunkRecords or PackedRecords (what WeightState keeps)."""
    if residual is not None and history:
        raise ValueError("residual mode takes no replay history")
    steps = []
    for spec in [h for h, _ in history] + [current]:
        seeds = np.asarray(spec.seeds, dtype=np.int64)
        coefs = np.asarray(spec.coefs, dtype=np.float64)
        steps.append((seeds, coefs, float(spec.alpha), _laws(slots, spec.sigma)))
    hist = [_record_args(rec) for _, rec in history]
    try:
        raw, stats = _native.update(_slot_args(slots, residual), steps, hist, float(gamma), threads or default_threads())
    except RuntimeError as exc:  # the binding's only RuntimeError from update (native/binding.c)
        if str(exc).startswith("replay diverged"):
            raise ReplayDiverged(str(exc)) from None
        raise
    return _record(raw), stats


def chunk_noise(seed: int, key: int, chunk: int, length: int, tab: noise.NoiseTables) -> tuple[np.ndarray, np.ndarray]:
    pos, val = _native.chunk_noise(int(seed), key, chunk, length, tab.gap, tab.mag, tab.index, tab.step)
    return np.frombuffer(pos, np.int64), np.frombuffer(val, np.int8)
