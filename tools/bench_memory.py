#!/usr/bin/env python3
"""Peak RSS of `edgees finetune` against `edgees eval` with the same model, batch and context.

Each command runs in its own child process (peak RSS read with getrusage in a wrapper), side by side
in this one run. The fine-tune uses one pair and as many prompts per member as the eval has
prompts, so both decode batches of the same size; its held-out evaluation uses the same count.

  python tools/bench_memory.py [MODEL] [--n 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

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
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    edgees = [sys.executable, "-m", "edgees.cli"]
    eval_kb = peak_rss_kb(edgees + ["eval", args.model, "--task", "arithmetic", "--n", str(args.n), "--json"])
    with tempfile.TemporaryDirectory() as tmp:
        ft_kb = peak_rss_kb(edgees + ["finetune", args.model, "--task", "arithmetic", "--run", f"{tmp}/run",
                                      "--steps", str(args.steps), "--pairs", "1", "--prompts", str(args.n),
                                      "--eval-n", str(args.n), "--eval-every", "1", "--quiet", "--json"])
    result = {"model": args.model, "batch": args.n, "eval_peak_rss_mb": eval_kb / 1024,
              "finetune_peak_rss_mb": ft_kb / 1024, "finetune_over_eval": ft_kb / eval_kb}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"peak RSS: eval {result['eval_peak_rss_mb']:.0f} MB, finetune {result['finetune_peak_rss_mb']:.0f} MB "
              f"= {result['finetune_over_eval']:.2f}x (target <= 1.2)")


if __name__ == "__main__":
    main()
