"""`edgees export RUN_DIR -o OUT.gguf [--step N] [--to ollama:NAME | lmstudio[:P/M] | llama-server:URL]`:
the adapted model as a GGUF any llama.cpp loads, optionally published to Ollama, LM Studio or a
router-mode llama-server (edgees/stores/publish.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgees.commands import progress_bar
from edgees.run.best import Best, best_step

EXAMPLES = """\
examples:
  edgees export runs/demo -o adapted.gguf
  edgees export runs/demo -o step20.gguf --step 20
  edgees export runs/demo -o best.gguf --step best       the step with the best held-out score
  edgees export runs/demo -o adapted.gguf --model ~/models/base.gguf    base moved since the run
  edgees export runs/demo -o adapted.gguf --to ollama:adapted            then: ollama run adapted
  edgees export runs/demo -o adapted.gguf --to lmstudio:me/adapted       into LM Studio's models dir
  edgees export runs/demo -o ~/gguf/adapted.gguf --to llama-server:http://127.0.0.1:8080

The weights are rebuilt from the base model (run.json names it; checked by sha256) and the step
log; OUT has the base's tensors, types, shapes and order, only the trained weight bytes changed,
plus edgees.base_sha256 / edgees.step / edgees.log_sha256 / edgees.version metadata. Two exports
of one run are byte-identical. OUT is written atomically; an existing OUT needs --force.

--to ollama:NAME writes OUT.Modelfile beside OUT (FROM OUT; when the base came from an Ollama store,
its TEMPLATE, SYSTEM and PARAMETER lines too) and runs `ollama create NAME -f OUT.Modelfile` if ollama
is on PATH, else prints that command; Ollama copies the GGUF into its own store. --to lmstudio places
OUT in LM Studio's models dir as PUBLISHER/MODEL/<OUT's name> (default edgees/<OUT's stem>), as a hard
link or a copy, never a move; with lms on PATH it also prints the `lms import --copy` command that does
the same. --to llama-server:URL puts OUT in the server's --models-dir (give it
with --models-dir DIR, else OUT's own dir is taken to be it; a hard link or a copy) and asks a
router-mode llama-server (started without -m) to rescan it: GET URL/models?reload=1.
"""


def register(sub) -> None:
    p = sub.add_parser("export", help="write a run's adapted model as a GGUF",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="the run directory (edgees finetune --run)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf", help="file to write")
    p.add_argument("--step", type=step_arg, default=None, metavar="N|best|last",
                   help="export the weights after N steps; best: the step with the best held-out score "
                   "on the task's primary metric (what finetune --export writes); default: the last "
                   "logged step")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="the base model, if not where run.json says (checked by sha256)")
    p.add_argument("--to", default=None, metavar="TARGET",
                   help="publish OUT: ollama:NAME, lmstudio[:PUBLISHER/MODEL] or llama-server:URL (see below)")
    p.add_argument("--models-dir", default=None, metavar="DIR",
                   help="with --to llama-server: the server's --models-dir (default: OUT's dir)")
    p.add_argument("--force", action="store_true", help="replace OUT (and the --to target's file) if it exists")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def step_arg(text: str):
    if text in ("best", "last"):
        return text
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a step number (0 or more), best or last")
    return n


def run(args) -> int:
    from edgees.run.export import export_gguf
    from edgees.stores import publish

    model = None
    if args.model is not None:
        from edgees.models import resolve_model
        model = resolve_model(args.model)
    target = None
    models_dir = Path(args.models_dir).expanduser() if args.models_dir else None
    if models_dir is not None and (args.to is None or not args.to.startswith("llama-server:")):
        from edgees.errors import EdgeesError
        raise EdgeesError("--models-dir goes with --to llama-server:URL; drop it or add that target")
    if args.to is not None:  # checked before the rebuild: a bad target fails at once
        target = publish.parse_target(args.to, Path(args.output))
        publish.check_target(*target, Path(args.output), args.force, models_dir)
    update, close = progress_bar("rebuilding", args.json)
    try:
        res = export_gguf(args.run, args.output, step=args.step, model=model, force=args.force,
                          progress=update)
    finally:
        close()
    for line in res.pop("warnings"):
        print(f"edgees: warning: {line}", file=sys.stderr)
    if target is not None:
        res["published"] = publish.publish_to(*target, Path(res["out"]), Path(res["base_model"]), args.force,
                                              models_dir, res["base_name"])
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    note = " (log has a torn tail: the step in flight was lost)" if res["torn"] else ""
    if res["from_checkpoint"]:
        note += f" (from the checkpoint of step {res['from_checkpoint']})"
    print(f"wrote {res['out']}: step {res['step']}/{res['steps_logged']} of {args.run}, "
          f"{res['bytes']} bytes, sha256 {res['sha256'][:16]}...{note}")
    if res["best"] is not None:
        print(f"  the best held-out step: {Best(**res['best']).describe()}")
    elif args.step is None:
        print_best_hint(Path(args.run), res["step"])
    if target is not None:
        print_published(res["published"])
    return 0


def print_best_hint(run: Path, step: int) -> None:
    """Say when the run's best held-out step is not the one just written."""
    from edgees.run.log import RunDir
    best = best_step(RunDir(run).read_metrics(), step)
    if best is not None and best.step != step:
        print(f"  note: the best held-out step is {best.describe()}; --step best writes it")


def describe_carried(pub: dict) -> str:
    """What an Ollama Modelfile took from the base, in words."""
    base, what = pub["from_ollama_base"], pub.get("carried") or []
    if base is None:
        return "FROM the GGUF alone (the base did not come from an Ollama store: Ollama reads the GGUF's template)"
    if not what:
        return f"FROM the GGUF alone ({base} has no TEMPLATE, SYSTEM or PARAMETER to carry)"
    listed = what[0] if len(what) == 1 else ", ".join(what[:-1]) + " and " + what[-1]
    return f"FROM the GGUF, with {base}'s {listed}"


def print_published(pub: dict) -> None:
    if "modelfile" in pub:
        print(f"wrote {pub['modelfile']}: {describe_carried(pub)}")
        name = pub["target"].removeprefix("ollama:")
        if pub["ran"]:
            print(f"ran: {pub['command']} ({pub.get('output') or 'ok'}); Ollama copied the GGUF into its own "
                  f"store; chat with it: ollama run {name}")
        else:
            print(f"ollama is not on PATH; to load it into Ollama (which copies the GGUF into its own store), run:\n"
                  f"  {pub['command']}")
    elif pub["target"].startswith("llama-server:"):
        url = pub["target"].removeprefix("llama-server:")
        where = "" if pub["how"] == "in place" else f" ({pub['how']} of the exported file)"
        if pub.get("model"):
            print(f"placed {pub['path']}{where}; {url} rescanned its models dir and lists it as {pub['model']!r}")
        else:
            print(f"placed {pub['path']}{where}; {url} rescanned its models dir ({pub['models']} models listed, "
                  f"not this file: is {Path(pub['path']).parent} its --models-dir?)")
    else:
        print(f"placed in LM Studio as {pub['name']} ({pub['how']} of the exported file: {pub['path']})")
        if pub.get("hint"):
            print(f"  the same with LM Studio's CLI: {pub['hint']}")
