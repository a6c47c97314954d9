"""When the daemon may train: on AC power, and other processes using little CPU; with hysteresis.

check() is cheap (the trainer asks at every member boundary): it samples /proc at most once per
`interval` seconds and otherwise returns the last verdict. The verdict flips to "pause" as soon as
one sample fails a condition, and back to "run" only after `resume_after` passing samples in a row,
with the CPU threshold lowered by `hysteresis` (so a load hovering at the threshold does not flap).

Other processes' CPU use is the machine's busy time (/proc/stat) minus this process's own
(/proc/self/stat, llama.cpp's threads included), in cores. AC power: a Mains/USB supply in
/sys/class/power_supply that is online; no supply or no battery at all counts as AC.

Settings (daemon start flags, else environment, else these defaults):
    EDGEES_DAEMON_CPU_MAX      other processes' CPU, in cores, above which the daemon pauses (0.5; off: never)
    EDGEES_DAEMON_INTERVAL     seconds between samples (5)
    EDGEES_DAEMON_RESUME_AFTER passing samples before resuming (3)
    EDGEES_DAEMON_POWER_DIR    the power_supply dir (/sys/class/power_supply)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

POWER_DIR = "/sys/class/power_supply"
AC_TYPES = ("Mains", "USB", "USB_C", "USB_PD")


@dataclass(frozen=True)
class PolicySettings:
    cpu_max: float | None = 0.5  # cores; None: the CPU condition is off
    interval: float = 5.0
    resume_after: int = 3
    hysteresis: float = 0.5  # resume only below cpu_max * hysteresis
    power_dir: str = POWER_DIR

    @classmethod
    def from_env(cls, **given) -> "PolicySettings":
        """Settings from the flags given (None: not given), else the environment, else defaults."""
        env = os.environ
        cpu = given.get("cpu_max") if given.get("cpu_max") is not None else env.get("EDGEES_DAEMON_CPU_MAX")
        cpu_max = None if str(cpu).lower() in ("off", "none", "") else float(cpu) if cpu is not None else cls.cpu_max
        interval = given.get("interval") or float(env.get("EDGEES_DAEMON_INTERVAL", cls.interval))
        resume_after = given.get("resume_after") or int(env.get("EDGEES_DAEMON_RESUME_AFTER", cls.resume_after))
        return cls(cpu_max=cpu_max, interval=interval, resume_after=resume_after,
                   power_dir=env.get("EDGEES_DAEMON_POWER_DIR", POWER_DIR))


def on_ac_power(power_dir: str = POWER_DIR) -> bool:
    """True unless a battery is present and no AC supply is online."""
    try:
        import psutil  # optional: it knows the platforms /sys does not cover
        if power_dir == POWER_DIR:
            battery = psutil.sensors_battery()
            return battery is None or bool(battery.power_plugged)
    except (ImportError, AttributeError, OSError):
        pass
    root = Path(power_dir)
    battery, ac_online = False, False
    for supply in (sorted(root.iterdir()) if root.is_dir() else []):
        kind = _read(supply / "type")
        if kind == "Battery":
            battery = battery or _read(supply / "present") != "0"
        elif kind in AC_TYPES and _read(supply / "online") == "1":
            ac_online = True
    return ac_online or not battery


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_times() -> tuple[float, float, float]:
    """(machine busy seconds summed over CPUs, machine total seconds, this process's seconds)."""
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already inside user
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])  # utime, stime (every thread of the process)
    return (total - idle) / hz, total / hz, own / hz


class Policy:
    """The daemon's conditions; check() -> None (train) or the reason to pause."""

    def __init__(self, settings: PolicySettings):
        self.s = settings
        self.ncpu = os.cpu_count() or 1
        self.reason: str | None = None
        self.other_cores: float | None = None
        self._passes = 0
        self._last = None  # (monotonic time, cpu_times())

    def check(self, force: bool = False) -> str | None:
        now = time.monotonic()
        if self._last is not None and not force and now - self._last[0] < self.s.interval:
            return self.reason
        sample = cpu_times()
        if self._last is not None:  # the first sample has nothing to compare with: power only
            (b0, t0, o0), (b1, t1, o1) = self._last[1], sample
            if t1 > t0:
                self.other_cores = max(0.0, (b1 - b0) - (o1 - o0)) / (t1 - t0) * self.ncpu
        self._last = (now, sample)
        failing = self._failing()
        if failing is not None:
            self.reason, self._passes = failing, 0
        elif self.reason is not None:
            self._passes += 1
            if self._passes >= self.s.resume_after:
                self.reason, self._passes = None, 0
        return self.reason

    def _failing(self) -> str | None:
        if not on_ac_power(self.s.power_dir):
            return "on battery power"
        limit = self.s.cpu_max
        if limit is not None and self.other_cores is not None:
            if self.reason is not None and self.reason.startswith("busy"):
                limit *= self.s.hysteresis  # resuming needs the load well below the threshold
            if self.other_cores > limit:
                return f"busy: other processes use {self.other_cores:.2f} CPU cores (limit {self.s.cpu_max:g})"
        return None

    def wait(self, should_quit, sleep) -> None:
        """Block (sleep(seconds) returns early when woken) until the conditions hold or should_quit()."""
        while self.reason is not None and not should_quit():
            sleep(self.s.interval)
            self.check(force=True)
