"""`edgees finetune MODEL --task TASK --run DIR`: adapt a model with QES, resumable, with progress."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path

from edgees.commands import add_run_options, given, positive_int, progress_bar
from edgees.qes import algorithm as qes
from edgees.run.config import RunOptions
from edgees.run.events import TrainerEvents

EXAMPLES = """\
examples:
  edgees finetune smollm2-135m --task arithmetic --run runs/arith
  edgees finetune smollm2-135m --task arithmetic --run runs/arith --resume --steps 80
  edgees finetune model.gguf --task jsonl:data.jsonl --task-opt match=numeric --run runs/mine
  edgees finetune smollm2-135m --config arith.toml --run runs/arith --dry-run

A --config file is flat TOML, one `key = value` per setting, the task's options in a table last:
  task = "arithmetic"
  steps = 80
  sigma = 0.01
  [task_opt]
  max_tokens = 16
Precedence: a flag given here > the config file > the run's run.json on --resume > the defaults.
--dry-run prints the settings so resolved (as a config file, each line saying where its value came
from) and exits, loading no model and writing nothing.

Scale-out (pip install 'edgees[ray]'): --executor ray evaluates each step's members on Ray worker
processes, each with its own copy of the model; only seeds, rewards and hashes cross the wire, and
the log is the one the local executor writes (at the same threads per evaluating process), so a
run may be resumed with either. Without --address a private local Ray is started on 127.0.0.1.
Over several machines (same edgees and task files on each; the base model is shipped to a machine
that lacks it at the same path):
  ray start --head --node-ip-address 10.0.0.5 --port 6379    # on one machine (a private address)
  ray start --address 10.0.0.5:6379                          # on each of the others
  edgees finetune smollm2-135m --task arithmetic --run runs/big --executor ray --address 10.0.0.5:6379
A `ray start` cluster runs without authentication unless told otherwise (Ray 2.60): anyone who
reaches its ports runs code on every machine. Keep them on a private network behind a firewall, never
exposed to the internet, and set RAY_AUTH_MODE=token on every machine before `ray start` and for
edgees itself (Ray 2.52+; the token from `ray get-auth-token --generate`, copied to each machine).

