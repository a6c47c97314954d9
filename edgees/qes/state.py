"""The trainable weights of a run at a given step, and the error-feedback state beside them.

WeightState holds the kernel slots over a WorkingCopy plus what the chosen error-feedback mode
needs: `replay` keeps the last K steps' applied code deltas (a Window: packed, ~2 bytes per moved
code, in RAM or in cache files the log can always rebuild), `residual` keeps e as int16 per
weight, `off` keeps nothing.
The weights after step t are a pure function of (base bytes, log records 0..t): run/rebuild.py
replays a log onto a WeightState.
"""

from __future__ import annotations

import numpy as np

from edgees.errors import UnsupportedModel
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes import kernels
from edgees.qes.algorithm import EF_MODES, WINDOW
from edgees.qes.records import ChunkRecord, Slot, StepSpec
from edgees.qes.trainable import slots_for
from edgees.qes.window import Window

GROUP_BYTES = 4 << 20  # kernels run over ~4 MB of tensors at a time (see WeightState)


class WeightState:
    def __init__(self, wc: WorkingCopy, ef: str = "replay", window: int = WINDOW, gamma: float = 0.9,
                 include_embeddings: bool = False, threads: int | None = None, window_dir=None,
                 tensors: str = ""):
        """window_dir: keep the replay window in files there instead of RAM (see window.py);
        tensors: globs narrowing the trained tensors (trainable.trainable_tensors)."""
        if ef not in EF_MODES:
            raise ValueError(f"unknown error-feedback mode {ef!r}")
        self.wc = wc
        self.ef, self.gamma, self.threads = ef, gamma, threads
        self.slots = slots_for(wc, include_embeddings=include_embeddings, tensors=tensors)
        if not self.slots:
            raise UnsupportedModel(f"{wc.base_path}: no trainable tensors (see `edgees info`); "
                                   "edgees trains Q4_0..Q8_0, K-quants and IQ4 block weights")
        self.names = [s.name for s in self.slots]
        # Kernels run over groups of at most GROUP_BYTES of tensors, and this process's mapping of
        # each group is released after it: RSS grows by one group, not by the model (llama.cpp
        # maps the same bytes), and an update reads one group's part of the window at a time
        # (measurements: docs/benchmarks.md, memory). Results do not depend on the grouping.
        self.groups: list[list[Slot]] = []
        size = GROUP_BYTES
        for s in self.slots:
            if size + s.view.nbytes > GROUP_BYTES:
                self.groups.append([])
                size = 0
            self.groups[-1].append(s)
            size += s.view.nbytes
        self.history = Window(window if ef == "replay" else 0, window_dir if ef == "replay" else None)
        self.residual = [np.zeros(s.n_elements, np.int16) for s in self.slots] if ef == "residual" else None
        self.step = 0  # updates applied so far

    @property
    def n_weights(self) -> int:
        return sum(s.n_elements for s in self.slots)

    def _release(self, group: list[Slot]) -> None:
        self.wc.release([s.name for s in group])

    def perturb(self, member_seed: int, sigma: float) -> list[ChunkRecord]:
        out = []
        for g in self.groups:
            out.append(kernels.perturb(g, member_seed, sigma, threads=self.threads))
            self._release(g)
        return out

    def restore(self, applied: list[ChunkRecord]) -> None:
        """Undo a perturb, given the records it returned."""
        for g, rec in zip(self.groups, applied):
            kernels.restore(g, rec, threads=self.threads)
            self._release(g)

    def swap(self, applied: list[ChunkRecord], next_seed: int, sigma: float) -> list[ChunkRecord]:
        """Restore one member and perturb with the next in one pass over the blocks."""
        out = []
        for g, rec in zip(self.groups, applied):
            out.append(kernels.swap(g, rec, next_seed, sigma, threads=self.threads))
            self._release(g)
        return out

    def apply(self, spec: StepSpec) -> dict:
        """One QES update with this state's error feedback; returns the kernel's stats (summed)."""
        total = {"changed": 0, "blocked": 0, "abs_v_max": 0.0}
        records = []
        offset = 0
        for gi, g in enumerate(self.groups):
            if self.ef == "replay":  # one group's window in RAM at a time; its record kept packed
                hist = self.history.group(gi)
                rec, stats = kernels.update(g, hist, spec, gamma=self.gamma, threads=self.threads)
                del hist
                records.append(kernels.pack(rec))  # ~2 bytes per moved code (native/pack.h)
                del rec
            elif self.ef == "residual":
                res = self.residual[offset: offset + len(g)]
                _, stats = kernels.update(g, [], spec, gamma=self.gamma, residual=res, threads=self.threads)
            else:
                _, stats = kernels.update(g, [], spec, gamma=self.gamma, threads=self.threads)
            offset += len(g)
            self._release(g)
            total["changed"] += stats["changed"]
            total["blocked"] += stats["blocked"]
            total["abs_v_max"] = max(total["abs_v_max"], stats["abs_v_max"])
        if self.ef == "replay":
            self.history.append(spec, records)
        self.step += 1
        return total

    def sha256(self) -> str:
        return self.wc.sha256(self.names)

    def history_bytes(self) -> int:
        """Error-feedback state kept between updates: the replay window (in RAM or in its files),
        or the residual array."""
        if self.residual is not None:
            return sum(r.nbytes for r in self.residual)
        return self.history.nbytes

    def history_ram_bytes(self) -> int:
        """The part of history_bytes held in RAM."""
        if self.residual is not None:
            return self.history_bytes()
        return self.history.ram_bytes

    def close(self) -> None:
        """Delete the replay window's cache files, if any."""
        self.history.close()
