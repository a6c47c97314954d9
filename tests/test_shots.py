"""k-shot prompts (edgees eval --shots K): the few-shot baseline a fine-tune is held against."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgees.errors import TaskError
from edgees.tasks.base import Example, Task, get_task
from edgees.tasks.shots import shot_examples, with_shots

from task_helpers import write


def test_chat_prompts_become_a_conversation_with_reference_answers():
    task = get_task("arithmetic")
    heldout = task.split(n_heldout=3)[1]
    shots = shot_examples(task, 2)
    assert shots == task.split(n_train=2)[0]  # the first train examples: the same on every machine
    got = with_shots(task, heldout, shots)
    for e, g in zip(heldout, got):
        assert g.fields == e.fields
        roles = [m["role"] for m in g.prompt]
        assert roles == ["user", "assistant", "user", "assistant", "user"]
        assert g.prompt[1]["content"] == str(shots[0].fields["answer"])
        assert g.prompt[3]["content"] == str(shots[1].fields["answer"])
        assert g.prompt[-1] == e.prompt[-1]
    train_prompts = {json.dumps(s.prompt) for s in task.split(n_train=None)[0]}
    assert not any(json.dumps(e.prompt) in train_prompts for e in heldout)  # shots never show a held-out sum
    assert with_shots(task, heldout, []) == heldout


def test_a_system_turn_stays_first():
    class T(Task):
        name = "t"

        def reference(self, e):
            return e.fields["a"]

    sys_ = {"role": "system", "content": "be brief"}
    e = Example([sys_, {"role": "user", "content": "q"}], {"a": "x"})
    s = Example([sys_, {"role": "user", "content": "q1"}], {"a": "a1"})
    assert with_shots(T(), [e], [s])[0].prompt == [sys_, {"role": "user", "content": "q1"},
                                                    {"role": "assistant", "content": "a1"},
                                                    {"role": "user", "content": "q"}]


def test_raw_text_prompts_are_joined_by_blank_lines(tmp_path):
    data = write(tmp_path / "d.jsonl", [json.dumps({"prompt": f"Q: say {i}\nA: ", "answer": str(i)})
                                        for i in range(20)])
    task = get_task(f"jsonl:{data}", match="numeric", chat=False)
    heldout = task.split(n_heldout=1)[1]
    shots = shot_examples(task, 2)
    got = with_shots(task, heldout, shots)[0].prompt
    assert got == (f"{shots[0].prompt}{task.reference(shots[0])}\n\n{shots[1].prompt}"
                   f"{task.reference(shots[1])}\n\n{heldout[0].prompt}")


def test_too_many_shots_and_no_references_are_one_line_errors(tmp_path):
    data = write(tmp_path / "d.jsonl", [json.dumps({"prompt": f"say {i}", "answer": str(i)}) for i in range(6)])
    with pytest.raises(TaskError, match="fewer than --shots 50"):
        shot_examples(get_task(f"jsonl:{data}"), 50)
    with pytest.raises(TaskError, match="no reference answers"):
        with_shots(get_task("conciseness"), [], shot_examples(get_task("conciseness"), 1))


def test_eval_shots_through_the_cli(tiny_models):
    def run(*extra):
        out = subprocess.run([sys.executable, "-m", "edgees", "eval", str(tiny_models["Q4_K"]), "--task",
                              "arithmetic", "--n", "4", "--json", "--threads", "1", *extra],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-800:]
        return json.loads(out.stdout.strip().splitlines()[-1])
    zero, four = run(), run("--shots", "4")
    assert (zero["shots"], four["shots"]) == (0, 4)
    assert four["prompt_tokens"] > zero["prompt_tokens"]  # the worked examples are in the prompts
    bad = subprocess.run([sys.executable, "-m", "edgees", "eval", str(tiny_models["Q4_K"]), "--task",
                          "conciseness", "--shots", "2"], capture_output=True, text=True)
    assert bad.returncode != 0 and "no reference answers" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
