"""The daemon process: one instance per user, niced, signals, its log, the socket, the loop.

serve() is `edgees daemon start --foreground`: it takes an flock on <data dir>/daemon/daemon.lock
(the kernel drops it when the process dies, however it dies), lowers its priority (nice 19,
SCHED_IDLE and the idle I/O class where permitted), logs to <data dir>/daemon/daemon.log (rotated),
opens the control socket and runs the Runner until stop, SIGTERM or SIGINT, which stop at the next
member boundary with the log intact and a checkpoint written. detach() starts that same command in a
new session and waits until its socket answers. unit_file() is the systemd user unit or launchd
plist.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from edgees.errors import EdgeesError
from edgees.daemon import control
from edgees.daemon.paths import daemon_dir, lock_path, log_path, private_dir, socket_path
from edgees.daemon.policy import Policy, PolicySettings
from edgees.daemon.runner import Runner

log = logging.getLogger("edgees.daemon")
LOG_BYTES, LOG_KEEP = 1 << 20, 3
STOP_TIMEOUT_S = 300  # systemd's TimeoutStopSec: above a member's evaluation plus a checkpoint


class AlreadyRunning(EdgeesError):
    exit_code = 3


def take_lock() -> int:
    """The single-instance lock's fd (held for the process's life); AlreadyRunning if taken."""
    private_dir(daemon_dir())
    fd = os.open(str(lock_path()), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise AlreadyRunning(f"an edgees daemon is already running (pid {pid or '?'}); "
                             "`edgees daemon status` talks to it, `edgees daemon stop` stops it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# ioprio_set/ioprio_get syscall numbers (asm/unistd.h); Python has no wrapper. Unknown arch: skipped.
IOPRIO_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31), "riscv64": (30, 31), "i686": (289, 290),
                   "armv7l": (314, 315), "ppc64le": (273, 274), "s390x": (282, 283)}
IOPRIO_WHO_PROCESS, IOPRIO_CLASS_SHIFT, IOPRIO_CLASS_IDLE = 1, 13, 3  # linux/ioprio.h


def _ioprio(get: bool, pid: int = 0, value: int = 0) -> int | None:
    """ioprio_get/ioprio_set(IOPRIO_WHO_PROCESS, pid[, value]); None where unsupported or refused."""
    import ctypes
    import platform
    nums = IOPRIO_SYSCALLS.get(platform.machine()) if sys.platform.startswith("linux") else None
    if nums is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    args = (IOPRIO_WHO_PROCESS, pid) if get else (IOPRIO_WHO_PROCESS, pid, value)
    out = libc.syscall(nums[1 if get else 0], *args)
    return None if out < 0 else out


def io_class(pid: int = 0) -> int | None:
    """The I/O scheduling class of a thread (0 or this one): 0 none, 1 realtime, 2 best-effort, 3 idle."""
    prio = _ioprio(True, pid)
    return None if prio is None else prio >> IOPRIO_CLASS_SHIFT


def lower_priority(idle: bool = True) -> list[str]:
    """nice 19, and with idle, SCHED_IDLE and the idle I/O class (Linux) where permitted; what was
    done, for the log. On Linux all three are the calling thread's: threads it starts later inherit
    them, threads started before keep theirs. serve() calls it twice: nice 19 first (every thread),
    then, after the control and watch threads are up, the idle classes for the training thread alone,
    so a starved trainer still has a policy thread and a socket that answer (an unprivileged thread
    cannot leave SCHED_IDLE again)."""
    done = []
    try:
        if os.nice(0) < 19:
            os.nice(19 - os.nice(0))
        done.append("nice 19")
    except OSError:
        pass
    if not idle:
        return done
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            done.append("SCHED_IDLE")
        except OSError:
            pass
    if _ioprio(False, 0, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) is not None:
        done.append("idle I/O class")
    return done


def setup_logging(to_stderr: bool) -> None:
    handler = logging.handlers.RotatingFileHandler(log_path(), maxBytes=LOG_BYTES, backupCount=LOG_KEEP)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handler.setFormatter(fmt)
    root = logging.getLogger("edgees.daemon")
    root.setLevel(logging.INFO)
    root.handlers[:] = [handler]
    if to_stderr:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(fmt)
        root.addHandler(err)
    root.propagate = False


def serve(settings: PolicySettings, to_stderr: bool = True, release_after: float = 300.0) -> int:
    lock_fd = take_lock()
    setup_logging(to_stderr)
    runner = Runner(Policy(settings), release_after=release_after)
    started = time.time()

    def handle(req: dict) -> dict:
        cmd = req["cmd"]
        if cmd == "pause":
            runner.pause()
        elif cmd == "resume":
            runner.resume()
        elif cmd == "stop":
            runner.request_stop()
        out = {"ok": True, "pid": os.getpid(), "socket": str(server.path), "log": str(log_path()),
               "started": started, "uptime_seconds": round(time.time() - started, 1)}
        out.update(runner.status())
        if cmd == "pause":
            out["pause_reason"] = "paused by the user"  # the trainer stops at the next member boundary
        return out

    def on_signal(signum, frame):
        log.info("%s: stopping at the next member boundary", signal.Signals(signum).name)
        runner.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server = control.ControlServer(handle, socket_path())
    try:
        niced = lower_priority(idle=False)
        runner.scan()  # status lists the jobs from the first answer on
        server.start()
        threading.Thread(target=runner.watch, name="policy", daemon=True).start()
        done = niced + [d for d in lower_priority() if d not in niced]  # this (training) thread only
        log.info("daemon %d started (%s; SCHED_IDLE and idle I/O for the training thread only); socket %s; "
                 "policy %s", os.getpid(), ", ".join(done) or "priority unchanged", server.path, settings)
        runner.loop()
        log.info("daemon %d stopped", os.getpid())
    finally:
        server.close()
        for s, h in old.items():
            signal.signal(s, h)
        os.close(lock_fd)
    return 0


def detach(argv: list[str], timeout: float = 60.0) -> dict:
    """Start `edgees daemon start --foreground ARGV` in a new session (output to daemon.out beside
    the log) and wait until it answers on its socket; its status, or the reason it died."""
    private_dir(daemon_dir())
    out = daemon_dir() / "daemon.out"
    cmd = [sys.executable, "-m", "edgees.cli", "daemon", "start", "--foreground", "--no-stderr", *argv]
    with open(out, "ab") as f:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True,
                             cwd="/", close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            tail = out.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise EdgeesError(f"the daemon exited at start ({tail[0]}); see {out}")
        try:
            return control.request("status", timeout=5.0)
        except control.DaemonNotRunning:
            time.sleep(0.1)
    raise EdgeesError(f"the daemon (pid {p.pid}) did not answer within {timeout:g}s; see {log_path()}")


def stop_daemon(timeout: float = STOP_TIMEOUT_S) -> int:
    """Ask the daemon to stop and wait for it to go (its lock released); its pid."""
    answer = control.request("stop")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fd = os.open(str(lock_path()), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return answer["pid"]
        except BlockingIOError:
            time.sleep(0.1)
        finally:
            os.close(fd)
    raise EdgeesError(f"the daemon (pid {answer['pid']}) is still stopping after {timeout:g}s; "
                      f"see {log_path()}, or kill it (its runs resume on the next start)")


def systemd_unit(exe: list[str], memory_high: str = "2G", env: dict | None = None) -> str:
    envs = "".join(f"Environment={k}={v}\n" for k, v in (env or {}).items())
    return f"""\
