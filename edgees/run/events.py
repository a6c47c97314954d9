"""What a Trainer reports while it runs: TrainerEvents, one method per kind of event.

Subclass it and override the methods you need; each one here does nothing, so a consumer written
today keeps working when a method is added. The trainer calls them on its own thread, in order,
while llama.cpp is idle (member() while that member's noise is still on the weights), and waits
for each to return: keep them quick. An exception raised by one stops the run like any other
error, with the weights restored and the log intact. `edgees finetune` draws its progress bar with them; a
background daemon or a distributed executor can forward them as they are (every argument is a
plain number, string, Path or JSON-ready dict).

Events of one run, in order:
  status("hashing ...")                     free text for a person, any time
  replay(done, total)                       on --resume: each logged step replayed
  heldout(0, metrics)                       the base model's held-out score, on a new run
  member(t, m, reward)                      2 x pairs times per step: member m of step t (0-based)
  checkpoint(step, path, nbytes, seconds)   every C steps, a checkpoint of the state after `step` steps
  step(row)                                 the step's metrics.jsonl row (row["step"] = t + 1)
  checkpoint(...), stopped(t)               a stop request honoured during step t (that step dropped)
  checkpoint(...)                           at the end, unless the last step has one already
"""

from __future__ import annotations

from pathlib import Path


class TrainerEvents:
    """The no-op consumer: the trainer's default, and the base class of every other one."""

    def status(self, msg: str) -> None:
        """A one-line message for a person (what the trainer is doing, or a warning)."""

    def replay(self, done: int, total: int) -> None:
        """Resume: `done` of `total` logged steps replayed onto the weights."""

    def heldout(self, step: int, metrics: dict[str, float]) -> None:
        """Held-out metrics of the weights after `step` steps (0: the base model). The same
        metrics also reach step() in row["heldout"]; this event is sent only for step 0."""

    def member(self, step: int, member: int, reward: float) -> None:
        """Member `member` (0 .. 2 x pairs - 1: +s_0, -s_0, +s_1, ...) of step `step` scored `reward`."""

    def step(self, row: dict) -> None:
        """A step is logged durably; `row` is its metrics.jsonl row: step (1-based), reward_mean,
        reward_best, changed, timings, and "heldout" when it was evaluated."""

    def checkpoint(self, step: int, path: Path, nbytes: int, seconds: float) -> None:
        """A checkpoint of the state after `step` steps was written to `path`."""

    def stopped(self, step: int) -> None:
        """A stop request was honoured during step `step` (0-based); that step is not logged."""
