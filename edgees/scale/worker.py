"""A scale-out worker: its own working copy, weight state and engine, kept in step with a run's log.

The Ray executor (scale/executor.py) runs one of these per worker process as an actor; nothing
here imports Ray, so the worker's whole job is plain code:

    w = Worker()
    w.join(spec, base=None, checkpoint=("step-00000020.ckpt", b"..."), log=b"edgees-steps 1\\n...")
        -> {"step": t, "sha256": ...}          caught up: newest checkpoint + the log's tail replayed
    w.evaluate([+s0, -s0, +s1], sigma, [4, 17])  -> rewards of those members on those train prompts
    w.update(t, spec)                           -> the weights' sha256 after the step's update

The base model comes from the worker's own disk (the driver's path, checked by sha256) or, when
that path does not exist there, as bytes the driver shipped once. A checkpoint and log that do not
fit (another run's, a damaged one) are caught by the same checks as a resume's; what the worker
reports is checked by the driver against the log, which is the truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgees.errors import RunError, TaskError
from edgees.fileio import atomic_write, sha256_file
from edgees.gguf.working_copy import WorkingCopy, workdir_for
from edgees.qes.records import StepSpec
from edgees.qes.state import WeightState
from edgees.run.executor import evaluate_signed, mean_reward
from edgees.run.log import read_steps
from edgees.run.checkpoint import log_claim
from edgees.run.rebuild import apply_step, from_checkpoint, rebuild


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs once, as plain data (it is pickled to the worker's process)."""

    base_path: str  # where the driver has the base model; the worker looks there first
    base_sha256: str
    ef: str
    window: int
    gamma: float
    include_embeddings: bool
    tensors: str  # --tensors: globs narrowing the trained tensors
    threads: int  # the worker's compute threads: its engine's and its update's
    batch: int
    max_tokens: int
    task: str
    task_options: dict = field(default_factory=dict)
    eval_n: int = 50
    train_sha256: str = ""  # of the driver's train split: the worker's must be the same
    cwd: str = ""  # the driver's working dir: relative paths in the task resolve from it where it exists


