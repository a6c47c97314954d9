"""The one adapter to llama.cpp's C API (through llama-cpp-python's ctypes bindings).

Only edgees/engine/ imports llama_cpp. This module holds what touches ctypes directly: field
setting that refuses misspelt names, the log sink (silent unless verbose; load logs captured to
check where the weights live), the weight-buffer check, the batch struct over numpy arrays, and
a Context: one llama_context with its batch, sized to the work and re-created when it must grow.
"""

from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path

import numpy as np

import llama_cpp as L
from edgees.errors import EdgeesError, EngineAborted, UnsupportedModel

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # the struct layouts below are checked against this version
CTX_ROUND = 256  # context sizes are rounded up to this many cells (fewer context re-creations)
UBATCH = 63  # rows per micro-batch: the most below flash attention's 64-row tiled path (docs/engine.md)


_ABORT_CB = None


def abort_callback():
    """native/abort.c's edg_abort_requested as a ggml_abort_callback (loaded once)."""
    global _ABORT_CB
    if _ABORT_CB is None:
        from edgees import _native
        lib = ctypes.CDLL(_native.__file__)
        _ABORT_CB = L.ggml_abort_callback(ctypes.cast(lib.edg_abort_requested, ctypes.c_void_p).value)
    return _ABORT_CB


# ---- ctypes hygiene --------------------------------------------------------------------------

def set_fields(struct: ctypes.Structure, **values) -> None:
    """Set struct fields by name, refusing names the struct does not have (ctypes would accept a
    misspelt field silently and the setting would be lost)."""
    names = {f[0] for f in type(struct)._fields_}
    for key, value in values.items():
        if key not in names:
            raise EdgeesError(f"llama-cpp-python {L.__version__} is installed, but edgees needs "
                              f"{LLAMA_CPP_PYTHON_VERSION} ({type(struct).__name__} has no field {key!r}): "
                              f"pip install llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}")
        setattr(struct, key, value)
        if isinstance(value, (bool, int, float)) and getattr(struct, key) != value:
            raise EdgeesError(f"llama-cpp-python {L.__version__}: {type(struct).__name__}.{key} did not take "
                              f"the value {value!r}; pip install llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}")


# ---- logging: silent unless verbose; load logs captured to check the weight buffers ----------

class _LogSink:
    def __init__(self):
        self.verbose = False
        self.capture: list[str] | None = None
        self.callback = L.llama_log_callback(self._on_log)  # kept alive for the process lifetime

    def _on_log(self, level, text, user_data):
        s = text.decode("utf-8", "replace") if text else ""
        if self.capture is not None:
            self.capture.append(s)
        if self.verbose:
            sys.stderr.write(s)


_LOG = _LogSink()
_BACKEND_READY = False


def _init_backend() -> None:
    global _BACKEND_READY
    L.llama_log_set(_LOG.callback, ctypes.c_void_p(0))
    if not _BACKEND_READY:
        L.llama_backend_init()
        _BACKEND_READY = True


_BUFFER_LINE = re.compile(r"(\S+) model buffer size =\s*([\d.]+) MiB")


def weight_buffers(load_log: str) -> list[tuple[str, float]]:
    """[(buffer name, MiB)] from llama.cpp's load log: where the weights live."""
    return [(m.group(1), float(m.group(2))) for m in _BUFFER_LINE.finditer(load_log)]


def check_mapped(path: Path, buffers: list[tuple[str, float]]) -> None:
    """Refuse unless every non-empty weight buffer is the file mapping (CPU_Mapped)."""
    copies = [(n, mib) for n, mib in buffers if n != "CPU_Mapped" and mib > 0]
    if not buffers or not any(n == "CPU_Mapped" for n, _ in buffers):
        raise UnsupportedModel(f"{path.name}: llama.cpp did not report its weights as CPU_Mapped, so "
                               "writes to the working copy may be invisible to it; cannot train this")
    if copies:
        what = ", ".join(f"{n} {mib:.2f} MiB" for n, mib in copies)
        raise UnsupportedModel(f"{path.name}: llama.cpp copied weights out of the file mapping at load "
                               f"({what}), so perturbations written to the working copy would be "
                               "invisible to it; load with repacking off (use_extra_bufts=False), "
                               "mmap on, CPU only")


# ---- batches and contexts ---------------------------------------------------------------------

