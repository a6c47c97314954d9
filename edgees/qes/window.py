"""The replay window: the applied code deltas of the last K steps, per kernel group, packed.

The window is a cache, not state: the log rebuilds it by replay (resume, verify and export all do).
Kept in RAM it grows with the codes a run moves (tens of MB over 50 steps on SmolLM2: see
docs/benchmarks.md). Given a directory, each step's records go to one file there instead, and an update reads back only the group it is working on, so RAM holds at most one
group's window at a time. Files are plain writes, not fsynced: a crash leaves at worst a torn file,
and opening a window on the directory deletes what an earlier process left.

Step file layout, per group in order: offsets (n_jobs + 1 uint64), counts (n_jobs uint32), the
packed stream (uint8), the whole padded to 8 bytes. Offsets go first so every array is aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgees.qes.records import PackedRecord, StepSpec

SUFFIX = ".win"


@dataclass(frozen=True)
class _Part:
    offset: int  # where the group's bytes start in the step file
    n_jobs: int
    data_bytes: int

    @property
    def counts_at(self) -> int:  # offsets end, counts begin
        return 8 * (self.n_jobs + 1)

    @property
    def data_at(self) -> int:  # counts end, the packed stream begins
        return self.counts_at + 4 * self.n_jobs

    @property
    def size(self) -> int:
        return _padded(self.data_at + self.data_bytes)


def _padded(n: int) -> int:
    return (n + 7) // 8 * 8


class _InRam:
    """A step's records kept as they are."""

    def __init__(self, records: list[PackedRecord]):
        self.records = list(records)

    def record(self, gi: int) -> PackedRecord:
        return self.records[gi]

    @property
    def n_groups(self) -> int:
        return len(self.records)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.records)

    def drop(self) -> None:
        pass


class _InFile:
    """A step's records in one file: each group's part read back on demand."""

    def __init__(self, path: Path, records: list[PackedRecord]):
        self.path, self.parts = path, []
        offset = 0
        with open(path, "wb") as f:
            for r in records:
                part = _Part(offset, len(r.counts), int(r.data.nbytes))
                f.write(np.ascontiguousarray(r.offsets, np.uint64).tobytes())
                f.write(np.ascontiguousarray(r.counts, np.uint32).tobytes())
                f.write(r.data.tobytes())
                f.write(b"\0" * (part.size - part.data_at - part.data_bytes))
                self.parts.append(part)
                offset += part.size

    def record(self, gi: int) -> PackedRecord:
        part = self.parts[gi]
        buf = np.empty(part.size, np.uint8)
        with open(self.path, "rb") as f:
            f.seek(part.offset)
            if f.readinto(buf) != part.size:
                raise OSError(f"{self.path}: replay window file is shorter than written; "
                              "another process may have touched the run dir")
        return PackedRecord(counts=buf[part.counts_at:part.data_at].view(np.uint32),
                            offsets=buf[:part.counts_at].view(np.uint64),
                            data=buf[part.data_at:part.data_at + part.data_bytes])

    @property
    def n_groups(self) -> int:
        return len(self.parts)

    @property
    def nbytes(self) -> int:
        return sum(p.size for p in self.parts)

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)


class Window:
    """The last `k` steps: (spec, one PackedRecord per group). In RAM, or in files under `directory`."""

    def __init__(self, k: int, directory: Path | str | None = None):
        self.k = k
        self.directory = Path(directory) if directory is not None else None
        self._steps: list[tuple[StepSpec, _InRam | _InFile]] = []
        self._serial = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            for old in self.directory.glob("*" + SUFFIX):
                old.unlink()

    def __len__(self) -> int:
        return len(self._steps)

    def append(self, spec: StepSpec, records: list[PackedRecord]) -> None:
        if self.k <= 0:
            return
        if self.directory is None:
            held = _InRam(records)
        else:
            held = _InFile(self.directory / f"{self._serial:08d}{SUFFIX}", records)
            self._serial += 1
        self._steps.append((spec, held))
        while len(self._steps) > self.k:
            self._steps.pop(0)[1].drop()

    def group(self, gi: int) -> list[tuple[StepSpec, PackedRecord]]:
        """Every step's record of group gi, oldest first (read from disk when kept there)."""
        return [(spec, held.record(gi)) for spec, held in self._steps]

    def steps(self):
        """Each step's (spec, [record of every group]), oldest first (a checkpoint saves these)."""
        for spec, held in self._steps:
            yield spec, [held.record(gi) for gi in range(held.n_groups)]

    @property
    def nbytes(self) -> int:
        """Size of the window's records, wherever they are kept."""
        return sum(held.nbytes for _, held in self._steps)

    @property
    def ram_bytes(self) -> int:
        """What the window holds in RAM between updates."""
        return self.nbytes if self.directory is None else 0

    def clear(self) -> None:
        """Forget every step (their files too); the window stays usable."""
        for _, held in self._steps:
            held.drop()
        self._steps = []

    def close(self) -> None:
        """Delete the window's files (the log rebuilds them), and the directory if that empties it."""
        for _, held in self._steps:
            held.drop()
        self._steps = []
        if self.directory is not None:
            try:
                self.directory.rmdir()  # only if empty: a file of the user's stays, and the dir too
            except OSError:
                pass
