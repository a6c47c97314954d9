"""The conciseness task: its split and its length-only reward."""

from __future__ import annotations

import pytest

from edgees.tasks.base import Example, get_task

from task_helpers import LONG, check_split, contents


def test_conciseness_split_and_rewards():
    task = get_task("conciseness")
    train, heldout = check_split(task)
    assert len(train) == 32 and len(heldout) == 10
    assert contents(heldout[:2]) == ["Which organ pumps blood through the body?",
                                     "Who was the first person to walk on the Moon?"]
    ex = Example(prompt="What is the capital of France?", fields={"answer": "Paris."})
    comps = ["Paris.", "It is Paris.", "The capital of France is Paris, a city on the Seine.", "", LONG, "!!!!!!"]
    r = task.rewards([ex] * len(comps), comps)
    assert r[0] == 1.0 and r[1] == pytest.approx(1 / 1.6) and r[0] > r[1] > r[2] > r[4] > 0
    assert r[3] == 0.0 and r[5] == 1.0  # length only (the paper's reward): same-length junk scores 1
    m = task.metrics([ex] * len(comps), comps)
    assert m["contains"] == pytest.approx(3 / 6) and m["mean_chars"] > 100
    weighted = get_task("conciseness", correct_weight=0.5).rewards([ex] * 2, ["Paris.", "!!!!!!"])
    assert weighted == [1.0, 0.5]