The run dir holds the config, an append-only step log (seeds, rewards, coefficients, weight hash),
metrics.jsonl and curve.png; never the weights (window/ caches the replay window while the run is
going, and is deleted at its end). Ctrl-C stops at the next member boundary with the
log intact; --resume continues. `edgees export DIR -o out.gguf` writes the adapted model (--step
best: the best held-out step, what --export writes).
"""

UNTIL_BUDGET = 10**9  # the step limit of `--minutes M` without --steps: the time budget ends the run


def of_steps(steps: int) -> str:
    """What follows a step number: "/T", or nothing when the run goes until its time budget."""
    return "" if steps >= UNTIL_BUDGET else f"/{steps}"


RUN_OPTIONS = ("task", "task_opt", "threads", "batch", "minutes", "executor", "address", "workers",
               "threads_per_worker")


def register(sub) -> None:
    p = sub.add_parser("finetune", help="adapt a model to a task with QES (resumable)",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="registry name (edgees models ls) or path to a .gguf")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory (created; reused with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in DIR (same model and config)")
    add_run_options(p)
    p.add_argument("--n-seq", dest="n_seq", type=positive_int, default=None, help=argparse.SUPPRESS)  # now --batch
    for f in fields(qes.QESConfig):  # one flag per config field, help text from the field
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", default=None, help=f.metadata["help"])
        else:
            shown = "" if f.default in (None, "") or f.metadata.get("default_in_help") else f" (default {f.default})"
            p.add_argument(flag, type=qes.QESConfig.kind(f.name), default=None,
                           metavar=f.metadata.get("metavar", f.name[0].upper()), help=f"{f.metadata['help']}{shown}")
    p.add_argument("--minutes", type=float, default=None, help=RunOptions.help("minutes"))
    p.add_argument("--executor", choices=("local", "ray"), default=None, help=RunOptions.help("executor"))
    p.add_argument("--address", default=None, metavar="ADDR", help=RunOptions.help("address"))
    p.add_argument("--workers", type=positive_int, default=None, metavar="N", help=RunOptions.help("workers"))
    p.add_argument("--threads-per-worker", dest="threads_per_worker", type=positive_int, default=None, metavar="T",
                   help=RunOptions.help("threads_per_worker"))
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved settings and exit: no model loaded, nothing written")
    p.add_argument("--json", action="store_true",
                   help="print the final summary (or --dry-run's settings) as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--export", metavar="OUT.gguf", default=None,
                   help="at the end of the run, write the adapted model here: the step with the best held-out "
                   "score on the task's primary metric (from its checkpoint, or the live weights when it is "
                   "the last step: no replay)")
    p.add_argument("--export-step", choices=("best", "last"), default="best",
                   help="with --export: best (default) or the last step (held-out scores can fall back late in "
                   "a run: docs/results/arithmetic-default-hour.md)")
    p.add_argument("--force", action="store_true", help="with --export: replace OUT if it exists")
    p.set_defaults(func=run)


def resolve_args(args):
    """(model path, Resolved settings, the run's header or None, the task), after every check a run
    makes that needs no model load: an existing run without --resume, a resume that changes a
    fixed field or the task, a task or task option that does not exist, a setting out of range."""
    from edgees.models import resolve_model
    from edgees.run.config import for_task, resolve
    from edgees.run.log import RunDir
    from edgees.run.trainer import check_resume_config, check_run_dir
    from edgees.tasks.base import get_task

    if args.n_seq is not None:
        print("edgees: warning: --n-seq is now --batch", file=sys.stderr)
        args.batch = args.batch or args.n_seq
    header = RunDir(args.run).read_header() if check_run_dir(args.run, args.resume) else None
    res = resolve(given(args, [f.name for f in fields(qes.QESConfig)] + list(RUN_OPTIONS)), args.config, header)
    model = resolve_model(args.model)
    task = get_task(res.opts.task, **res.opts.task_opt)
    res = for_task(res, task.reward_mode)
    if header is not None:
        check_resume_config(header, res.cfg, res.opts.task)
    if res.cfg.tensors:  # a glob that matches nothing is refused before the run dir is made
        from edgees.gguf.reader import read_gguf
        from edgees.qes.trainable import trainable_tensors
        trainable_tensors(read_gguf(model), res.cfg.include_embeddings, res.cfg.tensors)
    if res.cfg.alpha_floor > 0 and res.cfg.alpha_decay == 0:
        print("edgees: warning: --alpha-floor does nothing with a constant step size (--alpha-decay 0, the "
              "default for a reward scored on reference answers): add --alpha-decay T", file=sys.stderr)
    if res.opts.minutes and res.sources.get("steps", "default") == "default":
        res = replace(res, cfg=replace(res.cfg, steps=UNTIL_BUDGET))  # --minutes, no --steps: until the budget
    return model, res, header, task


def run(args) -> int:

    from edgees.run.log import RunDir

    model, res, header, task = resolve_args(args)
    if args.dry_run:
        logged = len(RunDir(args.run).read_steps()) if header is not None else None
        return _print_dry_run(args, model, res, logged)

    from edgees.engine.engine import Engine
    from edgees.models import store_name
    from edgees.run.export import check_output
    from edgees.run.plot import curve_unavailable, write_curve
    from edgees.run.trainer import Trainer

    cfg, opts = res.cfg, res.opts
    out = Path(args.export) if args.export else None
    if out is not None:  # refuse a bad -o before an hour of training, not after
        check_output(out, Path(args.run), [Path(model)], args.force)
    progress = Progress(cfg.steps, cfg.pairs, args.quiet, task)
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    executor = _executor(opts, task)  # Ray, if asked for, is up and checked before the run dir is touched
    try:
        trainer = Trainer(model, task, opts.task, args.run, cfg, resume=args.resume,
                          task_options=opts.task_opt, events=progress, threads=opts.threads, executor=executor,
                          model_name=store_name(args.model),
                          engine_factory=lambda path: Engine(path, n_threads=opts.threads, n_seq=opts.batch,
                                                             max_tokens=task.max_tokens))
    except BaseException:
        if executor is not None:
            executor.close()
        raise
    # after ray.init, which installs its own SIGTERM handler: ours stop at a member boundary
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = trainer.run_steps(should_stop=lambda: stop["flag"], minutes=opts.minutes)
        summary["primary_metric"] = task.primary
        best = trainer.best
        summary["best"] = None if best is None else asdict(best)
        live = args.export_step == "last" or best is None or best.step == summary["steps_done"]
        if out is not None and not summary["stopped"] and live:
            check_output(out, Path(args.run), [Path(model)], args.force)
            summary["export"] = trainer.export(out)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        progress.close()
        trainer.close()
    if out is not None and not summary["stopped"] and not live:  # the best step's checkpoint, after the lock is let go
        from edgees.run.export import export_gguf
        summary["export"] = export_gguf(args.run, out, step=best.step, model=model, force=args.force)
        for line in summary["export"].pop("warnings"):
            print(f"edgees: warning: {line}", file=sys.stderr)
    curve = write_curve(Path(args.run))
    summary["curve"] = str(curve) if curve else None
    if curve is None and (why := curve_unavailable()):
        print(f"edgees: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        state = "stopped (resume with --resume)" if summary["stopped"] else "done"
        print(f"{state}: {summary['steps_done']}{of_steps(summary['steps'])} steps in {summary['run']}")
        if summary["first_heldout"] and summary["last_heldout"]:
            (s0, m0), (s1, m1) = summary["first_heldout"], summary["last_heldout"]
            for i, k in enumerate(trainer.task.leading(m0)):
                if k in m1:
                    lead = " (the task's primary metric)" if i == 0 else ""
                    print(f"  held-out {k}: {m0[k]:.3f} (step {s0}) -> {m1[k]:.3f} (step {s1}){lead}")
        if curve:
            print(f"  learning curve: {curve}")
        if "export" in summary:
            e = summary["export"]
            which = f"step {e['step']}"
            if best is not None and e["step"] == best.step:
                which = f"the best held-out {best.describe()}"
            print(f"  adapted model: {e['out']}, {which} ({e['bytes']} bytes, sha256 {e['sha256'][:16]}...)")
        elif best is not None and best.step != summary["steps_done"]:
            print(f"  the best held-out step: {best.describe()}; export it with "
                  f"edgees export {summary['run']} -o OUT.gguf --step best")
    return 130 if summary["stopped"] else 0


def _executor(opts, task):
    """None for the local executor; for ray, a RayExecutor on a cluster that was reached and has the
    CPUs asked for (one-line errors otherwise, before anything is written)."""
    if opts.executor != "ray":
        return None
    from edgees.scale.cluster import connect
    from edgees.scale.executor import RayExecutor
    cluster = connect(opts.address, opts.workers, opts.threads_per_worker)
    return RayExecutor(cluster, batch=opts.batch, max_tokens=task.max_tokens, elastic=opts.workers is None)


def _print_dry_run(args, model, res, logged: int | None) -> int:
    """logged: the steps in the run's log when this resumes a run, None for a new run."""

    from edgees.run.config import to_toml

    if args.json:
        print(json.dumps({"model": args.model, "model_path": str(Path(model).resolve()), "run": args.run,
                          "resume": logged is not None, "steps_logged": logged or 0,
                          "config": asdict(res.cfg), **asdict(res.opts), "sources": res.sources}))
        return 0
    run = "new run" if logged is None else f"resumed: {logged} steps logged"
    print(to_toml(res, ["edgees finetune --dry-run: the resolved settings; nothing was loaded or written",
                        f"model: {args.model} = {Path(model).resolve()}", f"run:   {args.run} ({run})"]), end="")
    return 0


class Progress(TrainerEvents):
    """finetune's view of a run on stderr: status lines, the held-out scores, a bar of members."""

    def __init__(self, steps: int, pairs: int, quiet: bool, task=None):
        self.steps, self.members, self.quiet, self.task = steps, 2 * pairs, quiet, task
        self.bar = None
        # Not a terminal (a log file, nohup, a service's journal): one line a step, not a bar's redraws.
        self.lines = not sys.stderr.isatty()
        self._replay, self._close_replay = progress_bar("replaying", quiet)

    def status(self, msg: str) -> None:
        if not self.quiet:
            print(f"edgees: {msg}", file=sys.stderr)

    def replay(self, done: int, total: int) -> None:
        if self._replay is not None:
            self._replay(done, total)

    def heldout(self, step: int, metrics: dict[str, float]) -> None:
        if not self.quiet:
            lead = self.task.leading(metrics) if self.task is not None else metrics
            shown = ", ".join(f"{k} {v:.3f}" for k, v in lead.items() if k not in ("seconds", "n"))
            print(f"edgees: held-out at step {step}: {shown}", file=sys.stderr)

    def member(self, step: int, member: int, reward: float) -> None:
        if self.quiet or self.lines:
            return
        if self.bar is None:
            from tqdm import tqdm
            self._close_replay()
            total = None if self.steps >= UNTIL_BUDGET else (self.steps - step) * self.members
            self.bar = tqdm(total=total, unit="member", file=sys.stderr,
                            dynamic_ncols=True)
        self.bar.update(1)
        self.bar.set_description(f"step {step + 1}{of_steps(self.steps)}")

    def step(self, row: dict) -> None:
        if self.lines and not self.quiet:
            print(f"edgees: step {row['step']}{of_steps(self.steps)}: reward {row['reward_mean']:.3f}, "
                  f"{row['changed']} codes moved, {row['step_seconds']:.1f} s", file=sys.stderr, flush=True)
        if self.bar is not None:
            post = {"reward": f"{row['reward_mean']:.3f}", "moved": row["changed"]}
            if "heldout" in row:
                h = row["heldout"]
                keys = list(self.task.leading(h))[:2] if self.task is not None else []
                post.update({k: f"{h[k]:.2f}" for k in keys})
            self.bar.set_postfix(post)

    def close(self) -> None:
        self._close_replay()
        if self.bar is not None:
            self.bar.close()
