"""feedback:PATH tasks: the line forms, one-line errors, the split as the file grows (and jsonl:'s),
a line being written, rewards and metrics from the real scorer, and finetune/eval through the CLI."""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from edgees.errors import TaskError
from edgees.tasks.base import Example, get_task
from edgees.tasks.feedback import FeedbackTask

from task_helpers import check_split, contents, write
from toy_task import edgees_cmd, subprocess_env, toy_model

ASSISTANT = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731


def pairs(n, start=0):
    return [{"prompt": f"Write a short sentence about {i} apples.", "chosen": "the apples are red",
             "rejected": "APPLES 123 !!"} for i in range(start, start + n)]


def test_feedback_line_forms(tmp_path):
    f = write(tmp_path / "fb.jsonl", [
        {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away.", "source": "app"},
        {"prompt": "Capital of France?", "completion": "Paris", "label": True},
        {"prompt": "Capital of Spain?", "completion": "Paris", "label": False, "split": "test"},
        "",
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky?"}],
         "chosen": ASSISTANT("Blue."), "rejected": ASSISTANT("Green, I think, or maybe not.")},
        {"chosen": [{"role": "user", "content": "2+2?"}] + ASSISTANT("4"),
         "rejected": [{"role": "user", "content": "2+2?"}] + ASSISTANT("5")},
    ])
    task = get_task(f"feedback:{f}")
    assert isinstance(task, FeedbackTask) and task.reward_mode == "likelihood" and task.chat
    train, heldout = check_split(task)
    examples = train + heldout
    assert len(examples) == 5 and contents(heldout) == ["Capital of Spain?"]
    by_prompt = {json.dumps(e.prompt): e.fields for e in examples}
    assert by_prompt[json.dumps([{"role": "user", "content": "Hi?"}])] == {
        "chosen": "Hello!", "rejected": "Go away.", "source": "app"}
    assert by_prompt[json.dumps([{"role": "user", "content": "Capital of France?"}])] == {
        "completion": "Paris", "label": True}
    assert by_prompt[json.dumps([{"role": "user", "content": "2+2?"}])] == {"chosen": "4", "rejected": "5"}
    raw = get_task(f"feedback:{f}", chat=False)
    assert "Hi?" in [e.prompt for e in raw.split()[0] + raw.split()[1]]


BAD_LINES = [
    ("{not json", "not valid JSON"),
    ('["prompt"]', "a JSON list, not an object"),
    ('{"prompt": "q", "chosen": "a"}', 'a pair without "rejected"'),
    ('{"prompt": "q", "rejected": "a"}', 'a pair without "chosen"'),
    ('{"prompt": "q", "chosen": "a", "rejected": "a"}', "the same text"),
    ('{"prompt": "q", "chosen": "a", "rejected": "b", "completion": "c", "label": true}', "one example per line"),
    ('{"prompt": "q", "completion": "a"}', "no label for the completion"),
    ('{"prompt": "q", "completion": "a", "label": "yes"}', "label 'yes'"),
    ('{"prompt": "q", "completion": "a", "label": 1}', "label 1"),
    ('{"prompt": "q", "completion": "", "label": true}', 'is empty'),
    ('{"prompt": "", "chosen": "a", "rejected": "b"}', "the prompt must be"),
    ('{"chosen": "a", "rejected": "b"}', "no prompt"),
    ('{"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}', "ending with the assistant"),
    ('{"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}], '
     '"rejected": [{"role": "user", "content": "y"}, {"role": "assistant", "content": "b"}]}', "differ before"),
    ('{"prompt": "q", "answer": "a"}', "no answer to learn from"),
    ('{"prompt": "q", "completion": "a", "label": true, "split": "later"}', "unknown split"),
]


@pytest.mark.parametrize("line, words", BAD_LINES)
def test_a_bad_line_is_one_line_naming_the_line_and_the_fix(tmp_path, line, words):
    f = write(tmp_path / "fb.jsonl", [pairs(1)[0], line])
    with pytest.raises(TaskError) as exc:
        get_task(f"feedback:{f}")
    msg = str(exc.value)
    assert msg.startswith(f"{f}:2: ") and words in msg and "; " in msg and "\n" not in msg, msg


@pytest.mark.parametrize("lines, words", [
    ([], "no examples"),
    ([{"prompt": "q", "completion": "a", "label": False}], "only thumbs-down ratings"),
])
def test_a_bad_file_is_one_line_too(tmp_path, lines, words):
    f = write(tmp_path / "fb.jsonl", lines)
    with pytest.raises(TaskError, match=words) as exc:
        get_task(f"feedback:{f}")
    assert str(exc.value).startswith(f"{f}: ") and "\n" not in str(exc.value)
    with pytest.raises(TaskError, match="no such file"):
        get_task(f"feedback:{tmp_path / 'nope.jsonl'}")


def side(task) -> dict[str, str]:
    train, heldout = task.split()
    return {json.dumps([e.prompt, e.fields], sort_keys=True): s for s, xs in (("train", train), ("heldout", heldout))
            for e in xs}


