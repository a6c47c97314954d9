"""The Ray executor: a step's members evaluated by worker processes, each with its own weights.

One Ray actor per worker (scale/worker.py), asking Ray for `threads_per_worker` CPUs. A worker
joins from the run's newest checkpoint plus the log (both shipped once), and the driver checks the
weight hash it reports against the log before it gets any member. Per step it then sees only:

    evaluate(members as signed seeds, sigma, prompt indices) -> their rewards
    update(t, StepSpec: seeds, coefficients, alpha, sigma)   -> the weights' sha256 after step t

Members go out in chunks from one queue, a chunk to each idle worker; a worker that dies has its
chunk re-run on another (a member's reward is a pure function of the weights and prompts) and is
replaced by a new worker that joins from the newest checkpoint. The update is sent to every worker
while the driver applies the same update to its own weights, and each worker's hash is compared
with the one the driver logged: a worker that differs is dropped and a new one joins in its place
(at most MAX_REBUILDS times in a row before the slot is given up). Workers may also join mid-run
(add_worker): they take members from the step after their hash agreed with the log.

The driver keeps the run's weights, the log, checkpoints and held-out evaluation, exactly as with
the local executor, so the log is the same whichever executor wrote it (at equal threads per
evaluating process).
"""

from __future__ import annotations

import math
import os
import pickle
import time
from collections import deque
from dataclasses import dataclass, field

from edgees.errors import EdgeesError, RunError
from edgees.run import checkpoint
from edgees.run.executor import Executor, signed_members
from edgees.run.log import STEPS_MAGIC, spec_of
from edgees.scale.cluster import Cluster
from edgees.scale.worker import Worker, WorkerSpec, split_sha256

MAX_REBUILDS = 2  # a worker slot whose replacements keep disagreeing with the log is given up
POLL_SECONDS = 0.2  # how often a waiting driver looks at its stop flag
STOP_SECONDS = 5.0  # what a worker gets to clean up before its process is ended
GROW_SECONDS = 30.0  # how often an elastic executor asks Ray for free CPUs


