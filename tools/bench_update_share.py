#!/usr/bin/env python3
"""The update's share of a fine-tuning step on the default config, with a full replay window.

A real run only reaches a full window after K steps (K = 50: over an hour on 2 cores), so this
builds one directly: K real replay updates of the default config (its pairs, sigma, alpha, gamma,
window; the pair seeds of a run, coefficients z-scored from a fixed random draw instead of
rewards), then times update K + 1. In the same run it times one step's evaluation with the
trainer's own member loop: 2 x pairs members, each a fused restore + perturb and the task's rewards
on the step's prompts. Prints both, the update's share of the step (update / (evaluation + update);
the issue's target: at most 0.20) and update / evaluation.

  python tools/bench_update_share.py [MODEL] [--task arithmetic] [--task-opt K=V ...] [--pairs P]
                                     [--prompts P] [--windows K[,K...]] [--threads N] [--json]

--windows 50,25 builds and times a full window for each K in turn (each from the base file), the
first the baseline: the update's time and share for each, and each one's time over the first's.

The likelihood config of issue 15 (one batched prefill a member, so a cheap evaluation):
  python tools/bench_update_share.py --task-opt reward=likelihood --prompts 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="smollm2-135m")
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--pairs", type=int, default=None, help="default: finetune's")
    ap.add_argument("--prompts", type=int, default=None, help="default: finetune's")
    ap.add_argument("--windows", default=None, help="replay windows K to time, comma-separated; the first is "
                    "the baseline (default: finetune's window)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from edgees.qes import algorithm as qes
    from edgees.engine.engine import load_live
    from edgees.gguf.working_copy import WorkingCopy
    from edgees.qes.kernels import default_threads
    from edgees.qes.records import StepSpec
    from edgees.models import resolve_model
    from edgees.qes.state import WeightState
    from edgees.tasks.base import get_task, parse_options
    from edgees.run.trainer import evaluate_members, step_prompts

    cfg = qes.QESConfig(**{k: v for k, v in (("pairs", args.pairs), ("prompts", args.prompts)) if v is not None})
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))

    def spec(t: int, rng) -> StepSpec:
        coefs = qes.coefficients(rng.standard_normal(cfg.pairs), rng.standard_normal(cfg.pairs), cfg.coef)
        return StepSpec(qes.pair_seeds(cfg.seed, t, cfg.pairs), tuple(float(a) for a in coefs), cfg.alpha, cfg.sigma)

    windows = [int(k) for k in args.windows.split(",")] if args.windows else [cfg.window]
    if any(k < 1 for k in windows):
        raise SystemExit("bench_update_share: --windows takes positive step counts, e.g. --windows 50,25")
    task = get_task(args.task, **parse_options(args.task_opt))
    train, _ = task.split(n_heldout=cfg.eval_n)
    timed = []
    for k in windows:
        rng = np.random.default_rng(0)  # the same synthetic coefficients for every K
        with WorkingCopy(resolve_model(args.model)) as wc:
            state = WeightState(wc, ef="replay", window=k, gamma=cfg.gamma, threads=args.threads)
            t0 = time.perf_counter()
            changed = []
            for t in range(k):
                changed.append(state.apply(spec(t, rng))["changed"])
                say(f"K = {k}: update {t + 1}/{k} ({time.perf_counter() - t0:.0f} s)")
            t1 = time.perf_counter()
            stats = state.apply(spec(k, rng))
            timed.append({"window": k, "update_seconds": time.perf_counter() - t1,
                          "codes_changed_last_update": int(stats["changed"]),
                          "codes_changed_median_window": float(np.median(changed)),
                          "window_bytes_in_ram": state.history_bytes()})
            if k != windows[-1]:
                continue
            batch = [train[i] for i in step_prompts(len(train), cfg.seed, k, cfg.prompts)]
            engine = load_live(wc, state.names[0], n_threads=args.threads)
            try:
                seeds = qes.pair_seeds(cfg.seed, k + 1, cfg.pairs)
                t2 = time.perf_counter()
                evaluate_members(state, engine, seeds, cfg.sigma,
                                 lambda: float(np.mean(task.train_rewards(engine, batch))),
                                 on_member=lambda m, r: say(f"evaluation: member {m + 1}/{2 * cfg.pairs}"))
                eval_s = time.perf_counter() - t2
            finally:
                engine.close()
    base_s = timed[0]["update_seconds"]
    for row in timed:
        u = row["update_seconds"]
        row.update(update_share=u / (eval_s + u), update_over_eval=u / eval_s, over_first=u / base_s)

    first = timed[0]
    out = {"model": args.model, "task": args.task, "task_opt": args.task_opt, "pairs": cfg.pairs, "prompts": cfg.prompts,
           "sigma": cfg.sigma, "alpha": cfg.alpha, "threads": state.threads or default_threads(),
           "eval_seconds": eval_s, **first, "windows": timed}
    if args.json:
        print(json.dumps(out))
        return
    opts = " ".join(args.task_opt) or "default options"
    print(f"{args.model}, {args.task} ({opts}), {cfg.pairs} pairs x {cfg.prompts} prompts:\n"
          f"  one step's evaluation ({2 * cfg.pairs} members)  {eval_s:7.2f} s")
    for row in timed:
        print(f"  K = {row['window']:>3}: one replay update over a full window {row['update_seconds']:7.2f} s, "
              f"{row['update_share']:6.1%} of the step (target <= 20%), update / evaluation "
              f"{row['update_over_eval']:6.1%}, {row['over_first']:.2f}x K = {first['window']}'s update")

if __name__ == "__main__":
    from edgees.errors import EdgeesError
    try:
        main()
    except EdgeesError as exc:
        sys.exit(f"bench_update_share: error: {exc}")