[Unit]
Description=edgees background adaptation daemon (QES fine-tuning while the machine is idle)

[Service]
Type=simple
{envs}ExecStart={" ".join(exe)} daemon start --foreground
Nice=19
CPUSchedulingPolicy=idle
IOSchedulingClass=idle
MemoryHigh={memory_high}
Restart=on-failure
RestartSec=30
KillSignal=SIGTERM
TimeoutStopSec={STOP_TIMEOUT_S}

[Install]
WantedBy=default.target
"""


def launchd_plist(exe: list[str]) -> str:
    args = "\n".join(f"    <string>{a}</string>" for a in [*exe, "daemon", "start", "--foreground"])
    return f"""\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>org.edgees.daemon</string>
  <key>ProgramArguments</key>
  <array>
{args}
  </array>
  <key>ProcessType</key>
  <string>Background</string>
  <key>LowPriorityIO</key>
  <true/>
  <key>Nice</key>
  <integer>19</integer>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ExitTimeOut</key>
  <integer>{STOP_TIMEOUT_S}</integer>
</dict>
</plist>
"""


def unit_path(kind: str) -> Path:
    if kind == "systemd":
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return base / "systemd" / "user" / "edgees.service"
    return Path.home() / "Library" / "LaunchAgents" / "org.edgees.daemon.plist"
