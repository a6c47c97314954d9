"""When the daemon may train: on AC power, other processes using little CPU, and optionally the user
away and the machine cool; with hysteresis.

check() is cheap (the trainer asks at every member boundary): it samples /proc at most once per
`interval` seconds and otherwise returns the last verdict. The verdict flips to "pause" as soon as
one sample fails a condition, and back to "run" only after `resume_after` passing samples in a row,
with the CPU threshold lowered by `hysteresis` (so a load hovering at the threshold does not flap).

Other processes' CPU use is the machine's busy time (/proc/stat) minus this process's own
(/proc/self/stat, llama.cpp's threads included), in cores. AC power: a Mains/USB supply in
/sys/class/power_supply that is online; no supply or no battery at all counts as AC. User idle
(off by default): logind's IdleHint of this uid's graphical sessions (`loginctl show-session`; a
desktop sets it when the screen saver starts), idle for at least the given seconds; with no such
session or no logind, the condition cannot be read and does not hold training back. Temperature
(off by default): the hottest sensor (psutil.sensors_temperatures, else /sys/class/thermal); at or
above the limit it pauses, and resumes below the limit minus TEMP_HYSTERESIS. Every reading comes
through a Readings object, so tests inject their own.

Settings (daemon start flags, else environment, else these defaults):
    EDGEES_DAEMON_CPU_MAX      other processes' CPU, in cores, above which the daemon pauses (0.5; off: never)
    EDGEES_DAEMON_INTERVAL     seconds between samples (5)
    EDGEES_DAEMON_RESUME_AFTER passing samples before resuming (3)
    EDGEES_DAEMON_POWER_DIR    the power_supply dir (/sys/class/power_supply)
    EDGEES_DAEMON_USER_IDLE    seconds the user must have been idle (off)
    EDGEES_DAEMON_TEMP_MAX     degrees Celsius at which it pauses (off)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgees.errors import EdgeesError

POWER_DIR = "/sys/class/power_supply"
THERMAL_DIR = "/sys/class/thermal"
AC_TYPES = ("Mains", "USB", "USB_C", "USB_PD")
GRAPHICAL = ("x11", "wayland", "mir")  # session types whose IdleHint a desktop maintains
TEMP_HYSTERESIS = 5.0  # degrees below the limit before a pause for heat ends


@dataclass(frozen=True)
class PolicySettings:
    cpu_max: float | None = 0.5  # cores; None: the CPU condition is off
    interval: float = 5.0
    resume_after: int = 3
    hysteresis: float = 0.5  # resume only below cpu_max * hysteresis
    power_dir: str = POWER_DIR
    user_idle: float | None = None  # seconds the user must have been idle; None: the condition is off
    temp_max: float | None = None  # degrees Celsius; None: the condition is off

    @classmethod
    def from_env(cls, **given) -> "PolicySettings":
        """Settings from the flags given (None: not given), else the environment, else defaults."""
        env = os.environ
        cpu = given.get("cpu_max") if given.get("cpu_max") is not None else env.get("EDGEES_DAEMON_CPU_MAX")
        cpu_max = None if str(cpu).lower() in ("off", "none", "") else float(cpu) if cpu is not None else cls.cpu_max
        interval = given.get("interval") or float(env.get("EDGEES_DAEMON_INTERVAL", cls.interval))
        resume_after = given.get("resume_after") or int(env.get("EDGEES_DAEMON_RESUME_AFTER", cls.resume_after))
        return cls(cpu_max=cpu_max, interval=interval, resume_after=resume_after,
                   power_dir=env.get("EDGEES_DAEMON_POWER_DIR", POWER_DIR),
                   user_idle=_optional(given.get("user_idle"), env.get("EDGEES_DAEMON_USER_IDLE")),
                   temp_max=_optional(given.get("temp_max"), env.get("EDGEES_DAEMON_TEMP_MAX")))


def _optional(flag, env) -> float | None:
    """A flag's value, else the environment's; "off"/"none"/"" or neither: None."""
    value = flag if flag is not None else env
    if value is None or str(value).lower() in ("off", "none", ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise EdgeesError(f"{value!r} is not a number; give seconds (--user-idle) or degrees (--temp-max), "
                          "or off") from None


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


def user_idle_seconds(uid: int | None = None) -> float | None:
    """Seconds since this uid's graphical sessions all went idle (logind's IdleHint, as `loginctl`
    shows it): 0.0 while one is active; None when there is no logind or no graphical session."""
    exe = shutil.which("loginctl")
    if exe is None:
        return None
    uid = os.getuid() if uid is None else uid

    def show(*args) -> str | None:
        try:
            p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout if p.returncode == 0 else None

    listing = show("list-sessions", "--no-legend")
    if listing is None:
        return None
    idle: list[float] = []
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[1] != str(uid):
            continue
        props = show("show-session", parts[0], "-p", "Type", "-p", "IdleHint", "-p", "IdleSinceHintMonotonic")
        kv = dict(x.split("=", 1) for x in (props or "").splitlines() if "=" in x)
        if kv.get("Type") not in GRAPHICAL:
            continue
        if kv.get("IdleHint") != "yes":
            return 0.0
        raw = kv.get("IdleSinceHintMonotonic", "")
        since = int(raw) / 1e6 if raw.isdigit() else 0.0  # CLOCK_MONOTONIC microseconds
        idle.append(max(0.0, time.clock_gettime(time.CLOCK_MONOTONIC) - since) if since else 0.0)
    return min(idle) if idle else None


def temperatures(thermal_dir: str = THERMAL_DIR) -> dict[str, float]:
    """Sensor name -> degrees Celsius now: psutil's sensors where it is installed, else the kernel's
    thermal zones; {} where the machine exposes none (a VM, most containers)."""
    try:
        import psutil  # optional: it reads hwmon and the platforms /sys does not cover
        found = psutil.sensors_temperatures()
        return {f"{name}/{t.label or i}": float(t.current) for name, ts in found.items()
                for i, t in enumerate(ts) if t.current is not None}
    except (ImportError, AttributeError, OSError):
        pass
    out = {}
    root = Path(thermal_dir)
    for zone in sorted(root.glob("thermal_zone*")) if root.is_dir() else []:
        raw = _read(zone / "temp")
        if raw and raw.lstrip("-").isdigit():
            out[_read(zone / "type") or zone.name] = int(raw) / 1000.0
    return out


class Readings:
    """Where the policy's figures come from: this machine. Tests give the Policy their own."""

    def __init__(self, settings: "PolicySettings"):
        self.power_dir = settings.power_dir

    def on_ac(self) -> bool:
        return on_ac_power(self.power_dir)

    def cpu_times(self) -> tuple[float, float, float]:
        return cpu_times()

    def user_idle(self) -> float | None:
        return user_idle_seconds()

    def temperatures(self) -> dict[str, float]:
        return temperatures()


