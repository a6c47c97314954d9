"""jsonl:PATH tasks: the accepted line forms, the split by prompt hash, match modes, one-line errors."""

from __future__ import annotations

import json
import math

import pytest

from edgees.errors import TaskError
from edgees.tasks.base import Example, get_task

from task_helpers import LONG, check_split, contents, write


def test_jsonl_forms(tmp_path):
    f = write(tmp_path / "d.jsonl", [
        {"prompt": "What is 2+2?", "answer": 4},
        {"prompt": "Capital of France?", "completion": "Paris"},
        {"question": "Colour of the sky?", "answer": ["blue", "azure"], "level": 1},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                      {"role": "assistant", "content": "Hello"}]},
        "",
        {"prompt": [{"role": "user", "content": "Say yes"}], "response": "yes", "split": "test"},
    ])
    task = get_task(f"jsonl:{f}")
    train, heldout = check_split(task)
    assert len(train) + len(heldout) == 5 and any(e.fields.get("answer") == "yes" for e in heldout)
    by_answer = {json.dumps(e.fields["answer"]): e for e in train + heldout}
    assert by_answer['"4"'].prompt == [{"role": "user", "content": "What is 2+2?"}]
    assert by_answer['["blue", "azure"]'].fields["level"] == 1
    assert by_answer['"Hello"'].prompt[-1] == {"role": "user", "content": "Hi?"}
    raw = get_task(f"jsonl:{f}", chat=False)
    assert "What is 2+2?" in [e.prompt for e in raw.split()[0] + raw.split()[1]]


