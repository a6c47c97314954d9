"""`edgees chat` answers through the model's own chat template (stdin not a terminal: one answer per
line; a run dir means its latest weights) and `edgees compare` puts two models side by side."""

from __future__ import annotations

import json
import subprocess

import pytest

from edgees.engine.engine import Engine
from toy_task import edgees_cmd, finetune_args, subprocess_env, toy_model, write_answers

CHATML_USER = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def run(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(edgees_cmd([str(a) for a in args]), input=stdin, capture_output=True, text=True,
                          env=subprocess_env(), timeout=600)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(base, 3-step run dir, its export, data)."""
    d = tmp_path_factory.mktemp("chat")
    base, data = toy_model(d / "toy.gguf"), write_answers(d / "answers.jsonl")
    r = run(*finetune_args(base, d / "run", data, steps=3, likelihood=True))
    assert r.returncode == 0, r.stderr
    assert run("export", d / "run", "-o", d / "adapted.gguf").returncode == 0
    return base, d / "run", d / "adapted.gguf", data


def test_chat_from_a_script_answers_each_line_through_the_template(toy):
    base, _, _, _ = toy
    r = run("chat", base, "--json", "--max-tokens", "8", "--threads", "1",
            stdin="hello\n\nWrite a short sentence about 7 apples.\n")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["prompt"] for row in rows] == ["hello", "Write a short sentence about 7 apples."]
    assert rows[0]["templated"] == CHATML_USER.format("hello")
    with Engine(base, n_threads=1, n_seq=1) as e:
        want = [e.generate([[{"role": "user", "content": row["prompt"]}]], max_tokens=8)[0] for row in rows]
    assert [row["answer"] for row in rows] == want
    plain = run("chat", base, "--max-tokens", "8", "--threads", "1", "--system", "Be brief.",
                stdin="hello\nhi there\n")
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.splitlines()) == 2
    sys_row = json.loads(run("chat", base, "--json", "--max-tokens", "4", "--system", "Be brief.",
                             stdin="hello\n").stdout)
    assert sys_row["templated"] == "<|im_start|>system\nBe brief.<|im_end|>\n" + CHATML_USER.format("hello")


def test_chat_with_a_run_dir_is_chat_with_its_export(toy):
    _, run_dir, exported, _ = toy
    prompts = "Write a short sentence about 7 apples.\nWrite a short sentence about 9 apples.\n"
    a = run("chat", run_dir, "--json", "--max-tokens", "12", "--threads", "1", stdin=prompts)
    b = run("chat", exported, "--json", "--max-tokens", "12", "--threads", "1", stdin=prompts)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert [json.loads(x)["answer"] for x in a.stdout.splitlines()] == \
           [json.loads(x)["answer"] for x in b.stdout.splitlines()]


def test_compare_prints_both_columns_and_json(toy):
    base, run_dir, _, data = toy
    task = ["--task", f"jsonl:{data}", "--task-opt", "reward=likelihood", "--n", "4", "--threads", "1"]
    r = run("compare", base, run_dir, *task, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n"] == 4 and res["base"]["model"] == str(base) and res["adapted"]["model"] == str(run_dir)
    assert set(res["base"]["metrics"]) == set(res["adapted"]["metrics"]) >= {"loglik"}
    assert res["base"]["metrics"]["loglik"] != res["adapted"]["metrics"]["loglik"]
    assert len(res["samples"]) == 3 and all({"prompt", "base", "adapted"} <= set(s) for s in res["samples"])
    human = run("compare", base, run_dir, *task, "--samples", "2")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[1].split() == ["base", "adapted"]
    assert any(line.startswith("loglik") and len(line.split()) == 3 for line in lines)
    assert sum(line.startswith("  base:") for line in lines) == 2
    assert sum(line.startswith("  adapted:") for line in lines) == 2
    ch = res["changes"]
    every = json.loads(run("compare", base, run_dir, *task, "--json", "--samples", "4").stdout)["samples"]
    assert ch["changed"] == sum(s["base"] != s["adapted"] for s in every)
    assert ch["reward_up"] + ch["reward_down"] <= ch["changed"] <= 4
    assert any(line.startswith(f"answers changed on {ch['changed']} of 4 prompts") for line in lines)
    for side in ("base", "adapted"):  # the answer given most often, said when it is half or more
        answers = [s[side] for s in every]
        same = ch["most_common"][side]
        assert same["count"] == max(answers.count(a) for a in answers) == answers.count(same["answer"])
        said = f"the {side} model gives the same answer to {same['count']} of 4 prompts: {same['answer']!r}"
        assert (said in lines) == (same["count"] >= 2)
    only = json.loads(run("compare", base, run_dir, *task, "--json", "--samples", "4", "--changed").stdout)
    assert len(only["samples"]) == ch["changed"]
    assert all(s["base"] != s["adapted"] and {"base_reward", "adapted_reward"} <= set(s) for s in only["samples"])
    for s in only["samples"]:  # each labelled with how its reward went
        went = "rose" if s["adapted_reward"] > s["base_reward"] else "fell" if s["adapted_reward"] < s["base_reward"] else "same"
        assert s["outcome"] == went


def test_compare_changed_samples_follow_the_counts_of_rises_and_falls():
    from edgees.commands.compare import _pick_changed

    def row(i, base_reward, adapted_reward, changed=True):
        return {"prompt": f"p{i}", "base": "x", "adapted": "y" if changed else "x",
                "base_reward": base_reward, "adapted_reward": adapted_reward}
    # held-out order: three falls first, then 24 rises and 6 more falls, and unchanged answers between
    rows = [row(i, 1.0, 0.0) for i in range(3)] + [row(3, 0.0, 0.0, changed=False)] \
        + [row(i, 0.0, 1.0) for i in range(4, 28)] + [row(i, 1.0, 0.0) for i in range(28, 34)]
    picked = _pick_changed(rows, 3)
    assert [(s["prompt"], s["outcome"]) for s in picked] == [("p0", "fell"), ("p4", "rose"), ("p5", "rose")]
    assert len(_pick_changed(rows, 100)) == 33 and _pick_changed(rows, 0) == []
    plain = [{k: v for k, v in r.items() if "reward" not in k} for r in rows]  # no rewards: the first K
    assert [s["prompt"] for s in _pick_changed(plain, 2)] == ["p0", "p1"]


def test_compare_shows_sample_rewards_precisely_enough_to_differ():
    from edgees.commands.compare import _two_rewards
    assert _two_rewards(0.25, 0.5) == ("0.25", "0.50")
    assert _two_rewards(0.083, 0.080) == ("0.083", "0.080")  # "reward fell" should not read 0.08 -> 0.08
    assert _two_rewards(0.08, 0.08) == ("0.08", "0.08")
    assert _two_rewards(0.1, 0.1 + 1e-9) == ("0.1000", "0.1000")  # at most 4 places


def test_chat_and_compare_refuse_an_unknown_model_in_one_line(toy):
    base, _, _, _ = toy
    for args in (["chat", "no-such-model"], ["compare", base, "no-such-model", "--task", "arithmetic"]):
        r = run(*args, stdin="hello\n")
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and "unknown model 'no-such-model'" in lines[0], r.stderr
