"""One source of run settings: --config FILE.toml, --dry-run, the precedence CLI > file > run.json on
--resume > defaults, one-line errors for a bad file, eval reading the same file, and the trainer's
typed events."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import pytest

from edgees import cli
from edgees.qes.algorithm import QESConfig
from edgees.run.config import tomllib
from edgees.run.log import read_steps
from toy_task import edgees_cmd, subprocess_env

FILE = """\
task = "arithmetic"
steps = 5
sigma = 1          # an integer where a float is expected is fine
alpha = 0.5

[task_opt]
max_tokens = 3
"""

# A run quick enough for a test on the tiny model: 1 pair, 2 prompts, 3 held-out prompts, 2 tokens.
RUN = ["--task", "arithmetic", "--task-opt", "max_tokens=2", "--steps", "2", "--pairs", "1", "--prompts", "2",
       "--eval-n", "3", "--eval-every", "0", "--alpha", "0.1", "--sigma", "1.0", "--threads", "1", "--quiet"]


def dry_run(capsys, *args) -> dict:
    """`edgees finetune ... --dry-run --json` in this process: the resolved settings."""
    code = cli.main(["finetune", *map(str, args), "--dry-run", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def one_line_error(capsys, args, code: int) -> str:
    got = cli.main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1, err
    assert err[0].startswith("edgees: error: ")
    return err[0]


def test_dry_run_prints_the_resolved_config_loads_nothing_and_writes_nothing(tmp_path, tiny_models):
    """Run as a user runs it (a subprocess): the printed settings are a config file that reads back
    to the same settings; llama.cpp was never imported; the run dir was not created."""
    (tmp_path / "f.toml").write_text(FILE)
    run = tmp_path / "run"
    code = ("import sys; from edgees import cli; rc = cli.main(sys.argv[1:]); "
            "assert 'llama_cpp' not in sys.modules, 'llama_cpp imported'; sys.exit(rc)")
    args = ["finetune", str(tiny_models["Q4_1"]), "--config", str(tmp_path / "f.toml"), "--run", str(run),
            "--pairs", "3", "--dry-run"]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env=subprocess_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert not run.exists()
    printed = tomllib.loads(out.stdout)
    want = {**asdict(QESConfig()), "steps": 5, "sigma": 1.0, "alpha": 0.5, "pairs": 3}
    assert {k: printed[k] for k in want} == want
    assert printed["task"] == "arithmetic" and printed["batch"] == 32 and printed["task_opt"] == {"max_tokens": 3}
    assert "threads" not in printed and "minutes" not in printed  # not set: shown as comments
    lines = {line.split("=")[0].strip(): line for line in out.stdout.splitlines() if "=" in line}
    assert lines["pairs"].endswith("# command line") and lines["steps"].endswith(f"# {tmp_path / 'f.toml'}")
    assert lines["gamma"].endswith("# default")
    assert str(tiny_models["Q4_1"]) in out.stdout

    (tmp_path / "printed.toml").write_text(out.stdout)  # what --dry-run prints is a valid --config
    again = subprocess.run(edgees_cmd(["finetune", str(tiny_models["Q4_1"]), "--config", str(tmp_path / "printed.toml"),
                                       "--run", str(run), "--dry-run", "--json"]),
                           capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert again.returncode == 0, again.stderr
    settings = json.loads(again.stdout)
    assert settings["config"] == want and settings["task_opt"] == {"max_tokens": 3}
    assert not run.exists()


def test_precedence_on_a_new_run_cli_over_file_over_defaults(tmp_path, tiny_models, capsys):
    (tmp_path / "f.toml").write_text(FILE)
    model = tiny_models["Q4_1"]
    s = dry_run(capsys, model, "--run", tmp_path / "run", "--config", tmp_path / "f.toml",
                "--steps", 7, "--task-opt", "max_tokens=4", "--batch", 6)
    assert (s["config"]["steps"], s["sources"]["steps"]) == (7, "cli")  # CLI over file
    assert (s["config"]["sigma"], s["sources"]["sigma"]) == (1.0, "file")  # file over default
    assert (s["config"]["pairs"], s["sources"]["pairs"]) == (QESConfig().pairs, "default")
    assert s["task_opt"] == {"max_tokens": 4} and s["sources"]["task_opt.max_tokens"] == "cli"
    assert (s["batch"], s["task"], s["resume"]) == (6, "arithmetic", False)
    old = dry_run(capsys, model, "--run", tmp_path / "run", "--task", "arithmetic", "--n-seq", 4)
    assert old["batch"] == 4 and old["sources"]["batch"] == "cli"  # --n-seq: the old name of --batch
    assert not (tmp_path / "run").exists()


def test_precedence_on_resume_cli_over_file_over_run_json_over_defaults(tmp_path, tiny_models, capsys):
    model, run = tiny_models["Q4_1"], tmp_path / "run"
    assert cli.main(["finetune", str(model), "--run", str(run), *RUN]) == 0
    capsys.readouterr()
    (tmp_path / "f.toml").write_text('steps = 5\nalpha = 0.5\neval_every = 1\n[task_opt]\nmax_tokens = 3\nreward = "likelihood"\n')
    s = dry_run(capsys, model, "--run", run, "--resume", "--config", tmp_path / "f.toml", "--steps", 3,
                "--task-opt", "reward=generate")
    src, cfg = s["sources"], s["config"]
    assert (cfg["steps"], src["steps"]) == (3, "cli")  # run.json 2 < file 5 < CLI 3
    assert (cfg["alpha"], src["alpha"]) == (0.5, "file")  # run.json 0.1 < file 0.5
    assert (cfg["eval_n"], src["eval_n"]) == (3, "run.json")  # default 50 < run.json 3
    assert (cfg["sigma"], src["sigma"]) == (1.0, "run.json")  # a fixed field comes back from the run
    assert (s["batch"], src["batch"]) == (32, "default")  # run.json does not record it
    assert (s["task"], src["task"]) == ("arithmetic", "run.json")  # no --task needed to resume
    assert s["task_opt"] == {"max_tokens": 3, "reward": "generate"}
    assert (src["task_opt.max_tokens"], src["task_opt.reward"]) == ("file", "cli")
    assert s["resume"] is True and s["steps_logged"] == 2

    # the resolved settings are the ones the resumed run uses: step 3 is logged with the file's alpha
    assert cli.main(["finetune", str(model), "--run", str(run), "--resume", "--config", str(tmp_path / "f.toml"),
                     "--steps", "3", "--threads", "1", "--quiet"]) == 0
    records, _, _ = read_steps(run / "steps.log")
    assert [r.alpha for r in records] == [0.1, 0.1, 0.5]

    # a file that changes a field a resumed run must keep: refused in one line, nothing appended
    (tmp_path / "g.toml").write_text("sigma = 0.5\n")
    line = one_line_error(capsys, ["finetune", model, "--run", run, "--resume", "--config", tmp_path / "g.toml",
                                   "--steps", "4"], 3)
    assert "--sigma differs from the run's (1.0)" in line
    assert len(read_steps(run / "steps.log")[0]) == 3
    # and an existing run without --resume is refused by --dry-run as by a run
    line = one_line_error(capsys, ["finetune", model, "--run", run, "--task", "arithmetic", "--dry-run"], 3)
    assert "pass --resume" in line


@pytest.mark.parametrize("text, words", [
    ("stepz = 3\n", ["unknown key 'stepz'", "did you mean 'steps'?"]),
    ("model = 'x.gguf'\n", ["unknown key 'model'", "the keys are steps, pairs"]),
    ('steps = "3"\n', ["steps must be a whole number", 'not "3"', "write e.g. steps = 40"]),
    ("steps = 2.5\n", ["steps must be a whole number", "not 2.5"]),
    ("steps = true\n", ["steps must be a whole number", "not true"]),
    ("include_embeddings = 1\n", ["include_embeddings must be true or false"]),
    ("sigma = [0.1]\n", ["sigma must be a number", "not a list"]),
    ("task = 3\n", ["task must be a string in quotes"]),
    ("threads = 0\n", ["threads must be at least 1"]),
    ("sigma = 9.0\n", ["sigma must be in (0, 4]"]),
    ("ef = 'both'\n", ["ef must be one of replay, residual, off"]),
    ("task_opt = 3\n", ["task_opt must be a table"]),
    ("[task_opt]\nstop = ['.']\n", ["task_opt.stop must be a string, a number or true/false"]),
    ("steps = \n", ["not a valid TOML file", "line 1"]),
    (b"task = '\xff'\n", ["not a valid TOML file"]),
    (None, ["no such config file"]),
])
def test_a_bad_config_file_is_one_line_naming_the_key_and_file(tmp_path, tiny_models, capsys, text, words):
    path, run = tmp_path / "bad.toml", tmp_path / "run"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    for extra in ([], ["--dry-run"]):
        line = one_line_error(capsys, ["finetune", tiny_models["Q4_1"], "--task", "arithmetic", "--run", run,
                                       "--config", path, *extra], 2)
        assert f"error: {path}: " in line and all(w in line for w in words), line
        assert not run.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["edgees-home", "edgees-work"] + (["bad.toml"] if text is not None else []))
    assert not list((tmp_path / "edgees-work").iterdir())


def test_an_out_of_range_flag_is_named_as_a_flag(tmp_path, tiny_models, capsys):
    (tmp_path / "f.toml").write_text("sigma = 9.0\n")
    line = one_line_error(capsys, ["finetune", tiny_models["Q4_1"], "--task", "arithmetic", "--run", tmp_path / "run",
                                   "--config", tmp_path / "f.toml", "--gamma", "1.5", "--minutes", "0"], 2)
    assert f"{tmp_path / 'f.toml'}: sigma must be in (0, 4]" in line
    assert "--gamma must be in [0, 1)" in line and "--minutes must be > 0" in line


@pytest.mark.parametrize("command", ["finetune", "eval"])
def test_no_task_anywhere_is_one_line(tmp_path, tiny_models, capsys, command):
    """--task is required the same way in eval and finetune: on the command line or in --config."""
    (tmp_path / "f.toml").write_text("steps = 3\n")
    args = [command, tiny_models["Q4_1"], "--config", tmp_path / "f.toml"]
    line = one_line_error(capsys, args + (["--run", tmp_path / "run"] if command == "finetune" else []), 2)
    assert "no task given: pass --task NAME" in line
    assert not (tmp_path / "run").exists()


def test_eval_reads_the_same_config_file(tmp_path, tiny_models, capsys):
    """eval takes task, task_opt, threads, batch and eval_n (as --n) from the file; flags win over it."""
    (tmp_path / "f.toml").write_text('task = "arithmetic"\neval_n = 3\nbatch = 2\nthreads = 1\nsigma = 0.3\n'
                                     "[task_opt]\nmax_tokens = 2\n")
    model = tiny_models["Q4_1"]
    assert cli.main(["eval", str(model), "--config", str(tmp_path / "f.toml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["task"], out["n"], out["batch"], out["threads"], out["max_tokens"]) == ("arithmetic", 3, 2, 1, 2)
    assert cli.main(["eval", str(model), "--config", str(tmp_path / "f.toml"), "--n", "4", "--batch", "4",
                     "--task-opt", "max_tokens=1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["n"], out["batch"], out["max_tokens"]) == (4, 4, 1)
    (tmp_path / "bad.toml").write_text("batch = 'many'\n")
    line = one_line_error(capsys, ["eval", model, "--task", "arithmetic", "--config", tmp_path / "bad.toml"], 2)
    assert "bad.toml: batch must be a whole number" in line


def test_the_trainer_reports_through_typed_events(tmp_path, tiny_models):
    """A TrainerEvents subclass sees a run's events in order, with typed arguments."""
    from edgees.engine.engine import Engine
    from edgees.run.events import TrainerEvents
    from edgees.run.trainer import Trainer
    from edgees.tasks.base import get_task

    seen = []

    class Recorder(TrainerEvents):  # status and replay left to the no-op base
        def heldout(self, step, metrics):
            seen.append(("heldout", step, metrics["n"]))

        def member(self, step, member, reward):
            assert isinstance(reward, float)
            seen.append(("member", step, member))

        def step(self, row):
            seen.append(("step", row["step"], "heldout" in row))

        def checkpoint(self, step, path, nbytes, seconds):
            assert path.is_file() and path.stat().st_size == nbytes
            seen.append(("checkpoint", step))

    task = get_task("arithmetic", max_tokens=2)
    cfg = QESConfig(steps=2, pairs=1, prompts=2, eval_n=3, eval_every=0, sigma=1.0, checkpoint_every=1)
    trainer = Trainer(tiny_models["Q4_1"], task, "arithmetic", tmp_path / "run", cfg, events=Recorder(), threads=1,
                      engine_factory=lambda p: Engine(p, n_threads=1, n_seq=4, max_tokens=task.max_tokens))
    try:
        summary = trainer.run_steps()
    finally:
        trainer.close()
    assert summary["steps_done"] == 2 and not summary["stopped"]
    assert seen == [("heldout", 0, 3),
                    ("member", 0, 0), ("member", 0, 1), ("checkpoint", 1), ("step", 1, False),
                    ("member", 1, 0), ("member", 1, 1), ("checkpoint", 2), ("step", 2, True)]


