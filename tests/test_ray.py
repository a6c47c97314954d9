"""Scale-out on Ray (edgees/scale/): the log a run writes does not depend on the executor.

One local Ray instance (2 CPUs, 127.0.0.1, no dashboard) serves the whole module; each test's
workers are Ray actors on it. The toy task's rewards are deterministic at one thread per evaluating
process, so a run on Ray workers must write the very bytes the local executor writes, whatever
happens to the workers on the way: one killed mid-step, one started from another run's checkpoint,
one joining at step k. Ctrl-C (SIGINT to the process group, as a terminal sends it) stops a Ray
run at a member boundary with the log intact, and runs resume across executors both ways.

Without the ray extra the tests are skipped (CI installs it through the test extra); the one test
that needs no Ray, the one-line refusal without it, always runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgees import cli
from edgees.engine.engine import Engine
from edgees.qes.algorithm import QESConfig
from edgees.run.events import TrainerEvents
from edgees.run.log import read_steps
from edgees.run.trainer import Trainer
from edgees.tasks.base import get_task

import toy_task
from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_prompts

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read at import: the local Ray on loopback only
try:
    import ray  # noqa: F401
    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False


def needs_ray(test):
    """Marked `ray` (pytest -m "not ray" leaves them out), and skipped in one line without Ray."""
    skip = pytest.mark.skipif(not HAVE_RAY, reason="the ray extra is not installed: pip install 'edgees[ray]'")
    return pytest.mark.ray(skip(test))


STEPS = 5
TASK = f"python:{toy_task.__file__}:letters"


def n_logged(run) -> int:
    return len(read_steps(Path(run) / "steps.log")[0])


def log_bytes(run) -> bytes:
    return (Path(run) / "steps.log").read_bytes()


def verify(run, capsys) -> None:
    code = cli.main(["verify", str(run), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["steps"] == n_logged(run)


def local_run(base, run, data, steps: int, resume: bool = False, **kw) -> None:
    r = subprocess.run(edgees_cmd(finetune_args(base, run, data, steps=steps, resume=resume, **kw)),
                       capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(base model, prompts, the local executor's log of STEPS steps)."""
    d = tmp_path_factory.mktemp("toy")
    base = toy_model(d / "toy.gguf", n_layer=1, n_ff=256)
    data = write_prompts(d / "prompts.jsonl")
    local_run(base, d / "local", data, STEPS)
    return base, data, log_bytes(d / "local")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The module's local Ray: 2 CPUs, loopback, no dashboard; its workers keep their working copies
    in a tmp dir (they inherit the environment Ray was started with)."""
    from edgees.scale.cluster import connect
    work = tmp_path_factory.mktemp("ray-work")
    old = os.environ.get("EDGEES_WORKDIR")
    os.environ["EDGEES_WORKDIR"] = str(work)
    try:
        c = connect(None, None, 1, num_cpus=2)
    finally:
        if old is None:
            os.environ.pop("EDGEES_WORKDIR", None)
        else:
            os.environ["EDGEES_WORKDIR"] = old
    yield c
    c.close()


def executor(workers: int, **kw):
    """A RayExecutor with `workers` workers on the module's Ray (which it leaves running)."""
    from edgees.scale.cluster import connect
    from edgees.scale.executor import RayExecutor
    return RayExecutor(connect(None, workers, 1), batch=32, max_tokens=8, **kw)


def trainer(base, data, run, ex, steps: int = STEPS, events=None, checkpoint_every: int = 20) -> Trainer:
    """The toy run finetune_args() makes, in this process, on executor `ex`."""
    opts = {"data": str(data), "max_tokens": 8}
    task = get_task(TASK, **opts)
    cfg = QESConfig(steps=steps, pairs=2, prompts=2, sigma=0.3, alpha=1.0, window=4, seed=1, eval_every=0,
                    eval_n=2, checkpoint_every=checkpoint_every)
    return Trainer(base, task, TASK, run, cfg, task_options=opts, events=events, threads=1, executor=ex,
                   engine_factory=lambda p: Engine(p, n_threads=1, n_seq=32, max_tokens=8))


class Hook(TrainerEvents):
    """Calls on_step(t) after each logged step and on_member(t, m) after each member's reward."""

    def __init__(self, on_step=None, on_member=None):
        self.on_step, self.on_member, self.lines = on_step, on_member, []

    def status(self, msg):
        self.lines.append(msg)

    def step(self, row):
        if self.on_step:
            self.on_step(row["step"])

    def member(self, step, member, reward):
        if self.on_member:
            self.on_member(step, member)


def run_in_process(tr: Trainer) -> dict:
    try:
        return tr.run_steps()
    finally:
        tr.close()


@needs_ray
def test_two_workers_write_the_local_executors_log(toy, cluster, tmp_path, capsys):
    base, data, local = toy
    run = tmp_path / "ray"
    args = finetune_args(base, run, data, steps=STEPS) + ["--executor", "ray", "--workers", "2", "--json"]
    assert cli.main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert log_bytes(run) == local  # same rewards, coefficients and weight hashes, byte for byte
    verify(run, capsys)
    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]  # the local Ray: loopback only


