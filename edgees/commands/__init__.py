"""Subcommands of the edgees CLI; each module exposes register(subparsers) and a run(args).

May import every layer. The only code besides cli.py that prints; argument parsing helpers here.
"""

import argparse
import sys


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (counts, threads, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def clip(text: str, width: int) -> str:
    """A prompt on one line (whitespace runs as one space), cut to `width` characters in the middle,
    not at the end: a prompt's first words are often an instruction every prompt shares ("Classify
    this message ...") and its last the part that differs (the message)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    head = width // 3
    return f"{text[:head]} ... {text[-(width - head - 5):]}"


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The flags eval and finetune share, named alike: --task, --task-opt, --config, --threads, --batch.
    Each defaults to None (or []) so that a value left out falls through to the config file."""
    from edgees.run.config import RunOptions, config_keys_help
    p.add_argument("--task", default=None, help=RunOptions.help("task"))
    p.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="task option, repeatable (e.g. --task-opt max_tokens=32)")
    p.add_argument("--option", dest="task_opt", action="append", help=argparse.SUPPRESS)  # its old name
    p.add_argument("--config", default=None, metavar="FILE.toml",
                   help=f"settings from a TOML file; flags given here win over it. Keys: {config_keys_help()}")
    p.add_argument("--threads", type=positive_int, default=None, help=RunOptions.help("threads"))
    p.add_argument("--batch", type=positive_int, default=None, help=RunOptions.help("batch"))


def given(args, names) -> dict:
    """The settings among `names` that the command line gave (None and [] mean "not given"); the
    task options parsed into a dict."""
    from edgees.tasks.base import parse_options
    out = {n: getattr(args, n) for n in names if getattr(args, n, None) not in (None, [])}
    if "task_opt" in out:
        out["task_opt"] = parse_options(out["task_opt"])
    return out


def progress_bar(label: str, quiet: bool):
    """A (done, total) callback drawing a tqdm bar on a terminal's stderr; (callback, closer)."""
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done - 1, unit="step", desc=label, file=sys.stderr)
        bar.update(1)

    return update, lambda: bar is not None and bar.close()