def test_jsonl_split_is_by_prompt_hash(tmp_path):
    f = write(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(100)])
    train, heldout = check_split(get_task(f"jsonl:{f}"))
    assert 10 <= len(heldout) <= 30 and len(train) + len(heldout) == 100
    assert contents(heldout[:3]) == ["q0", "q8", "q19"]  # pinned
    shuffled = write(tmp_path / "s.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in reversed(range(100))])
    assert set(contents(get_task(f"jsonl:{shuffled}").split()[1])) == set(contents(heldout))
    one = write(tmp_path / "one.jsonl", [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2"}])
    assert len(get_task(f"jsonl:{one}").split()[1]) == 1  # never an empty held-out set


@pytest.mark.parametrize("match, answer, completion, reward", [
    ("exact", "Paris", "Paris", 1.0), ("exact", "Paris", "  Paris \n", 1.0),
    ("exact", "Paris", "paris.", 0.5), ("exact", "Paris", "It is Paris, of course.", 0.5),
    ("exact", "Paris", "Parisian", None), ("exact", "Paris", "", 0.0), ("exact", "Paris", LONG, None),
    ("numeric", "42", "42", 1.0), ("numeric", "42", "42.0", 1.0), ("numeric", "42", "6*7 = 42", 0.5),
    ("numeric", "42", "42 or 41", 0.2 + 0.1 * (1 - 1 / 42)), ("numeric", "42", "forty-two", 0.0),
    ("numeric", "1234", "1,234", 1.0), ("numeric", "42", "", 0.0),
    ("regex", r"[Yy]es", "Yes", 1.0), ("regex", r"[Yy]es", "Well, yes.", 0.5), ("regex", r"[Yy]es", "No", 0.0),
])
def test_jsonl_match_modes(tmp_path, match, answer, completion, reward):
    f = write(tmp_path / "d.jsonl", [{"prompt": "q", "answer": answer}])
    task = get_task(f"jsonl:{f}", match=match)
    ex = Example(prompt="q", fields={"answer": answer})
    r = task.rewards([ex], [completion])[0]
    if reward is None:
        assert 0.0 < r < 0.5
    else:
        assert r == pytest.approx(reward)


@pytest.mark.parametrize("lines, options, message", [
    (['{"prompt": "a", "answer": "1"}', '{"prompt": "b", answer: 2}'], {}, r"d\.jsonl:2: not valid JSON"),
    (['{"prompt": "a", "answer": "1"}', '[1, 2]'], {}, r"d\.jsonl:2: a JSON list, not an object"),
    (['{"prompt": "a"}'], {}, r"d\.jsonl:1: no answer"),
    (['', '{"answer": "1"}'], {}, r"d\.jsonl:2: no prompt"),
    (['{"prompt": 5, "answer": "1"}'], {}, r"d\.jsonl:1: the prompt must be"),
    (['{"messages": [{"role": "user"}], "answer": "1"}'], {}, r"d\.jsonl:1: chat messages must be"),
    (['{"prompt": "a", "answer": {"x": 1}}'], {}, r"d\.jsonl:1: the answer is a dict"),
    (['{"prompt": "a", "answer": "1", "split": "later"}'], {}, r"d\.jsonl:1: unknown split"),
    (['{"prompt": "a", "answer": "one"}'], {"match": "numeric"}, r"d\.jsonl:1: answer 'one' is not a number"),
    (['{"prompt": "a", "answer": "(("}'], {"match": "regex"}, r"d\.jsonl:1: answer '\(\(' is not a valid regex"),
    ([], {}, r"d\.jsonl: no examples"),
    (['{"prompt": "a", "answer": "1"}'], {"match": "fuzzy"}, r"unknown match 'fuzzy'"),
])
def test_jsonl_errors(tmp_path, lines, options, message):
    f = write(tmp_path / "d.jsonl", lines)
    with pytest.raises(TaskError, match=message) as info:
        get_task(f"jsonl:{f}", **options)
    assert "\n" not in str(info.value)


def test_jsonl_missing_file(tmp_path):
    with pytest.raises(TaskError, match=r"nope\.jsonl: no such file; give the path of a JSONL file"):
        get_task(f"jsonl:{tmp_path / 'nope.jsonl'}")
    with pytest.raises(TaskError, match="is a directory"):
        get_task(f"jsonl:{tmp_path}")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TaskError, match="not UTF-8"):
        get_task(f"jsonl:{tmp_path / 'bin.jsonl'}")


# ---- label files: macro F1 -----------------------------------------------------------------------

LABELS = ["billing", "bug", "account", "feature request"]


def _label_file(tmp_path, n_per_label=6, labels=LABELS):
    lines = [{"prompt": f"message {i} about {label}", "answer": label, "split": "heldout" if i < 2 else "train"}
             for label in labels for i in range(n_per_label)]
    return write(tmp_path / "labels.jsonl", lines)


def test_a_label_file_leads_with_macro_f1_and_a_one_label_answer_scores_low_on_it(tmp_path):
    task = get_task(f"jsonl:{_label_file(tmp_path)}")
    assert task.labels == sorted(LABELS) and task.primary == "macro_f1"
    _, heldout = task.split()
    golds = [e.fields["answer"] for e in heldout]
    assert sorted(set(golds)) == sorted(LABELS) and len(golds) == 8

    perfect = task.metrics(heldout, golds)
    assert perfect["macro_f1"] == perfect["strict"] == 1.0 and task.primary_metric(perfect) == "macro_f1"
    one_label = task.metrics(heldout, ["feature request"] * len(heldout))
    # strict counts the label's share (2 of 8); F1: that label 2/(2+6) recall 1 -> 0.4, the others 0
    assert one_label["strict"] == 0.25 and one_label["macro_f1"] == pytest.approx(0.4 / 4)
    # a classifier as often right, its errors spread over the labels: macro F1 near its accuracy
    spread = [g if i % 4 == 0 else LABELS[(LABELS.index(g) + 1) % 4] for i, g in enumerate(golds)]
    m = task.metrics(heldout, spread)
    assert m["strict"] == 0.25 and m["macro_f1"] > one_label["macro_f1"]
    # an answer in a sentence is no label for F1 (strict does not count it either)
    assert task.metrics(heldout, [f"The label is {g}." for g in golds])["macro_f1"] == 0.0
    assert list(task.leading(one_label))[0] == "macro_f1"


@pytest.mark.parametrize("lines, options", [
    ([{"prompt": f"q{i}", "answer": str(i)} for i in range(30)], {}),                     # answers, not labels
    ([{"prompt": f"q{i}", "answer": "yes" if i % 2 else "no"} for i in range(5)], {}),  # too few a label
    ([{"prompt": f"q{i}", "answer": str(i % 2)} for i in range(30)], {"match": "numeric"}),
    ([{"prompt": f"q{i}", "answer": ["yes", "y"] if i % 2 else "no"} for i in range(30)], {}),  # lists
    ([{"prompt": f"q{i}", "answer": "yes"} for i in range(30)], {}),                         # one answer
    ([{"prompt": f"q{i}", "answer": "abc"[i % 3]} for i in range(30)], {"labels": False}),  # said so
])
def test_files_that_are_not_a_small_label_set_keep_strict_as_their_primary_metric(tmp_path, lines, options):
    for i, line in enumerate(lines):
        line["split"] = "heldout" if i % 3 == 0 else "train"
    task = get_task(f"jsonl:{write(tmp_path / 'd.jsonl', lines)}", **options)
    assert task.labels is None and task.primary == "strict"
    _, heldout = task.split()
    assert "macro_f1" not in task.metrics(heldout, ["1"] * len(heldout))


def test_label_log_probs_is_a_log_softmax_over_each_examples_labels():
    from edgees.tasks.labels import label_log_probs
    labels = ["a", "b", "c"]
    assert label_log_probs([-2.0, -2.0, -2.0], labels, ["b"]) == pytest.approx([math.log(1 / 3)])
    got = label_log_probs([-1.0, -3.0, -9.0, -5.0, -0.5, -0.5], labels, ["a", "c"])
    assert got[0] == pytest.approx(-1.0 - math.log(math.exp(-1) + math.exp(-3) + math.exp(-9)))
    assert got[1] == pytest.approx(math.log(math.exp(-0.5) / (math.exp(-5) + 2 * math.exp(-0.5))))
    assert label_log_probs([-900.0, -1000.0], ["a", "b"], ["b"]) == pytest.approx([-100.0])  # no underflow
    with pytest.raises(ValueError, match="4 scores for 1 examples x 3 labels"):
        label_log_probs([0.0] * 4, labels, ["a"])


def test_label_rewards_add_the_right_labels_likelihood_to_its_share():
    """Making every label less likely alike leaves the share unchanged but lowers the reward."""
    from edgees.tasks.labels import label_log_probs, label_rewards
    labels, golds = ["a", "b", "c"], ["b", "c"]
    scores = [-1.0, -3.0, -9.0, -5.0, -0.5, -0.5]
    shares = label_log_probs(scores, labels, golds)
    assert label_rewards(scores, labels, golds) == pytest.approx([-3.0 + shares[0], -0.5 + shares[1]])
    lower = [x - 4.0 for x in scores]
    assert label_log_probs(lower, labels, golds) == pytest.approx(shares)
    assert label_rewards(lower, labels, golds) == pytest.approx([r - 4.0 for r in label_rewards(scores, labels, golds)])


def test_reward_labels_needs_a_file_of_labels(tmp_path):
    assert get_task(f"jsonl:{_label_file(tmp_path)}", reward="labels").reward_mode == "labels"
    plain = write(tmp_path / "qa.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(30)])
    with pytest.raises(TaskError, match="reward=labels needs a file of labels .*; use reward=likelihood"):
        get_task(f"jsonl:{plain}", reward="labels")
    with pytest.raises(TaskError, match="reward=labels needs a file of labels"):
        get_task(f"jsonl:{_label_file(tmp_path)}", reward="labels", labels=False)
    with pytest.raises(TaskError, match="unknown reward 'label'"):
        get_task(f"jsonl:{_label_file(tmp_path)}", reward="label")


def test_labels_takes_true_or_false_only(tmp_path):
    with pytest.raises(TaskError, match="labels='maybe'; use labels=false"):
        get_task(f"jsonl:{_label_file(tmp_path)}", labels="maybe")


def test_a_file_that_grows_into_a_label_set_switches_its_primary_metric_on_refresh(tmp_path):
    path = _label_file(tmp_path, n_per_label=2)  # 8 lines, 4 labels: 2 a label, below the 3 it takes
    task = get_task(f"jsonl:{path}")
    assert task.primary == "strict"
    with open(path, "a") as f:
        for label in LABELS:
            f.write(json.dumps({"prompt": f"more about {label}", "answer": label, "split": "train"}) + "\n")
    assert task.refresh() and task.primary == "macro_f1"


def test_tasks_show_names_the_primary_metric_and_the_labels(tmp_path, capsys):
    from edgees import cli
    path = _label_file(tmp_path)
    assert cli.main(["tasks", "show", f"jsonl:{path}", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["primary_metric"] == "macro_f1" and info["labels"] == sorted(LABELS)
    assert cli.main(["tasks", "show", f"jsonl:{path}"]) == 0
    assert "primary metric macro_f1" in capsys.readouterr().out


def test_the_label_report_counts_right_and_answered_per_label(tmp_path):
    task = get_task(f"jsonl:{_label_file(tmp_path)}")
    _, heldout = task.split()
    golds = [e.fields["answer"] for e in heldout]
    rows = task.label_report(heldout, ["feature request"] * 6 + ["bug", "I think billing"])
    by = {r["label"]: r for r in rows}
    assert [r["label"] for r in rows] == sorted(LABELS) + [None]
    assert all(by[label]["n"] == golds.count(label) == 2 for label in LABELS)
    assert by["feature request"]["answered"] == 6 and by["bug"]["answered"] == 1 and by[None]["answered"] == 1
    assert sum(r["right"] for r in rows) == task.metrics(heldout, ["feature request"] * 6 + ["bug", "I think billing"])["strict"] * 8
    plain = get_task(f"jsonl:{write(tmp_path / 'q.jsonl', [{'prompt': f'q{i}', 'answer': str(i)} for i in range(20)])}")
    assert plain.label_report(*(plain.split()[1], ["1"] * len(plain.split()[1]))) is None
