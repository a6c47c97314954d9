"""`edgees chat MODEL|RUN_DIR`: talk to a model, or to a run's latest weights, through its own chat template.

On a terminal it is a conversation (the history goes back to the model each turn; /reset clears
it, Ctrl-D ends). With stdin not a terminal it is for scripts: each non-empty line is one prompt,
answered on its own (no history), one answer per output line (line breaks inside an answer become
spaces; --json gives one JSON object per line with the exact text and the templated prompt).
Decoding is greedy, as everywhere in edgees. When stdout is a terminal the answer appears token by
token as it is decoded (engine/stream.py: the same text, the same decode calls); otherwise each
answer is printed whole.

A RUN_DIR means its weights after the last logged step, rebuilt from the base (from the newest
checkpoint) into a private working copy; a MODEL is loaded read-only from where it is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from edgees.commands import positive_int

EXAMPLES = """\
examples:
  edgees chat smollm2-135m
  edgees chat runs/demo                                 the run's latest weights
  echo "What is 12+7?" | edgees chat runs/demo          one answer per input line
  edgees chat ollama:llama3.2:1b --system "Answer briefly." --max-tokens 128
"""


def register(sub) -> None:
    p = sub.add_parser("chat", help="talk to a model or a run's latest weights (its chat template)",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL|RUN_DIR", help="a MODEL (registry name, path, ollama:/lmstudio:/hf: "
                   "name) or a run directory")
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message before the conversation")
    p.add_argument("--max-tokens", type=positive_int, default=256, help="most tokens in one answer (256)")
    p.add_argument("--threads", type=positive_int, default=None, help="compute threads (default: all CPUs)")
    p.add_argument("--json", action="store_true",
                   help="stdin not a terminal: one JSON object per answer (prompt, answer, templated prompt)")
    p.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    p.set_defaults(func=run)


def is_run_dir(text: str) -> bool:
    p = Path(text).expanduser()
    return p.is_dir() and (p / "run.json").is_file()


@contextlib.contextmanager
def open_model(spec: str, threads: int | None = None, n_seq: int = 1, max_tokens: int = 256,
               verbose: bool = False):
    """An Engine on a MODEL (read-only, where it is) or a RUN_DIR's latest weights (rebuilt into a
    working copy); yields (engine, description)."""
    from edgees.engine.engine import Engine

    if is_run_dir(spec):
        from edgees.run.rebuild import rebuild_run
        with rebuild_run(spec, threads=threads) as r, \
                Engine(r.wc.path, n_threads=threads, n_seq=n_seq, max_tokens=max_tokens, verbose=verbose) as e:
            yield e, f"{spec} (step {r.step} of the run on {r.base_path.name})"
        return
    from edgees.models import resolve_model
    path = resolve_model(spec)
    with Engine(path, n_threads=threads, n_seq=n_seq, max_tokens=max_tokens, verbose=verbose) as e:
        yield e, str(path)


def _messages(system: str | None, history: list[dict]) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + history


def run(args) -> int:
    with open_model(args.model, args.threads, 1, args.max_tokens, args.verbose) as (engine, what):
        if sys.stdin.isatty():
            return _conversation(engine, what, args)
        for line in sys.stdin:
            prompt = line.rstrip("\n")
            if not prompt.strip():
                continue
            msgs = _messages(args.system, [{"role": "user", "content": prompt}])
            if args.json:
                answer = engine.generate([msgs], max_tokens=args.max_tokens)[0]
                print(json.dumps({"prompt": prompt, "answer": answer, "templated": engine.render(msgs)}),
                      flush=True)
            elif sys.stdout.isatty():
                _print_stream(engine, msgs, args.max_tokens, one_line=True)
            else:
                answer = engine.generate([msgs], max_tokens=args.max_tokens)[0]
                print(" ".join(answer.splitlines()), flush=True)  # one line, whatever breaks it held
    return 0


def _conversation(engine, what: str, args) -> int:
    print(f"chatting with {what} (greedy; /reset clears the history, Ctrl-D ends)", file=sys.stderr)
    history: list[dict] = []
    while True:
        try:
            prompt = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if prompt.strip() == "/reset":
            history = []
            continue
        if not prompt.strip():
            continue
        history.append({"role": "user", "content": prompt})
        msgs = _messages(args.system, history)
        if sys.stdout.isatty():
            answer = _print_stream(engine, msgs, args.max_tokens)
        else:
            answer = engine.generate([msgs], max_tokens=args.max_tokens)[0]
            print(answer.strip(), flush=True)
        history.append({"role": "assistant", "content": answer})


def _print_stream(engine, msgs, max_tokens: int, one_line: bool = False) -> str:
    """Print the answer as it is decoded (leading whitespace dropped, as print(answer.strip()) does;
    one_line: line breaks as spaces); return the whole answer, as generate() would."""
    from edgees.engine.stream import stream

    pieces: list[str] = []
    started = False
    for piece in stream(engine, msgs, max_tokens=max_tokens):
        pieces.append(piece)
        shown = piece if started else piece.lstrip()
        started = started or bool(shown)
        if one_line:
            shown = " ".join(shown.split("\n"))
        print(shown, end="", flush=True)
    print(flush=True)
    return "".join(pieces)
