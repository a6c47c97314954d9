"""Type stub of edgees._native, the C kernels (native/binding.c; layouts in native/*.h).

Arguments are positional only. A buffer is any C-contiguous object with the buffer protocol (numpy
array, bytes, bytearray, memoryview); one marked writable is changed in place. The GIL is released
while a kernel runs, and results never depend on n_threads (clamped to 1..64). Errors: TypeError (not
a buffer, a tuple of the wrong shape), ValueError (a bad argument, saying which), MemoryError, and
RuntimeError from update when the history does not match the weights.
"""

import sys
from typing import Any, TypedDict

from numpy.typing import NDArray

if sys.version_info >= (3, 12):
    from collections.abc import Buffer as _Buffer
else:
    from typing_extensions import Buffer as _Buffer

# numpy declares ndarray's buffer protocol (__buffer__) to type checkers only from Python 3.12 on
_Buf = _Buffer | NDArray[Any]

# One trainable tensor: (ggml type id, its packed blocks (writable), n_elements (whole blocks),
# noise key (uint64), residual int16[n_elements] (writable; read and written by update only) or None)
_Slot = tuple[int, _Buf, int, int, _Buf | None]
# A slot's noise law (edgees/qes/noise.py NoiseTables): (gap uint64[1025], mag uint64[127],
# index uint16[4096], sigma in the slot's code steps, step: codes per unit of noise, 1..127)
_Law = tuple[_Buf, _Buf, _Buf, float, int]
# A record of moved codes: (counts uint32[n_jobs], pos uint16[total], val int8[total]), one job per
# (slot, chunk of 65536 elements) in slot then chunk order, pos relative to the chunk
_Record = tuple[_Buf, _Buf, _Buf]
# The same, packed (native/pack.h): (b"packed", counts uint32[n_jobs], offsets uint64[n_jobs + 1],
# data uint8[size])
_PackedRecord = tuple[bytes, _Buf, _Buf, _Buf]
# A record as the kernels return it: (counts, pos, val) bytes, for np.frombuffer
_RecordBytes = tuple[bytes, bytes, bytes]
# One step of an update: (pair seeds int64[P], each > 0; coefficients float64[P]; alpha; one law per slot)
_Step = tuple[_Buf, _Buf, float, list[_Law]]

class _UpdateStats(TypedDict):
    changed: int  # codes the current step moved
    blocked: int  # nonzero rounded steps the code range refused
    abs_v_max: float  # largest |v| of the current step

# Codes (int8, one per element) of elements [start, start + len(out)) of a packed tensor, into out (writable).
def unpack_codes(type_id: int, tensor: _Buf, start: int, out: _Buf, /) -> None: ...

# Write codes (int8) into elements [start, start + len(codes)) of a packed tensor (writable); scales
# and mins are never touched.
def pack_codes(type_id: int, tensor: _Buf, start: int, codes: _Buf, /) -> None: ...

# Add member noise sign(seed) * R(|seed|) in place, gated at each code range; returns what it applied.
# seed != 0; one law per slot.
def perturb(slots: list[_Slot], laws: list[_Law], seed: int, n_threads: int, /) -> _RecordBytes: ...

# Undo the perturb that returned `applied` (an unpacked record only). ValueError if it does not fit.
def restore(slots: list[_Slot], applied: _Record, n_threads: int, /) -> None: ...

# restore(applied) then perturb(next_seed) in one pass, the same bytes (applied unpacked); returns
# next_seed's record.
def swap(slots: list[_Slot], laws: list[_Law], applied: _Record, next_seed: int, n_threads: int,
         /) -> _RecordBytes: ...

# The QES update of steps[-1] in place, replaying steps[:-1] whose applied deltas are hist
# (len(hist) == len(steps) - 1, plain or packed); returns (the current step's deltas, stats).
def update(slots: list[_Slot], steps: list[_Step], hist: list[_Record | _PackedRecord], gamma: float,
           n_threads: int, /) -> tuple[_RecordBytes, _UpdateStats]: ...

# The packed form of a record (positions ascending within each job): (offsets uint64 bytes, data bytes).
def pack_record(record: _Record, /) -> tuple[bytes, bytes]: ...

# The noise of one stream chunk (seed != 0, length 0..65536, step 1..127): (positions int64 bytes,
# values int8 bytes); key and chunk are uint64.
def chunk_noise(seed: int, key: int, chunk: int, length: int, gap: _Buf, mag: _Buf, index: _Buf,
                step: int, /) -> tuple[bytes, bytes]: ...

# The 64-bit mixer of the noise (SplitMix64's finaliser): mix64(1) == 0x5692161D100B05E5.
def mix64(x: int, /) -> int: ...