def test_default_alpha_follows_sigma_and_pairs():
    """Left out, alpha keeps a pair hit's move at 0.25 code steps, so --pairs 16 does not halve it
    (below ~0.25 nothing rounds to a move); given anywhere, it is taken as it is."""
    from edgees.run.config import resolve
    assert resolve({"task": "arithmetic"}).cfg.alpha == 0.02  # 0.25 x 0.01 x 8: the old default, bit for bit
    res = resolve({"task": "arithmetic", "pairs": 16})
    assert res.cfg.alpha == 0.04 and res.label("alpha") == "default: 0.25 x sigma x pairs"
    assert resolve({"task": "arithmetic", "pairs": 16, "sigma": 0.02}).cfg.alpha == 0.08
    assert resolve({"task": "arithmetic", "pairs": 16, "alpha": 0.02}).cfg.alpha == 0.02
    header = {"config": {**asdict(QESConfig()), "pairs": 4, "alpha": 0.05}, "task": "arithmetic"}
    assert resolve({}, header=header).cfg.alpha == 0.05  # a resumed run keeps its recorded alpha


def test_a_resumed_run_that_predates_alpha_decay_keeps_a_constant_alpha():
    """The default decay (from step 20) came after runs without the field: resuming one keeps the
    constant alpha it ran with, unless a flag or file sets --alpha-decay."""
    from edgees.run.config import resolve
    assert resolve({"task": "arithmetic"}).cfg.alpha_decay == 20
    old = {k: v for k, v in asdict(QESConfig()).items() if k != "alpha_decay"}
    res = resolve({}, header={"config": old, "task": "arithmetic"})
    assert (res.cfg.alpha_decay, res.label("alpha_decay")) == (0, "run.json")
    assert resolve({"alpha_decay": 30}, header={"config": old, "task": "arithmetic"}).cfg.alpha_decay == 30
    new = {**old, "alpha_decay": 20}
    assert resolve({}, header={"config": new, "task": "arithmetic"}).cfg.alpha_decay == 20


