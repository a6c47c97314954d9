#!/usr/bin/env python3
"""The daemon's politeness figures, side by side in one run, on one model.

    python tools/bench_daemon.py                          # a generated tiny model: checks the tool works
    python tools/bench_daemon.py smollm2-135m --rounds 5  # the figures for docs/benchmarks.md

Each figure has a baseline measured in the same run, and the ratio of the two:
  stop_s          SIGTERM (at a random 0-1 s into training) to exit   vs one member's evaluation
  pause_socket_s  `pause` on the socket to the job's state "paused"   vs one member's evaluation
  pause_busy_reason_s  CPU burners (one per core) start to status naming "busy" (the member in
                  flight is aborted then)                              vs the policy interval
  pause_busy_s    the burners' start to the job's state "paused"       vs the policy interval
  resume_busy_s   the burners' end to the next logged step            vs interval x resume_after
  paused_cpu      the daemon's CPU use (cores, /proc) while paused    vs the same while training
  paused_rss_mb   its RSS while paused, model held                    vs the same while training
  released_rss_mb its RSS while paused after release_after            vs the same while training
  publish_s       a publish: gate, write from the live weights, switch  vs one copy of the model file
Everything runs under a temporary EDGEES_HOME and XDG_RUNTIME_DIR (a registry name is resolved from
your models dir first): your daemon, jobs and runs are not touched. The task is the log-likelihood
of a fixed answer (no generation: steps cost the same every time). Prints one JSON object per figure
(the first line: the machine and settings), then a table. Measure on a quiet machine: the busy pause
needs the other processes under --cpu-max before the burners start, or it is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgees.daemon import control

HZ = os.sysconf("SC_CLK_TCK")
HANG = 900.0  # seconds: a hang guard for each wait, never a figure


def job_toml(name: str, model: Path, workdir: Path, args, publish: str = "") -> str:
    return f"""name = "{name}"
model = "{model}"
task = "jsonl:answers.jsonl"
workdir = "{workdir}"
threads = {args.threads}
[task_opt]
reward = "likelihood"
[config]
pairs = {args.pairs}
prompts = {args.prompts}
eval_n = 4
eval_every = 0
checkpoint_every = 1000
[budget]
steps = 1000000
{publish}"""


class Daemon:
    """One `edgees daemon start --foreground` under the bench's EDGEES_HOME."""

    def __init__(self, home: Path, *flags: str):
        self.home = home
        self.err = open(home / "daemon.stderr", "ab")
        self.p = subprocess.Popen([sys.executable, "-m", "edgees.cli", "daemon", "start", "--foreground",
                                   "--no-stderr", *flags], stdout=subprocess.DEVNULL, stderr=self.err)
        self.pid = self.p.pid

    def wait(self, what: str, cond, timeout: float = HANG, every: float = 0.02):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.p.returncode}) waiting for {what}; see {self.home}")
            try:
                value = cond()
            except control.DaemonNotRunning:
                value = None
            if value:
                return value
            time.sleep(every)
        raise RuntimeError(f"hang guard: no {what} within {timeout:g}s; see {self.home}/daemon/daemon.log")

    def job(self, name: str) -> dict:
        return control.request("status", timeout=10.0)["jobs"].get(name) or {}

    def step(self, name: str) -> int:
        return self.job(name).get("step") or 0

    def sigterm(self) -> float:
        """SIGTERM; seconds until the process has exited."""
        t0 = time.perf_counter()
        self.p.terminate()
        self.p.wait(timeout=HANG)
        dt = time.perf_counter() - t0
        self.err.close()
        return dt

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.err.close()


def proc_sample(pid: int) -> tuple[float, float, float]:
    """(monotonic time, CPU seconds of every thread, RSS in MB) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / HZ  # utime + stime
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return time.monotonic(), cpu, rss


def watch(pid: int, seconds: float, every: float = 0.5) -> dict:
    """The process's CPU use (cores) and RSS (MB, mean and max) over `seconds`."""
    samples = [proc_sample(pid)]
    end = samples[0][0] + seconds
    while time.monotonic() < end:
        time.sleep(min(every, max(0.0, end - time.monotonic())))
        samples.append(proc_sample(pid))
    (t0, c0, _), (t1, c1, _) = samples[0], samples[-1]
    rss = [s[2] for s in samples]
    return {"cpu_cores": (c1 - c0) / max(t1 - t0, 1e-9), "rss_mb": statistics.mean(rss), "rss_mb_max": max(rss)}


