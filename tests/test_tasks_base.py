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


# ---- the primary metric --------------------------------------------------------------------------

@pytest.mark.parametrize("name,primary", [("arithmetic", "lenient"), ("countdown", "solved"),
                                          ("conciseness", "reward"), ("calibration", "reward")])
def test_each_task_names_a_primary_metric_its_metrics_report(name, primary):
    task = get_task(name)
    _, heldout = task.split(n_heldout=4)
    metrics = task.metrics(heldout, ["42"] * len(heldout))
    assert task.primary == primary and task.primary_metric(metrics) == primary
    assert list(task.leading({**metrics, "seconds": 1.0}))[0] == primary
    assert "seconds" not in task.leading(metrics | {"seconds": 1.0})


def test_a_file_task_leads_with_strict_and_falls_back_to_its_first_metric(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(20)])
    task = get_task(f"jsonl:{path}")
    assert task.primary_metric({"lenient": 0.5, "strict": 0.25, "reward": 0.1}) == "strict"
    assert task.primary_metric({"reward": 0.1, "lenient": 0.5}) == "reward"  # no strict: the first one
    with pytest.raises(TaskError, match="no metric"):
        task.primary_metric({"seconds": 3.0})
