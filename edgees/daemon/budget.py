"""A job's daily time budget (`[budget] minutes`): the wall time its turns used per local day, kept
in its run dir so that a restart does not hand out the day's minutes again.

    <run dir>/budget.json   {"format": "edgees-daemon-budget", "version": 1, "day": "2026-12-05", "seconds": 512.3}

Counted: the wall time of the job's turns (opening its model, its steps, held-out evaluations and
publishes), not the time it waits paused or while other jobs run. A turn starts only with time left
and gets the rest as the trainer's deadline (no new step starts after it), so a day ends at most
one step and a held-out evaluation over the budget. A kill -9 loses the count of the turn in
flight; a missing or unreadable file counts as nothing used (it is a budget, not a log).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgees.fileio import atomic_write

FORMAT, VERSION = "edgees-daemon-budget", 1
FILE = "budget.json"


def today() -> str:
    """The local calendar day: a budget is per day as the user lives it."""
    return time.strftime("%Y-%m-%d")


class DailyBudget:
    def __init__(self, run_path: Path, minutes: float):
        self.path = Path(run_path) / FILE
        self.seconds = 60.0 * float(minutes)

    def used(self, day: str | None = None) -> float:
        """Seconds used on `day` (default today)."""
        try:
            d = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0.0
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
            return 0.0
        ok = d.get("day") == (day or today()) and isinstance(d.get("seconds"), (int, float))
        return float(d["seconds"]) if ok else 0.0

    def left(self, day: str | None = None) -> float:
        """Seconds left on `day` (default today); <= 0 when the day's minutes are used."""
        return self.seconds - self.used(day)

    def add(self, seconds: float, day: str | None = None) -> None:
        """Count a turn's seconds to `day` (default today: the day the turn ended)."""
        day = day or today()
        row = {"format": FORMAT, "version": VERSION, "day": day, "seconds": round(self.used(day) + seconds, 3)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, (json.dumps(row) + "\n").encode())

    def view(self) -> dict:
        return {"minutes_per_day": self.seconds / 60.0, "used_minutes": round(self.used() / 60.0, 3)}