@dataclass
class Slot:
    """The driver's view of one worker."""

    wid: int
    actor: object
    join_args: tuple  # (checkpoint, log) it joins from, kept to resend with the base model
    joining: object = None  # ObjectRef of its join or advance call, None once it agrees with the log
    busy: object = None  # ObjectRef of its evaluate call in flight
    chunk: list = field(default_factory=list)  # member indices of that call
    updating: object = None  # ObjectRef of its update call
    step: int = -1  # the step its weights are at, once checked
    rebuilds: int = 0
    node: str = ""
    pid: int = 0


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, cluster: Cluster, batch: int, max_tokens: int, worker_base_path: str | None = None,
                  elastic: bool = False):
        """worker_base_path: where workers look for the base model (default: the driver's path).
        elastic: at a step's start (every GROW_SECONDS at most), start a worker for every
        threads_per_worker CPUs the cluster has free (a machine that joined with `ray start`)."""
        self.cluster, self.ray = cluster, cluster.ray
        self.batch, self.max_tokens = batch, max_tokens
        self.worker_base_path = worker_base_path
        self.elastic, self._grown_at = elastic, -math.inf
        self.slots: dict[int, Slot] = {}
        self._next = 0
        self._base_ref = None
        self._cls = None
        self.trainer = None
        self.stats = {"joined": 0, "died": 0, "rebuilt": 0, "reruns": 0, "given_up": 0}
        self.checks: list[tuple[int, int, bool]] = []  # (worker id, step its weights were at, agreed with the log)
        self.traffic: dict[int, dict] = {}  # worker id -> payload bytes of its per-step calls (pickled)

    # ---- start, join -------------------------------------------------------------------------
    def start(self, trainer) -> None:
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError
        self._dead = (RayActorError, WorkerCrashedError)
        self._task_error = RayTaskError
        self.trainer = trainer
        cfg = trainer.cfg
        self.spec = WorkerSpec(
            base_path=str(self.worker_base_path or trainer.model_path.resolve()), base_sha256=trainer.base_sha,
            ef=cfg.ef, window=cfg.window, gamma=cfg.gamma, include_embeddings=cfg.include_embeddings,
            tensors=cfg.tensors,
            threads=self.cluster.threads_per_worker, batch=self.batch, max_tokens=self.max_tokens,
            task=trainer.task_spec, task_options=trainer.task_options,
            eval_n=cfg.eval_n, train_sha256=split_sha256(trainer.train), cwd=os.getcwd())
        self._base_hash = trainer.state.sha256() if trainer.state.step == 0 else None
        self._cls = self.ray.remote(Worker)
        trainer.events.status(f"ray: starting {_n(self.cluster.workers, 'worker')} x "
                              f"{_n(self.cluster.threads_per_worker, 'thread')} on {self.cluster.address} "
                              f"({self.cluster.cpus} CPUs)")
        for _ in range(self.cluster.workers):
            self.add_worker()
        self.wait_joined(starting=True)  # every worker in step with the log before any step starts
        if not self.slots:
            raise RunError("no Ray worker could join the run")
        nodes = sorted({s.node for s in self.slots.values()})
        trainer.events.status(f"ray: {_n(len(self.slots), 'worker')} in step with the log at step "
                              f"{len(trainer.records)} on {', '.join(nodes)}")

    def add_worker(self, catchup: tuple | None = None, rebuilds: int = 0) -> int:
        """Start a worker that joins from `catchup` = (checkpoint or None, log bytes), by default the
        run's newest checkpoint and its log as they are now; returns its id."""
        ckpt_log = catchup if catchup is not None else self._catchup()
        # no task events: Ray would report every call's state changes to its GCS, a third of a
        # worker's bytes per step (docs/benchmarks.md, scale-out)
        actor = self._cls.options(num_cpus=self.cluster.threads_per_worker, max_restarts=0,
                                  enable_task_events=False).remote()
        slot = Slot(self._next, actor, ckpt_log, rebuilds=rebuilds)
        self._next += 1
        slot.joining = actor.join.remote(self.spec, None, *ckpt_log)
        self.slots[slot.wid] = slot
        self.traffic[slot.wid] = {"sent": 0, "received": 0, "calls": 0}
        return slot.wid

    def wait_joined(self, starting: bool = False) -> None:
        """Block until no worker is joining (each one in step with the log, or dropped). starting:
        a worker that cannot open the base model or the task raises its one line."""
        while any(s.joining is not None for s in self.slots.values()):
            self._wait([s.joining for s in self.slots.values() if s.joining is not None], starting)

    def _catchup(self) -> tuple:
        run = self.trainer.run.path
        steps = len(self.trainer.records)
        log = (run / "steps.log").read_bytes() if (run / "steps.log").exists() else STEPS_MAGIC
        for path in checkpoint.list_checkpoints(run):
            if checkpoint.step_of(path) <= steps:
                return (path.name, path.read_bytes()), log
        return None, log

    def _hash_at(self, step: int) -> str | None:
        if step == 0:
            return self._base_hash
        records = self.trainer.records
        return records[step - 1].weights_sha256 if step <= len(records) else None

    def _joined(self, slot: Slot, out: dict) -> None:
        """A join or advance call returned `out`: ask for the base, advance, accept or rebuild."""
        if out.get("need_base"):
            if self._base_ref is None:  # shipped once, through Ray's object store
                self._base_ref = self.ray.put(self.trainer.model_path.read_bytes())
            self.trainer.events.status(f"ray: {out['node']} has no {self.spec.base_path}: shipping the base model")
            slot.joining = slot.actor.join.remote(self.spec, self._base_ref, *slot.join_args)
            return
        slot.node, slot.pid = out.get("node", slot.node), out.get("pid", slot.pid)
        for line in out.get("warnings", []):
            self.trainer.events.status(f"warning: worker {slot.wid}: {line}")
        k, now = out["step"], len(self.trainer.records)
        ok = k <= now and out["sha256"] == self._hash_at(k)
        self.checks.append((slot.wid, k, ok))
        if not ok:
            self._rebuild(slot, f"its weights at step {k} hash {out['sha256'][:16]}..., not the log's")
        elif k < now:  # steps were logged while it joined
            slot.joining = slot.actor.advance.remote([(t, spec_of(self.trainer.records[t])) for t in range(k, now)])
        else:
            slot.joining, slot.step = None, k
            self.stats["joined"] += 1

    def _rebuild(self, slot: Slot, why: str) -> None:
        """Drop a worker whose weights disagree with the log (or that failed to rebuild them); a
        new one joins from the newest checkpoint, unless this slot's replacements keep failing."""
        self.stats["rebuilt"] += 1
        self._replace(slot, why, slot.rebuilds + 1)

    def _died(self, slot: Slot, when: str, joining: bool = False) -> None:
        """A worker's process is gone; one dying while it joins counts as a failed rebuild."""
        self.stats["died"] += 1
        self._replace(slot, f"died {when}", slot.rebuilds + joining)

    def _replace(self, slot: Slot, why: str, rebuilds: int) -> None:
        self._drop(slot)
        if rebuilds > MAX_REBUILDS:
            self.stats["given_up"] += 1
            self.trainer.events.status(f"warning: ray worker {slot.wid}: {why}; given up after "
                                       f"{MAX_REBUILDS} replacements")
            return
        wid = self.add_worker(rebuilds=rebuilds)
        self.trainer.events.status(f"warning: ray worker {slot.wid}: {why}: dropped; worker {wid} joins "
                                   "in its place from the newest checkpoint")

    def _drop(self, slot: Slot) -> None:
        self.slots.pop(slot.wid, None)
        self._stop([slot.actor])

    def _stop(self, actors: list) -> None:
        """Let workers delete their working copies (a few seconds at most), then end their processes."""
        refs = []
        for actor in actors:
            try:
                refs.append(actor.close.remote())
            except Exception:  # already gone
                pass
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=STOP_SECONDS)
        for actor in actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:
                pass

    def _error(self, slot: Slot, exc: Exception) -> EdgeesError:
        """The one line for a worker's failure that is not its death."""
        cause = getattr(exc, "cause", None)
        if isinstance(cause, EdgeesError):
            return cause
        what = cause if cause is not None else exc
        line = " ".join(str(what).split())[:300]
        return RunError(f"ray worker {slot.wid} on {slot.node or 'its node'} failed: {type(what).__name__}: {line}")

    def _wait(self, refs: list, starting: bool = False) -> list:
        """Wait (up to POLL_SECONDS) for any of refs; handle the join calls among the ready ones
        and return the other ready refs."""
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)
        rest = []
        for ref in ready:
            slot = next((s for s in self.slots.values() if s.joining is not None and s.joining == ref), None)
            if slot is None:
                rest.append(ref)
                continue
            slot.joining = None
            try:
                out = self.ray.get(ref)
            except self._dead:
                self._died(slot, "while joining", joining=True)
                continue
            except self._task_error as exc:
                err = self._error(slot, exc)
                if starting:
                    raise err from None  # a worker that cannot open the base or the task: one line
                if isinstance(err, RunError):  # its rebuild did not match the log
                    self._rebuild(slot, str(err))
                else:  # it cannot open the task here: the others go on
                    self._replace(slot, str(err), MAX_REBUILDS + 1)
                continue
            self._joined(slot, out)
        return rest

    # ---- per step ----------------------------------------------------------------------------
    def evaluate(self, step, seeds, sigma, prompt_idx, should_stop, on_member):
        if self.trainer.follow_data:
            raise RunError("the ray executor does not follow a growing data file; use --executor local")
        self._settle()
        if self.elastic:
            self._grow()
        members = signed_members(seeds)
        idx = [int(i) for i in prompt_idx]
        rewards: list[float | None] = [None] * len(members)
        size = max(1, math.ceil(len(members) / (2 * max(1, len(self.slots)))))
        queue = deque(list(range(i, min(i + size, len(members)))) for i in range(0, len(members), size))
        while any(r is None for r in rewards):
            if should_stop():
                return None
            if not self.slots:
                raise RunError("every ray worker was lost (see the warnings above); the log is intact: resume "
                               "with --executor local, or fix the cluster and resume with --executor ray")
            for slot in self.slots.values():
                if queue and slot.joining is None and slot.busy is None:
                    slot.chunk = queue.popleft()
                    args = ([members[i] for i in slot.chunk], float(sigma), idx)
                    slot.busy = slot.actor.evaluate.remote(*args)
                    self._count(slot, args, sent=True)
            refs = [s.busy for s in self.slots.values() if s.busy is not None]
            refs += [s.joining for s in self.slots.values() if s.joining is not None]
            if not refs:
                continue
            for ref in self._wait(refs):
                slot = next(s for s in self.slots.values() if s.busy is not None and s.busy == ref)
                slot.busy = None
                try:
                    out = self.ray.get(ref)
                except self._dead:
                    queue.appendleft(slot.chunk)  # its members, re-run by another worker
                    self.stats["reruns"] += len(slot.chunk)
                    self._died(slot, f"during step {step + 1}")
                    continue
                except self._task_error as exc:
                    raise self._error(slot, exc) from None
                self._count(slot, out, sent=False)
                for i, r in zip(slot.chunk, out):
                    rewards[i] = float(r)
                    on_member(i, rewards[i])
        return [rewards[i] for i in range(0, len(members), 2)], [rewards[i] for i in range(1, len(members), 2)]

    def _grow(self) -> None:
        """Workers for the CPUs the cluster has free, once no worker is still joining (one that
        Ray has not placed yet holds no CPU, so it would be counted twice); never again after a
        worker was given up (its CPU would come back free, and the next worker fail the same way)."""
        if (time.monotonic() - self._grown_at < GROW_SECONDS or self.stats["given_up"]
                or any(s.joining is not None for s in self.slots.values())):
            return
        self._grown_at = time.monotonic()
        free = int(self.ray.available_resources().get("CPU", 0)) // self.cluster.threads_per_worker
        for _ in range(free):
            wid = self.add_worker()
            self.trainer.events.status(f"ray: the cluster has CPUs free: worker {wid} joins")

    def _settle(self) -> None:
        """Calls left in flight by a stopped step: wait for them and forget their results."""
        left = [s.busy for s in self.slots.values() if s.busy is not None]
        if left:
            self.ray.wait(left, num_returns=len(left), timeout=None)
        for s in list(self.slots.values()):
            s.busy = None

    def update(self, step, spec) -> None:
        for slot in self.slots.values():
            if slot.joining is None:
                slot.updating = slot.actor.update.remote(step, spec)
                self._count(slot, (step, spec), sent=True)

    def check(self, step, weights_sha256) -> None:
        for slot in list(self.slots.values()):
            ref, slot.updating = slot.updating, None
            if ref is None:
                continue
            try:
                got = self.ray.get(ref)
            except self._dead:
                self._died(slot, f"updating step {step + 1}")
                continue
            except self._task_error as exc:
                self._rebuild(slot, str(self._error(slot, exc)))
                continue
            self._count(slot, got, sent=False)
            ok = got == weights_sha256
            self.checks.append((slot.wid, step + 1, ok))
            if ok:
                slot.step = step + 1
            else:
                self._rebuild(slot, f"its weights after step {step + 1} hash {got[:16]}..., "
                                    f"the log says {weights_sha256[:16]}...")

    def _count(self, slot: Slot, payload, sent: bool) -> None:
        t = self.traffic[slot.wid]
        t["sent" if sent else "received"] += len(pickle.dumps(payload, protocol=5))
        t["calls"] += sent

    # ---- introspection, close ------------------------------------------------------------------
    def workers(self) -> list[dict]:
        """One dict per live worker: id, node, pid, whether it is joining or busy, its actor handle."""
        return [{"wid": s.wid, "node": s.node, "pid": s.pid, "joining": s.joining is not None,
                 "busy": s.busy is not None, "step": s.step, "actor": s.actor} for s in self.slots.values()]

    def close(self) -> None:
        actors = [s.actor for s in self.slots.values()]
        self.slots.clear()
        self._stop(actors)
        self._base_ref = None
        self.cluster.close()


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
