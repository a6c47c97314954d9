"""kill -9 of `edgees finetune` at random moments: every time --resume works, `edgees verify` passes
(from the base and from the newest checkpoint) and no logged step is lost (only the step in
flight); the run ends with the same weights, and the same log, as an uninterrupted run of the same
config. The killed run writes a checkpoint after every step, so kills land in checkpoint writes
too. The base file never changes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest

from edgees import cli
from edgees.fileio import sha256_file
from edgees.run.log import read_steps

from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_prompts

KILLS = 20
MORE_STEPS = 4  # after the kills, the killed run is finished to this many more steps, then compared


def n_logged(run) -> int:
    return len(read_steps(run / "steps.log")[0])


def launch(base, run, data, steps: int, resume: bool, checkpoint_every: int | None = None) -> subprocess.Popen:
    args = finetune_args(base, run, data, steps=steps, window=1, resume=resume, checkpoint_every=checkpoint_every)
    return subprocess.Popen(edgees_cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=subprocess_env())


def kill_at_random_moment(p: subprocess.Popen, run, rng: random.Random, timeout: float = 60.0) -> str | None:
    """Kill p at a random moment: after a random delay (startup, replay or a step, by luck), or a
    random time into the step after the k-th one it logs (surely mid-training, whatever the machine's
    speed). Returns what the kill interrupted, or None if p exited first."""
    t0 = time.monotonic()
    if rng.random() < 0.5:
        try:
            p.wait(timeout=rng.uniform(0.05, 1.5))
            return None
        except subprocess.TimeoutExpired:
            kind = "timed"
    else:
        want = (n_logged(run) if (run / "steps.log").exists() else 0) + rng.randint(1, 3)
        while not ((run / "steps.log").exists() and n_logged(run) >= want):
            if p.poll() is not None:
                return None
            assert time.monotonic() - t0 < timeout, "finetune made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.12))
        kind = "mid-step"
    p.kill()  # SIGKILL
    p.wait()
    return kind


@pytest.mark.slow
def test_kill_9_at_random_moments_resume_verify_same_weights(tmp_path, capsys):
    base = toy_model(tmp_path / "toy.gguf", n_layer=1, n_ff=256)
    data = write_prompts(tmp_path / "prompts.jsonl")
    base_sha = sha256_file(base)
    run, ref = tmp_path / "killed", tmp_path / "ref"
    rng = random.Random(4)
    kinds, launches, torn_checkpoints = [], 0, 0
    while len(kinds) < KILLS:
        seen_before = n_logged(run) if (run / "steps.log").exists() else 0
        p = launch(base, run, data, steps=500, resume=launches > 0, checkpoint_every=1)  # 500: never ends here
        launches += 1
        kind = kill_at_random_moment(p, run, rng)
        assert kind is not None, f"finetune exited by itself: {p.stderr.read().decode()[-500:]}"
        p.stderr.close()
        kinds.append(kind)
        if not (run / "run.json").exists():
            continue  # killed before the header was written: nothing to verify yet
        records, _, torn = read_steps(run / "steps.log")
        assert len(records) >= seen_before  # a logged step is never lost
        code = cli.main(["verify", str(run), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert json.loads(out)["steps"] == len(records)
        torn_checkpoints += bool(list((run / "checkpoints").glob(".step-*.tmp-*")))
        code = cli.main(["verify", str(run), "--from-checkpoint", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        res = json.loads(out)
        assert res["steps"] == len(records) and res["from_checkpoint"] <= len(records)
    assert kinds.count("mid-step") >= 5
    killed_at = n_logged(run)
    assert killed_at > 0
    final_steps = killed_at + MORE_STEPS
    with capsys.disabled():  # shown with -s
        print(f"\n{len(kinds)} kills ({kinds.count('mid-step')} mid-step, {torn_checkpoints} during a "
              f"checkpoint write) in {launches} launches; {killed_at} steps logged")

    # finish the killed run; run the same config without interruption; compare
    for target, resume in ((run, True), (ref, False)):
        p = launch(base, target, data, steps=final_steps, resume=resume)
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()[-500:]
        p.stderr.close()
    rec_k, _, torn_k = read_steps(run / "steps.log")
    rec_r, _, _ = read_steps(ref / "steps.log")
    assert len(rec_k) == len(rec_r) == final_steps and not torn_k
    # member evaluation is deterministic at a fixed thread count, so the resumed run saw the very
    # rewards the uninterrupted one did: identical records, identical final weights
    assert [(r.rewards_plus, r.rewards_minus) for r in rec_k] == [(r.rewards_plus, r.rewards_minus) for r in rec_r]
    assert rec_k[-1].weights_sha256 == rec_r[-1].weights_sha256
    assert (run / "steps.log").read_bytes() == (ref / "steps.log").read_bytes()
    for d in (run, ref):  # the replay window's cache files go when a run ends (kills left some)
        assert not list((d / "window").glob("*.win"))
    assert cli.main(["verify", str(run)]) == 0
    assert f"OK: {final_steps} steps verified" in capsys.readouterr().out
    assert sha256_file(base) == base_sha
    workdir = tmp_path / "edgees-work"  # every working copy was removed (stale ones at next start)
    assert not list(workdir.glob("edgees-*.gguf"))


WRITER = """
import sys
from edgees.run import checkpoint
from edgees.run.rebuild import rebuild_run
run = sys.argv[1]
with rebuild_run(run, checkpoints=False) as r:
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    while True:  # nothing but checkpoint writes, until killed
        checkpoint.save(run, r.state, r.base_path, r.header["base_sha256"], r.records, keep=2)
"""


@pytest.mark.slow
def test_kill_9_during_checkpoint_writes_leaves_a_run_that_resumes_and_verifies(tmp_path, capsys):
    base = toy_model(tmp_path / "toy.gguf")
    data = write_prompts(tmp_path / "prompts.jsonl")
    run = tmp_path / "run"
    p = launch(base, run, data, steps=3, resume=False)
    assert p.wait(timeout=120) == 0, p.stderr.read().decode()[-500:]
    p.stderr.close()
    rng = random.Random(7)
    for _ in range(10):
        w = subprocess.Popen([sys.executable, "-c", WRITER, str(run)], stdout=subprocess.PIPE,
                             env=subprocess_env())
        assert w.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.2))
        w.kill()
        w.wait()
        w.stdout.close()
        code = cli.main(["verify", str(run), "--from-checkpoint", "--json"])
        out, err = capsys.readouterr()
        assert code == 0 and json.loads(out)["from_checkpoint"] == 3, err
    # what a kill inside the write itself leaves (the writer spends most of its time encoding, so
    # the random kills above need not hit it): a partial temp file, never a partial checkpoint
    newest = sorted((run / "checkpoints").glob("step-*.ckpt"))[-1]
    (run / "checkpoints" / f".{newest.name}.tmp-999999").write_bytes(newest.read_bytes()[:100])
    assert cli.main(["verify", str(run), "--from-checkpoint"]) == 0
    capsys.readouterr()
    p = launch(base, run, data, steps=5, resume=True)
    assert p.wait(timeout=120) == 0, p.stderr.read().decode()[-500:]
    p.stderr.close()
    assert n_logged(run) == 5 and cli.main(["verify", str(run)]) == 0
    assert not list((run / "checkpoints").glob(".step-*.tmp-*"))  # pruned by the next save
