"""`edgees pack RUN -o NAME.edgees` / `edgees unpack NAME.edgees --base MODEL -o OUT.gguf`: an
adaptation shared as a file of kilobytes, rebuilt bit-exactly on another machine from the base model.
The format (a zip of the run's header, step log and metrics, no weights) and its checks live in
edgees/run/pack.py; this module is the command line."""

from __future__ import annotations

import argparse
import json
import sys

from edgees.commands import progress_bar

PACK_EXAMPLES = """\
examples:
  edgees pack runs/demo -o demo.edgees
  edgees unpack demo.edgees --base smollm2-135m -o adapted.gguf

The pack holds the run's header, step log and metrics and the base model's sha256; no weights. On
any machine with the same base file, `edgees unpack` rebuilds the exact GGUF `edgees export` writes.
"""
UNPACK_EXAMPLES = """\
examples:
  edgees unpack demo.edgees --base smollm2-135m -o adapted.gguf
  edgees unpack demo.edgees --base ollama:llama3.2:1b -o adapted.gguf --step 20
  edgees unpack demo.edgees --base ~/models/base.gguf -o adapted.gguf --force

--base is any MODEL (registry name, path, ollama:/lmstudio:/hf: name); its sha256 must be the one
the pack names. The weights are replayed from the base step by step (a few seconds a step on
SmolLM2-135M); OUT is written atomically, and an existing OUT needs --force.
"""


def register(sub) -> None:
    p = sub.add_parser("pack", help="write a run as a small shareable file (no weights)",
                       description="Write a run's header, step log and metrics, with its base model's "
                       "sha256, into one small file; `edgees unpack` rebuilds the adapted GGUF from it.",
                       epilog=PACK_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="the run directory (edgees finetune --run)")
    p.add_argument("-o", "--output", required=True, metavar="NAME.edgees", help="file to write")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run_pack)
    u = sub.add_parser("unpack", help="rebuild the adapted GGUF from a pack and its base model",
                       description="Check the base model against the pack's sha256 and rebuild the "
                       "adapted GGUF bit-exactly, as `edgees export` of the original run writes it.",
                       epilog=UNPACK_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    u.add_argument("pack", metavar="NAME.edgees", help="a file written by `edgees pack`")
    u.add_argument("--base", required=True, metavar="MODEL", help="the base model the run was made on")
    u.add_argument("-o", "--output", required=True, metavar="OUT.gguf", help="file to write")
    u.add_argument("--step", type=int, default=None, metavar="N",
                   help="the weights after N steps (default: the last step in the pack)")
    u.add_argument("--force", action="store_true", help="replace OUT if it exists")
    u.add_argument("--json", action="store_true", help="print the result as one JSON object")
    u.set_defaults(func=run_unpack)


# ---- commands ---------------------------------------------------------------------------------

def run_pack(args) -> int:
    from edgees.run.pack import write_pack

    res = write_pack(args.run, args.output, force=args.force)
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    size = f" ({res['base_size'] / 2**20:.1f} MiB)" if res["base_size"] else ""
    print(f"wrote {res['out']}: {res['steps']} steps, {res['bytes'] / 1024:.1f} KiB, no weights; base "
          f"{res['base_file']}{size}, sha256 {res['base_sha256']}")
    print(f"rebuild it with: edgees unpack {res['out']} --base {res['base_file']} -o adapted.gguf")
    return 0


def run_unpack(args) -> int:
    from edgees.models import resolve_model
    from edgees.run.pack import unpack

    base = resolve_model(args.base)
    update, close = progress_bar("rebuilding", args.json)
    try:
        res = unpack(args.pack, base, args.output, step=args.step, force=args.force, progress=update)
    finally:
        close()
    for line in res.pop("warnings"):
        print(f"edgees: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    print(f"wrote {res['out']}: step {res['step']}/{res['steps_logged']} of {args.pack}, {res['bytes']} bytes, "
          f"sha256 {res['sha256'][:16]}...")
    return 0
