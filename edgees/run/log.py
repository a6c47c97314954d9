"""The run directory: header, append-only checksummed step log, metrics, lock, atomic writes.

Layout of a run dir:
  run.json       header: format, version, resolved config, base model path + sha256 (+ the store
                 name it was given by: base_name), task (atomic)
  steps.log      line 1 `edgees-steps 1`; then one record per step: `<json>\t<crc32 hex>\n`
  metrics.jsonl  per-step metrics for people and plots (not needed to rebuild weights)
  run.lock       held (flock) by the one process writing this run
  checkpoints/   the state at some steps (checkpoint.py): verified caches, never the truth

The log alone determines the weights: the weights (and error-feedback state) after step t are a
pure function of the base file and records 0..t-1. Checkpoints only spare the replay.

A record is appended with one write() and fsync. A last line without its newline that is a
prefix of a well-formed record is a torn tail (a crash mid-append): it is dropped and the file
truncated before the next append. A complete line whose checksum fails, anywhere, is corruption and
is reported, never skipped; so is a last line that no torn write could leave (e.g. its newline
flipped into another byte: more than 8 characters after the tab).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgees.errors import RunError
from edgees.fileio import atomic_write, read_jsonl
from edgees.qes.records import StepSpec

FORMAT = "edgees-run"
VERSION = 3  # 3: checkpoints/ beside the log (CHANGELOG.md has the history)
READS = (2, 3)  # 2 replays the same way; it has no checkpoints, so it rebuilds from the base
STEPS_MAGIC = b"edgees-steps 1\n"
_HEX = frozenset(b"0123456789abcdef")


@dataclass
class StepRecord:
    step: int
    seeds: list[int]
    rewards_plus: list[float]
    rewards_minus: list[float]
    coefs: list[float]
    sigma: float
    alpha: float
    weights_sha256: str
    changed: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @staticmethod
    def from_json(d: dict) -> "StepRecord":
        return StepRecord(**{k: d[k] for k in StepRecord.__dataclass_fields__ if k in d})


def spec_of(rec: StepRecord) -> StepSpec:
    """What the update needs of a logged step."""
    return StepSpec(tuple(int(s) for s in rec.seeds), tuple(float(a) for a in rec.coefs),
                    float(rec.alpha), float(rec.sigma))


def encode_record(rec: StepRecord) -> bytes:
    body = json.dumps(rec.to_json(), separators=(",", ":"), sort_keys=True).encode()
    return body + b"\t" + f"{zlib.crc32(body):08x}".encode() + b"\n"


def _crc_ok(body: bytes, crc: bytes) -> bool:
    return crc == b"%08x" % zlib.crc32(body)  # exactly as encode_record writes it


def _torn_prefix(tail: bytes) -> bool:
    """Could a record's write, cut short, leave `tail` (a last line without its newline)? The JSON
    body holds no tab, so after a tab come at most the 8 hex digits of its crc32 (all 8 and
    matching: the record is whole but its newline was lost; it is dropped with the torn tail)."""
    body, sep, crc = tail.rpartition(b"\t")
    if not sep:
        return True
    return len(crc) < 8 and _HEX.issuperset(crc) or _crc_ok(body, crc)


class StepLog(Sequence):
    """The records of a step log, parsed on first access: reading a log of any length costs one
    checksum pass over its bytes, and a resume from a checkpoint parses only the records it
    replays. Behaves as a list of StepRecord (index, slice, len, iterate, append, ==)."""

    def __init__(self, data: bytes = b"", spans: list[tuple[int, int]] | None = None, path=None):
        self._data = data
        self._spans = spans or []  # (start, end) of each read record's body, in `data`
        self._items: list[StepRecord | None] = [None] * len(self._spans)
        self._path = path

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        rec = self._items[i]
        if rec is None:
            k = range(len(self))[i]
            start, end = self._spans[k]
            try:
                rec = StepRecord.from_json(json.loads(self._data[start:end]))
            except (ValueError, TypeError, KeyError) as exc:
                raise RunError(f"{self._path}: line {k + 2} is not a step record ({exc}); the log is corrupted") from None
            self._items[k] = rec
        return rec

    def append(self, rec: StepRecord) -> None:
        self._items.append(rec)

    def prefix_sha256(self, n: int) -> str:
        """sha256 of the first n record lines as they are on disk (log_sha256 without re-reading)."""
        if n > len(self._spans):
            raise RunError(f"{self._path}: record {len(self._spans)} was appended after the log was read")
        end = self._spans[n - 1][1] + 10 if n else len(STEPS_MAGIC)  # body, tab, 8 hex, newline
        return hashlib.sha256(memoryview(self._data)[len(STEPS_MAGIC):end]).hexdigest()

    def __eq__(self, other) -> bool:
        if isinstance(other, (StepLog, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"StepLog({len(self)} records)"


_STEP_KEY = b'"step":'
_STEP_DIGITS = re.compile(rb"([0-9]+)[,}]")


def _step_field(body: bytes) -> int | None:
    """The "step" of a record body without parsing it (the encoder sorts keys; no other key or
    value holds this byte string); None when it is not there as written, then a parse decides."""
    k = body.find(_STEP_KEY)
    if k < 0 or body.find(_STEP_KEY, k + 1) >= 0:
        return None
    m = _STEP_DIGITS.match(body, k + len(_STEP_KEY))
    return int(m.group(1)) if m else None


def _trusted_prefix(data: bytes, start: int, claim: tuple[int, str] | None) -> list[tuple[int, int]]:
    """Spans of the first t record lines when their bytes hash to a checkpoint's claim (t, sha256),
    else []. Those are the very lines the trainer had logged, each checked, when it wrote that
    checkpoint: a matching sha256 vouches for them, so their checksums and step numbers need not be
    checked one by one again (that loop is what grew with the log). Lines as encode_record writes
    them: body, tab, 8 hex digits, newline."""
    if claim is None or claim[0] <= 0:
        return []
    t, sha = claim
    nl = np.flatnonzero(np.frombuffer(data, np.uint8, len(data) - start, start) == 10)
    if len(nl) < t:
        return []
    nl = nl[:t] + start
    if hashlib.sha256(memoryview(data)[start:int(nl[-1]) + 1]).hexdigest() != sha:
        return []
    starts = np.concatenate(([start], nl[:-1] + 1))
    return list(zip(starts.tolist(), (nl - 9).tolist()))


def read_steps(path: Path, trusted: tuple[int, str] | None = None) -> tuple[StepLog, int, bool]:
    """(records, byte length of the good prefix, whether a torn tail was found). Every line's
    checksum and step number is checked here; each record's JSON is parsed when first used.
    trusted=(t, sha256), a checkpoint's claim about the log's first t record lines: when those
    lines hash to it, only the lines after them are checked (see _trusted_prefix)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return StepLog(path=path), 0, False
    if not data.startswith(STEPS_MAGIC):
        if STEPS_MAGIC.startswith(data):  # torn while writing the magic
            return StepLog(path=path), 0, True
        raise RunError(f"{path}: not an edgees step log (bad first line); the run dir is damaged")
    spans = _trusted_prefix(data, len(STEPS_MAGIC), trusted)
    pos = spans[-1][1] + 10 if spans else len(STEPS_MAGIC)
    line_no = 1 + len(spans)

    def good(torn: bool):
        return StepLog(data, spans, path), pos, torn

    lines = data[pos:].split(b"\n")  # one C pass; the last item is what follows the last newline
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if i == last and not line:
            break
        line_no += 1
        if i == last and _torn_prefix(line):
            return good(True)  # torn tail: a crash mid-append
        body, tab, crc = line.rpartition(b"\t")
        if not tab or not _crc_ok(body, crc):
            raise RunError(f"{path}: line {line_no} (byte {pos}) fails its checksum: the log is corrupted; "
                           "restore the run dir from a backup or start a new run")
        step = _step_field(body)
        if step is None:  # not as our encoder writes it: parse it now
            try:
                step = StepRecord.from_json(json.loads(body)).step
            except (ValueError, TypeError, KeyError) as exc:
                raise RunError(f"{path}: line {line_no} is not a step record ({exc}); the log is corrupted") from None
        if step != len(spans):
            raise RunError(f"{path}: line {line_no} holds step {step}, expected {len(spans)}; "
                           "the log is corrupted")
        spans.append((pos, pos + len(body)))
        pos += len(line) + 1
    return good(False)


