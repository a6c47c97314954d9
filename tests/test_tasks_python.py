"""python:MODULE:FUNCTION tasks: a user's reward function (trl's signature), its bad results and specs."""

from __future__ import annotations

import sys

import pytest

from edgees.errors import TaskError
from edgees.tasks.base import get_task

from task_helpers import check_split, pyreward  # noqa: F401 (a fixture)


def test_python_reward(pyreward):
    mod, data = pyreward
    task = get_task(f"python:{mod}:match", data=str(data))
    train, heldout = check_split(task)
    ex = (train + heldout)[:3]
    comps = [e.fields["answer"] for e in ex[:2]] + ["x" * 50]
    assert task.rewards(ex, comps) == [1.0, 1.0, -0.5]
    assert task.metrics(ex, comps)["reward"] == pytest.approx(1.5 / 3)
    chat = get_task(f"python:{mod}:chat_aware", data=str(data))
    tr, ho = chat.split()
    by_kind = {isinstance(e.prompt, list): e for e in tr + ho}
    assert chat.rewards([by_kind[True], by_kind[False]], ["abc", "abc"]) == [3.0, -1.0]  # trl's forms
    cols = get_task(f"python:{mod}:columns", data=str(data))
    ex = [e for e in cols.split()[0] + cols.split()[1]]
    assert sorted(cols.rewards(ex, [""] * len(ex))) == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # a dotted module name works too
    sys.path.insert(0, str(mod.parent))
    try:
        assert get_task("python:my_reward:match", data=str(data)).rewards(ex[:1], ["?"]) == [-0.01]
    finally:
        sys.path.remove(str(mod.parent))


@pytest.mark.parametrize("function, message", [
    ("boom", r"my_reward\.py:14: reward function .*my_reward\.py:boom raised ValueError: bad thing; fix"),
    ("short", r"returned 1 values for 3 completions"),
    ("nan", r"NaN or infinite at index 0"),
    ("text", r"not a number \(str 'high'\) at index 0"),
    ("none", r"returned a NoneType, not a list"),
])
def test_python_reward_bad_results(pyreward, function, message):
    mod, data = pyreward
    task = get_task(f"python:{mod}:{function}", data=str(data))
    ex = task.split()[0][:3]
    with pytest.raises(TaskError, match=message) as info:
        task.rewards(ex, ["a", "b", "c"])
    assert "\n" not in str(info.value)


def test_python_reward_bad_specs(pyreward, tmp_path):
    mod, data = pyreward
    cases = [
        (f"python:{mod}:missing", {"data": str(data)}, r"has no 'missing' \(callables: .*boom"),
        (f"python:{mod}:NOT_A_FUNCTION", {"data": str(data)}, r"is a int, not a function"),
        (f"python:{mod}:match", {}, r"needs its prompts: pass the option data=PATH"),
        (f"python:{mod}:match", {"data": str(tmp_path / "no.jsonl")}, r"no\.jsonl: no such file"),
        (f"python:{tmp_path / 'none.py'}:f", {"data": str(data)}, r"none\.py: no such file"),
        ("python:no_such_module_xyz:f", {"data": str(data)}, r"no module named 'no_such_module_xyz'"),
        (f"python:{mod}", {"data": str(data)}, r"python:MODULE:FUNCTION"),
    ]
    for spec, opts, message in cases:
        with pytest.raises(TaskError, match=message):
            get_task(spec, **opts)
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n    pass\n")
    with pytest.raises(TaskError, match=r"broken\.py:1: syntax error in reward module"):
        get_task(f"python:{broken}:f", data=str(data))
    raising = tmp_path / "raising.py"
    raising.write_text("x = 1\nraise RuntimeError('no config')\n")
    with pytest.raises(TaskError, match=r"raising\.py:2: importing .* failed: RuntimeError: no config"):
        get_task(f"python:{raising}:f", data=str(data))
