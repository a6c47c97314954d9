"""`edgees finetune MODEL --task TASK --run DIR`: adapt a model with QES, resumable, with progress."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import fields

from edgees.qes import algorithm as qes
from edgees.commands import positive_int

EXAMPLES = """\
examples:
  edgees finetune smollm2-135m --task arithmetic --run runs/arith
  edgees finetune smollm2-135m --task arithmetic --run runs/arith --resume --steps 80
  edgees finetune model.gguf --task jsonl:data.jsonl --task-opt match=numeric --run runs/mine

The run dir holds the config, an append-only step log (seeds, rewards, coefficients, weight hash),
metrics.jsonl and curve.png; never the weights (window/ caches the replay window while the run is
going, and is deleted at its end). Ctrl-C stops at the next member boundary with the
log intact; --resume continues. `edgees export DIR -o out.gguf` writes the adapted model.
"""


def register(sub) -> None:
    p = sub.add_parser("finetune", help="adapt a model to a task with QES (resumable)",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="registry name (edgees models ls) or path to a .gguf")
    p.add_argument("--task", required=True, help="task name or spec (edgees tasks ls)")
    p.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE", help="task option (repeatable)")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory (created; reused with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in DIR (same model and config)")
    for f in fields(qes.QESConfig):  # one flag per config field, help text from the field
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", default=None, help=f.metadata["help"])
        else:
            p.add_argument(flag, type=type(f.default), default=None, metavar=f.name[0].upper(),
                           help=f"{f.metadata['help']} (default {f.default})")
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget: start no new step after this many minutes (resume continues)")
    p.add_argument("--threads", type=positive_int, default=None, help="threads for llama.cpp and the kernels")
    p.add_argument("--n-seq", type=positive_int, default=32, help="most sequences decoded together (default 32)")
    p.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _config(args, previous: dict | None) -> qes.QESConfig:
    values = dict(previous or {})
    for f in fields(qes.QESConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    known = {f.name for f in fields(qes.QESConfig)}
    return qes.QESConfig(**{k: v for k, v in values.items() if k in known})


def run(args) -> int:
    from pathlib import Path

    from edgees.engine.engine import Engine
    from edgees.models import resolve_model
    from edgees.run.plot import write_curve
    from edgees.run.log import RunDir
    from edgees.tasks.base import get_task, parse_options
    from edgees.run.trainer import Trainer

    model = resolve_model(args.model)
    options = parse_options(args.task_opt)
    task = get_task(args.task, **options)
    previous = None
    if args.resume and (Path(args.run) / "run.json").exists():
        previous = RunDir(args.run).read_header()["config"]
    cfg = _config(args, previous)

    bar = None
    total_members = 2 * cfg.pairs

    def on_event(kind: str, data: dict) -> None:
        nonlocal bar
        if args.quiet:
            return
        if kind == "status":
            print(f"edgees: {data['msg']}", file=sys.stderr)
        elif kind == "heldout":
            keys = ", ".join(f"{k} {v:.3f}" for k, v in data.items() if k not in ("step", "seconds", "n"))
            print(f"edgees: held-out at step {data['step']}: {keys}", file=sys.stderr)
        elif kind == "member":
            if bar is None:
                from tqdm import tqdm
                bar = tqdm(total=(cfg.steps - data["step"]) * total_members, unit="member",
                           file=sys.stderr, dynamic_ncols=True)
            bar.update(1)
            bar.set_description(f"step {data['step'] + 1}/{cfg.steps}")
        elif kind == "step" and bar is not None:
            post = {"reward": f"{data['reward_mean']:.3f}", "moved": data["changed"]}
            if "heldout" in data:
                h = data["heldout"]
                post.update({k: f"{h[k]:.2f}" for k in ("strict", "lenient", "accuracy") if k in h})
            bar.set_postfix(post)

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    trainer = Trainer(model, task, args.task, args.run, cfg, resume=args.resume,
                      task_options=options, on_event=on_event, threads=args.threads,
                      engine_factory=lambda path: Engine(path, n_threads=args.threads, n_seq=args.n_seq,
                                                         max_tokens=task.max_tokens))
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = trainer.run_steps(should_stop=lambda: stop["flag"], minutes=args.minutes)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if bar is not None:
            bar.close()
        trainer.close()
    curve = write_curve(Path(args.run))
    summary["curve"] = str(curve) if curve else None
    if args.json:
        print(json.dumps(summary))
    else:
        state = "stopped (resume with --resume)" if summary["stopped"] else "done"
        print(f"{state}: {summary['steps_done']}/{summary['steps']} steps in {summary['run']}")
        if summary["first_heldout"] and summary["last_heldout"]:
            (s0, m0), (s1, m1) = summary["first_heldout"], summary["last_heldout"]
            for k in m0:
                if k in m1 and k not in ("seconds", "n"):
                    print(f"  held-out {k}: {m0[k]:.3f} (step {s0}) -> {m1[k]:.3f} (step {s1})")
        if curve:
            print(f"  learning curve: {curve}")
    return 130 if summary["stopped"] else 0
