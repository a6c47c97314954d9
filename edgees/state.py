"""The trainable weights of a run at a given step, and how to rebuild them from base + log.

WeightState holds the kernel slots over a WorkingCopy plus what the chosen error-feedback mode
needs: `replay` keeps the last K steps' applied code deltas in RAM (sparse; never written to disk,
rebuilt by replaying the log), `residual` keeps e as int16 per weight, `off` keeps nothing.
The weights after step t are a pure function of (base bytes, log records 0..t): rebuild() is how
resume, verify and export all get them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgees import kernels, qes
from edgees.errors import RunError
from edgees.gguffile import WorkingCopy
from edgees.runlog import StepRecord


class WeightState:
    def __init__(self, wc: WorkingCopy, ef: str = "replay", window: int = 50, gamma: float = 0.9,
                 include_embeddings: bool = False, threads: int | None = None):
        if ef not in qes.EF_MODES:
            raise ValueError(f"unknown error-feedback mode {ef!r}")
        self.wc = wc
        self.ef, self.window, self.gamma, self.threads = ef, window, gamma, threads
        self.slots = kernels.slots_for(wc, include_embeddings=include_embeddings)
        if not self.slots:
            from edgees.errors import UnsupportedModel
            raise UnsupportedModel(f"{wc.info.path}: no trainable tensors (see `edgees info`); "
                                   "edgees trains Q4_0..Q8_0, K-quants and IQ4 block weights")
        self.names = [s.name for s in self.slots]
        self.history: list[tuple[kernels.StepSpec, kernels.ChunkRecord]] = []
        self.residual = [np.zeros(s.n_elements, np.int16) for s in self.slots] if ef == "residual" else None
        self.step = 0  # updates applied so far

    @property
    def n_weights(self) -> int:
        return sum(s.n_elements for s in self.slots)

    def perturb(self, member_seed: int, sigma: float) -> kernels.ChunkRecord:
        return kernels.perturb(self.slots, member_seed, sigma, threads=self.threads)

    def restore(self, member_seed: int, sigma: float, gated: kernels.ChunkRecord) -> None:
        kernels.restore(self.slots, member_seed, sigma, gated, threads=self.threads)

    def swap(self, member_seed: int, gated: kernels.ChunkRecord, next_seed: int, sigma: float) -> kernels.ChunkRecord:
        """Restore one member and perturb with the next in one pass over the blocks."""
        return kernels.swap(self.slots, member_seed, sigma, gated, next_seed, threads=self.threads)

    def apply(self, spec: kernels.StepSpec) -> dict:
        """One QES update with this state's error feedback; returns the kernel's stats."""
        if self.ef == "replay":
            record, stats = kernels.update(self.slots, self.history, spec, gamma=self.gamma, threads=self.threads)
            self.history.append((spec, record))
            if len(self.history) > self.window:
                self.history.pop(0)
        elif self.ef == "residual":
            _, stats = kernels.update(self.slots, [], spec, gamma=self.gamma, residual=self.residual,
                                      threads=self.threads)
        else:
            _, stats = kernels.update(self.slots, [], spec, gamma=self.gamma, threads=self.threads)
        self.step += 1
        return stats

    def sha256(self) -> str:
        return self.wc.sha256(self.names)

    def history_bytes(self) -> int:
        """Persistent-in-RAM error-feedback state: the replay ring, or the residual array."""
        if self.residual is not None:
            return sum(r.nbytes for r in self.residual)
        return sum(rec.nbytes for _, rec in self.history)


def spec_of(rec: StepRecord) -> kernels.StepSpec:
    return kernels.StepSpec(tuple(int(s) for s in rec.seeds), tuple(float(a) for a in rec.coefs),
                            float(rec.alpha), float(rec.sigma))


def rebuild(state: WeightState, records: list[StepRecord], upto: int | None = None,
            check: str = "last", progress: Callable[[int, int], None] | None = None) -> None:
    """Replay logged steps [state.step, upto) onto a state built on the base weights.

    check: "all" compares every step's weight hash with the log (verify), "last" only the final one,
    "none" skips hashing. A mismatch raises RunError naming the step.
    """
    upto = len(records) if upto is None else upto
    for t in range(state.step, upto):
        rec = records[t]
        state.apply(spec_of(rec))
        if check == "all" or (check == "last" and t == upto - 1):
            got = state.sha256()
            if got != rec.weights_sha256:
                raise RunError(f"step {t}: rebuilt weights hash {got[:16]}... but the log recorded "
                               f"{rec.weights_sha256[:16]}...; the log or the base file does not match")
        if progress:
            progress(t + 1, upto)
