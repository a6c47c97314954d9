"""The arithmetic task: a pinned split, rewards on hand-written completions, metrics, evaluate."""

from __future__ import annotations

import pytest

from edgees.errors import TaskError
from edgees.tasks.base import get_task

from task_helpers import LONG, FakeEngine, check_split, contents


def test_arithmetic_split_golden():
    task = get_task("arithmetic")
    train, heldout = check_split(task)
    assert len(heldout) == 40 and len(train) == 6442
    # Pinned: a change of split (hash, key, ratio) changes these and must be deliberate.
    assert contents(heldout[:3]) == ["What is 99+14? Answer with just the number.",
                                     "What is 31+32? Answer with just the number.",
                                     "What is 35+63? Answer with just the number."]
    assert [(e.fields["a"], e.fields["b"]) for e in train[:3]] == [(61, 77), (11, 91), (48, 96)]
    all_train, all_heldout = task.split(None, 10_000)
    assert len(all_train) + len(all_heldout) == 90 * 90
    assert task.split(5, 7)[1] == heldout[:7]  # prefixes are stable
    assert heldout[0].prompt == [{"role": "user", "content": "What is 99+14? Answer with just the number."}]
    assert heldout[0].fields == {"a": 99, "b": 14, "answer": 113}


@pytest.mark.parametrize("completion, reward", [
    ("78", 1.0), ("78.", 1.0), (" 78\n", 1.0),
    ("45 + 33 = 78", 0.575), ("The answer is 78", 0.565),
    ("78 = 45 + 33", 0.2 + 0.1 * (1 - 10 / 40) + 0.1 * (1 - 45 / 20 if 45 < 20 else 0)),
    ("77", 0.15 + 0.1 + 0.1 * (1 - 1 / 20)),
    ("45 + 33 = 77", 0.1 * (1 - 10 / 40) + 0.1 * (1 - 1 / 20)),
    ("", 0.0), ("I don't know", 0.0), ("<answer>", 0.0),
    (LONG + "78", 0.5), (LONG, 0.0),
])
def test_arithmetic_rewards(completion, reward):
    task = get_task("arithmetic")
    ex = task.example(45, 33)
    assert task.rewards([ex], [completion])[0] == pytest.approx(reward)


def test_arithmetic_reward_ordering_and_metrics():
    task = get_task("arithmetic")
    ex = [task.example(45, 33)] * 4
    comps = ["78", "45 + 33 = 78", "77", "no idea"]
    r = task.rewards(ex, comps)
    assert r[0] == 1.0 and r[0] > r[1] > r[2] > r[3] == 0.0
    assert all(x < 0.7 for x in r[1:])
    m = task.metrics(ex, comps)
    assert m["strict"] == 0.25 and m["lenient"] == 0.5 and m["reward"] == pytest.approx(sum(r) / 4)
    with pytest.raises(TaskError, match="1 completions for 4 examples"):
        task.rewards(ex, ["78"])


def test_arithmetic_evaluate_with_fake_engine():
    task = get_task("arithmetic")
    _, heldout = task.split(n_heldout=5)
    engine = FakeEngine(lambda p: p[0]["content"].split()[2].rstrip("?"))  # echoes "A+B": wrong
    rewards, metrics, comps = task.evaluate(engine, heldout)
    assert comps[0] == "99+14" and len(rewards) == 5 and metrics["strict"] == 0.0
    assert engine.calls[0][1] == task.max_tokens and engine.calls[0][2] == task.stop
    right = FakeEngine(lambda p: str(eval(p[0]["content"].split()[2].rstrip("?"))))  # noqa: S307 (test)
    rewards, metrics, _ = task.evaluate(right, heldout)
    assert rewards == [1.0] * 5 and metrics["strict"] == 1.0
