"""Executors: who evaluates a step's members. The trainer's one seam for scale-out.

An executor is given (step, the pair seeds, sigma, the step's prompt indices) and returns the
members' rewards as the log records them: (rewards of +s_0, +s_1, ...), (rewards of -s_0, ...).
After the rewards, the trainer computes the coefficients and tells the executor the step's update
(`update`), applies it to its own weights, appends the record durably, then hands the executor the
logged weight hash (`check`): an executor that keeps weights of its own compares them there.

    LocalExecutor()   today's loop: the trainer's own working copy and engine, member after member
    RayExecutor(...)  edgees/scale/: one Ray actor per worker process, each with its own working
                      copy and engine; only seeds, scalars and hashes cross the wire

The log does not depend on the executor: a member's reward is a pure function of the weights, the
prompts and the evaluating process's thread count and batch size, so a run resumed with another
executor (same threads per evaluating process) writes the same bytes.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from edgees.errors import EdgeesError, EngineAborted, TaskError
from edgees.qes.records import StepSpec


def mean_reward(task, engine, examples) -> float:
    """The task's train rewards on `examples` with the weights as they are, averaged: one member."""
    try:
        rewards = task.train_rewards(engine, examples)
    except (EdgeesError, EngineAborted):  # TaskError: already one line; an abort: the daemon's, not an error
        raise
    except Exception as exc:  # a user's reward function failing inside a run
        raise TaskError(f"task {task.name}: reward failed with {type(exc).__name__}: {exc}") from None
    arr = np.asarray(rewards, dtype=np.float64)
    if arr.size != len(examples) or not np.all(np.isfinite(arr)):
        raise TaskError(f"task {task.name}: rewards must be {len(examples)} finite numbers")
    return float(arr.mean())


def evaluate_signed(state, engine, members: Sequence[int], sigma: float, reward: Callable[[], float],
                    should_stop: Callable[[], bool] = lambda: False,
                    on_member: Callable[[int, float], None] | None = None) -> list[float] | None:
    """Members given as signed seeds (+s or -s), in order, on the live weights: perturb in place
    (from the second member on, restore the last one and perturb this one in one pass), then
    reward(). The weights go back exactly at the end, whatever happened. Returns the rewards, or
    None when should_stop() asked at a member boundary, or engine.abort() stopped the member in
    flight (the daemon's policy: the machine is wanted back now, not after the member).
    on_member(i, reward) for members[i]."""
    out: list[float] = []
    current = None  # what the perturb of the member on the weights now applied
    try:
        for i, m in enumerate(members):
            if should_stop():
                return None
            engine.synchronize()
            current = state.perturb(m, sigma) if current is None else state.swap(current, m, sigma)
            engine.weights_changed()
            try:
                with engine.abortable():
                    out.append(reward())
            except EngineAborted:
                return None
            if on_member is not None:
                on_member(i, out[-1])
    finally:
        if current is not None:
            engine.synchronize()
            state.restore(current)
            engine.weights_changed()
    return out


def signed_members(seeds: Sequence[int]) -> list[int]:
    """The members of a step in the order they are evaluated and numbered: +s_0, -s_0, +s_1, ..."""
    return [sign * int(s) for s in seeds for sign in (1, -1)]


def evaluate_members(state, engine, seeds, sigma: float, reward: Callable[[], float],
                     should_stop: Callable[[], bool] = lambda: False,
                     on_member: Callable[[int, float], None] | None = None):
    """One step's members on the live weights, in order +s_0, -s_0, +s_1, ... (evaluate_signed).
    Returns (rewards_plus, rewards_minus), or None when should_stop() asked at a member boundary."""
    rewards = evaluate_signed(state, engine, signed_members(seeds), sigma, reward, should_stop, on_member)
    if rewards is None:
        return None
    return rewards[0::2], rewards[1::2]


class Executor:
    """The interface, and the order of calls the trainer makes:

        start(trainer)                         once; the trainer holds the weights after its logged steps
        per step t:
          evaluate(t, seeds, sigma, idx, ...)  -> (rewards_plus, rewards_minus), or None on a stop
          update(t, spec)                      the update the trainer is about to apply and log
          check(t, weights_sha256)             the update is logged, with this hash of the weights
        close()
    """

    name = "local"

    def start(self, trainer) -> None:
        raise NotImplementedError

    def evaluate(self, step: int, seeds: Sequence[int], sigma: float, prompt_idx: np.ndarray,
                 should_stop: Callable[[], bool], on_member: Callable[[int, float], None]):
        raise NotImplementedError

    def update(self, step: int, spec: StepSpec) -> None:
        """Nothing for an executor without weights of its own."""

    def check(self, step: int, weights_sha256: str) -> None:
        """Nothing for an executor without weights of its own."""

    def close(self) -> None:
        """Free what the executor holds; safe to call twice."""


class LocalExecutor(Executor):
    """The default: members evaluated one after another on the trainer's working copy and engine."""

    def start(self, trainer) -> None:
        self.trainer = trainer

    def evaluate(self, step, seeds, sigma, prompt_idx, should_stop, on_member):
        tr = self.trainer
        batch = [tr.train[i] for i in prompt_idx]
        return evaluate_members(tr.state, tr.engine, seeds, sigma, lambda: mean_reward(tr.task, tr.engine, batch),
                                should_stop, on_member)
