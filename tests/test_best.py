"""The best held-out step: picked from metrics.jsonl, its checkpoint kept, written by
`finetune --export` (default) and `export --step best`."""

import json

from edgees import cli
from edgees.fileio import sha256_file
from edgees.run import checkpoint
from edgees.run.best import best_step
from toy_task import finetune_args, toy_model, write_prompts


def _row(step, value, primary="lenient", **more):
    return {"step": step, "heldout": {"lenient": value, "strict": 0.0, "n": 50, **more}, "primary": primary}


def test_best_is_the_highest_trained_step_and_the_latest_on_a_tie():
    rows = [_row(0, 0.9), {"step": 1, "reward_mean": 0.1}, _row(10, 0.3), _row(20, 0.4), _row(30, 0.4), _row(40, 0.2)]
    best = best_step(rows, steps_logged=40)
    assert (best.step, best.value, best.base, best.last_step, best.last_value) == (30, 0.4, 0.9, 40, 0.2)
    assert "step 30" in best.describe() and "base 0.900" in best.describe()
    assert "below the base" in best.describe()  # 0.4 against 0.9: the export is worse than the start
    assert "below the base" not in best_step([_row(0, 0.1), _row(10, 0.3)], 10).describe()


def test_rows_beyond_the_log_and_rows_without_a_primary_metric_are_not_picked():
    rows = [_row(0, 0.1), _row(10, 0.3), {"step": 15, "heldout": {"lenient": 0.9}}, _row(20, 0.8)]
    assert best_step(rows, steps_logged=19).step == 10  # step 20 is past a torn log
    assert best_step([{"step": 10, "heldout": {"lenient": 0.5}}], 10) is None  # an older run
    assert best_step([_row(0, 0.5)], 0) is None  # nothing trained yet


def test_prune_keeps_the_protected_step(tmp_path):
    d = checkpoint.checkpoint_dir(tmp_path)
    d.mkdir()
    for t in (5, 10, 15, 20):
        (d / f"step-{t:08d}{checkpoint.SUFFIX}").write_bytes(b"x")
    checkpoint.prune(tmp_path, keep=2, protect={5})
    assert sorted(checkpoint.step_of(p) for p in checkpoint.list_checkpoints(tmp_path)) == [5, 15, 20]


def _args(tmp_path, steps, resume=False):
    model = tmp_path / "toy.gguf"
    if not model.exists():
        toy_model(model)
        write_prompts(tmp_path / "prompts.jsonl")
    args = finetune_args(model, tmp_path / "run", tmp_path / "prompts.jsonl", steps=steps, resume=resume,
                         checkpoint_every=1)
    args[args.index("--eval-every") + 1] = "1"
    return args


def test_the_trainer_records_the_primary_metric_and_keeps_the_best_checkpoint(tmp_path, capsys):
    assert cli.main(_args(tmp_path, 5) + ["--checkpoint-keep", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "heldout" in r]
    assert [r["step"] for r in evals] == [0, 1, 2, 3, 4, 5]
    assert all(r["primary"] == "reward" for r in evals)
    best = summary["best"]
    values = [r["heldout"]["reward"] for r in evals[1:]]
    assert best["value"] == max(values) and best["step"] == 1 + max(i for i, v in enumerate(values) if v == best["value"])
    kept = {checkpoint.step_of(p) for p in checkpoint.list_checkpoints(tmp_path / "run")}
    assert kept == {best["step"], 5}


def test_finetune_export_writes_the_best_step_and_export_step_best_the_same(tmp_path, capsys):
    """A run whose step 1 scored best (metrics.jsonl edited to say so; the toy's scores are not
    steered) resumed with --export: the file is step 1's, the bytes `export --step 1` writes."""
    assert cli.main(_args(tmp_path, 3)) == 0
    capsys.readouterr()
    metrics = tmp_path / "run" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    for r in rows:
        if r["step"] == 1 and "heldout" in r:
            r["heldout"]["reward"] = 2.0  # above any letters share
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "best.gguf"
    assert cli.main(_args(tmp_path, 5, resume=True) + ["--export", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps_done"] == 5 and summary["best"]["step"] == 1 and summary["export"]["step"] == 1
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "one.gguf"), "--step", "1"]) == 0
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "b.gguf"), "--step", "best"]) == 0
    assert "the best held-out step: step 1" in capsys.readouterr().out
    assert sha256_file(out) == sha256_file(tmp_path / "one.gguf") == sha256_file(tmp_path / "b.gguf")
    last = tmp_path / "last.gguf"
    assert cli.main(["export", str(tmp_path / "run"), "-o", str(last)]) == 0
    assert "--step best writes it" in capsys.readouterr().out
    assert sha256_file(last) != sha256_file(out)


def test_eval_skip_scores_held_out_examples_the_pick_never_saw(tmp_path, capsys):
    import pytest

    from edgees.commands.eval import heldout_slice
    from edgees.errors import TaskError
    from edgees.tasks.base import get_task
    task = get_task("arithmetic")
    first = task.split(n_heldout=250)[1]
    assert heldout_slice(task, 200, 0) == first[:200]
    assert heldout_slice(task, 200, 50) == first[50:250]
    assert heldout_slice(task, None, 50) == first[50:50 + task.default_heldout]
    with pytest.raises(TaskError, match="lower --skip"):
        heldout_slice(task, 10, 5000)
    code = cli.main(["eval", str(tmp_path / "missing.gguf"), "--task", "arithmetic", "--skip", "5000"])
    assert code == 2 and "lower --skip" in capsys.readouterr().err  # before the model is looked for
