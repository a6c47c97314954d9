#!/usr/bin/env python3
"""Where an arithmetic model's log-likelihood of the bare sum goes: token by token, on held-out sums.

    python tools/digit_loglik.py smollm2-135m                  # the base model
    python tools/digit_loglik.py s1.gguf s2.gguf --n 200 --json

For each model and the first N held-out sums of the `arithmetic` task, grouped by the sum's length
(2 or 3 digits; SmolLM2 writes one token a digit), prints each answer token's mean log-probability
(teacher-forced, as `reward=likelihood` scores it) and the share of sums where that token is the
greedy choice, then the end-of-turn token, and the share answered strict-correct by the greedy
tokens. A digit guessed uniformly costs ln 10 = 2.30 nats: a model at about -2.3 a digit knows the
answer's form but not the sum.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgees.engine.engine import Engine  # noqa: E402
from edgees.errors import EdgeesError  # noqa: E402
from edgees.models import resolve_model  # noqa: E402
from edgees.tasks.arithmetic import Arithmetic  # noqa: E402


def per_token(engine: Engine, prompts: list, answers: list[str]) -> list[dict]:
    """For answer prefixes of 1..L digits and the whole answer with the end of turn: each token's
    log-probability and greedy-ness, as differences of cumulative teacher-forced scores."""
    cols, prev_lp, prev_mg = [], [0.0] * len(prompts), [0.0] * len(prompts)
    width = len(answers[0])
    for k in range(1, width + 2):
        end = k == width + 1
        targets = answers if end else [a[:k] for a in answers]
        lp = engine.score(prompts, targets, end_turn=end)
        mg = engine.score(prompts, targets, end_turn=end, margin=1e9)  # uncapped lead: > 0 is greedy
        d_lp = [x - y for x, y in zip(lp, prev_lp)]
        d_mg = [x - y for x, y in zip(mg, prev_mg)]
        cols.append({"token": "end" if end else f"digit {k}", "logp": sum(d_lp) / len(d_lp),
                     "greedy": [m > 0 for m in d_mg]})
        prev_lp, prev_mg = lp, mg
    return cols


def report(path: str, n: int, threads: int) -> dict:
    _, held = Arithmetic().split(n_train=0, n_heldout=n)
    out = {"model": path, "n": len(held), "groups": []}
    with Engine(path, n_threads=threads) as engine:
        for width in (2, 3):
            ex = [e for e in held if len(str(e.fields["answer"])) == width]
            if not ex:
                continue
            answers = [str(e.fields["answer"]) for e in ex]
            if any(len(engine.tokenize(a, add_special=False, parse_special=False)) != width for a in answers):
                raise SystemExit(f"{path}: the model does not write one token a digit; this tool assumes it")
            cols = per_token(engine, [e.prompt for e in ex], answers)
            all_greedy = [all(c["greedy"][i] for c in cols) for i in range(len(ex))]
            out["groups"].append({
                "digits": width, "n": len(ex),
                "tokens": [{"token": c["token"], "logp": c["logp"], "greedy": sum(c["greedy"]) / len(ex)}
                           for c in cols],
                "total_logp": sum(c["logp"] for c in cols), "strict_greedy": sum(all_greedy) / len(ex)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="registry names or .gguf paths")
    ap.add_argument("--n", type=int, default=200, help="held-out sums (default 200)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for name in args.models:
        try:
            r = report(str(resolve_model(name)), args.n, args.threads)
        except EdgeesError as e:
            raise SystemExit(f"digit_loglik: {e}") from None
        if args.json:
            print(json.dumps(r))
            continue
        print(f"{name} (first {r['n']} held-out sums; a uniform digit costs {math.log(10):.2f} nats)")
        for g in r["groups"]:
            cells = "  ".join(f"{t['token']} {t['logp']:6.2f} ({t['greedy']:.2f})" for t in g["tokens"])
            print(f"  {g['digits']}-digit sums, n={g['n']}: {cells}  total {g['total_logp']:6.2f}  "
                  f"strict (greedy) {g['strict_greedy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