@needs_ray
def test_a_narrowed_run_on_ray_writes_the_local_log(toy, cluster, tmp_path, capsys):
    """--tensors reaches the workers: they perturb the same narrowed set the local executor does."""
    base, data, _ = toy
    narrow = ["--tensors", "blk.0.ffn_*"]
    r = subprocess.run(edgees_cmd(finetune_args(base, tmp_path / "local", data, steps=2) + narrow),
                       capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    args = finetune_args(base, tmp_path / "ray", data, steps=2) + narrow + ["--executor", "ray", "--workers", "2"]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert log_bytes(tmp_path / "ray") == log_bytes(tmp_path / "local")
    assert json.loads((tmp_path / "ray" / "run.json").read_text())["config"]["tensors"] == "blk.0.ffn_*"


@needs_ray
def test_a_worker_killed_mid_step_has_its_members_rerun(toy, cluster, tmp_path, capsys):
    base, data, local = toy
    ex = executor(2)
    killed = []

    def kill_one(t, m):
        if t == 2 and not killed:  # the first reward of step 3 is in: another worker is mid-member
            w = next((w for w in ex.workers() if w["busy"]), None) or ex.workers()[0]
            ray.kill(w["actor"], no_restart=True)
            killed.append(w["wid"])

    summary = run_in_process(trainer(base, data, tmp_path / "run", ex, events=Hook(on_member=kill_one)))
    assert summary["steps_done"] == STEPS and killed
    assert ex.stats["died"] >= 1 and ex.stats["reruns"] >= 1, ex.stats
    assert log_bytes(tmp_path / "run") == local
    verify(tmp_path / "run", capsys)


@needs_ray
def test_a_worker_from_a_wrong_checkpoint_is_detected_by_hash_and_rebuilt(toy, cluster, tmp_path, capsys):
    base, data, local = toy
    other = tmp_path / "other"  # another run on the same base: its checkpoint of step 2 and its log
    local_run(base, other, data, 2, seed=7, checkpoint_every=1)
    wrong = (("step-00000002.ckpt", (other / "checkpoints" / "step-00000002.ckpt").read_bytes()), log_bytes(other))
    ex = executor(1)
    joined = []

    def add(t):
        if t == 2:
            joined.append(ex.add_worker(catchup=wrong))
            ex.wait_joined()  # its hash is the other run's: dropped, and a new worker joins in its place

    summary = run_in_process(trainer(base, data, tmp_path / "run", ex, events=Hook(on_step=add), checkpoint_every=1))
    assert summary["steps_done"] == STEPS
    checks: dict[int, list] = {}
    for wid, step, ok in ex.checks:
        checks.setdefault(wid, []).append((step, ok))
    assert checks[joined[0]] == [(2, False)] and ex.stats["rebuilt"] == 1
    rebuilt = max(checks)  # joined from this run's checkpoint of step 2, then agreed at every step
    assert rebuilt != joined[0] and checks[rebuilt] == [(k, True) for k in range(2, STEPS + 1)]
    assert log_bytes(tmp_path / "run") == local
    verify(tmp_path / "run", capsys)


@needs_ray
def test_a_worker_joining_at_step_k_agrees_from_k_on(toy, cluster, tmp_path, capsys):
    base, data, local = toy
    ex = executor(1, worker_base_path=str(tmp_path / "not-on-this-node.gguf"))  # the base is shipped to each
    added = []

    def add(t):
        if t == 2:
            added.append(ex.add_worker())  # from the checkpoint of step 2 and the log
            ex.wait_joined()

    hook = Hook(on_step=add)
    summary = run_in_process(trainer(base, data, tmp_path / "run", ex, events=hook, checkpoint_every=1))
    assert summary["steps_done"] == STEPS
    mine = [(step, ok) for wid, step, ok in ex.checks if wid == added[0]]
    assert mine == [(k, True) for k in range(2, STEPS + 1)]  # joined at 2, then every update agreed
    assert sum("shipping the base model" in line for line in hook.lines) == 2
    assert log_bytes(tmp_path / "run") == local
    verify(tmp_path / "run", capsys)
    per_step = [t["sent"] + t["received"] for t in ex.traffic.values()]
    assert max(per_step) / STEPS < 4096  # payload per worker per step: seeds, scalars, hashes


@needs_ray
def test_an_elastic_executor_adds_a_worker_for_free_cpus(toy, cluster, tmp_path, capsys):
    base, data, local = toy
    ex = executor(1, elastic=True)  # the module's Ray has 2 CPUs: one is free after the first worker
    hook = Hook(on_step=lambda t: t == 2 and ex.wait_joined())
    summary = run_in_process(trainer(base, data, tmp_path / "run", ex, events=hook))
    assert summary["steps_done"] == STEPS and ex.stats["joined"] == 2
    assert any("CPUs free: worker 1 joins" in line for line in hook.lines)
    assert ex.checks and all(ok for _, _, ok in ex.checks)
    assert log_bytes(tmp_path / "run") == local


@needs_ray
def test_local_then_ray_resume_writes_the_local_log(toy, cluster, tmp_path, capsys):
    base, data, local = toy
    run = tmp_path / "run"
    local_run(base, run, data, 3)  # ends with a checkpoint of step 3: the workers join from it
    args = finetune_args(base, run, data, steps=STEPS, resume=True) + ["--executor", "ray", "--workers", "2"]
    assert cli.main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert log_bytes(run) == local
    verify(run, capsys)


def start_ray_run(base, run, data, resume: bool) -> subprocess.Popen:
    """`edgees finetune --executor ray` as a user starts it from a terminal (its own process group,
    its own local Ray, and with it Ray's SIGTERM handler), until at least two more steps are logged."""
    args = finetune_args(base, run, data, steps=500, checkpoint_every=3, resume=resume)
    p = subprocess.Popen(edgees_cmd(args + ["--executor", "ray", "--workers", "2"]), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=subprocess_env(), start_new_session=True)
    want = (n_logged(run) if (run / "steps.log").exists() else 0) + 2
    t0 = time.monotonic()
    while not ((run / "steps.log").exists() and n_logged(run) >= want):
        assert p.poll() is None, p.stderr.read().decode()[-1000:]
        assert time.monotonic() - t0 < 240, "the ray run made no progress"
        time.sleep(0.05)
    return p


def stopped(p: subprocess.Popen, run, capsys) -> int:
    """The run stopped at a member boundary: exit 130, no traceback, a whole log that verifies."""
    assert p.wait(timeout=120) == 130
    err = p.stderr.read().decode()
    p.stderr.close()
    assert "Traceback" not in err, err[-2000:]
    records, _, torn = read_steps(run / "steps.log")
    assert not torn and len(records) >= 2
    verify(run, capsys)
    return len(records)


@needs_ray
def test_ctrl_c_and_sigterm_stop_a_ray_run_with_a_verifiable_log(toy, tmp_path, capsys):
    base, data, _ = toy
    run = tmp_path / "run"
    p = start_ray_run(base, run, data, resume=False)
    os.killpg(p.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground process group
    first = stopped(p, run, capsys)
    p = start_ray_run(base, run, data, resume=True)  # ray -> ray
    p.send_signal(signal.SIGTERM)  # after ray.init, which replaced the SIGTERM handler with its own
    n = stopped(p, run, capsys) + 2
    assert n - 2 >= first + 2
    # ray -> local: resumed with the local executor, it writes what a local run writes
    local_run(base, run, data, n, resume=True)
    local_run(base, tmp_path / "ref", data, n)
    assert log_bytes(run) == log_bytes(tmp_path / "ref")


@needs_ray
def test_bad_cluster_input_is_one_line_before_any_step(toy, cluster, tmp_path, capsys):
    base, data, _ = toy
    run = tmp_path / "run"
    # more workers than the cluster's CPUs
    code = cli.main(finetune_args(base, run, data, steps=2) + ["--executor", "ray", "--workers", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--workers 3 x --threads-per-worker 1 needs 3 CPUs" in err[0] and "has 2" in err[0]
    assert not (run / "run.json").exists()
    # a worker whose copy of the base model is another file: refused before any step
    other = toy_model(tmp_path / "other.gguf", seed=5, n_layer=1, n_ff=256)
    with pytest.raises(Exception) as info:
        trainer(base, data, run, executor(1, worker_base_path=str(other)))
    assert "not the run's base model" in str(info.value) and "\n" not in str(info.value)
    assert not (run / "run.json").exists()  # nothing to --resume: the same command runs again
    # an address with nothing listening (a subprocess: this one is attached to the module's Ray)
    r = subprocess.run(edgees_cmd(finetune_args(base, run, data, steps=2) + ["--executor", "ray", "--address",
                                                                              "127.0.0.1:9"]),
                       capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("edgees: error: --address 127.0.0.1:9: cannot reach a Ray cluster there")
    assert not (run / "run.json").exists()


def test_without_the_ray_extra_it_is_one_line_naming_the_install(tmp_path):
    base = toy_model(tmp_path / "toy.gguf", n_layer=1, n_ff=256)
    data = write_prompts(tmp_path / "prompts.jsonl")
    code = ("import sys; sys.modules['ray'] = None\n"  # `import ray` fails as when it is not installed
            "from edgees.cli import main; sys.exit(main(sys.argv[1:]))")
    args = finetune_args(base, tmp_path / "run", data, steps=1) + ["--executor", "ray"]
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=subprocess_env(),
                       timeout=120)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["edgees: error: --executor ray needs Ray, which is not installed: "
                                     "pip install 'edgees[ray]'"]
    assert not (tmp_path / "run").exists()
