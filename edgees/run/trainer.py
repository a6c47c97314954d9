"""The fine-tuning loop: members evaluated on live perturbed weights, the QES update, the run log.

One step: for each pair seed s_j, perturb the working copy in place with +s_j, evaluate the step's
training prompts, restore exactly, the same with -s_j; then coefficients -> update -> append the
step record (seeds, rewards, coefficients, sigma, alpha, weight hash) durably. Who evaluates the
members is the executor's business (run/executor.py: local by default, Ray workers in scale/); the
trainer keeps the run's weights, the update, the log and the held-out evaluation either way. A
stop request is honoured at member boundaries: the member is restored, the partial step is
dropped, the log is intact, and `--resume` continues from the last whole step.
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

import numpy as np

from edgees.errors import RunError, TaskError
from edgees.fileio import sha256_file
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes import algorithm as qes
from edgees.qes.records import StepSpec
from edgees.qes.state import WeightState
from edgees.run import checkpoint
from edgees.run.best import best_step
from edgees.run.events import TrainerEvents
from edgees.run.executor import Executor, LocalExecutor, evaluate_members  # noqa: F401 (probe, tools)
from edgees.run.executor import mean_reward as _mean_reward  # noqa: F401 (its older name, for probe)
from edgees.run.export import write_live
from edgees.run.log import RunDir, StepRecord
from edgees.run.rebuild import apply_step, from_checkpoint, rebuild
from edgees.tasks.base import TEACHER_FORCED

WINDOW_DIR = "window"  # the replay window's cache files (qes/window.py), deleted at close


def step_prompts(n_train: int, seed: int, step: int, m: int) -> np.ndarray:
    """Indices of the step's training prompts: the same for every member of the step."""
    rng = np.random.default_rng([seed, step, 0x51E])
    return rng.choice(n_train, size=min(m, n_train), replace=False)


def heldout_metrics(task, engine, heldout, n: int) -> dict:
    t0 = time.perf_counter()
    _, metrics, _ = task.evaluate(engine, heldout[:n])
    metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    if task.reward_mode in TEACHER_FORCED:  # the reference answers' log-likelihood on held-out prompts, too
        metrics["loglik"] = float(np.mean(task.loglik(engine, heldout[:n])))
    metrics["seconds"] = time.perf_counter() - t0
    metrics["n"] = min(n, len(heldout))
    return metrics


def make_header(model_path: Path, base_sha: str, task_spec: str, task_options: dict, cfg: qes.QESConfig,
                state: WeightState, model_name: str | None = None) -> dict:
    """The run header (run.json). base_name, only for a base given by store name (ollama:NAME...):
    tags that share one blob may chat differently, and export --to ollama takes that tag's settings."""
    header = {
        "base_model": str(Path(model_path).resolve()),
        "base_sha256": base_sha,
        "task": task_spec,
        "task_options": task_options,
        "config": asdict(cfg),
        "trainable_tensors": len(state.slots),
        "trainable_weights": state.n_weights,
    }
    return header if model_name is None else {**header, "base_name": model_name}


def check_run_dir(run_path, resume: bool) -> bool:
    """Whether `run_path` holds a run already (it may only with resume: a new run never reuses one)."""
    have = (Path(run_path) / "run.json").exists()
    if have and not resume:
        raise RunError(f"{run_path} already holds a run; pass --resume to continue it "
                       "or pick a new --run dir")
    return have


def check_resume(header: dict, base_sha: str, cfg: qes.QESConfig, task_spec: str) -> None:
    """A resumed run needs the run's base model (by sha256), task and fixed config fields."""
    if header["base_sha256"] != base_sha:
        raise RunError(f"this run was made on a base model with sha256 {header['base_sha256'][:16]}..., "
                       f"the model given has {base_sha[:16]}...; pass the run's base model "
                       f"({header['base_model']})")
    check_resume_config(header, cfg, task_spec)


