#!/usr/bin/env python3
"""Step time of the local executor against Ray workers, and the bytes a worker moves per step.

    python tools/bench_ray.py tiny --steps 3                 # the generated tiny model (a check)
    python tools/bench_ray.py smollm2-135m --steps 4 --busy  # the figures docs/benchmarks.md asks for

Side by side in one run, on MODEL with the default config (task arithmetic, 8 pairs, 12 prompts,
sigma 0.01; no held-out evaluation between steps, no checkpoints), a fresh run each:
  local   the local executor, --threads 2 (held-out and update on the same 2 threads)
  ray     --executor ray --workers 2 --threads-per-worker 1 on a local Ray (127.0.0.1, no dashboard)
With --busy, both again with one CPU-bound process beside them (a Python busy loop, not niced).

Per configuration: the median step time (members + update + hash + the durable append; the first
step is left out: Ray's workers warm up in it), its evaluation and update parts, and for ray, per
step and per worker, the bytes sent and received:
  payload  what edgees pickles into each call and gets back (signed seeds, sigma, prompt indices,
           the step's seeds and coefficients; rewards and a sha256), counted by the executor
  wire     the TCP bytes of the worker's process (`ss -tinp`: bytes_sent + bytes_received of its
           sockets, Ray's framing, task specs and heartbeats included), between the end of step 1
           and the end of the last step; Linux only, "-" elsewhere
Neither counts the one-time join (base model, checkpoint, log). Target: under 4 KB per step per
worker. Prints one JSON object per configuration, then a table; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _model(name: str, d: Path) -> Path:
    if name == "tiny":
        from edgees.gguf.tiny import make_tiny_model
        return make_tiny_model(d / "tiny-Q4_1.gguf", "Q4_1", seed=0)
    from edgees.models import resolve_model
    return resolve_model(name)


def tcp_bytes(pids: set[int]) -> dict[int, int] | None:
    """pid -> bytes sent + received over its TCP sockets now (ss -tinp), or None without ss."""
    try:
        out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    totals = dict.fromkeys(pids, 0)
    owner = None
    for line in out.splitlines():
        if line[:1].strip():  # a socket's line (its owners); its tcp_info follows, indented
            found = {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids
            owner = next(iter(found), None)
        elif owner is not None:
            for key in ("bytes_sent", "bytes_received"):
                m = re.search(rf"\b{key}:(\d+)", line)
                if m:
                    totals[owner] += int(m.group(1))
    return totals


def measure(model: Path, d: Path, name: str, steps: int, eval_n: int) -> dict:
    from edgees.engine.engine import Engine
    from edgees.qes.algorithm import QESConfig
    from edgees.run.events import TrainerEvents
    from edgees.run.trainer import Trainer
    from edgees.tasks.base import get_task

    task = get_task("arithmetic")
    cfg = QESConfig(steps=steps, eval_every=0, eval_n=eval_n, checkpoint_every=0)
    ex, threads = None, 2
    if name == "ray":
        from edgees.scale.cluster import connect
        from edgees.scale.executor import RayExecutor
        ex = RayExecutor(connect(None, 2, 1), batch=32, max_tokens=task.max_tokens)
    snaps: list = []

    class Snap(TrainerEvents):
        def step(self, row):
            pids = {w["pid"] for w in ex.workers()} if ex is not None else set()
            traffic = {k: dict(v) for k, v in (ex.traffic if ex else {}).items()}
            snaps.append((row, tcp_bytes(pids) if pids else None, traffic))

    tr = Trainer(model, task, "arithmetic", d / f"run-{name}-{len(os.listdir(d))}", cfg, events=Snap(), threads=threads,
                 executor=ex,
                 engine_factory=lambda p: Engine(p, n_threads=threads, n_seq=32, max_tokens=task.max_tokens))
    try:
        tr.run_steps()
    finally:
        tr.close()
    rows = [s[0] for s in snaps]
    later = rows[1:] or rows
    out = {"executor": name, "steps": len(rows),
           "step_s": statistics.median(r["step_seconds"] for r in later),
           "eval_s": statistics.median(r["eval_seconds"] for r in later),
           "update_s": statistics.median(r["update_seconds"] for r in later),
           "step_s_all": [round(r["step_seconds"], 3) for r in rows]}
    if ex is not None and len(snaps) >= 2:
        (_, wire0, pay0), (_, wire1, pay1) = snaps[0], snaps[-1]
        n = len(snaps) - 1
        pay = [(pay1[w]["sent"] - pay0[w]["sent"], pay1[w]["received"] - pay0[w]["received"])
               for w in pay1 if w in pay0]
        out["payload_bytes_per_step_per_worker"] = {"sent": max(s for s, _ in pay) / n,
                                                    "received": max(r for _, r in pay) / n}
        if wire0 is not None and wire1 is not None:
            out["wire_bytes_per_step_per_worker"] = max((wire1[p] - wire0.get(p, 0)) / n for p in wire1)
        out["workers"] = len(pay)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help='"tiny" or a registry name / .gguf path')
    p.add_argument("--steps", type=int, default=3, help="steps per configuration (at least 2; the first is warm-up)")
    p.add_argument("--eval-n", type=int, default=4, help="held-out prompts at the start and end of each run")
    p.add_argument("--busy", action="store_true", help="also measure both with one CPU-bound process beside them")
    p.add_argument("--json", action="store_true", help="only the JSON lines")
    args = p.parse_args()
    d = Path(tempfile.mkdtemp(prefix="edgees-bench-ray-"))
    os.environ.setdefault("EDGEES_WORKDIR", str(d / "work"))
    model = _model(args.model, d)
    results = []
    for busy in (False, True) if args.busy else (False,):
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for name in ("local", "ray"):
                row = {"model": args.model, "busy": busy, **measure(model, d, name, max(args.steps, 2), args.eval_n)}
                results.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    if not args.json:
        print(f"\n{'config':<32} {'step':>8} {'eval':>8} {'update':>8} {'vs local':>9} {'payload B/step/worker':>22} "
              f"{'wire B/step/worker':>19}")
        for r in results:
            base = next(x for x in results if x["busy"] == r["busy"] and x["executor"] == "local")
            label = ("local, 2 threads" if r["executor"] == "local" else "ray, 2 workers x 1 thread") + (
                ", busy" if r["busy"] else "")
            pay = r.get("payload_bytes_per_step_per_worker")
            wire = r.get("wire_bytes_per_step_per_worker")
            pay_text = f"{pay['sent']:.0f} out / {pay['received']:.0f} in" if pay else "-"
            wire_text = f"{wire:.0f}" if wire is not None else "-"
            print(f"{label:<32} {r['step_s']:>7.2f}s {r['eval_s']:>7.2f}s {r['update_s']:>7.2f}s "
                  f"{base['step_s'] / r['step_s']:>8.2f}x {pay_text:>22} {wire_text:>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
