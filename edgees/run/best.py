"""The best held-out step of a run: what `finetune --export` and `export --step best` write.

Held-out scores do not only rise: on arithmetic the defaults climb for ~40-50 steps and then fall
back (docs/results/arithmetic-default-hour.md), so the last step is often not the best model a run
made. The trainer records, with each held-out evaluation in metrics.jsonl, which metric is the
task's primary one (row["primary"]); the best step is the trained step (>= 1) with the highest value
of it, the latest one on a tie (more training at the same score). Runs made before that record
have no best step (the caller falls back to the last one and says so).

The pick is made on the run's own held-out examples (the first --eval-n of the split), so a figure
of the picked step on those same examples is biased upward; `edgees eval --skip N` measures it on
held-out examples the pick never saw.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Best:
    step: int
    metric: str
    value: float
    base: float | None  # the same metric at step 0 (the base model), when it was evaluated
    last_step: int  # the last evaluated step
    last_value: float

    def describe(self) -> str:
        base = "" if self.base is None else f"; base {self.base:.3f}"
        last = "" if self.last_step == self.step else f"; last evaluated step {self.last_step}: {self.last_value:.3f}"
        below = "" if self.base is None or self.value >= self.base else "; below the base: no evaluated step beat it"
        return f"step {self.step} (held-out {self.metric} {self.value:.3f}{base}{last}{below})"


def best_step(rows: list[dict], steps_logged: int) -> Best | None:
    """The best trained step among metrics rows that name their primary metric, or None when none do
    (an older run, or no evaluation yet). Rows of steps beyond the log (a torn tail) are ignored."""
    evals = [r for r in rows if "heldout" in r and isinstance(r.get("primary"), str)
             and r["primary"] in r["heldout"] and 0 <= r["step"] <= steps_logged]
    if not any(r["step"] >= 1 for r in evals):
        return None
    key = max((r for r in evals if r["step"] >= 1), key=lambda r: r["step"])["primary"]
    evals = [r for r in evals if r["primary"] == key]  # one metric throughout (a task may fall back)
    base = next((r["heldout"][key] for r in evals if r["step"] == 0), None)
    trained = [r for r in evals if r["step"] >= 1]
    best = max(trained, key=lambda r: (r["heldout"][r["primary"]], r["step"]))
    last = max(trained, key=lambda r: r["step"])
    return Best(step=int(best["step"]), metric=best["primary"], value=float(best["heldout"][best["primary"]]),
                base=None if base is None else float(base), last_step=int(last["step"]),
                last_value=float(last["heldout"][last["primary"]]))