class Policy:
    """The daemon's conditions; check() -> None (train) or the reason to pause."""

    def __init__(self, settings: PolicySettings, readings: Readings | None = None):
        self.s = settings
        self.readings = readings or Readings(settings)
        self.ncpu = os.cpu_count() or 1
        self.reason: str | None = None
        self.other_cores: float | None = None
        self.user_idle: float | None = None  # the last readings, for status
        self.temperature: float | None = None
        self._passes = 0
        self._last = None  # (monotonic time, cpu_times())
        self._lock = threading.Lock()

    def check(self, force: bool = False) -> str | None:
        with self._lock:  # the training thread and the daemon's watch thread both ask
            return self._check(force)

    def _check(self, force: bool) -> str | None:
        now = time.monotonic()
        if self._last is not None and not force and now - self._last[0] < self.s.interval:
            return self.reason
        sample = self.readings.cpu_times()
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
        if not self.readings.on_ac():
            return "on battery power"
        limit = self.s.cpu_max
        if limit is not None and self.other_cores is not None:
            if self.reason is not None and self.reason.startswith("busy"):
                limit *= self.s.hysteresis  # resuming needs the load well below the threshold
            if self.other_cores > limit:
                return f"busy: other processes use {self.other_cores:.2f} CPU cores (limit {self.s.cpu_max:g})"
        if self.s.temp_max is not None:
            temps = self.readings.temperatures()
            if temps:
                name, hottest = max(temps.items(), key=lambda kv: kv[1])
                self.temperature = hottest
                limit = self.s.temp_max
                if self.reason is not None and self.reason.startswith("hot"):
                    limit -= TEMP_HYSTERESIS  # resuming needs the machine a few degrees cooler
                if hottest >= limit:
                    return f"hot: {name} at {hottest:.0f} C (limit {self.s.temp_max:g} C)"
        if self.s.user_idle is not None:
            self.user_idle = self.readings.user_idle()
            if self.user_idle is not None and self.user_idle < self.s.user_idle:
                return (f"user active: idle {self.user_idle:.0f} s of the {self.s.user_idle:g} s needed"
                        if self.user_idle else f"user active (needs {self.s.user_idle:g} s idle)")
        return None

    def wait(self, should_quit, sleep) -> None:
        """Block (sleep(seconds) returns early when woken) until the conditions hold or should_quit()."""
        while self.reason is not None and not should_quit():
            sleep(self.s.interval)
            self.check(force=True)