def test_alpha_decay_defaults_to_a_constant_step_for_a_reward_scored_on_reference_answers():
    """Left out, alpha_decay is 20 for a generated reward and 0 for likelihood, margin and labels;
    given on the command line or in a file, or recorded in run.json, it is taken as it is."""
    from edgees.run.config import for_task, resolve
    res = resolve({"task": "arithmetic"})
    assert for_task(res, "generate").cfg.alpha_decay == 20
    for mode in ("likelihood", "margin", "labels"):
        scored = for_task(res, mode)
        assert (scored.cfg.alpha_decay, scored.label("alpha_decay")) == (0, "default for the task's reward")
    assert for_task(resolve({"task": "arithmetic", "alpha_decay": 20}), "likelihood").cfg.alpha_decay == 20
    header = {"config": asdict(QESConfig()), "task": "arithmetic"}  # a scored run that ran with 20
    assert for_task(resolve({}, header=header), "likelihood").cfg.alpha_decay == 20


def test_a_resumed_run_keeps_the_replay_window_it_ran_with():
    """The window went from 50 to 25 steps; a run keeps its own (recorded, or 50 if it predates the
    record), and a new run takes 25. A fixed field: a resume may not change it."""
    from edgees.run.config import resolve
    assert resolve({"task": "arithmetic"}).cfg.window == 25
    recorded = {**asdict(QESConfig()), "window": 50}
    assert resolve({}, header={"config": recorded, "task": "arithmetic"}).cfg.window == 50
    old = {k: v for k, v in asdict(QESConfig()).items() if k != "window"}
    res = resolve({}, header={"config": old, "task": "arithmetic"})
    assert (res.cfg.window, res.label("window")) == (50, "run.json")