def check_resume_config(header: dict, cfg: qes.QESConfig, task_spec: str) -> None:
    """The part of check_resume that needs no model file (finetune --dry-run checks it)."""
    if header["task"] != task_spec:
        raise RunError(f"this run trains task {header['task']!r}, not {task_spec!r}")
    old = asdict(qes.QESConfig.from_header(header))  # a field the run did not record had its default
    for key in qes.QESConfig.fixed_fields():
        if old[key] != getattr(cfg, key):
            may = ", ".join("--" + f.name.replace("_", "-") for f in fields(qes.QESConfig) if f.metadata.get("resume"))
            raise RunError(f"--{key.replace('_', '-')} differs from the run's ({old[key]}); "
                           f"a resumed run keeps its config (only {may} may change; alpha is logged per step)")


def still_warning(cfg: qes.QESConfig, step: int, alpha: float) -> str:
    """The warning for a step (0-based) that moved no codes at step size alpha: what to change."""
    def hit(a: float) -> float:  # a pair hit's move of a 4-bit code at step size a, in steps
        return a / (cfg.sigma * cfg.pairs)
    head = f"warning: step {step + 1} moved no codes: a pair hit moves a 4-bit code by {hit(alpha):.3g} steps"
    if alpha < cfg.alpha:  # the decay took it there; a daemon job's [config] takes alpha_floor
        fix = (f"raise --alpha-floor (now {cfg.alpha_floor:g})" if cfg.alpha_floor else
               "set --alpha-floor (e.g. 0.7: the decay stops at 0.7 x alpha)")
        return (f"{head} (at the start {hit(cfg.alpha):.3g}): the step-size decay "
                f"has brought it below where codes move; {fix}, or raise --alpha")
    return f"{head} (alpha/(sigma*pairs)), and below ~0.25 nothing rounds to a move; raise --alpha (or lower --pairs)"


