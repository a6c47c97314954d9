#!/usr/bin/env python3
"""Resume and export time from a checkpoint against today's full replay, at several log lengths.

    python tools/bench_checkpoint.py tiny --steps 20,200,2000
    python tools/bench_checkpoint.py smollm2-135m --steps 50

Builds one synthetic run on MODEL ("tiny": a generated Q4_1 model): real QES updates with the
default sigma, alpha and pairs, and random coefficients (the replay's cost does not depend on
where the rewards came from), each step logged with its weight hash as the trainer logs it. At
each length N it writes a checkpoint and times, side by side in this process:
  resume   rebuild_run to step N from the newest checkpoint, and from the base (full replay)
  export   export_gguf of step N, both ways (same bytes: checked)
  save     one checkpoint write, its size against the trainable bytes
Prints one JSON object per N (and a table); measure nothing else on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgees.fileio import sha256_file
from edgees.gguf.working_copy import WorkingCopy
from edgees.qes.algorithm import QESConfig, pair_seeds
from edgees.qes.records import StepSpec
from edgees.qes.state import WeightState
from edgees.run import checkpoint
from edgees.run.export import export_gguf
from edgees.run.log import RunDir, StepRecord
from edgees.run.rebuild import rebuild_run
from edgees.run.trainer import make_header


def _model(name: str, d: Path) -> Path:
    if name == "tiny":
        from edgees.gguf.tiny import make_tiny_model
        return make_tiny_model(d / "tiny-Q4_1.gguf", "Q4_1", seed=0)
    from edgees.models import resolve_model
    return resolve_model(name)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help='"tiny" or a registry name / .gguf path')
    p.add_argument("--steps", default="20,200,2000", help="log lengths to measure at (ascending)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="only the JSON lines")
    args = p.parse_args()
    lengths = sorted(int(s) for s in args.steps.split(","))
    d = Path(tempfile.mkdtemp(prefix="edgees-bench-ckpt-"))
    os.environ.setdefault("EDGEES_WORKDIR", str(d / "work"))
    model = _model(args.model, d)
    cfg = QESConfig()
    run_path = d / "run"
    base_sha = sha256_file(model)
    rng = np.random.default_rng(0)
    rows = []
    with WorkingCopy(model) as wc, RunDir(run_path, write=True) as run:
        state = WeightState(wc, ef=cfg.ef, window=cfg.window, gamma=cfg.gamma, threads=args.threads)
        run.write_header(make_header(model, base_sha, "synthetic", {}, cfg, state))
        trainable = sum(s.view.nbytes for s in state.slots)
        records, update_s = [], []
        for n in lengths:
            while len(records) < n:
                t = len(records)
                seeds = pair_seeds(cfg.seed, t, cfg.pairs)
                coefs = tuple(float(a) for a in np.clip(rng.standard_normal(cfg.pairs), -3, 3))
                _, dt = _timed(lambda: state.apply(StepSpec(seeds, coefs, cfg.alpha, cfg.sigma)))
                update_s.append(dt)
                rec = StepRecord(t, list(seeds), [0.0] * cfg.pairs, [0.0] * cfg.pairs, list(coefs),
                                 cfg.sigma, cfg.alpha, state.sha256())
                run.append_step(rec)
                records.append(rec)
                if not args.json and (t + 1) % 10 == 0:
                    print(f"  logged {t + 1}/{n} steps", file=sys.stderr, flush=True)
            path, save_s = _timed(lambda: checkpoint.save(run_path, state, model, base_sha, records, keep=1))
            row = {"model": args.model, "steps": n, "trainable_bytes": trainable,
                   "checkpoint_bytes": path.stat().st_size, "save_s": save_s,
                   "update_s_mean": float(np.mean(update_s))}
            for way, use in (("checkpoint", True), ("replay", False)):
                def resume():
                    with rebuild_run(run_path, checkpoints=use, threads=args.threads) as r:
                        return r.checkpoint_step
                start, row[f"resume_{way}_s"] = _timed(resume)
                assert start == (n if use else 0)
                res, row[f"export_{way}_s"] = _timed(lambda: export_gguf(
                    run_path, d / f"{way}.gguf", force=True, threads=args.threads, checkpoints=use))
                row[f"export_{way}_sha256"] = res["sha256"]
            assert row["export_checkpoint_sha256"] == row["export_replay_sha256"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"\n{'steps':>6} {'resume ckpt':>12} {'resume replay':>14} {'export ckpt':>12} "
              f"{'export replay':>14} {'ckpt / trainable':>17} {'save':>7}")
        for r in rows:
            print(f"{r['steps']:>6} {r['resume_checkpoint_s']:>11.2f}s {r['resume_replay_s']:>13.2f}s "
                  f"{r['export_checkpoint_s']:>11.2f}s {r['export_replay_s']:>13.2f}s "
                  f"{r['checkpoint_bytes'] / r['trainable_bytes']:>16.3f}x {r['save_s']:>6.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
