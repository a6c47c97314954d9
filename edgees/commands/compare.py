"""`edgees compare BASE ADAPTED --task T [--n N]`: two models on the same held-out prompts, side by side.

Each of BASE and ADAPTED is a MODEL or a RUN_DIR (its latest weights; see chat.py). Both answer the
first N held-out examples of the task (the same N on every machine, as eval picks them), greedily;
the task's metrics (and the log-likelihood, for a likelihood task) are printed in two columns, then
the first K prompts with both completions (--changed: K whose answers changed, as many whose reward
rose or fell as the counts say). The models are loaded one after the other.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from edgees.commands import add_run_options, clip, given, positive_int

EXAMPLES = """\
examples:
  edgees compare smollm2-135m runs/demo --task arithmetic
  edgees compare smollm2-135m adapted.gguf --task jsonl:support.jsonl --n 40 --samples 5
  edgees compare ollama:llama3.2:1b runs/l32 --task arithmetic --json
"""


def register(sub) -> None:
    p = sub.add_parser("compare", help="a base and an adapted model on the same held-out prompts",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", metavar="BASE", help="a MODEL or RUN_DIR")
    p.add_argument("adapted", metavar="ADAPTED", help="a MODEL or RUN_DIR (a run dir: its latest weights)")
    add_run_options(p)
    p.add_argument("--n", type=positive_int, default=None, help="held-out examples (default: the task's)")
    p.add_argument("--samples", type=int, default=3, metavar="K", help="completions shown side by side (3)")
    p.add_argument("--changed", action="store_true",
                   help="show K prompts whose answers differ instead of the first K prompts: as many whose "
                   "reward rose, fell or stayed as the counts say (K=3 of 24 up and 9 down: 2 up, 1 down), "
                   "the first of each in held-out order, each labelled")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    p.set_defaults(func=run)


def evaluate(spec: str, task, examples, threads, batch: int, verbose: bool) -> dict:
    """One side: the task's metrics of `spec` on the examples. A task that generates nothing
    (max_tokens 0: feedback: scores the answers in its file) is scored by its own evaluate(); a
    teacher-forced reward adds the references' mean log-likelihood as `loglik`."""
    import time

    from edgees.commands.chat import open_model
    from edgees.commands.eval import _generate
    from edgees.tasks.base import TEACHER_FORCED

    with open_model(spec, threads, batch, task.max_tokens, verbose) as (engine, what):
        if task.max_tokens == 0:
            t0 = time.perf_counter()
            _, metrics, completions = task.evaluate(engine, examples)
            generated, wall = 0, time.perf_counter() - t0
        else:
            completions, _, generated, wall = _generate(engine, task, examples, batch, quiet=True)
            metrics = task.metrics(examples, completions)
        if task.reward_mode in TEACHER_FORCED:
            metrics["loglik"] = sum(task.loglik(engine, examples)) / max(1, len(examples))
    side = {"model": spec, "loaded": what, "metrics": metrics, "completions": completions,
            "seconds": wall, "generated_tokens": generated}
    labels = task.label_report(examples, completions)
    if labels is not None:
        side["labels"] = labels
    return side


def _prompt_text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return " | ".join(m["content"] if isinstance(m, dict) else m.content for m in prompt)


