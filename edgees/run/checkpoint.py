"""Checkpoints: the weight state at step t, a verified cache in front of the log's replay.

The log stays the truth: the weights after step t are a pure function of (base bytes, records
0..t-1). A checkpoint only spares the replay of those records. It is used only when everything
in it matches: each section's sha256, the base file's sha256, the sha256 of the log's first t
record lines (so a checkpoint of another run, or of a log since rewritten, never matches), and,
once loaded, the weights' sha256 against record t-1. Anything else: skipped with a one-line
warning, and the next older checkpoint (finally the base file) is used. Deleting every
checkpoint loses nothing.

File `checkpoints/step-<t:08d>.ckpt`, written atomically (temp + fsync + rename + dir fsync):

    magic "edgees-checkpoint 1\\n" | header_len u64 | header JSON | sections, back to back

header: {"step", "base_sha256", "log_sha256", "weights_sha256", "ef", "window_steps",
         "sections": [{"name", "bytes", "sha256"}]}; each section is zlib-compressed:
  codes     per trainable tensor in slot order, whichever is smaller:
            a diff against the base file (early in a run most codes never move): n u64 | n byte
            positions (u32, delta-coded: first absolute, then gaps) | n new byte values (u8);
            or the tensor's bytes whole (once more than a fifth of them moved): DENSE u64 | its
            bytes. (Checkpoints written before the dense form hold diffs only; both read.)
  window    replay mode: per step kept (oldest first), per kernel group: n_jobs u64 | data u64 |
            offsets (n_jobs + 1) u64 | counts n_jobs u32 | data bytes (a PackedRecord)
  residual  residual mode: the int16 residual of every trainable tensor, in slot order
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgees.errors import RunError
from edgees.fileio import fsync_dir
from edgees.gguf.working_copy import TensorMap
from edgees.qes.records import PackedRecord
from edgees.qes.state import WeightState
from edgees.run.log import log_sha256, spec_of

MAGIC = b"edgees-checkpoint 1\n"
DIR = "checkpoints"
SUFFIX = ".ckpt"
_U64 = struct.Struct("<Q")
DENSE = 2**64 - 1  # in place of a diff's entry count: the tensor's bytes follow whole


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    header: dict


def checkpoint_dir(run_path) -> Path:
    return Path(run_path) / DIR


def list_checkpoints(run_path) -> list[Path]:
    """Checkpoint files of a run, newest step first (by name; contents are checked on load)."""
    d = checkpoint_dir(run_path)
    if not d.is_dir():
        return []
    return sorted((p for p in d.glob("step-*" + SUFFIX) if p.name[5:-len(SUFFIX)].isdigit()), reverse=True)


def step_of(path: Path) -> int:
    return int(path.name[5:-len(SUFFIX)])


# ---- encoding ------------------------------------------------------------------------------

def _encode_codes(state: WeightState, base_path) -> bytes:
    out = []
    with TensorMap(base_path) as base:
        for s in state.slots:
            cur = s.view
            pos = np.flatnonzero(cur != base.view(s.name)).astype(np.uint32)
            if 5 * len(pos) >= cur.nbytes:  # a diff entry is 5 bytes: the whole tensor is smaller
                out += [_U64.pack(DENSE), cur.tobytes()]
            else:
                gaps = np.diff(pos, prepend=np.uint32(0)).astype(np.uint32)
                out += [_U64.pack(len(pos)), gaps.tobytes(), cur[pos].tobytes()]
            state.wc.release([s.name])
    return b"".join(out)


def _decode_codes(state: WeightState, raw: bytes) -> None:
    k = 0
    for s in state.slots:
        (n,), k = _U64.unpack_from(raw, k), k + 8
        if n == DENSE:
            s.view[:] = np.frombuffer(raw, np.uint8, s.view.nbytes, k)
            k += s.view.nbytes
            state.wc.release([s.name])
            continue
        gaps = np.frombuffer(raw, np.uint32, n, k)
        vals = np.frombuffer(raw, np.uint8, n, k + 4 * n)
        k += 5 * n
        pos = np.cumsum(gaps, dtype=np.uint64)
        if n and int(pos[-1]) >= s.view.nbytes:
            raise ValueError(f"tensor {s.name}: a position lies past its end")
        s.view[pos] = vals
        state.wc.release([s.name])
    if k != len(raw):
        raise ValueError("trailing bytes after the codes")


def _encode_window(state: WeightState) -> bytes:
    out = []
    for _, records in state.history.steps():
        for r in records:
            out += [_U64.pack(len(r.counts)), _U64.pack(int(r.data.nbytes)),
                    np.ascontiguousarray(r.offsets, np.uint64).tobytes(),
                    np.ascontiguousarray(r.counts, np.uint32).tobytes(), r.data.tobytes()]
    return b"".join(out)


def _decode_window(raw: bytes, n_steps: int, n_groups: int) -> list[list[PackedRecord]]:
    steps, k = [], 0
    for _ in range(n_steps):
        records = []
        for _ in range(n_groups):
            n_jobs, size = _U64.unpack_from(raw, k)[0], _U64.unpack_from(raw, k + 8)[0]
            k += 16
            offsets = np.frombuffer(raw, np.uint64, n_jobs + 1, k).copy()
            k += 8 * (n_jobs + 1)
            counts = np.frombuffer(raw, np.uint32, n_jobs, k).copy()
            k += 4 * n_jobs
            data = np.frombuffer(raw, np.uint8, size, k).copy()
            k += size
            records.append(PackedRecord(counts, offsets, data))
        steps.append(records)
    if k != len(raw):
        raise ValueError("trailing bytes after the window")
    return steps


# ---- write ---------------------------------------------------------------------------------

def write_checkpoint(run_path, state: WeightState, base_path, base_sha256: str, log_sha256: str,
                     weights_sha256: str) -> Path:
    """Save `state` (after state.step logged steps) as checkpoints/step-<t>.ckpt, atomically."""
    sections = [("codes", _encode_codes(state, base_path))]
    if state.ef == "replay":
        sections.append(("window", _encode_window(state)))
    elif state.ef == "residual":
        sections.append(("residual", b"".join(np.ascontiguousarray(r).tobytes() for r in state.residual)))
    packed = [(name, zlib.compress(raw, 6)) for name, raw in sections]
    header = {"step": state.step, "base_sha256": base_sha256, "log_sha256": log_sha256,
              "weights_sha256": weights_sha256, "ef": state.ef, "window_steps": len(state.history),
              "groups": len(state.groups),
              "sections": [{"name": n, "bytes": len(z), "sha256": hashlib.sha256(z).hexdigest()} for n, z in packed]}
    head = json.dumps(header, sort_keys=True).encode()
    d = checkpoint_dir(run_path)
    d.mkdir(exist_ok=True)
    path = d / f"step-{state.step:08d}{SUFFIX}"
    tmp = d / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + _U64.pack(len(head)) + head)
            for _, z in packed:
                f.write(z)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(d)
    return path


def prune(run_path, keep: int, protect=frozenset()) -> list[Path]:
    """Delete all but the `keep` newest checkpoints and those of the steps in `protect` (the best
    held-out step's, run/best.py), and temp files a crash left; return the deleted."""
    d = checkpoint_dir(run_path)
    gone = [p for p in list_checkpoints(run_path)[max(keep, 0):] if step_of(p) not in protect]
    if d.is_dir():
        gone += [p for p in d.glob(".step-*.tmp-*")]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


# ---- read ----------------------------------------------------------------------------------

def log_claim(run_path) -> tuple[int, str] | None:
    """(t, sha256 of the log's first t record lines) from the newest checkpoint's header, for
    read_steps(trusted=...); None when there is none or it is unreadable (its full load, later,
    says why). Only the header is read."""
    for path in list_checkpoints(run_path)[:1]:
        try:
            with open(path, "rb") as f:
                head = f.read(len(MAGIC) + 8)
                if not head.startswith(MAGIC) or len(head) < len(MAGIC) + 8:
                    return None
                (n,) = _U64.unpack_from(head, len(MAGIC))
                header = json.loads(f.read(min(n, 1 << 20)))
            return int(header["step"]), str(header["log_sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def read_checkpoint(path: Path) -> tuple[dict, dict[str, bytes]]:
    """(header, {section name: raw bytes}); ValueError naming what is wrong with the file."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError("not an edgees checkpoint (bad magic)")
    k = len(MAGIC)
    if len(data) < k + 8:
        raise ValueError("truncated header")
    (n,) = _U64.unpack_from(data, k)
    k += 8
    if k + n > len(data):
        raise ValueError("truncated header")
    try:
        header = json.loads(data[k:k + n])
    except ValueError:
        raise ValueError("unreadable header") from None
    k += n
    sections = {}
    for sec in header.get("sections", []):
        z = data[k:k + sec["bytes"]]
        if len(z) != sec["bytes"] or hashlib.sha256(z).hexdigest() != sec["sha256"]:
            raise ValueError(f"section {sec['name']} fails its checksum (damaged or truncated)")
        sections[sec["name"]] = zlib.decompress(z)
        k += sec["bytes"]
    if k != len(data):
        raise ValueError("trailing bytes after the last section")
    return header, sections


def load_checkpoint(path: Path, state: WeightState, records, base_sha256: str, log_sha256_at) -> int:
    """Load a checkpoint into a state built on the base weights (state.step == 0). Raises
    ValueError saying why it does not belong to this run or is damaged; on success returns its
    step, with the weights, error-feedback state and state.step as after that many logged steps.
    log_sha256_at(t): sha256 of the log's first t record lines."""
    header, sections = read_checkpoint(path)
    t = int(header["step"])
    if t != step_of(path):
        raise ValueError(f"holds step {t}, its name says {step_of(path)}")
    if not 0 < t <= len(records):
        raise ValueError(f"is of step {t}, the log holds {len(records)} steps")
    if header["base_sha256"] != base_sha256:
        raise ValueError("was made on another base model")
    if header["ef"] != state.ef or header.get("groups") != len(state.groups):
        raise ValueError("was made with another error-feedback setting or model")
    if header["weights_sha256"] != records[t - 1].weights_sha256 or header["log_sha256"] != log_sha256_at(t):
        raise ValueError("does not belong to this run's log")
    want = min(t, state.history.k) if state.ef == "replay" else 0
    if state.ef == "replay" and header["window_steps"] != want:
        raise ValueError(f"keeps {header['window_steps']} window steps, this run needs {want}")
    _decode_codes(state, sections["codes"])
    if state.ef == "replay":
        steps = _decode_window(sections["window"], want, len(state.groups))
        for i, recs in enumerate(steps):
            state.history.append(spec_of(records[t - want + i]), recs)
    elif state.ef == "residual":
        raw = sections["residual"]
        k = 0
        for r in state.residual:
            r[:] = np.frombuffer(raw, np.int16, len(r), k)
            k += r.nbytes
    state.step = t
    if state.sha256() != records[t - 1].weights_sha256:
        raise ValueError("loaded weights do not hash to the logged step's")
    return t


def restore_newest(run_path, state: WeightState, records, upto: int, base_sha256: str, log_sha256_at,
                   warn=None) -> int:
    """Load the newest checkpoint of step <= upto that matches; return its step (0: none did, the
    state is still the base). A checkpoint that fails is reported through warn(line) and skipped;
    a failed load may have written the weights, so they are put back from the base first."""
    for path in list_checkpoints(run_path):
        if step_of(path) > upto:
            continue
        try:
            return load_checkpoint(path, state, records, base_sha256, log_sha256_at)
        except (ValueError, KeyError, TypeError, OSError, zlib.error, struct.error) as exc:
            if warn:
                warn(f"checkpoint {path.name} skipped: {exc}")
            _reset_to_base(state)
    return 0


def _reset_to_base(state: WeightState) -> None:
    with TensorMap(state.wc.base_path) as base:
        for s in state.slots:
            s.view[:] = base.view(s.name)
            state.wc.release([s.name])
    state.history.clear()
    if state.residual is not None:
        for r in state.residual:
            r[:] = 0
    state.step = 0


def require_step(run_path, step: int) -> Path:
    """The checkpoint file of exactly `step`, or RunError naming what there is."""
    for p in list_checkpoints(run_path):
        if step_of(p) == step:
            return p
    have = ", ".join(str(step_of(p)) for p in list_checkpoints(run_path)) or "none"
    raise RunError(f"{run_path}: no checkpoint of step {step} (have: {have})")


def save(run_path, state: WeightState, base_path, base_sha256: str, records, keep: int,
         protect=frozenset()) -> Path | None:
    """Checkpoint `state` (after len(records) steps) and prune to the `keep` newest (and the steps in
    `protect`); the usual call from a process that holds live weights. keep < 1 writes nothing."""
    if keep < 1 or state.step == 0:
        return None
    t = state.step
    path = write_checkpoint(run_path, state, base_path, base_sha256,
                            log_sha256(Path(run_path) / "steps.log", t), records[t - 1].weights_sha256)
    prune(run_path, keep, protect)
    return path
