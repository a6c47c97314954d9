"""`edgees bench engine|kernels [MODEL] [--json]`: speed figures as ratios measured in one run.

`engine` lives in edgees.bench.engine, `kernels` in edgees.bench.kernels; tools/bench_*.py are thin
scripts over the same modules.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgees.commands import positive_int
from edgees.models import default_model_name, resolve_model


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench", help="benchmarks: evaluation engine, kernels",
        description="Benchmarks that print ratios against a baseline measured in the same run.")
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCH")
    p = sub.add_parser(
        "engine", help="Engine.generate vs llama-cpp-python create_chat_completion",
        description="32 arithmetic chat prompts, greedy: one batched Engine.generate against "
        "llama-cpp-python's high-level create_chat_completion called sequentially; decode "
        "ceiling; batched == sequential fraction; peak RSS of each path (separate processes).")
    p.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="registry name or .gguf path (default: the default model)")
    p.add_argument("--n", type=positive_int, default=32, help="prompts (default 32)")
    p.add_argument("--max-tokens", type=positive_int, default=32, help="generation budget (default 32)")
    p.add_argument("--threads", type=positive_int, default=None, help="compute threads (default: all CPUs)")
    p.add_argument("--repeat", type=positive_int, default=3,
                   help="alternate the two paths this many times; the best wall time of each counts, "
                   "and the median of the pairs' ratios is reported too (default 3)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run_engine)
    p = sub.add_parser("kernels", help="perturb/restore vs memcpy, C vs numpy, one QES update")
    p.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="registry name or .gguf path (default: the default model)")
    p.add_argument("--sigma", type=sigma_value, default=0.01,
                   help="noise scale in 4-bit code steps, in (0, 4] as finetune's --sigma (default 0.01)")
    p.add_argument("--threads", type=positive_int, default=None, help="threads (default: all CPUs)")
    p.add_argument("--reps", type=positive_int, default=5, help="timed repetitions (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run_kernels)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    return parser


def sigma_value(text: str) -> float:
    """argparse type: a noise scale in (0, 4] code steps, the range finetune's --sigma accepts."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value <= 4.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 4] code steps (0.01 is the default), got {text}")
    return value


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_kernels(args) -> int:
    from edgees.bench import kernels as bench_kernels
    path = resolve_model(args.model or default_model_name())
    r = bench_kernels.run(path, sigma=args.sigma, threads=args.threads, reps=args.reps, progress=_say)
    print(json.dumps(r) if args.json else bench_kernels.format_report(r))
    return 0


def run_engine(args) -> int:
    from edgees.bench import engine as bench_engine
    from edgees.gguf.reader import read_gguf
    path = resolve_model(args.model or default_model_name())
    read_gguf(path)  # a bad file fails here in one line, not in a child process
    r = bench_engine.run(path, n=args.n, max_tokens=args.max_tokens, threads=args.threads,
                         repeat=args.repeat, progress=_say)
    print(json.dumps(r) if args.json else bench_engine.format_report(r))
    return 0