def run(args) -> int:
    from edgees.run.config import resolve
    from edgees.tasks.base import get_task

    res = resolve(given(args, ("task", "task_opt", "threads", "batch")), args.config)
    opts = res.opts
    task = get_task(opts.task, **opts.task_opt)  # a bad task fails before any loading
    _, examples = task.split(n_heldout=args.n)
    sides = [evaluate(spec, task, examples, opts.threads, opts.batch, args.verbose)
             for spec in (args.base, args.adapted)]
    k = max(0, args.samples)
    base_c, adapted_c = sides[0]["completions"], sides[1]["completions"]
    rewards = _rewards(task, examples, base_c, adapted_c)
    rows = [{"prompt": e.prompt, "base": b, "adapted": a}
            for e, b, a in zip(examples, base_c, adapted_c)]
    if rewards:
        for row, rb, ra in zip(rows, *rewards):
            row.update(base_reward=rb, adapted_reward=ra)
    shown = _pick_changed(rows, k) if args.changed else rows
    changes = _changes(rows)
    result = {"task": opts.task, "n": len(examples),
              "base": {key: v for key, v in sides[0].items() if key != "completions"},
              "adapted": {key: v for key, v in sides[1].items() if key != "completions"},
              "changes": changes, "samples": shown[:k]}
    samples = result["samples"]
    if args.json:
        print(json.dumps(result))
        return 0
    names = list(sides[0]["metrics"]) + [n for n in sides[1]["metrics"] if n not in sides[0]["metrics"]]
    width = max([len(n) for n in names] + [6])
    print(f"{opts.task}, {len(examples)} held-out prompts")
    print(f"{'':<{width}}  {'base':>12}  {'adapted':>12}")
    for name in names:
        b, a = (s["metrics"].get(name) for s in sides)
        print(f"{name:<{width}}  {_fmt(b):>12}  {_fmt(a):>12}")
    if "labels" in sides[0]:
        print("per label: right out of held-out (times answered)")
        label_names = ["(not a label)" if r["label"] is None else r["label"] for r in sides[0]["labels"]]
        lw = max(len(n) for n in label_names)
        for name, b, a in zip(label_names, sides[0]["labels"], sides[1]["labels"]):
            print(f"  {name:<{lw}}  {_label_cell(b):>12}  {_label_cell(a):>12}")
    print(f"{'base':<{width}}  {args.base}\n{'adapted':<{width}}  {args.adapted}")
    line = f"answers changed on {changes['changed']} of {len(examples)} prompts"
    if "reward_up" in changes:
        line += f": the task's reward rose on {changes['reward_up']} and fell on {changes['reward_down']}"
    print(line)
    for side in ("base", "adapted"):
        same = changes["most_common"][side]
        if same["count"] > 1 and 2 * same["count"] >= len(examples):
            print(f"the {side} model gives the same answer to {same['count']} of {len(examples)} prompts: "
                  f"{same['answer']!r}")
    for i, s in enumerate(samples, 1):
        outcome = f"  (reward {s['outcome']})" if "outcome" in s else ""
        print(f"\n[{i}] {clip(_prompt_text(s['prompt']), 100)}{outcome}")
        tag = {"base": "", "adapted": ""}
        if "base_reward" in s:
            shown = _two_rewards(s["base_reward"], s["adapted_reward"])
            tag = {side: f"  (reward {r})" for side, r in zip(("base", "adapted"), shown)}
        print(f"  base:    {s['base']!r}{tag['base']}")
        print(f"  adapted: {s['adapted']!r}{tag['adapted']}")
    return 0


def _rewards(task, examples, base_c, adapted_c):
    """Each side's per-prompt reward from its completions, or None for a task that generates nothing."""
    if task.max_tokens == 0:
        return None
    return task.rewards(examples, base_c), task.rewards(examples, adapted_c)


def _pick_changed(rows: list[dict], k: int) -> list[dict]:
    """K rows whose answers changed, in proportion to how their reward went (largest remainder: 24
    rose, 9 fell, K=3 -> 2 rose, 1 fell), the first of each kind, shown in held-out order and tagged
    with their `outcome`. The first K changed rows are unbiased too, but can show only losses from a
    model that gained on most prompts (or the other way round). Without rewards: the first K changed."""
    changed = [r for r in rows if r["base"] != r["adapted"]]
    if not changed or "base_reward" not in changed[0]:
        return changed[:k]

    def outcome(r: dict) -> str:
        up, down = r["adapted_reward"] > r["base_reward"], r["adapted_reward"] < r["base_reward"]
        return "rose" if up else "fell" if down else "same"
    groups = {name: [i for i, r in enumerate(changed) if outcome(r) == name] for name in ("rose", "fell", "same")}
    k, n = min(k, len(changed)), len(changed)
    quota = {name: k * len(g) // n for name, g in groups.items()}
    for name in sorted(groups, key=lambda name: -(k * len(groups[name]) % n))[:k - sum(quota.values())]:
        quota[name] += 1
    picked = sorted(i for name, g in groups.items() for i in g[:quota[name]])
    return [dict(changed[i], outcome=outcome(changed[i])) for i in picked]


def _changes(rows: list[dict]) -> dict:
    out = {"changed": sum(r["base"] != r["adapted"] for r in rows),
           "most_common": {side: _most_common([r[side] for r in rows]) for side in ("base", "adapted")}}
    if rows and "base_reward" in rows[0]:
        out["reward_up"] = sum(r["adapted_reward"] > r["base_reward"] for r in rows)
        out["reward_down"] = sum(r["adapted_reward"] < r["base_reward"] for r in rows)
    return out


def _most_common(answers: list[str]) -> dict:
    """The answer a model gave most often and to how many prompts: a model that gives one answer to
    most prompts has stopped reading them, whatever its metrics say (a classifier that learned one label)."""
    answer, count = Counter(answers).most_common(1)[0] if answers else ("", 0)
    return {"answer": answer, "count": count}


def _label_cell(row: dict) -> str:
    """right/held-out (times answered) for a label; (times answered) for the no-label row."""
    return f"{row['right']}/{row['n']} ({row['answered']})" if row["label"] is not None else f"({row['answered']})"


def _two_rewards(base: float, adapted: float) -> tuple[str, str]:
    """Both rewards to 2 decimals, or as many more (up to 4) as it takes to show that they differ:
    a sample tagged "reward fell" should not read 0.08 -> 0.08."""
    for places in (2, 3, 4):
        shown = f"{base:.{places}f}", f"{adapted:.{places}f}"
        if shown[0] != shown[1] or base == adapted:
            break
    return shown


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
