"""Data that grows under a running job, and the split that must not move: python: and onnx: tasks
re-read their data= file as jsonl: and feedback: do; a line's side is a function of that line alone
(no borrowed held-out line that goes back to train); feedback: held-out examples are scored once and
`edgees eval` generates no token for them."""

from __future__ import annotations

import json
import subprocess

import pytest

from edgees.errors import TaskError
from edgees.run.trainer import heldout_metrics
from edgees.tasks.base import get_task
from edgees.tasks.jsonl import load_jsonl, side_of, split_records

from task_helpers import onnx_models, write  # noqa: F401 (a fixture)
from toy_task import edgees_cmd, subprocess_env, toy_model

REWARD = "def score(prompts, completions, **kw):\n    return [float(len(c)) for c in completions]\n"


def sides(task) -> dict[str, str]:
    train, heldout = task.split()
    return {json.dumps(e.prompt): s for s, xs in (("train", train), ("heldout", heldout)) for e in xs}


def grow_and_check(task, path, start: int, n: int) -> None:
    """Append n prompts to the task's file: refresh() takes them, every old prompt keeps its side."""
    before = sides(task)
    assert task.refresh() is False
    with open(path, "a") as f:
        f.writelines(json.dumps({"prompt": f"Write about {i} apples."}) + "\n" for i in range(start, start + n))
    assert task.refresh() is True
    after = sides(task)
    assert len(after) == len(before) + n and all(after[k] == s for k, s in before.items())
    assert "heldout" in after.values() and "train" in after.values()


def test_a_python_reward_follows_its_growing_data_file(tmp_path):
    (tmp_path / "r.py").write_text(REWARD)
    data = write(tmp_path / "d.jsonl", [{"prompt": f"Write about {i} apples."} for i in range(40)])
    task = get_task(f"python:{tmp_path / 'r.py'}:score", data=str(data))
    grow_and_check(task, data, 40, 60)
    with open(data, "a") as f:
        f.write('{"prompt": "half a li')  # an app mid-write: waits for the rest
    assert task.refresh() is False and len(sides(task)) == 100
    with open(data, "a") as f:
        f.write('ne", "level": 3}\n')
    assert task.refresh() is True and len(sides(task)) == 101 and "level" in task.columns


def test_an_onnx_reward_follows_its_growing_data_file(onnx_models, tmp_path):
    data = write(tmp_path / "d.jsonl", [{"prompt": f"Write about {i} apples."} for i in range(40)])
    task = get_task(f"onnx:{onnx_models['masked']}", data=str(data))
    grow_and_check(task, data, 40, 60)
    builtin = get_task(f"onnx:{onnx_models['masked']}")
    assert builtin.refresh() is False  # the built-in prompts have no file


def test_a_lines_side_never_changes_as_a_small_file_grows(tmp_path):
    """The old fallback held out the smallest-hash line of a file none of whose lines hashed out, and
    gave it back to train once one did; now every line's side is side_of(line), forever."""
    lines = [{"prompt": f"q{i}", "answer": "a"} for i in range(1, 61)]  # q1..q7 hash to train
    path = tmp_path / "d.jsonl"
    seen: dict[str, str] = {}
    errors = 0
    for k in range(1, len(lines) + 1):
        write(path, lines[:k])
        records = load_jsonl(path, need_answer=True)
        try:
            train, heldout = split_records(records, 5, path)
        except TaskError as exc:
            assert "none of its" in str(exc) and 'mark some lines "split": "heldout"' in str(exc)
            assert all(side_of(r, 5) == "train" for r in records)
            errors += 1
            continue
        for side, rs in (("train", train), ("heldout", heldout)):
            for r in rs:
                key = json.dumps(r.prompt)
                assert seen.setdefault(key, side) == side, f"{key} moved to {side} at {k} lines"
    assert errors == 7  # the first 7 lines hash to train: the error, not a borrowed held-out line
    assert list(seen.values()).count("heldout") == 9


def test_a_small_file_without_a_held_out_line_is_one_line_naming_the_fixes(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"prompt": "q1", "answer": "a"}, {"prompt": "q2", "answer": "b"}])
    task = get_task(f"jsonl:{path}")
    assert all(side_of(r, 5) == "train" for r in task.records)
    with pytest.raises(TaskError) as err:
        task.split()
    msg = str(err.value)
    assert msg.startswith(f"{path}: none of its 2 examples is held out")
    assert "heldout_every=2" in msg and "\n" not in msg
    write(path, [{"prompt": "q1", "answer": "a"}, {"prompt": "q2", "answer": "b", "split": "heldout"}])
    train, heldout = get_task(f"jsonl:{path}").split()
    assert len(train) == len(heldout) == 1


class CountingEngine:
    """Engine.score's signature: log-likelihood -len(text); counts calls and texts."""

    def __init__(self):
        self.calls = 0
        self.texts = 0

    def score(self, prompts, targets, end_turn=False, **kw):
        self.calls += 1
        self.texts += len(targets)
        return [-float(len(t)) for t in targets]


def test_feedback_held_out_is_scored_once_and_nothing_is_generated(tmp_path):
    path = write(tmp_path / "fb.jsonl", [{"prompt": f"p{i}", "chosen": "yes", "rejected": "no no", "split": s}
                                         for i, s in enumerate(["train", "heldout", "heldout"])])
    task = get_task(f"feedback:{path}")
    assert task.max_tokens == 0
    _, heldout = task.split()
    engine = CountingEngine()
    metrics = heldout_metrics(task, engine, heldout, 2)  # the trainer's and the daemon's held-out figures
    assert engine.calls == 1 and engine.texts == 4
    assert metrics["loglik"] == pytest.approx(2.0) and metrics["margin"] == pytest.approx(2.0)
    task.evaluate(engine, heldout)
    task.train_rewards(engine, heldout)  # a member in between: the weights may differ, score again
    assert task.loglik(engine, heldout) == [2.0, 2.0] and engine.calls == 4
    assert task.loglik(engine, heldout) == [2.0, 2.0] and engine.calls == 5  # taken once, not kept


def test_eval_of_a_feedback_task_decodes_no_token(tmp_path):
    model = toy_model(tmp_path / "toy.gguf")
    data = write(tmp_path / "fb.jsonl", [{"prompt": f"Say {i}.", "chosen": "yes", "rejected": "NO NO NO",
                                          "split": "heldout" if i % 2 else "train"} for i in range(6)])
    r = subprocess.run(edgees_cmd(["eval", str(model), "--task", f"feedback:{data}", "--threads", "1", "--json"]),
                       capture_output=True, text=True, timeout=600, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["generated_tokens"] == 0 and res["n"] == 3 and "loglik" in res["metrics"]
