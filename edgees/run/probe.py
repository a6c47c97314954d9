"""The signal probe: is there something for ES to climb, and at which sigma? Minutes, before a run.

On a fixed set of training prompts (the task's train split, the first `n_prompts`), score the base
model, then N members at each sigma: the same noise law, the same antithetic pairs (+s_j, -s_j) and
the same member loop as a training step (trainer.evaluate_members), with the member seeds of the
first step of a run with this seed (qes.pair_seeds(seed, 0, N/2)), and the weights restored exactly
after each member. Best-of-N probes of random perturbations saturate at N ~ 30-40 ("The Blessing of
Dimensionality in LLM Fine-Tuning", arXiv 2602.00170), hence N = 32 by default.

Per sigma the report gives the members' mean reward against the base, their spread (std, min, max),
how many antithetic pairs score differently (an ES step is made of those differences), and the
best-of-k curve for k = 1, 2, 4, ..., N (members in evaluation order +s_0, -s_0, +s_1, ...).

The recommendation, one rule (RULE below): the largest sigma at which
  near: the members' mean reward is at most NEAR x their std below the base (the perturbation costs
        less on average than it spreads the members; NEAR_SCORED x for a reward scored on reference
        answers, a sum of log-likelihoods, which any random move lowers on average by the objective's
        curvature: the triage example's labels reward fell 0.75 x its std at 0.01, where runs learned), and
  wide: at least WIDE of the antithetic pairs score differently (r(+s_j) != r(-s_j)),
  capped at CAP x the smallest wide sigma: once the pairs differ, a larger sigma adds no signal to a
  step but moves more codes with it (on a generated reward, the larger steps find the reward's
  cheapest gain instead of the task: docs/results/probe.md).
No signal: the base and every member at every sigma score the same number (e.g. a 0/1 reward the
base never reaches); the advice then says what to change. Nothing here prints.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgees.errors import EdgeesError, RunError, TaskError
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes import algorithm as qes
from edgees.qes.state import WeightState
from edgees.run.trainer import _mean_reward, evaluate_members
from edgees.tasks.base import TEACHER_FORCED

DEFAULT_SIGMAS = (0.005, 0.01, 0.02, 0.04)
NEAR = 0.5  # the mean may fall at most half the members' std below the base
NEAR_SCORED = 1.0  # ... and a whole std for a teacher-forced reward (base.TEACHER_FORCED; module doc)
WIDE = 0.5  # at least half of the antithetic pairs must score differently
CAP = 2.0   # at most this many times the smallest sigma at which the pairs differ (see module doc)
RULE = (f"the largest sigma at which the members' mean reward is at most {NEAR:g} x their std below the "
        f"base ({NEAR_SCORED:g} x for a reward scored on reference answers: likelihood, margin, labels), "
        f"and at least {WIDE:.0%} of the antithetic pairs score differently, up to {CAP:g} x the "
        "smallest sigma at which they differ that often")
SIGMA_RANGE = (0.0, 4.0)  # finetune's --sigma range: (0, 4] code steps

Progress = Callable[[int, int, "float | None"], None]  # (done, total, sigma or None for the base)


def check_probe_args(sigmas, n_members: int, n_prompts: int) -> None:
    """One-line errors for values a probe cannot use; call before loading anything."""
    if not sigmas:
        raise EdgeesError("--sigmas is empty; give one or more sigmas, e.g. --sigmas 0.005,0.01,0.02,0.04")
    for s in sigmas:
        if not (isinstance(s, (int, float)) and math.isfinite(s) and SIGMA_RANGE[0] < s <= SIGMA_RANGE[1]):
            raise EdgeesError(f"--sigmas: {s!r} is out of range; each sigma must be in (0, 4] code steps, "
                              "e.g. --sigmas 0.005,0.01,0.02,0.04")
    if n_members < 2 or n_members % 2:
        raise EdgeesError(f"--n-members must be an even number >= 2 (members come in antithetic pairs "
                          f"+s/-s, as in training), got {n_members}; 32 is a good probe")
    if n_prompts < 1:
        raise EdgeesError(f"--prompts must be >= 1, got {n_prompts}")


def best_of(rewards) -> list[dict]:
    """The best reward among the first k members, for k = 1, 2, 4, ... and len(rewards)."""
    ks, k = [], 1
    while k < len(rewards):
        ks.append(k)
        k *= 2
    ks.append(len(rewards))
    return [{"k": k, "best": float(max(rewards[:k]))} for k in ks]


def near_limit(reward_mode: str) -> float:
    """How many of the members' stds their mean may fall below the base (see the module doc)."""
    return NEAR_SCORED if reward_mode in TEACHER_FORCED else NEAR


def summarize(sigma: float, base: float, r_plus, r_minus, near: float = NEAR) -> dict:
    """One sigma's row of the report from its members' rewards (pure: tested on numbers); `near`:
    near_limit() of the task's reward."""
    rewards = [r for pair in zip(r_plus, r_minus) for r in pair]  # evaluation order +s_0, -s_0, ...
    arr = np.asarray(rewards, dtype=np.float64)
    mean, std = float(arr.mean()), float(arr.std())
    differ = sum(p != m for p, m in zip(r_plus, r_minus))
    return {
        "sigma": sigma, "mean": mean, "mean_minus_base": mean - base, "std": std,
        "min": float(arr.min()), "max": float(arr.max()),
        "pairs_differ": int(differ), "pairs": len(r_plus),
        "near_base": base - mean <= near * std, "wide": differ >= WIDE * len(r_plus) and differ > 0,
        "best_of_n": best_of(rewards), "rewards": [float(r) for r in rewards],
    }


