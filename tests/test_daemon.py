"""edgees daemon end to end: real daemon processes, a real Unix socket, llama.cpp on the toy model.

Each test's daemon lives under its own EDGEES_HOME and XDG_RUNTIME_DIR. The policy's CPU condition
is off except in the test about it (other tests on this machine may keep the CPUs busy); the
deadlines below are hang guards, never assertions about how long something takes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgees.daemon import control
from edgees.daemon.jobs import JobError, parse_job
from edgees.daemon.paths import jobs_dir, runs_dir, socket_path
from edgees.run.checkpoint import list_checkpoints, step_of
from edgees.run.log import RunDir

from toy_task import ANSWER, edgees_cmd, toy_model, write_answers

DEADLINE = 180.0
pytestmark = pytest.mark.slow

REWARD_FROM_FILE = '''
import os
def reward(prompts, completions, **kw):
    v = float(open(os.environ["EDGEES_TEST_REWARD"]).read())
    return [v] * len(completions)
'''


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """A daemon environment: XDG_RUNTIME_DIR in tmp, short policy interval, CPU condition off."""
    run = tmp_path / "xdg"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    monkeypatch.setenv("EDGEES_DAEMON_CPU_MAX", "off")
    monkeypatch.setenv("EDGEES_DAEMON_INTERVAL", "0.2")
    monkeypatch.setenv("EDGEES_DAEMON_RESUME_AFTER", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    toy_model(tmp_path / "toy.gguf")
    write_answers(tmp_path / "answers.jsonl")
    yield tmp_path
    for p in STARTED:  # a failed test never leaves its daemon running
        if p.poll() is None:
            p.kill()
            p.wait()
    STARTED.clear()
    kill_detached()


STARTED: list[subprocess.Popen] = []


def kill_detached() -> None:
    """The detached daemon of this test's EDGEES_HOME, if a failed test left it: its pid is in the
    lock file, and the lock is still held."""
    import fcntl
    from edgees.daemon.paths import lock_path
    if not lock_path().exists():
        return
    fd = os.open(lock_path(), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = int(os.pread(fd, 32, 0).decode().strip())
        os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)


def job_toml(name: str, steps: int, publish: str = "", task: str | None = None, opts: str = 'reward = "likelihood"',
             checkpoint_every: int = 2) -> str:
    task = task or "jsonl:answers.jsonl"
    return f"""name = "{name}"
model = "toy.gguf"
task = "{task}"
[task_opt]
{opts}
[config]
pairs = 2
prompts = 2
sigma = 0.3
alpha = 1.0
window = 4
eval_n = 2
eval_every = 0
checkpoint_every = {checkpoint_every}
[budget]
steps = {steps}
{publish}"""


def cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(edgees_cmd(list(args)), capture_output=True, text=True, timeout=DEADLINE)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def submit(env: Path, name: str, text: str) -> None:
    (env / f"{name}.toml").write_text(text)
    cli("daemon", "submit", str(env / f"{name}.toml"))


def start_foreground(*flags) -> subprocess.Popen:
    p = subprocess.Popen(edgees_cmd(["daemon", "start", "--foreground", "--no-stderr", *flags]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    STARTED.append(p)
    return p


def wait_for(what: str, cond, proc: subprocess.Popen | None = None, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode} waiting for {what}: {proc.stderr.read()}")
        try:
            value = cond()
        except control.DaemonNotRunning:
            value = None
        if value:
            return value
        time.sleep(0.1)
    try:  # what the daemon says it is doing: a job in "error" names its error
        jobs = {name: (j["state"], j.get("error")) for name, j in status()["jobs"].items()}
    except control.DaemonNotRunning:
        jobs = "daemon not answering"
    raise AssertionError(f"hang guard: no {what} within {deadline}s; jobs: {jobs}")


def status() -> dict:
    return control.request("status")


def job_step(name: str) -> int:
    job = status()["jobs"].get(name)
    return (job or {}).get("step") or 0


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> int:
    proc.send_signal(sig)
    rc = proc.wait(timeout=DEADLINE)
    proc.stderr.close()
    return rc


def tcp_sockets(pid: int) -> list[str]:
    """The process's open sockets that are TCP (v4 or v6): their inodes in /proc/<pid>/net/tcp*."""
    mine = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    assert mine  # the control socket at least
    tcp = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            tcp.add(line.split()[9])
    return sorted(mine & tcp)


