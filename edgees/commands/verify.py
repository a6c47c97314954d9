"""`edgees verify RUN_DIR`: rebuild a run's weights from base + log and check every logged hash."""

from __future__ import annotations

import argparse
import json
import sys
import time

from edgees.commands import progress_bar

EXAMPLES = """\
examples:
  edgees verify runs/demo
  edgees verify runs/demo --model ~/models/base.gguf     base moved since the run
  edgees verify runs/demo --from-checkpoint              fast: replay only the steps after the newest checkpoint

Checks, in order: the base file's sha256 against run.json (a different file is refused), every
step record's checksum (a damaged line is reported by number), then replays the steps from the base
weights and compares the weight hash after each with the one logged. A torn last record (a crash
mid-append) is reported and dropped: it held the step in flight, and the steps before it verify.
Exit 0 when every step verifies. By default the replay starts from the base file, independent of
any checkpoint; --from-checkpoint starts from the newest checkpoint that matches the log (and says
which) and checks the steps after it.
"""

TORN = "torn tail dropped (step in flight lost)"


def register(sub) -> None:
    p = sub.add_parser("verify", help="check a run: rebuild its weights from base + log",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="the run directory (edgees finetune --run)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="the base model, if not where run.json says (checked by sha256)")
    p.add_argument("--from-checkpoint", action="store_true",
                   help="start from the newest matching checkpoint instead of the base (fast)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgees.errors import RunError
    from edgees.run.rebuild import rebuild_run

    model = None
    if args.model is not None:
        from edgees.models import resolve_model
        model = resolve_model(args.model)
    update, close = progress_bar("verifying", args.json)
    t0 = time.perf_counter()
    try:
        with rebuild_run(args.run, model, check="all", progress=update,
                         checkpoints=args.from_checkpoint) as r:
            weights = r.state.sha256()
    except RunError as exc:
        raise RunError(f"verify {args.run}: {exc}") from None
    finally:
        close()
    res = {"run": str(args.run), "ok": True, "steps": r.step, "torn": r.torn,
           "base_model": str(r.base_path), "base_sha256": r.header["base_sha256"],
           "weights_sha256": weights, "from_checkpoint": r.checkpoint_step,
           "seconds": round(time.perf_counter() - t0, 3)}
    for line in r.warnings:
        print(f"edgees: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    if r.torn:
        print(f"{args.run}: {TORN}")
    if r.checkpoint_step:
        print(f"OK: the checkpoint of step {r.checkpoint_step} and the {r.step - r.checkpoint_step} steps after it "
              f"verified in {args.run} (weights sha256 {weights[:16]}...)")
    else:
        print(f"OK: {r.step} steps verified in {args.run} against {r.base_path} "
              f"(weights sha256 {weights[:16]}...)")
    return 0
