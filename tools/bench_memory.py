#!/usr/bin/env python3
"""Peak RSS of `edgees finetune` against `edgees eval` with the same model, batch and context.

Each command runs in its own child process (peak RSS read with getrusage in a wrapper), side by side
in this one run. The fine-tune uses one pair and as many prompts per member as the eval has
prompts, so both decode batches of the same size; its held-out evaluation uses the same count.

A long run fills the replay window (K = 50 steps). With one pair, the default alpha moves a code
at every drawn entry (alpha / (sigma * pairs) = 2 code steps per unit coefficient), so the window
holds more than any real run of that length (the 53-step likelihood run of
docs/results/arithmetic-likelihood-16-prompts.md kept 41.9 MB):

  python tools/bench_memory.py [MODEL] [--n 8] [--json]
  python tools/bench_memory.py --steps 55 --eval-every 0 --task-opt reward=likelihood
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

WRAP = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def peak_rss_kb(cmd: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=8, help="prompts per batch (default 8)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=1, help="fine-tune held-out evaluation interval (0: at the ends)")
    ap.add_argument("--alpha", type=float, default=None, help="fine-tune step size (default: finetune's)")
    ap.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    edgees = [sys.executable, "-m", "edgees.cli"]
    eval_kb = peak_rss_kb(edgees + ["eval", args.model, "--task", "arithmetic", "--n", str(args.n), "--json"])
    extra = [] if args.alpha is None else ["--alpha", str(args.alpha)]
    for opt in args.task_opt:
        extra += ["--task-opt", opt]
    with tempfile.TemporaryDirectory() as tmp:
        ft_kb = peak_rss_kb(edgees + ["finetune", args.model, "--task", "arithmetic", "--run", f"{tmp}/run",
                                      "--steps", str(args.steps), "--pairs", "1", "--prompts", str(args.n),
                                      "--eval-n", str(args.n), "--eval-every", str(args.eval_every), "--quiet", "--json"] + extra)
        rows = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
        rows = [r for r in rows if "changed" in r]  # step rows (not the step-0 evaluation)
    window = max(r.get("ef_state_bytes", 0) for r in rows)
    result = {"model": args.model, "batch": args.n, "steps": args.steps, "eval_peak_rss_mb": eval_kb / 1024,
              "finetune_peak_rss_mb": ft_kb / 1024, "finetune_over_eval": ft_kb / eval_kb,
              "window_mb": window / 1e6, "codes_moved_per_step": sum(r["changed"] for r in rows) / len(rows)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"peak RSS: eval {result['eval_peak_rss_mb']:.0f} MB, finetune {result['finetune_peak_rss_mb']:.0f} MB "
              f"= {result['finetune_over_eval']:.2f}x (target <= 1.2); replay window {result['window_mb']:.1f} MB "
              f"after {args.steps} steps, {result['codes_moved_per_step']:.0f} codes moved a step")


if __name__ == "__main__":
    main()
