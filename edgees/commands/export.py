"""`edgees export RUN_DIR -o OUT.gguf [--step N]`: the adapted model as a GGUF any llama.cpp loads."""

from __future__ import annotations

import argparse
import json
import sys

from edgees.commands import progress_bar

EXAMPLES = """\
examples:
  edgees export runs/demo -o adapted.gguf
  edgees export runs/demo -o step20.gguf --step 20
  edgees export runs/demo -o adapted.gguf --model ~/models/base.gguf    base moved since the run

The weights are rebuilt from the base model (run.json names it; checked by sha256) and the step
log; OUT has the base's tensors, types, shapes and order, only the trained weight bytes changed,
plus edgees.base_sha256 / edgees.step / edgees.log_sha256 / edgees.version metadata. Two exports
of one run are byte-identical. OUT is written atomically; an existing OUT needs --force.
"""


def register(sub) -> None:
    p = sub.add_parser("export", help="write a run's adapted model as a GGUF",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="the run directory (edgees finetune --run)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf", help="file to write")
    p.add_argument("--step", type=int, default=None, metavar="N",
                   help="export the weights after N steps (default: the last logged step)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="the base model, if not where run.json says (checked by sha256)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgees.run.export import export_gguf

    model = None
    if args.model is not None:
        from edgees.models import resolve_model
        model = resolve_model(args.model)
    update, close = progress_bar("rebuilding", args.json)
    try:
        res = export_gguf(args.run, args.output, step=args.step, model=model, force=args.force,
                          progress=update)
    finally:
        close()
    for line in res.pop("warnings"):
        print(f"edgees: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    note = " (log has a torn tail: the step in flight was lost)" if res["torn"] else ""
    if res["from_checkpoint"]:
        note += f" (from the checkpoint of step {res['from_checkpoint']})"
    print(f"wrote {res['out']}: step {res['step']}/{res['steps_logged']} of {args.run}, "
          f"{res['bytes']} bytes, sha256 {res['sha256'][:16]}...{note}")
    return 0
