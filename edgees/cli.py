"""The `edgees` command: parse arguments, dispatch to edgees.commands.*, turn errors into one line.

Each command module exposes `register(subparsers)`; it adds its parser and sets `func=run`.
Library code never prints or exits; this file is the only place that maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgees import __version__
from edgees.errors import EdgeesError, os_error_line

# Order here is the order in `edgees --help`.
COMMANDS = ["info", "models", "eval", "probe", "finetune", "verify", "export", "pack", "chat", "compare",
            "tasks", "bench", "daemon"]  # pack registers `pack` and `unpack`

EPILOG = """\
quick start:
  edgees models pull smollm2-135m          fetch the default model (SmolLM2-135M-Instruct Q4_1)
  edgees info smollm2-135m                 what is trainable in it
  edgees eval smollm2-135m --task arithmetic
  edgees finetune smollm2-135m --task arithmetic --run runs/demo
  edgees export runs/demo -o adapted.gguf  a GGUF llama.cpp, Ollama and LM Studio load

A MODEL is a registry name, a path to a .gguf file, or a name in Ollama's, LM Studio's or the
Hugging Face cache's store: ollama:NAME[:TAG], lmstudio:PUBLISHER/MODEL[/FILE], hf:ORG/REPO[/FILE]
(see `edgees models ls`).
The user data dir (models) is ~/.local/share/edgees, or $EDGEES_HOME.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgees",
        description="Adapt a local quantized LLM (GGUF) to your task on CPU with Quantized "
        "Evolution Strategies: the packed low-bit weight codes are fine-tuned in place.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgees {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"edgees.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgeesError as exc:
        print(f"edgees: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgees: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # after BrokenPipeError, one of its kind
        print(f"edgees: error: {os_error_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
