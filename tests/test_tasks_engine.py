"""Every task family end to end: through the real engine on a tiny generated model, through
`edgees eval`, and reward=likelihood scoring (engine tests of their own live in test_engine.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from edgees.tasks.base import get_task

from task_helpers import onnx_models, pyreward, write  # noqa: F401 (fixtures)


# ---- end to end: every task family through the real engine on a tiny generated model -------------

def test_every_task_evaluates_on_a_tiny_model(tmp_path, onnx_models, pyreward):
    engine_mod = pytest.importorskip("edgees.engine.engine")  # llama.cpp; the engine has its own tests
    from edgees.gguf.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny.gguf", "Q4_0", seed=0)
    mod, data = pyreward
    specs = [("arithmetic", {}), ("countdown", {"max_tokens": 8}), ("conciseness", {"max_tokens": 8}),
             ("calibration", {}), (f"jsonl:{data}", {"max_tokens": 8}),
             (f"python:{mod}:match", {"data": str(data), "max_tokens": 8}),
             (f"onnx:{onnx_models['masked']}", {"max_tokens": 8})]
    with engine_mod.Engine(model, n_seq=4) as engine:
        for spec, opts in specs:
            task = get_task(spec, **opts)
            examples = task.split(n_heldout=2)[1]
            rewards, metrics, completions = task.evaluate(engine, examples)
            assert len(rewards) == len(completions) == len(examples), spec
            assert all(math.isfinite(r) for r in rewards) and "reward" in metrics, spec
            assert rewards == task.rewards(examples, completions), spec  # pure function of the text


# ---- every task end to end through `edgees eval` on a tiny model ------------------------------

def _eval_cli(model, spec, *opts):
    cmd = [sys.executable, "-m", "edgees.cli", "eval", str(model), "--task", spec, "--n", "3", "--json",
           "--threads", "1"]
    for o in opts:
        cmd += ["--task-opt", o]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("spec,opts", [
    ("arithmetic", []), ("countdown", ["max_tokens=16"]), ("conciseness", []), ("calibration", []),
])
def test_builtin_tasks_run_through_edgees_eval(tiny_models, spec, opts):
    out = _eval_cli(tiny_models["Q4_K"], spec, *opts)
    assert out.returncode == 0, out.stderr[-800:]
    assert json.loads(out.stdout.strip().splitlines()[-1])


def test_user_tasks_run_through_edgees_eval(tiny_models, tmp_path, onnx_models):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"say {i}", "answer": str(i)}) + "\n" for i in range(12)))
    reward = tmp_path / "my_reward.py"
    reward.write_text("def reward(prompts, completions, **fields):\n    return [float(len(c)) for c in completions]\n")
    for spec, opts in ((f"jsonl:{data}", ["match=numeric"]), (f"python:{reward}:reward", [f"data={data}"]),
                       (f"onnx:{onnx_models['masked']}", [f"data={data}"])):
        out = _eval_cli(tiny_models["Q4_K"], spec, *opts)
        assert out.returncode == 0, f"{spec}: {out.stderr[-800:]}"
        assert json.loads(out.stdout.strip().splitlines()[-1])


# ---- reward=likelihood: the log-likelihood of the reference answer ---------------------------

# ---- reward=likelihood: the log-likelihood of the reference answer ---------------------------

def test_likelihood_reward_scores_the_reference_and_the_end_of_turn(tmp_path):
    engine_mod = pytest.importorskip("edgees.engine.engine")
    from edgees.engine.decode import last_logits
    from edgees.gguf.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny.gguf", "Q8_0", seed=0)
    data = write(tmp_path / "d.jsonl", ['{"prompt": "say one", "answer": ["1", "1.0"]}',
                                        '{"prompt": "say two", "answer": "2", "split": "heldout"}'])
    with engine_mod.Engine(model, n_seq=4) as engine:
        eot = engine.end_of_turn()
        assert engine.is_eog(eot)
        for task in (get_task("arithmetic", reward="likelihood"),
                     get_task(f"jsonl:{data}", match="numeric", reward="likelihood")):
            examples = task.split(n_heldout=2)[1] + task.split(n_train=2)[0]
            refs = [task.reference(e) for e in examples]
            assert all(r.isdigit() for r in refs)  # a list answer scores its first form
            got = task.train_rewards(engine, examples)
            plain = engine.score([e.prompt for e in examples], refs)
            for lp, without, e, ref in zip(got, plain, examples, refs):
                toks = engine.prompt_tokens(e.prompt) + engine.tokenize(ref, add_special=False,
                                                                       parse_special=False)
                row = last_logits(engine, toks).astype(np.float64)
                end = row[eot] - row.max() - np.log(np.exp(row - row.max()).sum())
                assert lp == pytest.approx(without + end, abs=1e-3)
        generate = get_task("arithmetic")
        ex = generate.split(n_heldout=2)[1]
        assert generate.train_rewards(engine, ex) == generate.evaluate(engine, ex)[0]


def test_reward_labels_is_the_right_labels_likelihood_plus_its_share_among_the_labels(tmp_path):
    """reward=labels on a file of labels: each label scored after the message (with the end of the
    turn); the reward is the right label's log-likelihood plus its log-softmax over the labels. Over
    the labels of one message the shares add up to 1."""
    engine_mod = pytest.importorskip("edgees.engine.engine")
    from edgees.gguf.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny.gguf", "Q8_0", seed=0)
    labels = ["billing", "bug", "feature request"]
    data = write(tmp_path / "l.jsonl", [json.dumps({"prompt": f"message {i}", "answer": labels[i % 3]})
                                        for i in range(12)])
    task = get_task(f"jsonl:{data}", reward="labels")
    assert task.labels == labels
    train = task.split()[0][:3]
    one = [type(train[0])(prompt=train[0].prompt, fields={"answer": label}) for label in labels]
    with engine_mod.Engine(model, n_seq=4) as engine:
        got = task.train_rewards(engine, train)
        each = [engine.score([e.prompt] * 3, labels, end_turn=True) for e in train]
        shares = task.train_rewards(engine, one)
    for lp, row, e in zip(got, each, train):
        right = row[labels.index(e.fields["answer"])]
        assert lp == pytest.approx(2 * right - math.log(sum(math.exp(x) for x in row)), abs=1e-4) and lp < right
    # `one` is train[0]'s message under each label: less each label's likelihood, the shares add to 1
    assert sum(math.exp(r - x) for r, x in zip(shares, each[0])) == pytest.approx(1.0, abs=1e-4)


def test_eval_reports_loglik_with_reward_likelihood(tiny_models):
    out = _eval_cli(tiny_models["Q4_K"], "arithmetic", "reward=likelihood")
    assert out.returncode == 0, out.stderr[-800:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])["metrics"]
    assert metrics["loglik"] < 0 and {"strict", "lenient", "reward"} <= set(metrics)


def test_eval_runs_calibrations_second_turn(tiny_models):
    """`edgees eval --task calibration` asks the verdict turn too (it went through plain generation
    once, so every completion lacked its verdict and verdict_rate read 0): each completion carries
    the verdict reply, and the metrics are the task's metrics of those completions."""
    from edgees.tasks.calibration import SEP
    cmd = [sys.executable, "-m", "edgees.cli", "eval", str(tiny_models["Q4_K"]), "--task", "calibration",
           "--task-opt", "verdict_tokens=2", "--n", "3", "--json", "--threads", "1", "--samples", "3"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-800:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    completions = [s["completion"] for s in result["samples"]]
    assert all(SEP in c for c in completions)
    task = get_task("calibration", verdict_tokens=2)
    want = task.metrics(task.split(n_heldout=3)[1], completions)
    assert {k: v for k, v in result["metrics"].items() if not math.isnan(v)} == \
        {k: v for k, v in want.items() if not math.isnan(v)}
    assert result["generated_tokens"] > 0
    assert 0.0 <= result["metrics"]["p_yes_right" if result["metrics"]["accuracy"] else "p_yes_wrong"] <= 1.0


def test_eval_reports_per_label_counts_for_a_file_of_labels(tiny_models):
    """A file of labels: eval's JSON leads with macro_f1 and carries the per-label counts of its own
    completions (they add up to the held-out count and to strict)."""
    from pathlib import Path
    data = Path(__file__).resolve().parent.parent / "examples" / "support-triage" / "support.jsonl"
    cmd = [sys.executable, "-m", "edgees.cli", "eval", str(tiny_models["Q4_K"]), "--task", f"jsonl:{data}",
           "--task-opt", "max_tokens=4", "--n", "6", "--json", "--threads", "1", "--samples", "6"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-800:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["primary_metric"] == "macro_f1" and list(result["metrics"])[0] == "macro_f1"
    rows = result["labels"]
    assert sum(r["n"] for r in rows) == 6 and sum(r["answered"] for r in rows) == 6
    assert sum(r["right"] for r in rows) == round(result["metrics"]["strict"] * 6)
    task = get_task(f"jsonl:{data}", max_tokens=4)
    examples = task.split(n_heldout=6)[1]
    assert rows == task.label_report(examples, [s["completion"] for s in result["samples"]])
    cmd = [sys.executable, "-m", "edgees.cli", "compare", str(tiny_models["Q4_K"]), str(tiny_models["Q4_K"]),
           "--task", f"jsonl:{data}", "--task-opt", "max_tokens=4", "--n", "6", "--threads", "1"]
    compared = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert compared.returncode == 0, compared.stderr[-800:]
    sides = json.loads(compared.stdout)
    assert sides["base"]["labels"] == sides["adapted"]["labels"] == rows  # the same model, the same counts
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout.splitlines()
    assert "per label: right out of held-out (times answered)" in text
    assert sum(line.startswith("  (not a label)") for line in text) == 1