@pytest.mark.parametrize("family", ["feedback", "jsonl"])
def test_a_growing_file_keeps_every_old_line_on_its_side(tmp_path, family):
    def lines(start, n):
        if family == "jsonl":
            return [{"prompt": f"q{i}", "answer": str(i)} for i in range(start, start + n)]
        return [{"prompt": f"q{i // 2}", "completion": f"a{i}", "label": i % 3 != 0} for i in range(start, start + n)]

    f = write(tmp_path / "d.jsonl", lines(0, 60))
    task = get_task(f"{family}:{f}")
    before = side(task)
    assert "heldout" in before.values() and task.refresh() is False  # nothing changed
    with open(f, "a") as out:
        out.writelines(json.dumps(x) + "\n" for x in lines(60, 140))
    assert task.refresh() is True
    after = side(task)
    assert len(after) == 200 and all(after[k] == s for k, s in before.items())
    assert 20 <= list(after.values()).count("heldout") <= 60
    if family == "feedback":  # both ratings of one prompt land on the same side
        by_prompt: dict[str, set] = {}
        for k, s in after.items():
            by_prompt.setdefault(json.dumps(json.loads(k)[0]), set()).add(s)
        assert all(len(v) == 1 for v in by_prompt.values())
    # a line being written (no newline yet) waits; complete, it is read
    whole = json.dumps(lines(200, 1)[0])
    with open(f, "a") as out:
        out.write(whole[:17])
    assert task.refresh() is False and len(side(task)) == 200
    with open(f, "a") as out:
        out.write(whole[17:])
    assert task.refresh() is True and len(side(task)) == 201  # complete JSON without a newline: taken
    with open(f, "a") as out:
        out.write("\n")
    assert task.refresh() is False and len(side(task)) == 201
    # a bad complete line: one error per change of the file, the examples read before stay
    with open(f, "a") as out:
        out.write("{oops}\n")
    with pytest.raises(TaskError, match=r":202: not valid JSON"):
        task.refresh()
    assert task.refresh() is False and len(side(task)) == 201


# ---- the real scorer on the toy model ------------------------------------------------------------

def test_rewards_and_metrics_from_one_batched_score(tmp_path):
    engine_mod = pytest.importorskip("edgees.engine.engine")
    model = toy_model(tmp_path / "toy.gguf")
    f = write(tmp_path / "fb.jsonl", [dict(p, split="train") for p in pairs(3)] + [
        {"prompt": "Say hi.", "completion": "hi there", "label": True, "split": "heldout"},
        {"prompt": "Say no.", "completion": "NO NO NO", "label": False, "split": "heldout"},
        {"prompt": "Say yes.", "chosen": "yes", "rejected": "yes yes yes yes", "split": "heldout"},
    ])
    task = get_task(f"feedback:{f}")
    train, heldout = task.split()
    examples = train + heldout
    with engine_mod.Engine(model, n_threads=1, n_seq=8, max_tokens=task.max_tokens) as engine:
        rewards = task.train_rewards(engine, examples)
        assert engine.last_stats["prompts"] == 2 * 4 + 2  # every text of the batch in one call
        for e, r in zip(examples, rewards):
            if "chosen" in e.fields:
                c, rj = engine.score([e.prompt] * 2, [e.fields["chosen"], e.fields["rejected"]], end_turn=True)
                assert r == pytest.approx(c - rj, abs=1e-6)
            else:
                (ll,) = engine.score([e.prompt], [e.fields["completion"]], end_turn=True)
                assert ll < 0 and r == pytest.approx(ll if e.fields["label"] else -ll, abs=1e-6)
        got, metrics, answers = task.evaluate(engine, heldout)
    assert len(got) == len(answers) == len(heldout) == 3
    by = {e.prompt[-1]["content"]: r for e, r in zip(heldout, got)}
    assert metrics["margin"] == pytest.approx(by["Say yes."]) and metrics["accuracy"] == float(by["Say yes."] > 0)
    assert metrics["good_loglik"] == pytest.approx(by["Say hi."])
    assert metrics["bad_loglik"] == pytest.approx(-by["Say no."])
    assert all(math.isfinite(v) for v in metrics.values())
    assert task.metrics(heldout, ["x"] * 3) == {}
    with pytest.raises(TaskError, match="not generated ones"):
        task.rewards(heldout, ["x"] * 3)


def run_cli(args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(edgees_cmd(args), capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=subprocess_env())


def test_finetune_eval_and_show_through_the_cli(tmp_path):
    model = toy_model(tmp_path / "toy.gguf")
    data = write(tmp_path / "fb.jsonl", pairs(20) + [
        {"prompt": f"Say {w}.", "completion": w, "label": True} for w in ("hi", "yes", "ok")])
    spec = f"feedback:{data}"
    show = run_cli(["tasks", "show", spec, "--json"], tmp_path)
    assert show.returncode == 0, show.stderr
    info = json.loads(show.stdout)
    assert info["n_train"] + info["n_heldout"] == 23 and info["n_heldout"] >= 1
    run = tmp_path / "run"
    ft = run_cli(["finetune", str(model), "--task", spec, "--run", str(run), "--steps", "3", "--pairs", "2",
                  "--prompts", "4", "--sigma", "0.3", "--alpha", "1.0", "--window", "4", "--eval-every", "0",
                  "--eval-n", "4", "--threads", "1", "--quiet"], tmp_path)
    assert ft.returncode == 0, ft.stderr[-800:]
    from edgees.run.log import RunDir
    rd = RunDir(run)
    assert len(rd.read_steps()) == 3
    evals = [r["heldout"] for r in rd.read_metrics() if "heldout" in r]
    assert len(evals) == 2 and all({"loglik", "accuracy", "margin"} <= set(m) for m in evals)
    assert all(math.isfinite(m["loglik"]) for m in evals)
    ev = run_cli(["eval", str(model), "--task", spec, "--threads", "1", "--json"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-800:]
    metrics = json.loads(ev.stdout.strip().splitlines()[-1])["metrics"]
    assert math.isfinite(metrics["loglik"])
    bad = run_cli(["finetune", str(model), "--task", f"feedback:{tmp_path / 'nope.jsonl'}", "--run",
                   str(tmp_path / "run2"), "--steps", "1"], tmp_path)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "no such file" in bad.stderr
