"""Tasks in general: the registry, task specs and options, `edgees tasks`, the reward= option."""

from __future__ import annotations

import json

import pytest

from edgees.errors import TaskError
from edgees.tasks.base import Example, get_task, list_tasks, parse_options, task_options

from task_helpers import write


# ---- registry ------------------------------------------------------------------------------------

def test_list_tasks_names_every_family():
    names = [n for n, _ in list_tasks()]
    for n in ["arithmetic", "countdown", "conciseness", "calibration", "jsonl:PATH",
              "python:MODULE:FUNCTION", "onnx:PATH"]:
        assert n in names
    assert all(d and "\n" not in d for _, d in list_tasks())


def test_unknown_task_and_option():
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(TaskError, match="unknown option 'colour'"):
        get_task("arithmetic", colour="red")
    with pytest.raises(TaskError, match="jsonl:PATH"):
        get_task("jsonl:")
    assert "max_tokens" in task_options("arithmetic")


def test_parse_options():
    assert parse_options(["match=numeric", "seed=3", "x=0.5", "chat=false", "stop=\\n"]) == {
        "match": "numeric", "seed": 3, "x": 0.5, "chat": False, "stop": "\n"}
    with pytest.raises(TaskError, match="KEY=VALUE"):
        parse_options(["numeric"])


# ---- CLI -----------------------------------------------------------------------------------------

def test_cli_tasks_ls(capsys):
    from edgees.cli import main

    assert main(["tasks", "ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["task"] for r in rows} >= {"arithmetic", "jsonl:PATH", "onnx:PATH"}
    assert "match" in next(r for r in rows if r["task"] == "jsonl:PATH")["options"]
    assert main(["tasks", "ls"]) == 0 and "countdown" in capsys.readouterr().out
    assert main(["tasks", "show", "arithmetic", "-n", "1"]) == 0
    assert "What is 99+14?" in capsys.readouterr().out
    assert main(["tasks", "show", "jsonl:/no/such.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/no/such.jsonl: no such file" in err


# ---- reward=likelihood: the option ---------------------------------------------------------

def test_likelihood_reward_option_is_checked(tmp_path):
    assert get_task("arithmetic").reward_mode == "generate"
    assert get_task("arithmetic", reward="likelihood").reward_mode == "likelihood"
    with pytest.raises(TaskError, match="unknown reward 'best'; use reward=generate"):
        get_task("arithmetic", reward="best")
    data = write(tmp_path / "d.jsonl", ['{"prompt": "p", "answer": "a.*"}'])
    with pytest.raises(TaskError, match="match=regex the answers are patterns"):
        get_task(f"jsonl:{data}", match="regex", reward="likelihood")
    with pytest.raises(TaskError, match="no reference answers"):
        get_task("countdown", seed=0).reference(Example(prompt="p"))