class Batch:
    """A llama_batch over numpy arrays of capacity `cap` tokens, one sequence id per token."""

    def __init__(self, cap: int):
        self.cap = cap
        self.token = np.zeros(cap, np.int32)
        self.pos = np.zeros(cap, np.int32)
        self.n_seq_id = np.ones(cap, np.int32)
        self.seq = np.zeros(cap, np.int32)
        self.logits = np.zeros(cap, np.int8)
        # seq_id is an array of pointers, one per token, each to that token's (single) sequence id
        self.seq_ptrs = (self.seq.ctypes.data + 4 * np.arange(cap, dtype=np.uint64)).astype(np.uint64)
        self.struct = L.llama_batch()
        set_fields(self.struct, n_tokens=0,
                   token=self.token.ctypes.data_as(ctypes.POINTER(L.llama_token)),
                   embd=ctypes.POINTER(ctypes.c_float)(),
                   pos=self.pos.ctypes.data_as(ctypes.POINTER(L.llama_pos)),
                   n_seq_id=self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                   seq_id=ctypes.cast(self.seq_ptrs.ctypes.data,
                                      ctypes.POINTER(ctypes.POINTER(L.llama_seq_id))),
                   logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)))

    def decode(self, ctx, token, pos, seq, logits) -> None:
        """llama_decode of len(token) tokens (<= cap); arrays or scalars broadcast."""
        n = len(token)
        assert 0 < n <= self.cap
        self.token[:n] = token
        self.pos[:n] = pos
        self.seq[:n] = seq
        self.logits[:n] = logits
        self.struct.n_tokens = n
        ret = L.llama_decode(ctx, self.struct)
        if ret == 2:
            raise EngineAborted("llama_decode was aborted on request")
        if ret != 0:
            raise RuntimeError(f"llama_decode returned {ret} for {n} tokens (1 = context full: "
                               "the engine sized it wrong; please report)")


class Context:
    """One llama_context over a loaded model, with its Batch; grown (re-created) on demand."""

    def __init__(self, model, n_threads: int):
        self.model, self.n_threads = model, n_threads
        self.ctx = None
        self.batch: Batch | None = None
        self.n_batch = 0
        self.shape = (0, 0, 0, 0)  # (n_ctx, n_seq_max, n_outputs_max, n_ubatch)
        # native/abort.c's flags: [0] abort requested, [1] abortable now; asked between graph nodes
        self.abort_flags = np.zeros(2, np.int32)

    def ensure(self, n_cells: int, n_seq: int, n_outputs: int, ubatch: int = UBATCH) -> None:
        """A context of at least n_cells KV cells for n_seq sequences, with room for n_outputs
        logits rows per decode call. Reused while it is large enough, else replaced by one of
        exactly this shape (memory follows the batch). `ubatch` other than UBATCH is for the
        decode-ceiling benchmark only (it gives up batch invariance)."""
        n_cells = -(-max(n_cells, 1) // CTX_ROUND) * CTX_ROUND
        have = self.shape
        if (self.ctx and have[0] >= n_cells and have[1] >= n_seq and have[2] >= n_outputs
                and have[3] == ubatch):
            return
        self.free()
        n_batch = min(n_cells, 2048)
        params = L.llama_context_default_params()
        set_fields(params, n_ctx=n_cells, n_batch=n_batch, n_ubatch=min(n_batch, ubatch),
                   n_seq_max=n_seq, n_outputs_max=n_outputs, n_outputs_max_per_seq=0,
                   n_threads=self.n_threads, n_threads_batch=self.n_threads,
                   kv_unified=True, flash_attn_type=L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                   embeddings=False, offload_kqv=False, op_offload=False, no_perf=True)
        self.ctx = L.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise EdgeesError(f"llama.cpp could not create a context of {n_cells} cells for {n_seq} "
                              "sequences: lower the batch (n_seq) or set a memory cap")
        L.llama_set_abort_callback(self.ctx, abort_callback(), self.abort_flags.ctypes.data)
        self.shape = (n_cells, n_seq, n_outputs, ubatch)
        self.n_batch = n_batch
        self.batch = Batch(n_batch)

    @property
    def n_outputs(self) -> int:
        return self.shape[2]

    def clear(self) -> None:
        """Forget every sequence's KV cells."""
        if self.ctx:
            L.llama_memory_clear(L.llama_get_memory(self.ctx), False)

    def copy_cells(self, src: int, dst: int, start: int, end: int) -> None:
        """Let sequence dst share src's cells at positions [start, end) (a unified cache: no copy)."""
        L.llama_memory_seq_cp(L.llama_get_memory(self.ctx), src, dst, start, end)

    def decode(self, token, pos, seq, logits) -> None:
        self.batch.decode(self.ctx, token, pos, seq, logits)

    def row(self, i: int, n_vocab: int) -> np.ndarray:
        """Logits of batch token i of the last decode, as a view (valid until the next decode)."""
        ptr = L.llama_get_logits_ith(self.ctx, i)
        if not ptr:
            raise RuntimeError(f"no logits for batch token {i}")
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    def synchronize(self) -> None:
        if self.ctx:
            L.llama_synchronize(self.ctx)

    def free(self) -> None:
        if self.ctx:
            L.llama_free(self.ctx)
        self.ctx, self.shape, self.batch, self.n_batch = None, (0, 0, 0, 0), None, 0
