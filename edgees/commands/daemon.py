"""`edgees daemon start|stop|status|pause|resume|submit|jobs|logs|install`: background adaptation."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from edgees.qes import algorithm as qes

EXAMPLES = """\
examples:
  edgees daemon start                                   detach; `--foreground` for service files
  edgees daemon submit job.toml                         a job file (see below)
  edgees daemon submit smollm2-135m --task jsonl:my.jsonl --task-opt reward=likelihood \\
        --name mine --publish-dir ~/models --publish-every 10 --steps 200
  edgees daemon submit smollm2-135m --task feedback:votes.jsonl --minutes 30 --publish-to ollama:mine
  edgees daemon status [--json]                         jobs, steps, held-out figures, pause reason
  edgees daemon pause | resume | stop
  edgees daemon install [--print] [--systemd | --launchd]

A job file is TOML: name, model, task, threads at the top; tables [task_opt], [config] (the
finetune settings), [budget] steps = N / minutes = M (a day), [publish] dir/every/keep/margin/hook/to
(to: ollama:NAME, lmstudio[:P/M] or llama-server:URL, as `edgees export --to`). Jobs live in
<data dir>/daemon/jobs/<name>.toml, their runs in <data dir>/daemon/runs/<name>; a published model
is <dir>/<name>-<step>.gguf with <dir>/<name>.gguf pointing at the newest. The daemon trains only
on AC power and while other processes use less than --cpu-max cores (and, when asked, after the
user has been idle --user-idle seconds and below --temp-max degrees); `status` says why it pauses.
"""


def register(sub) -> None:
    p = sub.add_parser("daemon", help="background adaptation: train jobs while the machine is idle, publish GGUFs",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="daemon_command", metavar="ACTION")
    s = dsub.add_parser("start", help="start the daemon (detached unless --foreground)")
    s.add_argument("--foreground", action="store_true", help="run in this process (what service files run)")
    s.add_argument("--no-stderr", action="store_true", help=argparse.SUPPRESS)  # detached: the log only
    s.add_argument("--cpu-max", default=None, metavar="CORES",
                   help="pause while other processes use more CPU cores than this (default 0.5; off: never)")
    s.add_argument("--interval", type=float, default=None, metavar="S", help="seconds between policy checks (default 5)")
    s.add_argument("--resume-after", type=int, default=None, metavar="N",
                   help="passing checks in a row before resuming (default 3)")
    s.add_argument("--user-idle", default=None, metavar="S",
                   help="train only after the user has been idle S seconds (logind IdleHint of a graphical "
                   "session; default off)")
    s.add_argument("--temp-max", default=None, metavar="C",
                   help="pause while the hottest temperature sensor is at or above C degrees Celsius (default off)")
    s.add_argument("--release-after", type=float, default=300.0, metavar="S",
                   help="seconds of pause after which the model is released from memory (default 300)")
    for name, text in (("stop", "stop at the next member boundary (checkpoint written) and wait for exit"),
                       ("pause", "pause at the next member boundary"), ("resume", "resume after pause")):
        dsub.add_parser(name, help=text)
    st = dsub.add_parser("status", help="the daemon and its jobs")
    st.add_argument("--json", action="store_true", help="one JSON object")
    j = dsub.add_parser("jobs", help="the jobs and their states")
    j.add_argument("--json", action="store_true", help="one JSON object")
    lg = dsub.add_parser("logs", help="the daemon's log")
    lg.add_argument("-n", type=int, default=50, help="last N lines (default 50)")
    _submit_parser(dsub)
    ins = dsub.add_parser("install", help="write a systemd user unit or launchd agent for the daemon")
    ins.add_argument("--print", action="store_true", help="print it instead of writing it")
    kind = ins.add_mutually_exclusive_group()
    kind.add_argument("--systemd", action="store_const", const="systemd", dest="kind")
    kind.add_argument("--launchd", action="store_const", const="launchd", dest="kind")
    ins.add_argument("--memory-high", default="2G", help="systemd MemoryHigh (default 2G)")
    p.set_defaults(func=run, daemon_parser=p)


def _submit_parser(dsub) -> None:
    sb = dsub.add_parser("submit", help="add a job: a job file, or MODEL --task T and finetune's flags")
    sb.add_argument("source", metavar="JOB.toml|MODEL")
    sb.add_argument("--name", default=None, help="job name (default: the file's or the model's stem)")
    sb.add_argument("--task", default=None, help="task spec (with MODEL)")
    sb.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE", help="task option, repeatable")
    sb.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default 1)")
    sb.add_argument("--minutes", type=float, default=None, metavar="M",
                    help="train at most M minutes a day ([budget] minutes); without --steps, every day without end")
    for f in fields(qes.QESConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            sb.add_argument(flag, action="store_true", default=None, help=f.metadata["help"])
        else:
            sb.add_argument(flag, type=qes.QESConfig.kind(f.name), default=None, metavar=f.name[0].upper(),
                            help=f.metadata["help"])
    sb.add_argument("--publish-dir", default=None, metavar="DIR", help="publish here (turns publishing on)")
    sb.add_argument("--publish-every", type=int, default=None, metavar="M", help="publish every M steps (default 10)")
    sb.add_argument("--publish-keep", type=int, default=None, metavar="N", help="versions kept (default 3)")
    sb.add_argument("--publish-margin", type=float, default=None, help="allowed held-out drop (default 0)")
    sb.add_argument("--hook", default=None, help="command run after a publish, with EDGEES_PUBLISHED=<path>")
    sb.add_argument("--publish-to", default=None, metavar="TARGET",
                    help="also publish to ollama:NAME, lmstudio[:P/M] or llama-server:URL (turns publishing on)")


def run(args) -> int:
    action = args.daemon_command
    if action is None:
        args.daemon_parser.print_help()
        return 2
    return globals()[f"_{action}"](args)


def _start(args) -> int:
    from edgees.daemon import service
    from edgees.daemon.policy import PolicySettings

    settings = PolicySettings.from_env(cpu_max=args.cpu_max, interval=args.interval, resume_after=args.resume_after,
                                       user_idle=args.user_idle, temp_max=args.temp_max)
    if args.foreground:
        return service.serve(settings, to_stderr=not args.no_stderr, release_after=args.release_after)
    fd = service.take_lock()  # refuse here, in one line, rather than in the child's output
    os.close(fd)
    argv = [f"--release-after={args.release_after}"]
    given = (("--cpu-max", args.cpu_max), ("--interval", args.interval), ("--resume-after", args.resume_after),
             ("--user-idle", args.user_idle), ("--temp-max", args.temp_max))
    for flag, value in given:
        if value is not None:
            argv.append(f"{flag}={value}")
    status = service.detach(argv)
    print(f"edgees daemon started (pid {status['pid']}); socket {status['socket']}; log {status['log']}")
    return 0


def _stop(args) -> int:
    from edgees.daemon import service
    pid = service.stop_daemon()
    print(f"edgees daemon {pid} stopped")
    return 0


def _pause(args) -> int:
    from edgees.daemon import control
    control.request("pause")
    print("paused: training stops at the next member boundary (`edgees daemon resume` to go on)")
    return 0


def _resume(args) -> int:
    from edgees.daemon import control
    control.request("resume")
    print("resumed (training goes on while the policy's conditions hold)")
    return 0


def _status(args) -> int:
    from edgees.daemon import control
    st = control.request("status")
    if args.json:
        print(json.dumps(st, sort_keys=True))
        return 0
    why = f" ({st['pause_reason']})" if st.get("pause_reason") else ""
    print(f"edgees daemon pid {st['pid']}: {st['state']}{why}; socket {st['socket']}")
    _print_jobs(st["jobs"])
    return 0


def _jobs(args) -> int:
    from edgees.daemon import control
    try:
        jobs = control.request("jobs")["jobs"]
    except control.DaemonNotRunning:
        jobs = _local_jobs()
    if args.json:
        print(json.dumps(jobs, sort_keys=True))
    else:
        _print_jobs(jobs)
    return 0


def _local_jobs() -> dict:
    from edgees.daemon.jobs import JobError, read_job
    from edgees.daemon.paths import jobs_dir
    out = {}
    for path in sorted(jobs_dir().glob("*.toml")):
        try:
            job = read_job(path)
            out[path.stem] = {"state": "not running", "file": str(path), "steps": job.steps}
        except JobError as exc:
            out[path.stem] = {"state": "error", "file": str(path), "error": str(exc)}
    return out


def _print_jobs(jobs: dict) -> None:
    if not jobs:
        print("  no jobs (add one with `edgees daemon submit`)")
    for name, j in jobs.items():
        if j["state"] == "error":
            print(f"  {name}: error: {j['error']}")
            continue
        line = f"  {name}: {j['state']}, step {j.get('step', '?')}/{j.get('steps', '?')}"
        h = j.get("heldout")
        if h:
            line += " held-out " + ", ".join(f"{k} {v:.3f}" for k, v in h.items() if k not in ("seconds", "n"))
        pub = j.get("last_publish")
        if pub:
            line += f"; published step {pub['step']} -> {pub['path']}"
            to = pub.get("to")
            if to:
                line += f" ({to['target']}: failed: {to['error']})" if to.get("error") else f" and {to['target']}"
        print(line)


def _logs(args) -> int:
    from edgees.daemon.paths import log_path
    path = log_path()
    if not path.exists():
        print(f"no daemon log yet ({path})", file=sys.stderr)
        return 1
    for line in path.read_text(errors="replace").splitlines()[-args.n:]:
        print(line)
    return 0


def _submit(args) -> int:
    from edgees.daemon.jobs import FOREVER, job_text, submit
    from edgees.daemon.paths import jobs_dir
    from edgees.errors import EdgeesError
    from edgees.tasks.base import parse_options

    src = Path(args.source)
    if src.suffix == ".toml":
        if args.task or args.task_opt:
            raise EdgeesError("a job file carries its task; give --task only with a MODEL")
        try:
            text = src.read_bytes().decode("utf-8")
        except OSError as exc:
            raise EdgeesError(f"{src}: cannot read the job file ({exc.strerror}); check the path") from None
        job = submit(text, src, jobs_dir(), args.name)
    else:
        if not args.task:
            raise EdgeesError("submit MODEL needs --task T (or give a job file, JOB.toml)")
        config = {f.name: getattr(args, f.name) for f in fields(qes.QESConfig)
                  if f.name != "steps" and getattr(args, f.name) is not None}
        publish = None
        if args.publish_dir or args.publish_every or args.publish_to:
            publish = {"dir": str(Path(args.publish_dir).resolve()) if args.publish_dir else None,
                       "every": args.publish_every, "keep": args.publish_keep,
                       "margin": args.publish_margin, "hook": args.hook, "to": args.publish_to}
        name = args.name or Path(args.source).stem.split(".")[0]
        text = job_text(name, args.source, args.task, os.getcwd(), parse_options(args.task_opt), config,
                        args.steps, publish, args.threads, minutes=args.minutes)
        job = submit(text, None, jobs_dir(), name)
    steps = f"{job.minutes:g} minutes a day" if job.minutes and job.steps >= FOREVER else f"{job.steps} steps"
    if job.minutes and job.steps < FOREVER:
        steps += f", {job.minutes:g} minutes a day"
    to = f" and {job.publish.to}" if job.publish and job.publish.to else ""
    print(f"job {job.name} submitted: {job.path} ({steps}"
          + (f", publishing to {job.publish.dir}{to} every {job.publish.every}" if job.publish else "") + ")")
    return 0


def _install(args) -> int:
    from edgees.daemon import service
    kind = args.kind or ("launchd" if sys.platform == "darwin" else "systemd")
    exe = [shlex.quote(sys.executable), "-m", "edgees.cli"]
    env = {k: os.environ[k] for k in ("EDGEES_HOME",) if os.environ.get(k)}
    text = service.systemd_unit(exe, args.memory_high, env) if kind == "systemd" else service.launchd_plist(exe)
    if args.print:
        print(text, end="")
        return 0
    from edgees.fileio import atomic_write
    path = service.unit_path(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode())
    how = ("systemctl --user daemon-reload && systemctl --user enable --now edgees" if kind == "systemd"
           else f"launchctl load {path}")
    print(f"wrote {path}; start it with: {how}")
    return 0