def split_sha256(examples) -> str:
    """sha256 of a split's examples (prompts and fields, in order): the same split on every machine."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.prompt, e.fields], sort_keys=True, default=str).encode() + b"\n")
    return h.hexdigest()


def node_name() -> str:
    return socket.gethostname()


def _window_dir() -> str:
    """A fresh dir for this process's replay window files, in the temp dir; the dirs of workers
    that are gone (killed: nothing ran their close) are removed first."""
    root = Path(tempfile.gettempdir())
    for d in root.glob("edgees-window-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
    d = root / f"edgees-window-{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    return str(d)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: alive as far as we may tell
        return True
    return True


class Worker:
    """One evaluating process's state; see the module docstring."""

    def __init__(self):
        self.spec: WorkerSpec | None = None
        self.wc = self.state = self.engine = self.task = None
        self.train: list = []
        self._shipped: Path | None = None
        self._window_dir: str | None = None
        try:  # a terminal's Ctrl-C reaches the whole process group: the driver alone decides to stop
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: nothing to do
            pass

    # ---- joining -----------------------------------------------------------------------------
    def join(self, spec: WorkerSpec, base: bytes | None, checkpoint: tuple[str, bytes] | None, log: bytes) -> dict:
        """Open the base (from disk, or `base` as shipped), then rebuild to the last step of `log`
        from `checkpoint` (a checkpoint file's name and bytes, or None: from the base). Returns
        {"need_base": True} when the base is not on this machine and was not shipped, else
        {"step", "sha256", "node", "pid", "warnings"}."""
        self.close()
        self.spec = spec
        if spec.cwd and os.path.isdir(spec.cwd):
            os.chdir(spec.cwd)
        path = Path(spec.base_path)
        if base is not None:
            path = self._ship(base)
        elif not path.is_file():
            return {"need_base": True, "node": node_name()}
        got = sha256_file(path)
        if got != spec.base_sha256:
            raise RunError(f"worker on {node_name()}: {path} has sha256 {got[:16]}..., not the run's base model "
                           f"({spec.base_sha256[:16]}...); put the run's base file there, or remove it so the "
                           "driver ships it")
        self.wc = WorkingCopy(path)
        self._window_dir = _window_dir()  # the replay window on disk, as a run's
        self.state = WeightState(self.wc, ef=spec.ef, window=spec.window, gamma=spec.gamma,
                                 include_embeddings=spec.include_embeddings, tensors=spec.tensors, threads=spec.threads,
                                 window_dir=self._window_dir)
        from edgees.engine.engine import Engine, check_live_weights
        from edgees.tasks.base import get_task
        self.task = get_task(spec.task, **spec.task_options)
        self.train, _ = self.task.split(n_heldout=spec.eval_n)
        if split_sha256(self.train) != spec.train_sha256:
            raise TaskError(f"worker on {node_name()}: task {spec.task} has other training examples than the "
                            "driver's; give every machine the same data file at the same path")
        warnings: list[str] = self._catch_up(checkpoint, log)
        self.engine = Engine(self.wc.path, n_threads=spec.threads, n_seq=spec.batch, max_tokens=spec.max_tokens)
        check_live_weights(self.engine, self.wc.view)
        return {"step": self.state.step, "sha256": self.state.sha256(), "node": node_name(), "pid": os.getpid(),
                "warnings": warnings}

    def _ship(self, data: bytes) -> Path:
        """The shipped base in this machine's working dir, named like a working copy so that one a
        killed worker left is removed as theirs are (working_copy.remove_stale_copies)."""
        if self._shipped is None:
            d = workdir_for(len(data))
            self._shipped = Path(d) / f"edgees-{os.getpid()}-{self.spec.base_sha256[:16]}.gguf"
            atomic_write(self._shipped, data)
        return self._shipped

    def _catch_up(self, checkpoint: tuple[str, bytes] | None, log: bytes) -> list[str]:
        """Rebuild self.state to the log's last step, starting from `checkpoint` when it fits."""
        warnings: list[str] = []
        with tempfile.TemporaryDirectory(prefix="edgees-join-") as tmp:
            run = Path(tmp)
            (run / "steps.log").write_bytes(log)
            if checkpoint is not None:
                name, data = checkpoint
                (run / "checkpoints").mkdir()
                (run / "checkpoints" / Path(name).name).write_bytes(data)
            records, _, _ = read_steps(run / "steps.log", log_claim(run))
            if records:
                from_checkpoint(run, self.state, records, len(records), self.spec.base_sha256, warnings)
                rebuild(self.state, records, check="last")
        return warnings

    def advance(self, steps: list[tuple[int, StepSpec]]) -> dict:
        """Apply logged steps (t, spec) that happened while this worker joined; {"step", "sha256"}."""
        for t, spec in steps:
            if t != self.state.step:
                raise RunError(f"worker on {node_name()}: asked to apply step {t} to weights at step {self.state.step}")
            apply_step(self.state, spec, t)
        self.engine.weights_changed()
        return {"step": self.state.step, "sha256": self.state.sha256()}

    # ---- per step ----------------------------------------------------------------------------
    def evaluate(self, members: list[int], sigma: float, prompt_idx: list[int]) -> list[float]:
        """Rewards of the members (signed seeds) on the train prompts `prompt_idx`; the weights
        are back as they were afterwards."""
        batch = [self.train[i] for i in prompt_idx]
        return evaluate_signed(self.state, self.engine, members, sigma,
                               lambda: mean_reward(self.task, self.engine, batch))

    def update(self, t: int, spec: StepSpec) -> str:
        """The update of step t (its weights are at step t); the sha256 of the weights after it."""
        return self.advance([(t, spec)])["sha256"]

    def close(self) -> None:
        for name in ("engine", "state", "wc"):
            obj = getattr(self, name)
            if obj is not None:
                obj.close()
            setattr(self, name, None)
        if self._window_dir is not None:
            shutil.rmtree(self._window_dir, ignore_errors=True)
            self._window_dir = None
        if self._shipped is not None:
            self._shipped.unlink(missing_ok=True)
            self._shipped = None