def verify(run: Path, *flags) -> dict:
    return json.loads(cli("verify", str(run), "--json", *flags).stdout)


def test_submit_trains_publishes_and_llama_cpp_loads_it(env):
    submit(env, "toy", job_toml("toy", 6, '[publish]\ndir = "pub"\nevery = 2\nkeep = 2\n'))
    out = cli("daemon", "start").stdout
    assert "started" in out
    try:
        st = wait_for("job done", lambda: status()["jobs"]["toy"]["state"] == "done" and status())
        assert st["pid"] > 0 and st["socket"] == str(socket_path())
        job = st["jobs"]["toy"]
        assert job["step"] == 6 and job["heldout_step"] == 6 and "loglik" in job["heldout"]
        assert job["last_publish"]["step"] == 6
        js = json.loads(cli("daemon", "status", "--json").stdout)
        assert js["jobs"]["toy"]["state"] == "done"
    finally:
        cli("daemon", "stop")
    pub = env / "pub"
    link = pub / "toy.gguf"
    assert link.is_symlink() and os.readlink(link) == "toy-6.gguf"
    assert sorted(p.name for p in pub.glob("toy-*.gguf")) == ["toy-4.gguf", "toy-6.gguf"]  # keep = 2
    rows = [json.loads(x) for x in (pub / "toy.history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    from edgees.fileio import sha256_file
    assert rows[-1]["sha256"] == sha256_file(link)
    from edgees.engine.engine import Engine
    with Engine(link, n_threads=1, max_tokens=4) as eng:
        assert len(eng.generate(["Write a short sentence about 3 apples."])) == 1
    assert verify(runs_dir() / "toy")["steps"] == 6
    log = cli("daemon", "logs", "-n", "200").stdout
    assert "published step 6" in log


def test_pause_resume_sigterm_second_daemon_and_socket_modes(env):
    submit(env, "long", job_toml("long", 10_000, checkpoint_every=1000))
    proc = start_foreground()
    try:
        wait_for("a step", lambda: job_step("long") >= 1, proc)
        sock = socket_path()
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert not tcp_sockets(proc.pid)
        import platform
        from edgees.daemon.service import IOPRIO_CLASS_IDLE, IOPRIO_SYSCALLS, io_class
        assert io_class(proc.pid) == IOPRIO_CLASS_IDLE or platform.machine() not in IOPRIO_SYSCALLS
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == 19
        second = cli("daemon", "start", "--foreground", check=False)
        assert second.returncode != 0 and "already running" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert "already running" in cli("daemon", "start", check=False).stderr
        cli("daemon", "pause")
        # the job is marked paused when its member stops, the daemon a moment later ("pausing" between)
        wait_for("paused", lambda: (lambda s: s["state"] == s["jobs"]["long"]["state"] == "paused")(status()), proc)
        st = status()
        assert st["pause_reason"] == "paused by the user" and st["state"] == "paused"
        held = st["jobs"]["long"]["step"]
        time.sleep(1.0)
        assert job_step("long") == held == len(RunDir(runs_dir() / "long").read_steps())
        cli("daemon", "resume")
        wait_for("training again", lambda: job_step("long") > held, proc)
    finally:
        rc = stop(proc)
    assert rc == 0
    run = runs_dir() / "long"
    logged = len(RunDir(run).read_steps())
    assert logged > held
    assert step_of(list_checkpoints(run)[0]) == logged  # written at the stop (else only every 1000 steps)
    assert verify(run)["steps"] == logged and not verify(run)["torn"]
    assert not sock.exists()


def test_another_uid_is_refused(env, monkeypatch):
    """nobody cannot reach the socket through the 0700 dir; with the dir and socket opened up,
    the daemon itself refuses the peer by its uid (SO_PEERCRED)."""
    for d in Path(sys.executable).parents:  # nobody must be able to run this python at all
        if not os.stat(d).st_mode & stat.S_IXOTH:
            pytest.skip(f"{d} is closed to other users ({oct(os.stat(d).st_mode & 0o777)}), so nobody cannot "
                        "run this venv's python; clone into a directory others can enter to run this test")
    xdg = Path(tempfile.mkdtemp(prefix="edgees-xdg-", dir="/tmp"))
    os.chmod(xdg, 0o711)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    proc = start_foreground()
    try:
        wait_for("the socket", lambda: status(), proc)
        probe = ("import json, socket, sys\n"
                 "s = socket.socket(socket.AF_UNIX)\n"
                 "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('EACCES'); sys.exit(0)\n"
                 "s.sendall(b'{\"cmd\": \"stop\"}\\n'); print(s.makefile().readline().strip())\n")
        args = [sys.executable, "-c", probe, str(socket_path())]
        first = subprocess.run(args, user=65534, group=65534, capture_output=True, text=True, timeout=60)
        assert first.stdout.strip() == "EACCES", first
        os.chmod(socket_path().parent, 0o711)
        os.chmod(socket_path(), 0o666)
        second = subprocess.run(args, user=65534, group=65534, capture_output=True, text=True, timeout=60)
        answer = json.loads(second.stdout)
        assert answer["ok"] is False and "another user" in answer["error"], second
        assert proc.poll() is None and status()["state"] != "stopping"  # the stop was not obeyed
    finally:
        assert stop(proc) == 0
        import shutil
        shutil.rmtree(xdg, ignore_errors=True)


def test_bad_job_file_leaves_the_daemon_and_other_jobs_running(env):
    submit(env, "good", job_toml("good", 10_000, checkpoint_every=0))
    jobs_dir().joinpath("bad.toml").write_text('model = "toy.gguf"\ntask = "arithmetic"\nsigma = [1\n')
    jobs_dir().joinpath("typo.toml").write_text(job_toml("typo", 5).replace("pairs", "piars"))
    proc = start_foreground()
    try:
        wait_for("a step of the good job", lambda: job_step("good") >= 2, proc)
        jobs = status()["jobs"]
        assert jobs["bad"]["state"] == "error" and "not a valid TOML" in jobs["bad"]["error"]
        assert jobs["typo"]["state"] == "error" and "'piars'" in jobs["typo"]["error"]
        assert "\n" not in jobs["typo"]["error"]
        out = cli("daemon", "status").stdout
        assert "typo: error:" in out and "good: running" in out
    finally:
        assert stop(proc, signal.SIGINT) == 0
    log = (env / "edgees-home" / "daemon" / "daemon.log").read_text()
    assert "job typo:" in log and "'piars'" in log


def test_a_worse_candidate_is_never_published(env, monkeypatch):
    (env / "reward.py").write_text(REWARD_FROM_FILE)
    value = env / "value.txt"
    value.write_text("0.5")
    monkeypatch.setenv("EDGEES_TEST_REWARD", str(value))
    task = "python:reward.py:reward"
    submit(env, "gated", job_toml("gated", 10_000, '[publish]\ndir = "pub"\nevery = 1\nkeep = 50\nmargin = 0.05\n',
                                  task=task, opts='data = "answers.jsonl"\nmax_tokens = 2'))
    proc = start_foreground()
    try:
        wait_for("a publish", lambda: status()["jobs"]["gated"]["last_publish"], proc)
        (env / "value.tmp").write_text("0.1")  # swapped in whole: a reward read mid-write would
        os.replace(env / "value.tmp", value)    # see "" and fail the job (a ValueError in the user's code)
        gate = wait_for("a rejected candidate", lambda: (g := status()["jobs"]["gated"]["last_gate"])
                        and not g["published"] and g["value"] < 0.45 and g, proc)
        assert "worse than" in gate["reason"] and gate["reference"] == 0.5
        last_published = status()["jobs"]["gated"]["last_publish"]["step"]
        wait_for("another rejection", lambda: status()["jobs"]["gated"]["last_gate"]["step"] > gate["step"], proc)
        assert status()["jobs"]["gated"]["last_publish"]["step"] == last_published
    finally:
        assert stop(proc) == 0
    rows = [json.loads(x) for x in (env / "pub" / "gated.history.jsonl").read_text().splitlines()]
    assert rows and all(r["metrics"]["reward"] >= 0.45 for r in rows)
    assert os.readlink(env / "pub" / "gated.gguf") == f"gated-{rows[-1]['step']}.gguf"


def test_kill_9_at_random_moments_then_resume_and_verify(env):
    kills = int(os.environ.get("EDGEES_TEST_DAEMON_KILLS", "10"))
    submit(env, "k", job_toml("k", 10_000, '[publish]\ndir = "pub"\nevery = 1\nkeep = 2\nmargin = 1000\n',
                              checkpoint_every=1))
    rng = random.Random(14)
    run = runs_dir() / "k"
    before = 0
    for _ in range(kills):
        proc = start_foreground()
        wait_for("a step after the restart", lambda: job_step("k") > before, proc)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        proc.wait(timeout=DEADLINE)
        proc.stderr.close()
        before = len(RunDir(run).read_steps())
    proc = start_foreground()
    try:
        wait_for("resumed past the kills", lambda: job_step("k") > before, proc)
    finally:
        assert stop(proc) == 0
    logged = len(RunDir(run).read_steps())
    assert verify(run)["steps"] == logged
    assert verify(run, "--from-checkpoint")["steps"] == logged
    link = env / "pub" / "k.gguf"
    assert (env / "pub" / os.readlink(link)).is_file()
    assert not list((env / "pub").glob(".*tmp-*"))  # temp files of killed publishes are cleaned


def sides(path: Path) -> dict[str, str]:
    """Each line's side of the jsonl: split, keyed by its prompt (the file's complete lines only)."""
    from edgees.tasks.base import get_task
    complete = path.with_suffix(".complete")
    text = path.read_text()
    complete.write_text(text[:text.rfind("\n") + 1])
    train, heldout = get_task(f"jsonl:{complete}").split()
    return {e.prompt[-1]["content"]: s for s, xs in (("train", train), ("heldout", heldout)) for e in xs}


def test_a_growing_data_file_is_picked_up_and_old_lines_keep_their_side(env):
    data = env / "answers.jsonl"
    first = sides(data)
    submit(env, "grow", job_toml("grow", 10_000, checkpoint_every=1000))
    proc = start_foreground()
    examples = lambda: status()["jobs"]["grow"]["examples"] or {}  # noqa: E731
    try:
        wait_for("a step", lambda: job_step("grow") >= 1, proc)
        assert examples()["train"] == list(first.values()).count("train")
        new = [json.dumps({"prompt": f"Name {i} red things.", "answer": ANSWER}) for i in range(40)]
        new.append(json.dumps({"prompt": "Name 40 red things.", "answer": ANSWER, "split": "train"}))
        with open(data, "a") as f:  # an app appending: 40 whole lines and half of the next one
            f.write("\n".join(new[:40]) + "\n" + new[40][:25])
        grown = sides(data)
        assert len(grown) == 80 and all(grown[p] == s for p, s in first.items())
        want = list(grown.values()).count("train")
        wait_for("the new lines in the split", lambda: examples().get("train") == want, proc)
        at = job_step("grow")
        wait_for("two steps with a half line in the file", lambda: job_step("grow") >= at + 2, proc)
        assert examples()["train"] == want and status()["jobs"]["grow"]["state"] == "running"
        with open(data, "a") as f:
            f.write(new[40][25:] + "\n")
        whole = sides(data)
        assert len(whole) == 81 and all(whole[p] == s for p, s in grown.items())
        assert list(whole.values()).count("train") == want + 1
        wait_for("the completed line", lambda: examples().get("train") == want + 1, proc)
    finally:
        assert stop(proc) == 0
    log = (env / "edgees-home" / "daemon" / "daemon.log").read_text()
    assert f"grow: data: {want} train" in log and f"grow: data: {want + 1} train" in log
    assert "going on with" not in log  # the half line was never an error
    assert verify(runs_dir() / "grow")["steps"] == len(RunDir(runs_dir() / "grow").read_steps())


def test_battery_power_pauses_and_mains_resumes(env, monkeypatch):
    power = env / "power"
    for name, kind, extra in (("BAT0", "Battery", {"present": "1"}), ("AC", "Mains", {"online": "0"})):
        (power / name).mkdir(parents=True)
        (power / name / "type").write_text(kind + "\n")
        for k, v in extra.items():
            (power / name / k).write_text(v + "\n")
    monkeypatch.setenv("EDGEES_DAEMON_POWER_DIR", str(power))
    submit(env, "p", job_toml("p", 10_000, checkpoint_every=0))
    proc = start_foreground()
    try:
        wait_for("paused on battery", lambda: status()["pause_reason"] == "on battery power", proc)
        assert job_step("p") == 0
        (power / "AC" / "online").write_text("1\n")
        wait_for("training on mains", lambda: job_step("p") >= 1, proc)
        assert status()["pause_reason"] is None
    finally:
        assert stop(proc) == 0


def test_a_cpu_burning_process_pauses_the_daemon_until_it_ends(env):
    submit(env, "c", job_toml("c", 10_000, checkpoint_every=0))
    proc = start_foreground("--cpu-max", "0.9", "--interval", "0.3", "--resume-after", "2")
    burners = []
    try:
        wait_for("a step", lambda: job_step("c") >= 1, proc)
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
        reason = wait_for("a busy pause", lambda: (r := status()["pause_reason"]) and r.startswith("busy") and r, proc)
        assert "other processes use" in reason
        held = job_step("c")
        for b in burners:
            b.kill()
            b.wait()
        wait_for("training again", lambda: job_step("c") > held, proc)
    finally:
        for b in burners:
            if b.poll() is None:
                b.kill()
                b.wait()
        assert stop(proc) == 0


def test_submit_model_form_and_job_file_errors(env):
    out = cli("daemon", "submit", "toy.gguf", "--task", "jsonl:answers.jsonl", "--task-opt", "reward=likelihood",
              "--name", "cli-job", "--publish-dir", "pub", "--publish-every", "3", "--steps", "9",
              "--pairs", "2").stdout
    assert "cli-job submitted" in out
    from edgees.daemon.jobs import read_job
    job = read_job(jobs_dir() / "cli-job.toml")
    assert (job.steps, job.cfg.pairs, job.publish.every, job.workdir) == (9, 2, 3, env)
    assert job.publish.dir == env / "pub" and job.task_opt == {"reward": "likelihood"}
    for text, words in ((job_toml("x", 5) + "[budget2]\n", "unknown key 'budget2'"),
                        (job_toml("x", 5).replace("steps = 5", "minutes = 0"), "budget.minutes must be in"),
                        (job_toml("x", 5).replace("steps = 5", 'minutes = "30"'), "budget.minutes must be a number"),
                        (job_toml("x", 0), "budget.steps"),
                        (job_toml("x", 5).replace("sigma = 0.3", "sigma = 9.0"), "config.sigma"),
                        (job_toml("x", 5).replace('name = "x"', 'name = "../x"'), "name '../x'"),
                        ('task = "arithmetic"\n', "no model")):
        with pytest.raises(JobError, match=words.replace("(", r"\(")):
            parse_job(text, Path("j.toml"), default_name="x")
    bad = cli("daemon", "submit", str(env / "nope.toml"), check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    p = cli("daemon", "status", check=False)
    assert p.returncode == 3 and "no edgees daemon is running" in p.stderr


def test_a_job_resumes_a_run_that_predates_a_field_with_the_value_it_ran_with():
    from edgees.daemon.jobs import resume_config
    from edgees.qes.algorithm import ALPHA_DECAY
    job = parse_job(job_toml("m", 5), Path("j.toml"))
    assert job.cfg.alpha_decay == ALPHA_DECAY != 0 and "alpha_decay" not in job.config_keys
    recorded = {k: getattr(job.cfg, k) for k in ("pairs", "prompts", "sigma", "alpha", "window")}
    before = resume_config(job, {"config": recorded})  # a run made before alpha_decay existed
    assert before.alpha_decay == 0 and before.sigma == job.cfg.sigma
    assert resume_config(job, {"config": {**recorded, "alpha_decay": ALPHA_DECAY}}) == job.cfg  # a new run
    told = parse_job(job_toml("m", 5).replace("eval_n = 2", "eval_n = 2\nalpha_decay = 30"), Path("j.toml"))
    assert resume_config(told, {"config": recorded}).alpha_decay == 30  # the file says: it wins


def test_a_job_with_a_scored_reward_starts_at_a_constant_step_and_resumes_with_what_it_ran_with():
    from edgees.daemon.jobs import resume_config, task_defaults
    job = parse_job(job_toml("m", 5), Path("j.toml"))
    assert task_defaults(job, "likelihood").alpha_decay == 0 and task_defaults(job, "generate").alpha_decay == 20
    told = parse_job(job_toml("m", 5).replace("eval_n = 2", "eval_n = 2\nalpha_decay = 30"), Path("j.toml"))
    assert task_defaults(told, "likelihood").alpha_decay == 30
    ran = {k: getattr(job.cfg, k) for k in ("pairs", "prompts", "sigma", "alpha", "window")}
    assert resume_config(job, {"config": {**ran, "alpha_decay": 0}}).alpha_decay == 0  # not the file's default 20
    assert resume_config(told, {"config": {**ran, "alpha_decay": 0}}).alpha_decay == 30


def test_a_job_narrows_its_tensors_in_config():
    job = parse_job(job_toml("m", 5).replace("eval_n = 2", 'eval_n = 2\ntensors = "blk.*.attn_*"'), Path("j.toml"))
    assert job.cfg.tensors == "blk.*.attn_*"
    with pytest.raises(JobError, match="tensors must be"):
        parse_job(job_toml("m", 5).replace("eval_n = 2", "eval_n = 2\ntensors = 3"), Path("j.toml"))


def test_daily_budget_counts_per_local_day(tmp_path):
    from edgees.daemon.budget import FILE, DailyBudget
    from edgees.daemon.jobs import FOREVER
    job = parse_job(job_toml("m", 5).replace("steps = 5", "minutes = 1.5"), Path("j.toml"))
    assert job.minutes == 1.5 and job.steps == FOREVER  # minutes alone: every day, without end
    b = DailyBudget(tmp_path, 1.5)
    assert b.used() == 0 and b.left() == 90
    b.add(30, day="2026-12-05")
    b.add(50, day="2026-12-05")
    assert b.used("2026-12-05") == 80 and b.left("2026-12-05") == 10 and b.left("2026-12-06") == 90
    b.add(5, day="2026-12-06")  # a new day starts from nothing
    assert b.used("2026-12-06") == 5 and b.used("2026-12-05") == 0
    (tmp_path / FILE).write_text("{torn")
    assert b.used("2026-12-06") == 0  # a budget, not a log: unreadable counts as nothing used


def test_a_job_stops_for_the_day_when_its_minutes_are_used(env):
    from edgees.daemon.budget import FILE
    submit(env, "day", job_toml("day", 10_000, checkpoint_every=1000).replace("steps = 10000", "minutes = 0.05"))
    proc = start_foreground()
    job = lambda: status()["jobs"]["day"]  # noqa: E731
    try:
        wait_for("the day's minutes used", lambda: job()["state"] == "waiting", proc)
        used = job()["budget"]
        assert used["minutes_per_day"] == 0.05 and used["used_minutes"] >= 0.05 and job_step("day") >= 1
        held = job_step("day")
        time.sleep(1.5)
        assert job_step("day") == held and status()["state"] == "idle"
    finally:
        assert stop(proc) == 0
    proc = start_foreground()  # a restart does not hand out the day's minutes again
    try:
        wait_for("the waiting job", lambda: job()["state"] == "waiting", proc)
        budget = runs_dir() / "day" / FILE
        row = json.loads(budget.read_text())
        budget.write_text(json.dumps({**row, "day": "2000-01-01"}))  # the next day comes
        wait_for("training on the new day", lambda: job_step("day") > held, proc)
    finally:
        assert stop(proc) == 0
    log = (env / "edgees-home" / "daemon" / "daemon.log").read_text()
    assert "today's 0.05 minutes are used" in log


def test_install_print_systemd_and_launchd():
    unit = cli("daemon", "install", "--print", "--systemd").stdout
    for line in ("Nice=19", "CPUSchedulingPolicy=idle", "IOSchedulingClass=idle", "MemoryHigh=2G",
                 "Restart=on-failure", "TimeoutStopSec=300", "WantedBy=default.target"):
        assert line in unit.splitlines(), line
    exec_line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    assert exec_line.endswith("-m edgees.cli daemon start --foreground")
    assert f"Environment=EDGEES_HOME={os.environ['EDGEES_HOME']}" in unit
    plist = cli("daemon", "install", "--print", "--launchd").stdout
    import plistlib
    d = plistlib.loads(plist.encode())
    assert d["ProcessType"] == "Background" and d["LowPriorityIO"] is True
    assert d["ProgramArguments"][-3:] == ["daemon", "start", "--foreground"]


def test_submit_refuses_a_tensors_glob_that_matches_nothing_and_writes_no_job(env):
    bad = cli("daemon", "submit", "toy.gguf", "--task", "jsonl:answers.jsonl", "--name", "narrow",
              "--tensors", "blk.*.nothing_*", check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "blk.*.nothing_*" in bad.stderr and not (jobs_dir() / "narrow.toml").exists()
    ok = cli("daemon", "submit", "toy.gguf", "--task", "jsonl:answers.jsonl", "--name", "narrow",
             "--tensors", "blk.*.attn_*").stdout
    assert "narrow submitted" in ok and parse_job((jobs_dir() / "narrow.toml").read_text()).cfg.tensors
    later = cli("daemon", "submit", "later.gguf", "--task", "jsonl:answers.jsonl", "--name", "later",
                "--tensors", "blk.*.nothing_*").stdout  # the model is not there yet: checked when the job starts
    assert "later submitted" in later
