"""The data the kernels take and return, shared by the numpy reference and the C facade.

- a Slot describes one trainable tensor: its writable uint8 view, type, element count, noise key;
- a ChunkRecord is a sparse per-(tensor, chunk) list in slot order then chunk order:
  counts (n_chunks_total,) uint32 | pos (sum counts,) uint16 | val (sum counts,) int8 (or empty).
  Perturb returns what it applied this way (restore subtracts it); the update returns the code
  deltas it applied this way (replay rewinds with them);
- a PackedRecord is an update's ChunkRecord as the replay window keeps it (native/pack.h);
- a StepSpec is what an update needs of one logged step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgees.gguf import quants
from edgees.qes import noise


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


@dataclass(frozen=True)
class PackedRecord:
    """An update's ChunkRecord in the compact form the replay window keeps (native/pack.h):
    ~2 bytes per moved code instead of 3. Only the C update reads it; `unpack` gives the
    ChunkRecord back (for the numpy reference and tests)."""

    counts: np.ndarray  # (n_jobs,) uint32, as in the ChunkRecord
    offsets: np.ndarray  # (n_jobs + 1,) uint64: where each job's byte stream starts in data
    data: np.ndarray  # (size,) uint8: per entry varint(gap << 2 | tag) [+ a value byte]

    @property
    def nbytes(self) -> int:
        return self.counts.nbytes + self.offsets.nbytes + self.data.nbytes
