"""`edgees eval MODEL --task arithmetic [--n N] [--json]`: task metrics and throughput of a model.

The model is loaded from a private working copy (edgees.gguf.working_copy.WorkingCopy), exactly as a
fine-tune would see it, after the live-weight self-check; the user's file is only read.
Examples are the task's held-out split (the first N: the same N on every machine). --config reads a
finetune config file (run/config.py): its task, task_opt, threads and batch, and eval_n as --n, so
that eval scores the held-out prompts a fine-tune of that file reports; its other keys are checked
and not used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from edgees.commands import add_run_options, clip, given, positive_int
from edgees.errors import TaskError
from edgees.models import resolve_model


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="accuracy and throughput of a model on a task's held-out split",
        description="Greedy generation on the first N held-out examples of a task, batched; "
        "prints the task's metrics (arithmetic: strict, lenient, reward) and throughput. --config reads "
        "a finetune config file: eval uses its task, task_opt, threads, batch and eval_n (as --n); its "
        "other keys are checked, not used.")
    p.add_argument("model", metavar="MODEL", help="registry name (see `edgees models ls`) or .gguf path")
    add_run_options(p)
    p.add_argument("--n", type=positive_int, default=None,
                   help="held-out examples (default: the config file's eval_n, else the task's default)")
    p.add_argument("--skip", type=int, default=0, metavar="K",
                   help="leave out the first K held-out examples: a run's own held-out evaluations use the "
                   "first --eval-n of them (50 by default) and pick its best step there, so `--skip 50` "
                   "scores that step on examples the pick never saw")
    p.add_argument("--mem-cap-mb", type=float, default=None,
                   help="bound the context memory of one batch (KV cache + logits)")
    p.add_argument("--samples", type=int, default=0, metavar="K", help="also show the first K completions")
    p.add_argument("--shots", type=int, default=0, metavar="K",
                   help="lead each prompt with K worked examples from the train split (question and "
                   "reference answer; chat tasks as earlier turns): the few-shot baseline to hold a "
                   "fine-tune against (default 0: zero-shot)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from edgees.engine.engine import load_live
    from edgees.gguf.working_copy import WorkingCopy
    from edgees.qes.trainable import trainable_tensors
    from edgees.run.config import resolve
    from edgees.tasks.base import TEACHER_FORCED, get_task
    from edgees.tasks.shots import shot_examples, with_shots

    res = resolve(given(args, ("task", "task_opt", "threads", "batch")), args.config)
    opts = res.opts
    n = args.n if args.n is not None else res.cfg.eval_n if res.sources["eval_n"] == "file" else None
    task = get_task(opts.task, **opts.task_opt)  # bad task: fail before any loading
    shots = shot_examples(task, args.shots)
    if shots:
        task.reference(shots[0])  # no reference answers: the one-line error before loading
    examples = with_shots(task, heldout_slice(task, n, args.skip), shots)  # bad --skip: fail before loading
    path = resolve_model(args.model)
    t_start = time.perf_counter()
    with WorkingCopy(path) as wc:
        first = next(iter(trainable_tensors(wc.info)), None)
        with load_live(wc, first.name if first else None, n_threads=opts.threads, n_seq=opts.batch,
                       max_tokens=task.max_tokens, mem_cap_mb=args.mem_cap_mb, verbose=args.verbose) as engine:
            load_s = time.perf_counter() - t_start
            completions, prompt_tokens, generated, wall = _generate(engine, task, examples, opts.batch, args.json)
            loglik = None
            if task.reward_mode in TEACHER_FORCED:  # the reference's log-likelihood, as finetune reports it
                loglik = sum(task.loglik(engine, examples)) / max(1, len(examples))
    metrics = task.metrics(examples, completions)
    if loglik is not None:
        metrics["loglik"] = loglik
    total_s = time.perf_counter() - t_start
    result = {
        "model": args.model, "path": str(path), "task": opts.task, "n": len(examples), "skip": args.skip,
        "shots": args.shots,
        "metrics": metrics, "primary_metric": task.primary_metric(metrics) if metrics else None, "wall_s": wall, "load_s": load_s, "total_s": total_s,
        "prompt_tokens": prompt_tokens, "generated_tokens": generated,
        "tokens_per_s": (prompt_tokens + generated) / wall if wall > 0 else 0.0,
        "generated_tokens_per_s": generated / wall if wall > 0 else 0.0,
        "threads": engine.n_threads, "batch": opts.batch, "max_tokens": task.max_tokens,
        "chat_template": engine.chat_template_source,
    }
    labels = task.label_report(examples, completions)
    if labels is not None:
        result["labels"] = labels
    if args.samples:
        result["samples"] = [{"prompt": e.prompt, "completion": c}
                             for e, c in zip(examples[:args.samples], completions)]
    if args.json:
        print(json.dumps(result))
        return 0
    shown = "  ".join(f"{k} {_fmt(k, v)}" for k, v in task.leading(metrics).items())
    k = f"  {args.shots}-shot" if args.shots else ""
    skipped = f" (held-out {args.skip}..{args.skip + len(examples) - 1})" if args.skip else ""
    print(f"{args.model}  {opts.task}{k}  n={len(examples)}{skipped}  {shown}")
    print(f"  {len(examples)} prompts in {wall:.1f} s: {generated} generated tokens, "
          f"{result['tokens_per_s']:.0f} tok/s prompt+generated, {result['generated_tokens_per_s']:.1f} "
          f"generated tok/s ({engine.n_threads} threads, batch {opts.batch}; load {load_s:.1f} s)")
    if "labels" in result:
        rows = result["labels"]
        print("  per label, right/held-out (times answered): " + ", ".join(
            f"{r['label']} {r['right']}/{r['n']} ({r['answered']})" for r in rows[:-1])
            + f"; not a label: {rows[-1]['answered']}")
    for s in result.get("samples", []):
        print(f"  {clip(json.dumps(s['prompt']), 80)} -> {s['completion']!r}")
    return 0


def heldout_slice(task, n: int | None, skip: int) -> list:
    """Held-out examples skip .. skip+n-1 (n None: the task's default count)."""
    if skip < 0:
        raise TaskError(f"--skip {skip}: give 0 or more examples to leave out")
    if not skip:
        return task.split(n_heldout=n)[1]
    n = task.default_heldout if n is None else n
    _, heldout = task.split(n_heldout=None if n is None else n + skip)
    if len(heldout) <= skip:
        raise TaskError(f"--skip {skip} leaves no held-out example of task {task.name} "
                          f"(it has {len(heldout)}); lower --skip")
    return heldout[skip:]


def _fmt(key: str, v: float) -> str:
    return f"{v:.1%}" if key in ("strict", "lenient", "accuracy") else f"{v:.3f}"


class _Counted:
    """The engine, with the token counts of every generate() call added up (a task's own evaluate,
    calibration's two turns, calls it more than once)."""

    def __init__(self, engine):
        self._engine = engine
        self.prompt_tokens = self.generated_tokens = 0

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, *args, **kwargs):
        out = self._engine.generate(*args, **kwargs)
        self.prompt_tokens += self._engine.last_stats["prompt_tokens"]
        self.generated_tokens += self._engine.last_stats["generated_tokens"]
        return out


def _generate(engine, task, examples, batch: int, quiet: bool):
    """The task's completions for all examples (its own turns: calibration asks for a verdict too), in
    engine-sized chunks so progress can be shown."""
    counted = _Counted(engine)
    chunk = max(1, batch)
    completions: list[str] = []
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=len(examples), desc=f"eval {task.name}", unit="prompt", file=sys.stderr)
    t0 = time.perf_counter()
    for start in range(0, len(examples), chunk):
        part = examples[start:start + chunk]
        completions += task.complete(counted, part)
        if bar:
            bar.update(len(part))
    wall = time.perf_counter() - t0
    if bar:
        bar.close()
    return completions, counted.prompt_tokens, counted.generated_tokens, wall
