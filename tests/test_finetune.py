"""`edgees finetune` as a user runs it: failures stop cleanly and leave the run dir usable."""

import json
import subprocess

from edgees import cli
from edgees.fileio import sha256_file
from edgees.gguf.reader import read_gguf
from edgees.qes.trainable import trainable_tensors
from edgees.run.log import read_steps
from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_answers, write_prompts


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


def _toy(tmp_path):
    return toy_model(tmp_path / "toy.gguf"), write_answers(tmp_path / "answers.jsonl")


def test_finetune_export_writes_what_edgees_export_writes(tmp_path, capsys):
    """--export writes the live weights at the end of the run: the bytes a replay rebuilds."""
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=3, likelihood=True)
    assert cli.main(args + ["--export", str(tmp_path / "live.gguf"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["export"]["step"] == 3
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "replayed.gguf")]) == 0
    assert sha256_file(tmp_path / "live.gguf") == sha256_file(tmp_path / "replayed.gguf") == summary["export"]["sha256"]


def test_finetune_export_refuses_a_bad_output_before_training(tmp_path, capsys):
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=3, likelihood=True)
    assert cli.main(args + ["--export", str(model)]) != 0
    assert "refusing to overwrite" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_minutes_without_steps_runs_until_the_budget(tmp_path, capsys):
    model, data = _toy(tmp_path)
    base = finetune_args(model, tmp_path / "run", data, steps=1, likelihood=True)
    base = base[:base.index("--steps")] + base[base.index("--steps") + 2:]
    for extra, steps in ((["--minutes", "5"], 10**9), (["--minutes", "5", "--steps", "7"], 7), ([], 40)):
        assert cli.main(base + extra + ["--dry-run", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["config"]["steps"] == steps, extra


def test_a_reward_scored_on_reference_answers_defaults_to_a_constant_step(tmp_path, capsys):
    """--alpha-decay left out: 0 with reward=likelihood, 20 with a generated reward; given: as given."""
    model, data = _toy(tmp_path)
    for likelihood, extra, decay in ((True, [], 0), (False, [], 20), (True, ["--alpha-decay", "20"], 20)):
        args = finetune_args(model, tmp_path / "run", data, steps=1, likelihood=likelihood)
        assert cli.main(args + extra + ["--dry-run", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["config"]["alpha_decay"] == decay, (likelihood, extra)


def test_a_step_that_moves_no_codes_is_warned_about_once(tmp_path, capsys):
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=3, alpha=1e-6, likelihood=True)
    args.remove("--quiet")
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert err.count("moved no codes") == 1 and "raise --alpha" in err


def test_a_step_the_decay_left_still_is_warned_about_with_the_floor_as_the_fix(tmp_path, capsys):
    """Step 1 moves codes (two pairs: a hit of 0.25 steps each); with --alpha-decay 1 the hit shrinks as
    1/sqrt(t), so a later step moves none, and the warning names the decay and --alpha-floor."""
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=25, alpha=0.15, likelihood=True)
    args.remove("--quiet")
    assert cli.main(args + ["--alpha-decay", "1", "--json"]) == 0
    captured = capsys.readouterr()
    records, _, _ = read_steps(tmp_path / "run" / "steps.log")
    assert records[0].changed > 0 and records[-1].changed == 0
    assert captured.err.count("moved no codes") == 1
    assert "the step-size decay has brought it below where codes move; set --alpha-floor" in captured.err


def test_stderr_that_is_not_a_terminal_gets_one_line_a_step_not_a_bar(tmp_path, capsys):
    """A log file, nohup or a service's journal reads `edgees: step t/T: ...` lines, not redraws."""
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=2, likelihood=True)
    args.remove("--quiet")
    assert cli.main(args) == 0
    lines = capsys.readouterr().err.splitlines()
    steps = [line for line in lines if line.startswith("edgees: step ")]
    assert [line.split(":")[1] for line in steps] == [" step 1/2", " step 2/2"]
    assert all("codes moved" in line for line in steps)
    assert not any("member/s" in line or "\r" in line for line in lines)


def test_alpha_decay_is_logged_per_step_and_replayed_exactly(tmp_path, capsys):
    """--alpha-decay T: steps after T take alpha x sqrt(T/t); the log keeps each step's alpha, so
    `edgees export` (a replay) writes the bytes the run ended with."""
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=4, alpha=0.5, likelihood=True)
    assert cli.main(args + ["--alpha-decay", "2", "--export", str(tmp_path / "live.gguf"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records, _, _ = read_steps(tmp_path / "run" / "steps.log")
    assert [r.alpha for r in records] == [0.5, 0.5, 0.5 * (2 / 3) ** 0.5, 0.5 * (2 / 4) ** 0.5]
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "replayed.gguf")]) == 0
    assert sha256_file(tmp_path / "live.gguf") == sha256_file(tmp_path / "replayed.gguf") == summary["export"]["sha256"]


