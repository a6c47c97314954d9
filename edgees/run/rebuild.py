"""A run's weights rebuilt from base file + log: the replay behind resume, verify and export.

    with rebuild_run("runs/demo", check="all") as r:      # verify: every step's hash checked
        print(r.step, r.state.sha256())

The base model is the file run.json names (or `model`, an explicit path); its bytes are checked
against the run's sha256 on the working copy they were copied into, so what is rebuilt is exactly
what was hashed. The base file is only ever opened for reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgees.errors import EdgeesError, RunError
from edgees.fileio import sha256_file
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes.algorithm import QESConfig
from edgees.qes.kernels import ReplayDiverged
from edgees.qes.records import StepSpec
from edgees.qes.state import WeightState
from edgees.run import checkpoint
from edgees.run.log import RunDir, StepLog, StepRecord, log_sha256, read_steps, spec_of


def apply_step(state: WeightState, spec: StepSpec, t: int) -> dict:
    """state.apply(spec) as step t; its stats. A replay window that does not fit the weights (one
    loaded from a checkpoint that is not this base's history) is a RunError naming the step."""
    try:
        return state.apply(spec)
    except ReplayDiverged:
        raise RunError(f"step {t}: the replay diverged (the replay window's recorded code deltas do not fit "
                       "the weights): the log, the base file or the checkpoint it started from does not "
                       "match; `edgees verify` the run (it replays from the base alone) and, if that "
                       "passes, delete the run's checkpoints/") from None


def rebuild(state: WeightState, records: list[StepRecord], upto: int | None = None,
            check: str = "last", progress: Callable[[int, int], None] | None = None) -> None:
    """Replay logged steps [state.step, upto) onto a state built on the base weights.

    check: "all" compares every step's weight hash with the log (verify), "last" only the final one,
    "none" skips hashing. A mismatch, or a replay window that does not fit the weights (a checkpoint
    or log that is not this base's history), raises RunError naming the step.
    """
    upto = len(records) if upto is None else upto
    for t in range(state.step, upto):
        rec = records[t]
        apply_step(state, spec_of(rec), t)
        if check == "all" or (check == "last" and t == upto - 1):
            got = state.sha256()
            if got != rec.weights_sha256:
                raise RunError(f"step {t}: rebuilt weights hash {got[:16]}... but the log recorded "
                               f"{rec.weights_sha256[:16]}...; the log or the base file does not match")
        if progress:
            progress(t + 1, upto)


@dataclass
class Rebuilt:
    """A run's weights at `step`, live in a working copy; close() (or `with`) frees the copy."""

    path: Path
    header: dict
    records: StepLog  # every complete record in the log (torn tail dropped)
    torn: bool  # the log ended in a torn record (a step in flight when the writer died)
    step: int  # records[:step] are applied
    base_path: Path
    wc: WorkingCopy
    state: WeightState
    checkpoint_step: int = 0  # the checkpoint the rebuild started from (0: the base file)
    warnings: list = field(default_factory=list)  # checkpoints skipped, one line each

    def close(self) -> None:
        self.wc.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def base_model_path(header: dict, run_path: Path, model=None) -> Path:
    """The file to rebuild from: `model` if given, else run.json's base_model; it must exist."""
    if model is not None:
        p = Path(model).expanduser()
        if not p.is_file():
            raise EdgeesError(f"--model {model}: no such file; give the run's base .gguf")
        return p
    p = Path(header.get("base_model", ""))
    if not p.is_file():
        raise RunError(f"{run_path}: its base model {p} is gone; pass the base file with --model PATH "
                       f"(sha256 {str(header.get('base_sha256'))[:16]}...)")
    return p


def from_checkpoint(run_path, state: WeightState, records: list[StepRecord], upto: int, base_sha256: str,
                    warnings: list) -> int:
    """Load the newest checkpoint of step <= upto that matches the log into a state on the base
    weights; return its step (0: none did). Skipped checkpoints add a line to `warnings`."""
    if isinstance(records, StepLog):  # as read: hash its bytes, no second read of the file
        log_at = records.prefix_sha256
    else:
        steps_log = Path(run_path) / "steps.log"
        log_at = lambda t: log_sha256(steps_log, t)  # noqa: E731
    return checkpoint.restore_newest(run_path, state, records, upto, base_sha256, log_at, warnings.append)


def rebuild_run(run_path, model=None, step: int | None = None, check: str = "last",
                threads: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                checkpoints: bool = True) -> Rebuilt:
    """Rebuild a run's weights after `step` logged steps (default: all) from its base file + log,
    starting from the newest matching checkpoint unless checkpoints=False (verify's independent
    check replays from the base).

    check: "all" compares every replayed step's weight hash with the log, "last" only the final one.
    Raises RunError for a base file that is not the run's (by sha256), a corrupted log (naming the
    line), a step beyond the log, or a rebuilt hash that differs from the logged one (naming the step).
    """
    run_path = Path(run_path)
    run = RunDir(run_path)
    header = run.read_header()
    trusted = checkpoint.log_claim(run_path) if checkpoints else None  # verify checks every line
    records, _, torn = read_steps(run_path / "steps.log", trusted)
    if step is None:
        step = len(records)
    if not 0 <= step <= len(records):
        raise RunError(f"{run_path}: --step {step} is not in the log, which holds steps 0..{len(records)}; "
                       "give a step in that range")
    base = base_model_path(header, run_path, model)
    cfg = QESConfig.from_header(header)
    wc = WorkingCopy(base)
    try:
        got = sha256_file(wc.path)  # hash what was copied: exactly the bytes rebuilt from
        if got != header.get("base_sha256"):
            raise RunError(f"{base}: sha256 {got[:16]}... is not the run's base model "
                           f"({str(header.get('base_sha256'))[:16]}..., {header.get('base_model')}); "
                           "pass the file the run was made on with --model")
        state = WeightState(wc, ef=cfg.ef, window=cfg.window, gamma=cfg.gamma,
                            include_embeddings=cfg.include_embeddings, tensors=cfg.tensors, threads=threads)
        warnings: list[str] = []
        start = from_checkpoint(run_path, state, records, step, got, warnings) if checkpoints else 0
        rebuild(state, records, upto=step, check=check, progress=progress)
    except BaseException:
        wc.close()
        raise
    return Rebuilt(run_path, header, records, torn, step, base, wc, state, start, warnings)
