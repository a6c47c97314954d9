"""`edgees finetune` as a user runs it: failures stop cleanly and leave the run dir usable."""

import subprocess

from edgees.run.log import read_steps
from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_prompts


def test_reward_that_raises_stops_the_run_cleanly(tmp_path):
    model = toy_model(tmp_path / "toy.gguf")
    data = write_prompts(tmp_path / "prompts.jsonl")
    run = tmp_path / "run"
    env = subprocess_env()
    env["EDGEES_TOY_COUNTER"] = str(tmp_path / "calls")
    args = finetune_args(model, run, data, steps=5)
    args[args.index("--task") + 1] = args[args.index("--task") + 1].replace(":letters", ":raises_after")
    out = subprocess.run(edgees_cmd(args), capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("edgees: error:") and "reward server went away" in lines[-1]
    assert "Traceback" not in out.stderr
    records, _, torn = read_steps(run / "steps.log")
    assert not torn and len(records) >= 1  # whole steps before the failure are kept
    verify = subprocess.run(edgees_cmd(["verify", str(run), "--model", str(model)]), capture_output=True,
                            text=True, env=env, timeout=300)
    assert verify.returncode == 0, verify.stderr


def test_second_writer_is_refused_and_existing_run_needs_resume(tmp_path):
    model = toy_model(tmp_path / "toy.gguf")
    data = write_prompts(tmp_path / "prompts.jsonl")
    run = tmp_path / "run"
    env = subprocess_env()
    first = subprocess.run(edgees_cmd(finetune_args(model, run, data, steps=1)), capture_output=True,
                           text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(edgees_cmd(finetune_args(model, run, data, steps=2)), capture_output=True,
                           text=True, env=env, timeout=300)
    assert again.returncode != 0 and "--resume" in again.stderr.strip().splitlines()[-1]
    other = toy_model(tmp_path / "other.gguf", seed=5)
    wrong = subprocess.run(edgees_cmd(finetune_args(other, run, data, steps=2, resume=True)),
                           capture_output=True, text=True, env=env, timeout=300)
    assert wrong.returncode != 0 and "sha256" in wrong.stderr.strip().splitlines()[-1]


def test_eval_n_is_the_held_out_size(tmp_path, tiny_models):
    """--eval-n sets how many held-out prompts each evaluation uses, beyond the task's default 40."""
    import json
    from edgees import cli
    run = tmp_path / "run"
    code = cli.main(["finetune", str(tiny_models["Q4_1"]), "--task", "arithmetic", "--task-opt", "max_tokens=2",
                     "--run", str(run), "--steps", "1", "--pairs", "1", "--prompts", "2", "--eval-every", "0",
                     "--eval-n", "45", "--threads", "1", "--quiet"])
    assert code == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["heldout"]["n"] for r in rows if "heldout" in r] == [45, 45]
    step = next(r for r in rows if "update_seconds" in r)
    # the update's share is of the whole step, which holds the members' evaluation and the update
    assert step["step_seconds"] >= step["eval_seconds"] + step["update_seconds"]
    assert step["update_share"] == step["update_seconds"] / step["step_seconds"]
    assert not (run / "window").exists()  # the replay window's cache goes with the run


def test_os_error_is_one_line(tmp_path, tiny_models, capsys):
    """A --run path under a regular file (the OS refuses the directory): one line, no traceback."""
    from edgees import cli
    (tmp_path / "afile").write_text("")
    code = cli.main(["finetune", str(tiny_models["Q4_1"]), "--task", "arithmetic", "--run",
                     str(tmp_path / "afile" / "run"), "--steps", "1", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("edgees: error: ") and str(tmp_path / "afile" / "run") in err[0]