def test_alpha_floor_stops_the_decay_and_export_replays_it(tmp_path, capsys):
    """--alpha-floor F: the decayed step size stays at F x alpha once sqrt(T/t) falls below F; the
    log keeps each step's alpha, so export replays the run's bytes; F outside [0, 1] is refused."""
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=4, alpha=0.5, likelihood=True)
    assert cli.main(args + ["--alpha-decay", "1", "--alpha-floor", "0.6", "--export", str(tmp_path / "live.gguf"),
                            "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records, _, _ = read_steps(tmp_path / "run" / "steps.log")
    assert [r.alpha for r in records] == [0.5, 0.5 * (1 / 2) ** 0.5, 0.5 * 0.6, 0.5 * 0.6]
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "replayed.gguf")]) == 0
    assert sha256_file(tmp_path / "live.gguf") == sha256_file(tmp_path / "replayed.gguf") == summary["export"]["sha256"]
    idle = finetune_args(model, tmp_path / "run3", data, steps=1, likelihood=True) + ["--alpha-floor", "0.7"]
    assert cli.main(idle + ["--dry-run"]) == 0  # likelihood: a constant step size, nothing to floor
    assert "--alpha-floor does nothing with a constant step size" in capsys.readouterr().err
    bad = finetune_args(model, tmp_path / "run2", data, steps=1, likelihood=True) + ["--alpha-floor", "1.5"]
    assert cli.main(bad) == 2
    assert "--alpha-floor must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()


def _tensor_bytes(path) -> dict[str, bytes]:
    info = read_gguf(path)
    data = path.read_bytes()
    return {t.name: data[t.offset:t.offset + t.nbytes] for t in info.tensors}


def test_tensors_narrows_training_to_the_matching_names_and_export_replays_it(tmp_path, capsys):
    """--tensors 'blk.0.*': only blk.0's linears move; the run.json keeps the globs, so export (a
    replay) writes the live bytes, and a resume with other globs is refused."""
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=3, likelihood=True)
    assert cli.main(args + ["--tensors", "blk.0.*", "--export", str(tmp_path / "live.gguf"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    base, live = _tensor_bytes(model), _tensor_bytes(tmp_path / "live.gguf")
    moved = {name for name in base if base[name] != live[name]}
    assert moved and all(name.startswith("blk.0.") for name in moved)
    assert len({t.name for t in trainable_tensors(read_gguf(model)) if t.name.startswith("blk.0.")}) < \
        len(trainable_tensors(read_gguf(model)))  # the toy has more than one block: the filter filtered
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "replayed.gguf")]) == 0
    assert sha256_file(tmp_path / "replayed.gguf") == summary["export"]["sha256"]
    resumed = finetune_args(model, tmp_path / "run", data, steps=4, likelihood=True, resume=True)
    assert cli.main(resumed + ["--tensors", "blk.1.*"]) != 0
    assert "--tensors differs from the run's" in capsys.readouterr().err


def test_tensors_that_match_nothing_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    model, data = _toy(tmp_path)
    args = finetune_args(model, tmp_path / "run", data, steps=1, likelihood=True)
    assert cli.main(args + ["--tensors", "blk.*.ffn_up.weight, blk.0.atn_q.*"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'blk.0.atn_q.*' matches no trainable tensor" in err[0] and "edgees info" in err[0]
    assert not (tmp_path / "run").exists()
    assert cli.main(args + ["--tensors", "token_embd.*"]) != 0
    assert "token_embd.weight trains only with --include-embeddings" in capsys.readouterr().err
    assert cli.main(args + ["--tensors", " , "]) != 0
    assert "--tensors ' , ' names no glob" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