class Trainer:
    """Owns the working copy, the engine and the run dir for one `finetune` invocation; reports
    what it does through `events` (run/events.py)."""

    def __init__(self, model_path, task, task_spec: str, run_path, cfg: qes.QESConfig,
                 resume: bool = False, engine_factory=None, task_options: dict | None = None,
                 events: TrainerEvents | None = None, threads: int | None = None,
                 executor: Executor | None = None, model_name: str | None = None):
        cfg.check()
        self.cfg, self.task, self.task_spec = cfg, task, task_spec
        self.task_options = dict(task_options or {})
        self.events = events or TrainerEvents()
        self.model_path = Path(model_path)
        self.model_name = model_name  # the store name it was given by (models.store_name), or None
        self._checkpointed = 0  # the step of the newest checkpoint on disk (or loaded)
        self._warned_still = False  # the "moved no codes" warning is given once a run
        self.best = None  # run/best.py: the best held-out step so far (its checkpoint is kept)
        self.follow_data = False  # the daemon's: re-read a growing data file before each step
        self.executor = executor or LocalExecutor()
        self.run = RunDir(run_path, write=True)
        try:
            self._open(resume, engine_factory, task_options or {}, threads)
        except BaseException:
            self.close()
            raise

    def _open(self, resume, engine_factory, task_options, threads) -> None:
        cfg = self.cfg
        self.events.status(f"hashing {self.model_path.name}")
        self.base_sha = sha256_file(self.model_path)
        have = check_run_dir(self.run.path, resume)
        self.wc = WorkingCopy(self.model_path)
        self.state = WeightState(self.wc, ef=cfg.ef, window=cfg.window, gamma=cfg.gamma,
                                 include_embeddings=cfg.include_embeddings, tensors=cfg.tensors, threads=threads,
                                 window_dir=self.run.path / WINDOW_DIR)
        if have:
            header = self.run.read_header()
            check_resume(header, self.base_sha, cfg, self.task_spec)
            self.records = self.run.read_steps(checkpoint.log_claim(self.run.path))
            if self.records:
                warnings: list[str] = []
                start = from_checkpoint(self.run.path, self.state, self.records, len(self.records),
                                        self.base_sha, warnings)
                for line in warnings:
                    self.events.status(f"warning: {line}")
                self._checkpointed = start
                where = f"the checkpoint of step {start}" if start else "the base model"
                self.events.status(f"replaying {len(self.records) - start} logged steps from {where}")
                rebuild(self.state, self.records, check="last", progress=self.events.replay)
        else:
            self.records = []
        self.events.status("loading the model into llama.cpp")
        if engine_factory is None:
            from edgees.engine.engine import Engine
            engine_factory = Engine
        self.engine = engine_factory(self.wc.path)
        from edgees.engine.engine import check_live_weights
        check_live_weights(self.engine, self.wc.view)
        self.train, self.heldout = self.task.split(n_heldout=self.cfg.eval_n)
        if not self.train or not self.heldout:
            raise TaskError(f"task {self.task.name} has an empty train or held-out split")
        self.executor.start(self)  # its workers, if any, are checked and in step before any step starts
        if not have:  # a new run's header last: a failure above leaves no run to --resume
            self.run.write_header(make_header(self.model_path, self.base_sha, self.task_spec,
                                              task_options, cfg, self.state, self.model_name))

    def refresh_data(self) -> None:
        """Take up lines an app appended to the task's data file (tasks/jsonl.py FileBacked); a bad
        line or an emptied side is a warning, and training goes on with the examples it had."""
        try:
            changed = self.task.refresh()
            train, heldout = self.task.split(n_heldout=self.cfg.eval_n) if changed else (None, None)
        except TaskError as exc:
            self.events.status(f"warning: {exc}; going on with the {len(self.train)} examples read before")
            return
        if changed and train and heldout:
            self.train, self.heldout = train, heldout
            self.events.status(f"data: {len(train)} train, {len(heldout)} held-out examples")
        elif changed:
            self.events.status("warning: the data file now leaves a side of the split empty; going on with the old one")

    def evaluate_heldout(self) -> dict:
        self.engine.weights_changed()
        return heldout_metrics(self.task, self.engine, self.heldout, self.cfg.eval_n)

    def run_steps(self, should_stop: Callable[[], bool] = lambda: False, minutes: float | None = None) -> dict:
        """Run until cfg.steps, a stop request (returns at once), or `minutes` of wall time (no new
        step starts after it; the held-out evaluation of the last step still runs)."""
        cfg, state, engine = self.cfg, self.state, self.engine
        start = len(self.records)
        deadline = time.monotonic() + 60.0 * minutes if minutes else None
        if start == 0 and not self.run.read_metrics():  # the base model's held-out score
            m = self.evaluate_heldout()
            self.run.append_metrics({"step": 0, "heldout": m, "primary": self.task.primary_metric(m)})
            self.events.heldout(0, m)
        self.best = best_step(self.run.read_metrics(), len(self.records))
        for t in range(start, cfg.steps):
            if self.follow_data:
                self.refresh_data()
            idx = step_prompts(len(self.train), cfg.seed, t, cfg.prompts)
            seeds = qes.pair_seeds(cfg.seed, t, cfg.pairs)
            t_step = t_eval = time.perf_counter()
            rewards = self.executor.evaluate(t, seeds, cfg.sigma, idx, should_stop,
                                             lambda m, r: self.events.member(t, m, r))
            if rewards is None:
                self.checkpoint()
                self.events.stopped(t)
                return self.summary(stopped=True)
            r_plus, r_minus = rewards
            t_eval = time.perf_counter() - t_eval
            coefs = qes.coefficients(np.array(r_plus), np.array(r_minus), cfg.coef)
            t_up = time.perf_counter()
            alpha = qes.step_alpha(cfg.alpha, cfg.alpha_decay, t, cfg.alpha_floor)
            spec = StepSpec(seeds, tuple(float(a) for a in coefs), alpha, cfg.sigma)
            self.executor.update(t, spec)  # workers apply it beside us; their hashes are checked once it is logged
            stats = apply_step(state, spec, t)
            engine.weights_changed()
            t_up = time.perf_counter() - t_up
            rec = StepRecord(step=t, seeds=list(seeds), rewards_plus=r_plus, rewards_minus=r_minus,
                             coefs=[float(a) for a in coefs], sigma=cfg.sigma, alpha=alpha,
                             weights_sha256=state.sha256(), changed=int(stats["changed"]))
            self.run.append_step(rec)
            self.records.append(rec)
            self.executor.check(t, rec.weights_sha256)
            t_step = time.perf_counter() - t_step  # members, update, hash and the durable append
            row = {"step": t + 1, "reward_mean": float(np.mean(r_plus + r_minus)),
                   "reward_best": float(max(r_plus + r_minus)), "changed": int(stats["changed"]),
                   "eval_seconds": t_eval, "update_seconds": t_up, "step_seconds": t_step,
                   "update_share": t_up / max(t_step, 1e-9), "update_over_eval": t_up / max(t_eval, 1e-9),
                   "ef_state_bytes": state.history_bytes(),
                   "ef_state_ram_bytes": state.history_ram_bytes()}
            out_of_time = deadline is not None and time.monotonic() >= deadline
            last = t + 1 == cfg.steps or out_of_time
            if last or (cfg.eval_every > 0 and (t + 1) % cfg.eval_every == 0):
                row["heldout"] = self.evaluate_heldout()
                row["primary"] = self.task.primary_metric(row["heldout"])
            self.run.append_metrics(row)
            if "heldout" in row and self._new_best(row):
                self.checkpoint()  # kept beside the newest ones: export --step best needs no replay
            elif cfg.checkpoint_every and (t + 1) % cfg.checkpoint_every == 0:
                self.checkpoint()
            self.events.step(row)
            if stats["changed"] == 0 and any(coefs) and not self._warned_still:
                self._warned_still = True
                self.events.status(still_warning(cfg, t, alpha))
            if out_of_time:
                self.events.status(f"time budget of {minutes:g} min reached after step {t + 1}")
                break
        self.checkpoint()
        return self.summary(stopped=False)

    def checkpoint(self) -> None:
        """Write a checkpoint of the live state unless the newest one is of this step already."""
        if self.cfg.checkpoint_every and self.state.step > self._checkpointed:
            t0 = time.perf_counter()
            path = checkpoint.save(self.run.path, self.state, self.model_path, self.base_sha, self.records,
                                   self.cfg.checkpoint_keep, protect=self._protected())
            self._checkpointed = self.state.step
            self.events.checkpoint(self.state.step, path, path.stat().st_size, time.perf_counter() - t0)

    def _new_best(self, row: dict) -> bool:
        """Take a held-out row into self.best; True when its step is the new best."""
        old, self.best = self.best, best_step(self.run.read_metrics(), len(self.records))
        return self.best is not None and self.best.step == row["step"] and (old is None or old.step != row["step"])

    def _protected(self) -> set[int]:
        return {self.best.step} if self.best is not None else set()

    def export(self, out) -> dict:
        """Write the live weights (after the last logged step) as a GGUF at `out`: one pass over
        the file, no replay. Call check_output on `out` first."""
        self.engine.synchronize()
        return write_live(self.run.path, self.run.read_header(), self.wc, self.state.sha256(),
                          len(self.records), out)

    def summary(self, stopped: bool) -> dict:
        rows = self.run.read_metrics()
        evals = [(r["step"], r["heldout"]) for r in rows if "heldout" in r]
        return {"run": str(self.run.path), "steps_done": len(self.records), "steps": self.cfg.steps,
                "stopped": stopped, "first_heldout": evals[0] if evals else None,
                "last_heldout": evals[-1] if evals else None,
                "weights_sha256": self.records[-1].weights_sha256 if self.records else None}

    def close(self) -> None:
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.close()
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
        state = getattr(self, "state", None)
        if state is not None:
            state.close()
        wc = getattr(self, "wc", None)
        if wc is not None:
            wc.close()
        self.run.close()