def copy_seconds(model: Path, tmp: Path) -> float:
    """One pass over the model file: read it, write a copy, fsync (what a publish must at least do)."""
    out = tmp / "copy.gguf"
    t0 = time.perf_counter()
    with open(model, "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
        dst.flush()
        os.fsync(dst.fileno())
    dt = time.perf_counter() - t0
    out.unlink()
    return dt


def member_seconds(home: Path, name: str, pairs: int) -> float:
    """Median time of one member's evaluation in the job's run (its metrics rows)."""
    from edgees.fileio import read_jsonl
    rows = read_jsonl(home / "daemon" / "runs" / name / "metrics.jsonl")
    per = [r["eval_seconds"] / (2 * pairs) for r in rows if "eval_seconds" in r]
    return statistics.median(per) if per else float("nan")


def training(d: Daemon, name: str, timeout: float = HANG) -> None:
    """Wait until the job logs a step after now (it is really training)."""
    at = d.wait("the daemon's socket", lambda: (d.step(name),))[0]
    d.wait(f"a step of {name} after step {at}", lambda: d.step(name) > at, timeout=timeout)


def phase_running_and_paused(home: Path, args, out: dict) -> None:
    """Training vs paused CPU/RSS, and `pause` on the socket, on one daemon."""
    d = Daemon(home, "--cpu-max", "off", "--release-after", str(args.window + 2))
    try:
        training(d, "bench")
        out["running"] = watch(d.pid, args.window)
        out["pause_socket_s"] = []
        for _ in range(args.rounds):
            training(d, "bench")
            time.sleep(random.uniform(0.0, 0.5))
            t0 = time.perf_counter()
            control.request("pause")
            d.wait("the paused state", lambda: d.job("bench").get("state") == "paused", every=0.01)
            out["pause_socket_s"].append(time.perf_counter() - t0)
            control.request("resume")
        training(d, "bench")
        control.request("pause")
        d.wait("the paused state", lambda: d.job("bench").get("state") == "paused")
        t_paused = time.monotonic()
        out["paused"] = watch(d.pid, args.window)
        log = home / "daemon" / "daemon.log"
        d.wait("the model released", lambda: "releasing the model" in log.read_text(), every=0.2)
        out["released_after_s"] = time.monotonic() - t_paused
        out["released"] = watch(d.pid, args.window)
        control.request("resume")
        training(d, "bench")
        time.sleep(random.uniform(0.0, 1.0))
    except BaseException:
        d.kill()
        raise
    out["stop_s"] = [d.sigterm()]  # the first stop sample: training again, mid-step


def phase_stop(home: Path, args, out: dict) -> None:
    for _ in range(args.rounds - len(out["stop_s"])):
        d = Daemon(home, "--cpu-max", "off")
        try:
            training(d, "bench")
            time.sleep(random.uniform(0.0, 1.0))
        except BaseException:
            d.kill()
            raise
        out["stop_s"].append(d.sigterm())


def phase_busy(home: Path, args, out: dict) -> None:
    d = Daemon(home, "--cpu-max", str(args.cpu_max), "--interval", str(args.interval), "--resume-after", "1")
    out["pause_busy_s"], out["pause_busy_reason_s"], out["resume_busy_s"] = [], [], []
    burners: list[subprocess.Popen] = []
    try:
        try:  # the machine must be quiet enough to train before the burners start
            training(d, "bench", timeout=30.0 + 10 * args.interval)
        except RuntimeError:
            reason = control.request("status")["pause_reason"]
            out["busy_skipped"] = f"the machine is busy already: {reason}"
            return
        for _ in range(args.rounds):
            training(d, "bench")
            t0 = time.perf_counter()
            burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
            d.wait("a busy verdict", lambda: (control.request("status")["pause_reason"] or "").startswith("busy"),
                   every=0.01)
            out["pause_busy_reason_s"].append(time.perf_counter() - t0)
            d.wait("a busy pause", lambda: (s := control.request("status"))["state"] == "paused"
                   and (s["pause_reason"] or "").startswith("busy"), every=0.01)
            out["pause_busy_s"].append(time.perf_counter() - t0)
            at = d.step("bench")
            for b in burners:
                b.kill()
                b.wait()
            t1 = time.perf_counter()
            d.wait("training after the burners", lambda: d.step("bench") > at, every=0.01)
            out["resume_busy_s"].append(time.perf_counter() - t1)
    finally:
        for b in burners:
            if b.poll() is None:
                b.kill()
                b.wait()
        if d.p.poll() is None:
            d.sigterm()


def phase_publish(home: Path, args, out: dict, model: Path, tmp: Path) -> None:
    (home / "daemon" / "jobs" / "bench.toml").unlink()  # one job at a time: no round-robin meanwhile
    pub = f'[publish]\ndir = "pub"\nevery = {args.publish_after}\nkeep = 2\nmargin = 1e9\n'
    (home / "daemon" / "jobs" / "pub.toml").write_text(job_toml("pub", model, tmp, args, pub))
    d = Daemon(home, "--cpu-max", "off")
    out["publish_s"], seen = [], set()
    try:
        while len(out["publish_s"]) < args.rounds:
            last = d.wait("a new publish",
                          lambda: (p := d.job("pub").get("last_publish")) and p["step"] not in seen and p)
            seen.add(last["step"])
            out["publish_s"].append(last["seconds"])
            out.setdefault("publish_steps", []).append(last["step"])
    finally:
        if d.p.poll() is None:
            d.sigterm()
    out["copy_s"] = [copy_seconds(model, tmp) for _ in range(args.rounds)]


def figures(out: dict, args) -> list[dict]:
    member = out["member_s"]
    run = out["running"]
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    rows = [
        ("stop_s", out["stop_s"], "member_s", member),
        ("pause_socket_s", out["pause_socket_s"], "member_s", member),
        ("pause_busy_reason_s", out.get("pause_busy_reason_s", []), "interval_s", args.interval),
        ("pause_busy_s", out.get("pause_busy_s", []), "interval_s", args.interval),
        ("resume_busy_s", out.get("resume_busy_s", []), "interval_s", args.interval),
        ("paused_cpu", [out["paused"]["cpu_cores"]], "running_cpu", run["cpu_cores"]),
        ("paused_rss_mb", [out["paused"]["rss_mb"]], "running_rss_mb", run["rss_mb"]),
        ("released_rss_mb", [out["released"]["rss_mb"]], "running_rss_mb", run["rss_mb"]),
        ("publish_s", out["publish_s"], "copy_s", med(out["copy_s"])),
    ]
    result = []
    for name, values, base_name, base in rows:
        m = med(values)
        row = {"figure": name, "median": m, "max": max(values) if values else float("nan"), "n": len(values),
               "values": [round(v, 6) for v in values], "baseline": base_name, "baseline_value": base,
               "ratio": m / base if base else float("nan")}
        if name.startswith(("pause_busy", "resume_busy")) and "busy_skipped" in out:
            row["skipped"] = out["busy_skipped"]
        result.append(row)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=None,
                    help="registry name or GGUF path (default: a generated tiny model)")
    ap.add_argument("--rounds", type=int, default=3, help="samples of each latency (default 3)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds of /proc sampling per CPU/RSS figure (10)")
    ap.add_argument("--interval", type=float, default=1.0, help="the policy interval for the busy pause, s (1)")
    ap.add_argument("--cpu-max", type=float, default=0.5, help="the policy's threshold, cores (0.5)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads of the job (1, the daemon's default)")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--publish-after", type=int, default=1, metavar="N",
                    help="publish every N steps: the publish figures are taken at steps N, 2N, ... (1)")
    ap.add_argument("--json", action="store_true", help="JSON lines only, no table")
    ap.add_argument("--keep", action="store_true", help="keep the temporary dir (logs, runs) for a look")
    args = ap.parse_args()
    if not sys.platform.startswith("linux"):
        print("bench_daemon reads /proc: Linux only", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="edgees-bench-daemon-"))
    if args.model is None:
        from edgees.gguf.tiny import make_tiny_model
        model, label = make_tiny_model(tmp / "tiny.gguf", "Q4_1", seed=0), "tiny (generated Q4_1)"
    else:
        from edgees.models import resolve_model
        model, label = resolve_model(args.model).resolve(), args.model  # before EDGEES_HOME moves
    home, xdg = tmp / "home", tmp / "xdg"
    home.mkdir()
    xdg.mkdir(mode=0o700)
    os.environ.update(EDGEES_HOME=str(home), XDG_RUNTIME_DIR=str(xdg))
    with open(tmp / "answers.jsonl", "w") as f:
        for i in range(40):
            line = {"prompt": f"Write a short sentence about {i} apples.", "answer": "the apples are red"}
            f.write(json.dumps(line) + "\n")
    jobs = home / "daemon" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "bench.toml").write_text(job_toml("bench", model, tmp, args))
    head = {"model": label, "path": str(model), "bytes": model.stat().st_size, "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds,
            "threads": args.threads, "pairs": args.pairs, "prompts": args.prompts, "window_s": args.window,
            "interval_s": args.interval, "cpu_max": args.cpu_max, "publish_after": args.publish_after}
    out: dict = {}
    random.seed(14)
    try:
        phase_running_and_paused(home, args, out)
        phase_stop(home, args, out)
        phase_busy(home, args, out)
        out["member_s"] = member_seconds(home, "bench", args.pairs)
        phase_publish(home, args, out, model, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    head["loadavg_end"] = os.getloadavg()
    head["released_after_s"] = out["released_after_s"]
    rows = figures(out, args)
    print(json.dumps(head))
    for row in rows:
        print(json.dumps(row))
    if not args.json:
        print(f"\n{label}: {args.rounds} rounds, {args.threads} thread(s), pairs {args.pairs}, prompts "
              f"{args.prompts}; load {head['loadavg_start'][0]:.2f} -> {head['loadavg_end'][0]:.2f}")
        print(f"{'figure':<16} {'median':>10} {'max':>10}  {'baseline':<15} {'value':>10} {'ratio':>8}")
        for r in rows:
            note = f"  ({r['skipped']})" if "skipped" in r else ""
            print(f"{r['figure']:<16} {r['median']:>10.4g} {r['max']:>10.4g}  {r['baseline']:<15} "
                  f"{r['baseline_value']:>10.4g} {r['ratio']:>8.3g}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
