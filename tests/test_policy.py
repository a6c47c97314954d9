"""The daemon's policy with injected readings (no llama.cpp, no daemon): user idle (logind) and the
temperature limit, off by default, each pausing with its reason in status and resuming with
hysteresis; loginctl's answers parsed from a stub on PATH."""

from __future__ import annotations

import os
import time

import pytest

from edgees.daemon import policy
from edgees.daemon.policy import Policy, PolicySettings, Readings
from edgees.daemon.runner import Runner
from edgees.errors import EdgeesError


class FakeReadings(Readings):
    def __init__(self):
        self.ac, self.idle, self.temps, self.asked = True, None, {}, []
        self.clock = 0.0

    def on_ac(self):
        return self.ac

    def cpu_times(self):
        self.clock += 1.0  # one second a sample, the machine otherwise idle
        return 0.0, self.clock, 0.0

    def user_idle(self):
        self.asked.append("idle")
        return self.idle

    def temperatures(self):
        self.asked.append("temp")
        return dict(self.temps)


def settings(**kw) -> PolicySettings:
    return PolicySettings(cpu_max=None, interval=0.0, resume_after=2, **kw)


def test_both_conditions_are_off_by_default_and_read_nothing():
    r = FakeReadings()
    r.idle, r.temps = 0.0, {"cpu": 120.0}
    p = Policy(settings(), r)
    assert p.check() is None and p.check() is None and r.asked == []
    assert PolicySettings.from_env().user_idle is None and PolicySettings.from_env().temp_max is None


def test_the_user_must_be_idle_long_enough():
    r = FakeReadings()
    p = Policy(settings(user_idle=300), r)
    r.idle = 0.0
    assert p.check() == "user active (needs 300 s idle)"
    r.idle = 120.0
    assert p.check() == "user active: idle 120 s of the 300 s needed"
    r.idle = 400.0
    assert p.check() is not None and p.check() is None  # resume_after = 2 passing checks
    r.idle = None  # no logind, no graphical session: cannot tell, does not hold training back
    assert p.check() is None


def test_heat_pauses_and_resumes_a_few_degrees_below_the_limit():
    r = FakeReadings()
    p = Policy(settings(temp_max=80), r)
    r.temps = {"coretemp/Package id 0": 70.0, "acpitz/0": 50.0}
    assert p.check() is None and p.temperature == 70.0
    r.temps["coretemp/Package id 0"] = 82.0
    assert p.check() == "hot: coretemp/Package id 0 at 82 C (limit 80 C)"
    r.temps["coretemp/Package id 0"] = 77.0  # below the limit, within the hysteresis
    assert p.check().startswith("hot:") and p.check().startswith("hot:")
    r.temps["coretemp/Package id 0"] = 74.0
    assert p.check() is not None and p.check() is None
    r.temps = {}  # no sensor (a VM): the condition cannot be read, training goes on
    assert p.check() is None


def test_power_comes_first_and_status_names_the_reason():
    r = FakeReadings()
    r.temps = {"cpu": 95.0}
    runner = Runner(Policy(settings(temp_max=80, user_idle=60), r))
    assert runner.should_stop() is True
    st = runner.status()
    assert st["pause_reason"] == "hot: cpu at 95 C (limit 80 C)" and st["temperature_c"] == 95.0
    r.ac = False
    runner.should_stop()
    assert runner.status()["pause_reason"] == "on battery power"


def test_settings_from_flags_and_environment(monkeypatch):
    monkeypatch.setenv("EDGEES_DAEMON_TEMP_MAX", "85")
    monkeypatch.setenv("EDGEES_DAEMON_USER_IDLE", "off")
    s = PolicySettings.from_env(user_idle="600")
    assert s.temp_max == 85.0 and s.user_idle == 600.0
    with pytest.raises(EdgeesError, match="'warm' is not a number"):
        PolicySettings.from_env(temp_max="warm")


LOGINCTL = """#!/bin/sh
if [ "$1" = list-sessions ]; then
  echo "   3 {uid} me seat0 tty2"
  echo "   7 {uid} me -    pts/1"
  echo "   9 4242 other seat0 tty3"
  exit 0
fi
case "$2" in
  3) printf 'Type=wayland\\nIdleHint={hint}\\nIdleSinceHintMonotonic={since}\\n' ;;
  7) printf 'Type=tty\\nIdleHint=no\\nIdleSinceHintMonotonic=0\\n' ;;
  9) printf 'Type=x11\\nIdleHint=no\\nIdleSinceHintMonotonic=0\\n' ;;
esac
"""


def test_logind_idle_hint_of_this_users_graphical_sessions(tmp_path, monkeypatch):
    stub = tmp_path / "loginctl"
    monkeypatch.setenv("PATH", str(tmp_path))
    since = int((time.clock_gettime(time.CLOCK_MONOTONIC) - 500) * 1e6)
    stub.write_text(LOGINCTL.format(uid=os.getuid(), hint="yes", since=since))
    stub.chmod(0o755)
    assert 499 <= policy.user_idle_seconds() < 600  # the tty session (ssh) and another uid's are not counted
    stub.write_text(LOGINCTL.format(uid=os.getuid(), hint="no", since=0))
    assert policy.user_idle_seconds() == 0.0
    assert policy.user_idle_seconds(uid=12345) is None  # no session of that uid
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert policy.user_idle_seconds() is None


def test_thermal_zones_without_psutil(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` fails as where it is not installed
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "type").write_text("x86_pkg_temp\n")
    (zone / "temp").write_text("67500\n")
    temps = policy.temperatures(str(tmp_path))
    assert temps == {"x86_pkg_temp": 67.5}
    assert policy.temperatures(str(tmp_path / "none")) == {}


def test_a_job_queued_when_the_pause_comes_shows_paused_and_queued_again_after(tmp_path, monkeypatch):
    """The race CI hit: a job's turn ended (state "queued") just before the user's pause; the loop
    then never ran it, and status showed it "queued" under a paused daemon."""
    import threading

    from edgees.daemon.runner import JobState
    monkeypatch.setenv("EDGEES_HOME", str(tmp_path))
    runner = Runner(Policy(settings(), FakeReadings()))
    runner.scan()  # no job files: nothing is dropped by the loop's own scan
    runner.jobs["a"] = JobState(name="a", path=str(tmp_path / "a.toml"), state="queued")
    runner.scan = lambda: None
    runner.pause()
    loop = threading.Thread(target=runner.loop)
    loop.start()
    try:
        for _ in range(500):
            if runner.status()["jobs"]["a"]["state"] == "paused":
                break
            time.sleep(0.01)
        assert runner.status()["jobs"]["a"]["state"] == "paused" and runner.status()["state"] == "paused"
    finally:
        runner.next_job = lambda: None  # resumed: nothing to run (no model here)
        runner.resume()
        for _ in range(500):
            if runner.status()["jobs"]["a"]["state"] == "queued":
                break
            time.sleep(0.01)
        runner.request_stop()
        loop.join(timeout=30)
    assert runner.jobs["a"].state == "queued" and not loop.is_alive()