def recommend(base: float, rows: list[dict], reward_mode: str) -> tuple[float | None, bool, str]:
    """(recommended sigma or None, no_signal, advice for a person) from the rows of summarize()."""
    good = [r for r in rows if r["near_base"] and r["wide"]]
    flat = all(r["min"] == r["max"] == base for r in rows)
    if flat:
        fix = ("shape the reward (give partial credit for the right format, a near miss, a shorter answer) "
               "so that nearby models score differently")
        if reward_mode == "generate":
            fix += ", or use --task-opt reward=likelihood (tasks with reference answers: arithmetic, jsonl:)"
        return None, True, (f"no signal: the base and every member at every sigma scored exactly {base:.4g}, "
                            f"so ES has nothing to compare; {fix}")
    if good:
        cap = CAP * min(r["sigma"] for r in rows if r["wide"])
        best = max((r for r in good if r["sigma"] <= cap), key=lambda r: r["sigma"], default=None)
        if best is None:  # the pairs differ first at a sigma that moves the mean too far; a larger one passes
            best = min(good, key=lambda r: r["sigma"])
        advice = f"use --sigma {best['sigma']:g} ({RULE})"
        above = [f"{r['sigma']:g}" for r in good if r["sigma"] > best["sigma"]]
        larger = [f"{k * best['sigma']:g}" for k in (2, 4) if k * best["sigma"] <= SIGMA_RANGE[1]]
        if above:
            advice += (f"; {', '.join(above)} also keep the mean near the base, but the pairs already differ "
                       "at smaller steps, and a larger sigma moves more codes a step for no more signal")
        elif best["sigma"] == max(r["sigma"] for r in rows) and best["sigma"] < cap and larger:
            advice += f"; it is the largest tried, a larger one may do too: probe --sigmas {','.join(larger)}"
        return best["sigma"], False, advice
    if any(r["wide"] for r in rows):
        low = min(r["sigma"] for r in rows if r["wide"])
        return None, False, (f"every sigma at which the pairs differ also lowers the mean reward by more than "
                             f"{near_limit(reward_mode):g} x the spread: probe smaller ones, "
                             f"e.g. --sigmas {low / 4:g},{low / 2:g}")
    top = max(rows, key=lambda r: r["sigma"])
    return None, False, (f"weak signal: fewer than {WIDE:.0%} of the pairs score differently at every sigma "
                         f"({top['pairs_differ']}/{top['pairs']} at {top['sigma']:g}); probe larger sigmas "
                         f"(--sigmas {min(2 * top['sigma'], 4):g},{min(4 * top['sigma'], 4):g}), use more --prompts, "
                         "or shape the reward so that near misses score between a miss and a hit")


def probe(model_path, task, *, sigmas=DEFAULT_SIGMAS, n_members: int = 32, n_prompts: int = 16,
          seed: int = 1, threads: int | None = None, batch: int = 32, include_embeddings: bool = False,
          tensors: str = "", progress: Progress | None = None) -> dict:
    """Probe `task` on the model at `model_path` (never written: the members live on a private
    working copy). Returns the report described in the module docstring, JSON-ready."""
    sigmas = [float(s) for s in sigmas]
    check_probe_args(sigmas, n_members, n_prompts)
    prompts, _ = task.split(n_train=n_prompts, n_heldout=0)
    if not prompts:
        raise TaskError(f"task {task.name} has no training examples to probe on; add some (a jsonl task "
                        "holds out 1 line in 5: give it more lines, or mark lines with \"split\": \"train\")")
    from edgees.engine.engine import load_live
    seeds = qes.pair_seeds(seed, 0, n_members // 2)
    total = 1 + n_members * len(sigmas)
    t0 = time.perf_counter()
    with WorkingCopy(Path(model_path)) as wc:
        state = WeightState(wc, ef="off", threads=threads, include_embeddings=include_embeddings,
                            tensors=tensors)
        try:
            before = wc.sha256()
            n_weights = state.n_weights
            with load_live(wc, state.names[0], n_threads=threads, n_seq=batch,
                           max_tokens=task.max_tokens) as engine:
                base = _mean_reward(task, engine, prompts)
                if progress:
                    progress(1, total, None)
                rows = []
                for i, sigma in enumerate(sigmas):
                    t_sigma = time.perf_counter()
                    done = 1 + i * n_members
                    tick = (lambda m, r, d=done, s=sigma: progress(d + m + 1, total, s)) if progress else None
                    r_plus, r_minus = evaluate_members(state, engine, seeds, sigma,
                                                       lambda: _mean_reward(task, engine, prompts),
                                                       on_member=tick)
                    rows.append(summarize(sigma, base, r_plus, r_minus, near_limit(task.reward_mode)))
                    rows[-1]["seconds"] = time.perf_counter() - t_sigma
            after = wc.sha256()
        finally:
            state.close()
    if after != before:  # evaluate_members restores exactly; this is the proof, on every probe
        raise RunError(f"the working copy's weights changed during the probe (sha256 {before[:16]}... -> "
                       f"{after[:16]}...); this is a bug in edgees, please report it")
    sigma, no_signal, advice = recommend(base, rows, task.reward_mode)
    return {
        "task": task.name, "reward_mode": task.reward_mode, "prompts": len(prompts), "n_members": n_members,
        "seed": seed, "sigmas": sigmas, "tensors": tensors, "n_weights": n_weights,
        "base_reward": base, "per_sigma": rows,
        "recommended_sigma": sigma, "no_signal": no_signal, "advice": advice, "rule": RULE,
        "weights_sha256": before, "weights_restored": True, "seconds": time.perf_counter() - t0,
    }
