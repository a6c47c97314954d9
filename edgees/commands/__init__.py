"""Subcommands of the edgees CLI; each module exposes register(subparsers) and a run(args).

May import every layer. The only code besides cli.py that prints; argument parsing helpers here.
"""

import argparse


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (counts, threads, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