class RunDir:
    """A run directory opened for writing (locked) or for reading."""

    def __init__(self, path, write: bool = False):
        self.path = Path(path)
        self.write = write
        self._lock_fd = None
        if write:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(str(self.path / "run.lock"), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                self._lock_fd = None
                raise RunError(f"{self.path} is in use by another edgees process; wait for it or pick another --run")
        elif not (self.path / "run.json").exists():
            raise RunError(f"{self.path} is not an edgees run dir (no run.json); "
                           "start one with `edgees finetune MODEL --task T --run DIR`")

    # header
    @property
    def header_path(self) -> Path:
        return self.path / "run.json"

    def has_header(self) -> bool:
        return self.header_path.exists()

    def write_header(self, header: dict) -> None:
        header = {"format": FORMAT, "version": VERSION, **header}
        steps = self.path / "steps.log"
        if not steps.exists():  # first: a run.json on disk always has its step log beside it
            atomic_write(steps, STEPS_MAGIC)
        atomic_write(self.header_path, (json.dumps(header, indent=2, sort_keys=True) + "\n").encode())

    def read_header(self) -> dict:
        try:
            header = json.loads(self.header_path.read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path}: no run.json; not an edgees run dir") from None
        except ValueError as exc:
            raise RunError(f"{self.header_path}: not valid JSON ({exc}); the run dir is damaged") from None
        if header.get("format") != FORMAT:
            raise RunError(f"{self.header_path}: not an edgees run header")
        if header.get("version") not in READS:
            raise RunError(f"{self.header_path}: run format version {header.get('version')}; this edgees "
                           f"reads versions {', '.join(map(str, READS))} (its steps would replay differently): start a new run, "
                           f"or use the edgees that wrote it")
        return header

    # steps
    def read_steps(self, trusted: tuple[int, str] | None = None) -> StepLog:
        records, good, torn = read_steps(self.path / "steps.log", trusted)
        if torn and self.write:  # drop the torn tail before anything is appended after it
            with open(self.path / "steps.log", "r+b") as f:
                if good == 0:
                    f.write(STEPS_MAGIC)
                    good = len(STEPS_MAGIC)
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        return records

    def append_step(self, rec: StepRecord) -> None:
        line = encode_record(rec)
        fd = os.open(str(self.path / "steps.log"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    # metrics
    def append_metrics(self, row: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")  # a torn metrics line is harmless: skipped

    def close(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def log_sha256(steps_path: Path, n: int) -> str:
    """sha256 of the first n record lines of a step log (the magic line excluded)."""
    data = Path(steps_path).read_bytes()
    h, pos = hashlib.sha256(), len(STEPS_MAGIC)
    for i in range(n):
        end = data.find(b"\n", pos)
        if end < 0:
            raise RunError(f"{steps_path}: record {i} is missing; the log changed while being read")
        h.update(data[pos:end + 1])
        pos = end + 1
    return h.hexdigest()
