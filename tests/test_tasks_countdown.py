"""The countdown task: a pinned, solvable split; rewards on hand-written completions; metrics."""

from __future__ import annotations

import pytest

from edgees.tasks.base import get_task

from task_helpers import LONG, check_split, contents


def test_countdown_split_golden_and_solvable():
    task = get_task("countdown")
    train, heldout = check_split(task, 200, 20)
    assert [(e.fields["numbers"], e.fields["target"]) for e in heldout[:3]] == [
        ([21, 20, 15], 735), ([12, 3, 13], 17), ([6, 46, 36, 44], 120)]
    assert [(e.fields["numbers"], e.fields["target"]) for e in train[:2]] == [
        ([31, 23, 1, 23], 736), ([42, 47, 38, 12], 39)]
    assert "Using the numbers [21, 20, 15], create an equation that equals 735." in contents(heldout)[0]
    assert task.split(50, 5)[1] == heldout[:5] and task.split(50, 5)[0] == train[:50]
    for e in train + heldout:  # solvable by construction: the stored solution scores 1.0
        assert task.rewards([e], [f"<answer>{e.fields['solution']}</answer>"]) == [1.0]
    assert get_task("countdown", seed=1).split(3, 3) != task.split(3, 3)


@pytest.mark.parametrize("completion, reward", [
    ("<answer>3*5+7</answer>", 1.0),
    ("Let me think. <answer> (3 * 5) + 7 = 22", 1.0),          # stop string stripped, "= 22" ignored
    ("<answer>7 + 3 × 5</answer>", 1.0),
    ("<answer>3*5*7</answer>", 0.2),                             # valid numbers, 105 is far
    ("<answer>5*5-3</answer>", 0.1),                             # 5 used twice
    ("<answer>3+5</answer>", 0.2 + 0.3 * (1 - 14 / 22)),
    ("<answer>7/(5-5)</answer>", 0.1),                           # 5 twice, division by zero
    ("<answer>__import__('os').system('true')</answer>", 0.05),  # never evaluated
    ("<answer>3**5</answer>", 0.05), ("<answer>-3+25</answer>", 0.05), ("<answer></answer>", 0.05),
    ("3*5+7", 0.0), ("", 0.0), (LONG, 0.0),
    ("<answer>" + "(" * 300 + "3" + ")" * 300 + "</answer>", 0.05),
    ("<answer>1</answer> no wait <answer>3*5+7</answer>", 1.0),  # the last tag counts
])
def test_countdown_rewards(completion, reward):
    task = get_task("countdown")
    ex = task.example([3, 5, 7], 22)
    assert task.rewards([ex], [completion])[0] == pytest.approx(reward)


def test_countdown_metrics():
    task = get_task("countdown")
    ex = [task.example([3, 5, 7], 22)] * 3
    m = task.metrics(ex, ["<answer>3*5+7</answer>", "<answer>5*5</answer>", "nothing"])
    assert m["solved"] == pytest.approx(1 / 3) and m["format"] == pytest.approx(2 / 3)
    assert m["valid_numbers"] == pytest.approx(1 / 3)
