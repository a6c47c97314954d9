"""`edgees probe MODEL --task T`: is there a signal for ES on this task, and at which sigma?

Scores the base model and N random members (the perturbations a training step evaluates) at a few
sigmas on a fixed set of training prompts; prints the spread of member rewards against the base, the
best-of-N curve and a recommended --sigma for `edgees finetune` (logic: edgees/run/probe.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from edgees.commands import positive_int

EPILOG = """\
examples:
  edgees probe smollm2-135m --task arithmetic
  edgees probe smollm2-135m --task arithmetic --task-opt reward=likelihood --n-members 16 --prompts 8
  edgees probe model.gguf --task jsonl:data.jsonl --sigmas 0.01,0.02 --json

How to read it: the base row is the model as it is; each sigma row has the members' mean reward and
its difference from the base, their std/min/max, how many antithetic pairs (+s, -s) score
differently (an ES step is built from those differences), and best-of-k for k = 1, 2, 4, ..., N
(the best member among the first k; it saturates around N = 30-40).
{rule}
"""


def register(sub) -> None:
    import textwrap

    from edgees.run.probe import RULE
    rule = textwrap.fill(f"Recommended sigma (marked *): {RULE}. \"No signal\" means the base and every member "
                         "scored the same: shape the reward or use --task-opt reward=likelihood before spending "
                         "an hour on a run.", 100)
    p = sub.add_parser("probe", help="is there an ES signal on a task, and at which sigma? (minutes)",
                       description=__doc__, epilog=EPILOG.format(rule=rule),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="registry name (edgees models ls) or path to a .gguf")
    p.add_argument("--task", required=True, help="task name or spec (edgees tasks ls)")
    p.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE", help="task option (repeatable)")
    p.add_argument("--n-members", type=int, default=32, metavar="N",
                   help="members per sigma, an even number: N/2 antithetic pairs as in training (default 32)")
    p.add_argument("--sigmas", default="0.005,0.01,0.02,0.04", metavar="S1,S2,...",
                   help="noise scales to try, in 4-bit code steps like finetune's --sigma "
                   "(default 0.005,0.01,0.02,0.04)")
    p.add_argument("--prompts", type=int, default=16, metavar="P",
                   help="training prompts every member is scored on: the first P of the train split (default 16)")
    p.add_argument("--seed", type=int, default=1, help="member seeds: those of step 1 of a run with this --seed")
    p.add_argument("--threads", type=positive_int, default=None, help="compute threads (default: all CPUs)")
    p.add_argument("--batch", type=positive_int, default=32, help="sequences decoded together (default 32)")
    p.add_argument("--tensors", default="", metavar="GLOBS",
                   help="probe noise on these tensors only, as finetune --tensors (default: every trainable tensor)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (the whole report)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _sigmas(text: str) -> list[float]:
    from edgees.errors import EdgeesError
    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise EdgeesError(f"--sigmas {text!r} is not a list of numbers; write e.g. --sigmas 0.005,0.01,0.02") from None


def run(args) -> int:
    from edgees.models import resolve_model
    from edgees.run.probe import check_probe_args, probe
    from edgees.tasks.base import get_task, parse_options

    sigmas = _sigmas(args.sigmas)
    check_probe_args(sigmas, args.n_members, args.prompts)  # bad input: one line before any loading
    task = get_task(args.task, **parse_options(args.task_opt))
    path = resolve_model(args.model)
    progress, close = _bar(args.quiet or args.json)
    try:
        report = probe(path, task, sigmas=sigmas, n_members=args.n_members, n_prompts=args.prompts,
                       seed=args.seed, threads=args.threads, batch=args.batch, tensors=args.tensors,
                       progress=progress)
    finally:
        close()
    report["model"] = args.model
    if args.json:
        print(json.dumps(report))
        return 0
    _print(report)
    return 0


def _bar(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm
    bar = None

    def update(done: int, total: int, sigma) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="member", desc="probe", file=sys.stderr, dynamic_ncols=True)
        bar.set_description("base" if sigma is None else f"sigma {sigma:g}")
        bar.update(done - bar.n)

    return update, lambda: bar is not None and bar.close()


def _print(r: dict) -> None:
    print(f"{r['model']}  {r['task']} (reward={r['reward_mode']})  {r['prompts']} prompts, "
          f"{r['n_members']} members per sigma, seed {r['seed']}  ({r['seconds'] / 60:.1f} min)")
    if r.get("tensors"):
        print(f"noise on {r['n_weights']:,} weights: the tensors matching {r['tensors']}")
    print(f"base reward {r['base_reward']:.4f}")
    ks = [b["k"] for b in r["per_sigma"][0]["best_of_n"]]
    print(f"{'sigma':>8} {'mean':>8} {'vs base':>8} {'std':>7} {'min':>8} {'max':>8} {'pairs':>6}  "
          f"best of {'/'.join(map(str, ks))}")
    for row in r["per_sigma"]:
        mark = "*" if row["sigma"] == r["recommended_sigma"] else " "
        best = " ".join(f"{b['best']:.3f}" for b in row["best_of_n"])
        print(f"{mark}{row['sigma']:>7g} {row['mean']:>8.4f} {row['mean_minus_base']:>+8.4f} {row['std']:>7.4f} "
              f"{row['min']:>8.4f} {row['max']:>8.4f} {row['pairs_differ']:>3}/{row['pairs']:<2}  {best}")
    print(("recommended: " if r["recommended_sigma"] is not None else "") + r["advice"])
