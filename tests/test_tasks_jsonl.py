"""jsonl:PATH tasks: the accepted line forms, the split by prompt hash, match modes, one-line errors."""

from __future__ import annotations

import json

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
