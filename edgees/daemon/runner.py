"""The daemon's main loop: the jobs dir's jobs, one at a time, round-robin, in slices.

A job's turn runs its Trainer (run dir <data dir>/daemon/runs/<name>, resumed from its checkpoint)
up to its next publish point (publish.every steps, or SLICE_STEPS), evaluates held-out there (the
trainer does at the end of every run_steps), maybe publishes, and hands over to the next job. A job
alone keeps its Trainer open between turns. should_stop() is asked at every member boundary: a stop
request, a pause by the user or a failing policy condition make the trainer restore the member, drop
the partial step and checkpoint; the loop then waits (the Trainer is released after a long pause)
and carries on where it was. A job with `[budget] minutes` gets at most that much wall time a day
(daemon/budget.py), then waits for the next day. Before each step the trainer re-reads the job's
data file if an app appended to it (Trainer.follow_data; status shows the split's sizes). A job that
fails (bad file, missing model, a reward raising) is marked "error" with its one-line reason and
skipped until its file changes; the others go on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgees.errors import EdgeesError
from edgees.daemon.budget import DailyBudget
from edgees.daemon.jobs import Job, JobError, read_job, resume_config, task_defaults
from edgees.daemon.paths import jobs_dir, runs_dir
from edgees.daemon.policy import Policy
from edgees.daemon.publish import publish
from edgees.run.events import TrainerEvents
from edgees.run.log import RunDir, read_steps

log = logging.getLogger("edgees.daemon")
IDLE_POLL = 2.0  # seconds between looks at the jobs dir when there is nothing to run


@dataclass
class JobState:
    name: str
    path: str
    state: str = "queued"  # queued | running | paused | waiting (the day's minutes are used) | done | error
    job: Job | None = None
    stamp: tuple = ()  # the file's (mtime_ns, size) when read
    step: int | None = None
    steps: int | None = None
    heldout: dict | None = None
    heldout_step: int | None = None
    error: str | None = None
    last_publish: dict | None = None
    last_gate: dict | None = None
    examples: dict | None = None  # {"train": n, "heldout": m}: the split the last step used
    budget: dict | None = None  # [budget] minutes: {"minutes_per_day", "used_minutes"} (today's)
    extra: dict = field(default_factory=dict)

    def view(self) -> dict:
        return {"state": self.state, "file": self.path, "step": self.step, "steps": self.steps,
                "heldout": self.heldout, "heldout_step": self.heldout_step, "error": self.error,
                "last_publish": self.last_publish, "last_gate": self.last_gate, "examples": self.examples,
                "budget": self.budget}


class JobEvents(TrainerEvents):
    """The trainer's events into the job's state and the daemon's log."""

    def __init__(self, st: JobState):
        self.st = st
        self.trainer = None  # set once the Trainer is open: its split's sizes go into status

    def count(self) -> None:
        if self.trainer is not None:
            self.st.examples = {"train": len(self.trainer.train), "heldout": len(self.trainer.heldout)}

    def status(self, msg: str) -> None:
        log.info("%s: %s", self.st.name, msg)

    def heldout(self, step: int, metrics: dict) -> None:
        self.st.heldout, self.st.heldout_step = metrics, step

    def step(self, row: dict) -> None:
        self.st.step = row["step"]
        self.count()
        if "heldout" in row:
            self.st.heldout, self.st.heldout_step = row["heldout"], row["step"]
        log.info("%s: step %d reward %.4f", self.st.name, row["step"], row["reward_mean"])

    def checkpoint(self, step: int, path, nbytes: int, seconds: float) -> None:
        log.info("%s: checkpoint of step %d written (%d bytes)", self.st.name, step, nbytes)

    def stopped(self, step: int) -> None:
        log.info("%s: stopped at a member boundary of step %d (not logged)", self.st.name, step + 1)


def _kind(reason: str | None) -> str | None:
    return reason.split(":")[0] if reason else None


class Runner:
    def __init__(self, policy: Policy, release_after: float = 300.0):
        self.policy = policy
        self.release_after = release_after
        self.jobs: dict[str, JobState] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.user_paused = False
        self.pause_reason: str | None = None
        self.paused_since: float | None = None
        self.state = "starting"
        self.current: tuple[str, Job, object] | None = None  # (name, job, Trainer)
        self.last_name: str | None = None

    # ---- control ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.stop_event.set()
        self.wake.set()
        self._abort_member()

    def pause(self) -> None:
        self.user_paused = True
        self._set_paused("paused by the user")
        self._abort_member()

    def _abort_member(self, requested: bool = True) -> None:
        """Stop the member in flight now (requested) or let members run again: Engine.abort. The
        step it belonged to is not logged; it is evaluated again from its first member later."""
        cur = self.current
        engine = getattr(cur[2], "engine", None) if cur else None
        if engine is not None:
            engine.abort(requested)

    def watch(self) -> None:
        """The policy's own thread, started before the main thread drops to SCHED_IDLE
        (service.serve): on a machine busy enough to starve training it still samples every
        interval, shows the pause in status at once and aborts the member in flight instead of
        waiting for its end (minutes, when starved). Returns when the daemon stops."""
        while not self.stop_event.wait(self.policy.s.interval):
            if self.state != "running" or self.user_paused:
                continue
            reason = self.policy.check()
            if reason is not None:
                self._set_paused(reason)
                self._abort_member()

    def resume(self) -> None:
        self.user_paused = False
        self.wake.set()

    def should_stop(self) -> bool:
        """Asked at every member boundary: stop, or pause (the reason is recorded)."""
        if self.stop_event.is_set():
            return True
        reason = "paused by the user" if self.user_paused else self.policy.check()
        if reason is not None:
            self._set_paused(reason)
            return True
        return False

    def _set_paused(self, reason: str | None) -> None:
        if _kind(reason) != _kind(self.pause_reason):  # not every new CPU figure
            log.info("paused: %s" % reason if reason else "resumed")
        self.pause_reason = reason
        if reason is None:
            self.paused_since = None
        elif self.paused_since is None:
            self.paused_since = time.monotonic()

    def _sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def status(self) -> dict:
        with self.lock:
            jobs = {n: st.view() for n, st in sorted(self.jobs.items())}
        state = "pausing" if self.state == "running" and self.pause_reason else self.state
        return {"state": state, "pause_reason": self.pause_reason,
                "other_cpu_cores": self.policy.other_cores, "user_idle_seconds": self.policy.user_idle,
                "temperature_c": self.policy.temperature,
                "current": self.current[0] if self.current else None, "jobs": jobs}

    # ---- jobs ------------------------------------------------------------------------------
    def scan(self) -> None:
        """Read new or changed job files; forget deleted ones. A bad file is an "error" job."""
        d = jobs_dir()
        d.mkdir(parents=True, exist_ok=True)
        seen = set()
        for path in sorted(d.glob("*.toml")):
            name = path.stem
            seen.add(name)
            try:
                stat = path.stat()
            except OSError:
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            st = self.jobs.get(name)
            if st is not None and st.stamp == stamp:
                continue
            st = JobState(name=name, path=str(path), stamp=stamp)
            try:
                st.job = read_job(path)
                st.steps = st.job.steps
                log.info("job %s: read from %s", name, path)
            except JobError as exc:
                st.state, st.error = "error", str(exc)
                log.error("job %s: %s", name, exc)
            with self.lock:
                self.jobs[name] = st
        for name in set(self.jobs) - seen:
            with self.lock:
                del self.jobs[name]
            log.info("job %s: its file is gone; dropped", name)
            if self.current and self.current[0] == name:
                self._release()

    def _steps_logged(self, name: str) -> int:
        path = runs_dir() / name / "steps.log"
        return len(read_steps(path)[0]) if path.exists() else 0

    def next_job(self) -> JobState | None:
        """The next runnable job after the last one run, round-robin by name."""
        names = sorted(self.jobs)
        if self.last_name is not None:
            later = [n for n in names if n > self.last_name]
            names = later + [n for n in names if n <= self.last_name]
        for name in names:
            st = self.jobs[name]
            if st.state in ("error", "done"):
                continue
            st.step = self._steps_logged(name) if st.step is None else st.step
            if st.step >= st.job.steps:
                st.state = "done"
                continue
            if st.job.minutes is not None:
                budget = DailyBudget(runs_dir() / name, st.job.minutes)
                st.budget = budget.view()
                if budget.left() <= 0:
                    if st.state != "waiting":
                        log.info("job %s: today's %g minutes are used; it goes on tomorrow", name, st.job.minutes)
                    st.state = "waiting"
                    continue
            return st
        return None

    # ---- the loop ----------------------------------------------------------------------------
    def loop(self) -> None:
        while not self.stop_event.is_set():
            self.scan()
            reason = "paused by the user" if self.user_paused else self.policy.check(force=self.pause_reason is not None)
            if reason is not None:
                self._set_paused(reason)
                self.state = "paused"
                self._mark_jobs("queued", "paused")  # also a job whose turn ended just as the pause came
                if self.current and time.monotonic() - self.paused_since >= self.release_after:
                    log.info("paused for %.0fs: releasing the model", time.monotonic() - self.paused_since)
                    self._release()
                self._sleep(self.policy.s.interval)
                continue
            self._set_paused(None)
            self._abort_member(False)
            self._mark_jobs("paused", "queued")
            st = self.next_job()
            if st is None:
                self.state = "idle"
                self._release()
                self._sleep(IDLE_POLL)
                continue
            self.state = "running"
            self.run_turn(st)
        self.state = "stopping"
        self._release()

    def _mark_jobs(self, old: str, new: str) -> None:
        with self.lock:
            for st in self.jobs.values():
                if st.state == old:
                    st.state = new

    def run_turn(self, st: JobState) -> None:
        budget = DailyBudget(runs_dir() / st.name, st.job.minutes) if st.job.minutes is not None else None
        t0 = time.monotonic()
        try:
            trainer = self._trainer_for(st)
            done = len(trainer.records)
            st.step = done
            if done >= st.job.steps:
                st.state = "done"
                self._release()
                return
            end = st.job.slice_end(done)
            trainer.cfg = replace(trainer.cfg, steps=end)
            st.state = "running"
            summary = trainer.run_steps(should_stop=self.should_stop,
                                        minutes=budget.left() / 60.0 if budget is not None else None)
            st.step = summary["steps_done"]
            if summary["stopped"]:
                st.state = "paused" if not self.stop_event.is_set() else "queued"
                return  # the loop waits out the pause, or stops; this job goes on from here
            if st.job.publish is not None and st.heldout_step == st.step:
                self._publish(st, trainer)
            st.state = "done" if st.step >= st.job.steps else "queued"
            self.last_name = st.name
            if st.state == "done":
                log.info("job %s: done (%d steps)", st.name, st.step)
                self._release()
        except Exception as exc:  # noqa: BLE001 (one job's failure never stops the daemon)
            line = str(exc) if isinstance(exc, EdgeesError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, EdgeesError):
                log.exception("job %s failed", st.name)
            log.error("job %s: %s", st.name, line)
            st.state, st.error = "error", line
            self.last_name = st.name
            self._release()
        finally:
            if budget is not None:
                try:
                    budget.add(time.monotonic() - t0)
                    st.budget = budget.view()
                except OSError as exc:
                    log.warning("job %s: cannot count its time in %s (%s)", st.name, budget.path, exc)

    def _trainer_for(self, st: JobState):
        if self.current and self.current[0] == st.name and self.current[1] == st.job:
            return self.current[2]
        self._release()
        from edgees.engine.engine import Engine
        from edgees.models import resolve_model, store_name
        from edgees.run.trainer import Trainer
        from edgees.tasks.base import get_task

        job = st.job
        os.chdir(job.workdir)  # jobs run one at a time: their relative paths resolve from here
        model = resolve_model(job.model)
        task = get_task(job.task, **job.task_opt)
        run_path = runs_dir() / job.name
        resume = (run_path / "run.json").exists()
        log.info("job %s: opening %s (%s)", job.name, model, "resuming" if resume else "new run")
        events = JobEvents(st)
        cfg = resume_config(job, RunDir(run_path).read_header()) if resume else task_defaults(job, task.reward_mode)
        trainer = Trainer(model, task, job.task, run_path, cfg, resume=resume, task_options=job.task_opt,
                          events=events, threads=job.threads, model_name=store_name(job.model),
                          engine_factory=lambda p: Engine(p, n_threads=job.threads, n_seq=job.batch,
                                                          max_tokens=task.max_tokens))
        trainer.follow_data = True  # an app may append to the job's data file: new lines at step boundaries
        events.trainer = trainer
        events.count()
        self.current = (st.name, job, trainer)
        return trainer

    def _release(self) -> None:
        if self.current is not None:
            name, _, trainer = self.current
            self.current = None
            try:
                trainer.close()
            except Exception:  # noqa: BLE001
                log.exception("job %s: closing its trainer failed", name)

    def _publish(self, st: JobState, trainer) -> None:
        base = next((r["heldout"] for r in trainer.run.read_metrics() if r.get("step") == 0 and "heldout" in r), None)
        res = publish(st.job, trainer.run.path, trainer.run.read_header(), trainer.wc,
                      trainer.records[-1].weights_sha256, st.step, st.heldout, base, trainer.task.primary_metric(st.heldout))
        st.last_gate = res
        if res["published"]:
            st.last_publish = res
            log.info("job %s: published step %d to %s (%s)", st.name, st.step, res["path"], res["reason"])
        else:
            log.warning("job %s: step %d not published: %s", st.name, st.step, res["reason"])
