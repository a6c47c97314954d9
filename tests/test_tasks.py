"""Tasks: rewards on hand-written completions, stable disjoint splits, one-line errors for bad input.

The engine here is a tiny fake returning canned completions: a task's reward logic is pure, so this
tests the task plumbing only (engine tests use real llama.cpp).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgees.errors import TaskError
from edgees.tasks.base import Example, get_task, list_tasks, parse_options, task_options

ROOT = Path(__file__).resolve().parents[1]
LONG = "blah " * 2000


class FakeEngine:
    """Same methods as the engine; answers from a function of the prompt."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def generate(self, prompts, max_tokens, stop):
        self.calls.append((prompts, max_tokens, stop))
        return [self.answer(p) for p in prompts]

    def score(self, prompts, targets):
        return [0.0 for _ in prompts]


def contents(examples):
    return [e.prompt if isinstance(e.prompt, str) else e.prompt[-1]["content"] for e in examples]


def check_split(task, n_train=None, n_heldout=None):
    train, heldout = task.split(n_train, n_heldout)
    train2, heldout2 = task.split(n_train, n_heldout)
    assert train == train2 and heldout == heldout2
    keys = lambda xs: {json.dumps([e.prompt, e.fields], sort_keys=True) for e in xs}  # noqa: E731
    assert not keys(train) & keys(heldout)
    return train, heldout


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


# ---- arithmetic ----------------------------------------------------------------------------------

def test_arithmetic_split_golden():
    task = get_task("arithmetic")
    train, heldout = check_split(task)
    assert len(heldout) == 40 and len(train) == 6442
    # Pinned: a change of split (hash, key, ratio) changes these and must be deliberate.
    assert contents(heldout[:3]) == ["What is 99+14? Answer with just the number.",
                                     "What is 31+32? Answer with just the number.",
                                     "What is 35+63? Answer with just the number."]
    assert [(e.fields["a"], e.fields["b"]) for e in train[:3]] == [(61, 77), (11, 91), (48, 96)]
    all_train, all_heldout = task.split(None, 10_000)
    assert len(all_train) + len(all_heldout) == 90 * 90
    assert task.split(5, 7)[1] == heldout[:7]  # prefixes are stable
    assert heldout[0].prompt == [{"role": "user", "content": "What is 99+14? Answer with just the number."}]
    assert heldout[0].fields == {"a": 99, "b": 14, "answer": 113}


@pytest.mark.parametrize("completion, reward", [
    ("78", 1.0), ("78.", 1.0), (" 78\n", 1.0),
    ("45 + 33 = 78", 0.575), ("The answer is 78", 0.565),
    ("78 = 45 + 33", 0.2 + 0.1 * (1 - 10 / 40) + 0.1 * (1 - 45 / 20 if 45 < 20 else 0)),
    ("77", 0.15 + 0.1 + 0.1 * (1 - 1 / 20)),
    ("45 + 33 = 77", 0.1 * (1 - 10 / 40) + 0.1 * (1 - 1 / 20)),
    ("", 0.0), ("I don't know", 0.0), ("<answer>", 0.0),
    (LONG + "78", 0.5), (LONG, 0.0),
])
def test_arithmetic_rewards(completion, reward):
    task = get_task("arithmetic")
    ex = task.example(45, 33)
    assert task.rewards([ex], [completion])[0] == pytest.approx(reward)


def test_arithmetic_reward_ordering_and_metrics():
    task = get_task("arithmetic")
    ex = [task.example(45, 33)] * 4
    comps = ["78", "45 + 33 = 78", "77", "no idea"]
    r = task.rewards(ex, comps)
    assert r[0] == 1.0 and r[0] > r[1] > r[2] > r[3] == 0.0
    assert all(x < 0.7 for x in r[1:])
    m = task.metrics(ex, comps)
    assert m["strict"] == 0.25 and m["lenient"] == 0.5 and m["reward"] == pytest.approx(sum(r) / 4)
    with pytest.raises(TaskError, match="1 completions for 4 examples"):
        task.rewards(ex, ["78"])


def test_arithmetic_evaluate_with_fake_engine():
    task = get_task("arithmetic")
    _, heldout = task.split(n_heldout=5)
    engine = FakeEngine(lambda p: p[0]["content"].split()[2].rstrip("?"))  # echoes "A+B": wrong
    rewards, metrics, comps = task.evaluate(engine, heldout)
    assert comps[0] == "99+14" and len(rewards) == 5 and metrics["strict"] == 0.0
    assert engine.calls[0][1] == task.max_tokens and engine.calls[0][2] == task.stop
    right = FakeEngine(lambda p: str(eval(p[0]["content"].split()[2].rstrip("?"))))  # noqa: S307 (test)
    rewards, metrics, _ = task.evaluate(right, heldout)
    assert rewards == [1.0] * 5 and metrics["strict"] == 1.0


# ---- countdown -----------------------------------------------------------------------------------

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


# ---- conciseness ---------------------------------------------------------------------------------

def test_conciseness_split_and_rewards():
    task = get_task("conciseness")
    train, heldout = check_split(task)
    assert len(train) == 32 and len(heldout) == 10
    assert contents(heldout[:2]) == ["Which organ pumps blood through the body?",
                                     "Who was the first person to walk on the Moon?"]
    ex = Example(prompt="What is the capital of France?", fields={"answer": "Paris."})
    comps = ["Paris.", "It is Paris.", "The capital of France is Paris, a city on the Seine.", "", LONG, "!!!!!!"]
    r = task.rewards([ex] * len(comps), comps)
    assert r[0] == 1.0 and r[1] == pytest.approx(1 / 1.6) and r[0] > r[1] > r[2] > r[4] > 0
    assert r[3] == 0.0 and r[5] == 1.0  # length only (the paper's reward): same-length junk scores 1
    m = task.metrics([ex] * len(comps), comps)
    assert m["contains"] == pytest.approx(3 / 6) and m["mean_chars"] > 100
    weighted = get_task("conciseness", correct_weight=0.5).rewards([ex] * 2, ["Paris.", "!!!!!!"])
    assert weighted == [1.0, 0.5]


# ---- jsonl ---------------------------------------------------------------------------------------

def write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


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


# ---- python:MODULE:FUNCTION ----------------------------------------------------------------------

REWARDS_PY = '''\
import math

def match(prompts, completions, answer, **kwargs):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]  # trl: chat -> messages
    return [1.0 if c.strip() == a else -len(c) / 100 for c, a in zip(texts, answer)]

def chat_aware(prompts, completions, **kwargs):
    return [float(len(c[0]["content"])) if isinstance(c, list) else -1.0 for c in completions]

def columns(prompts, completions, answer, level, **kwargs):
    return [float(level[i] or 0) for i in range(len(completions))]

def boom(prompts, completions, **kwargs):
    raise ValueError("bad\\nthing")

def short(prompts, completions, **kwargs):
    return [1.0]

def nan(prompts, completions, **kwargs):
    return [math.nan for _ in completions]

def text(prompts, completions, **kwargs):
    return ["high" for _ in completions]

def none(prompts, completions, **kwargs):
    return None

NOT_A_FUNCTION = 3
'''


@pytest.fixture
def pyreward(tmp_path):
    mod = tmp_path / "my_reward.py"
    mod.write_text(REWARDS_PY)
    data = write(tmp_path / "prompts.jsonl", [{"prompt": f"q{i}", "answer": f"a{i}", "level": i} for i in range(6)]
                 + [{"text": "raw", "answer": "r"}])
    return mod, data


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


# ---- onnx:PATH -----------------------------------------------------------------------------------

def load_maker():
    spec = importlib.util.spec_from_file_location("make_onnx_reward", ROOT / "tools" / "make_onnx_reward.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    maker = load_maker()
    root = tmp_path_factory.mktemp("onnx")
    return {"masked": maker.build(root / "masked"), "nomask": maker.build(root / "nomask", attention_mask=False),
            "extra": maker.build(root / "extra", extra_input="pixel_values")}


ONNX_COMPLETIONS = ["great great", "great", "the movie was great", "the", "", "awful", LONG, "Great!"]


def test_onnx_reward(onnx_models):
    task = get_task(f"onnx:{onnx_models['masked']}")
    train, heldout = check_split(task)
    assert len(train) + len(heldout) == 20 and contents(heldout[:1]) == ["Describe a birthday party in one sentence."]
    ex = [Example(prompt="p", fields={})] * len(ONNX_COMPLETIONS)
    r = task.rewards(ex, ONNX_COMPLETIONS)
    assert r[0] == pytest.approx(3.1) and r[1] == pytest.approx(3.1) and r[3] == pytest.approx(0.1)
    assert r[2] == pytest.approx(3 / 4 + 0.1) and r[5] == pytest.approx(-2.9) and r[6] == pytest.approx(0.1)
    assert r[4] == pytest.approx(0.1) and r[7] == pytest.approx(3 / 2 + 0.1)  # "great" "!" lowercased
    # batch size does not change scores; prob and named labels
    assert get_task(f"onnx:{onnx_models['masked']}", batch_size=3).rewards(ex, ONNX_COMPLETIONS) == pytest.approx(r)
    neg = get_task(f"onnx:{onnx_models['masked']}", label="negative").rewards(ex[:1], ["great"])
    assert neg == pytest.approx([-3.0])
    p = get_task(f"onnx:{onnx_models['masked']}", score="prob", label=1).rewards(ex[:2], ["great", "awful"])
    assert p[0] == pytest.approx(1 / (1 + math.exp(-6.1))) and p[1] < 0.01
    pc = get_task(f"onnx:{onnx_models['masked']}", input="prompt+completion")
    assert pc.rewards([Example(prompt=[{"role": "user", "content": "awful"}], fields={})], ["great"]) == \
        pytest.approx([0.1])
    nomask = get_task(f"onnx:{onnx_models['nomask']}")
    assert nomask.rewards(ex[:1], ["great"]) == pytest.approx([3.1])
    assert task.metrics(ex, ONNX_COMPLETIONS)["reward"] == pytest.approx(sum(r) / len(r))


def test_onnx_errors(onnx_models, tmp_path):
    masked = onnx_models["masked"]
    cases = [
        (f"onnx:{onnx_models['extra']}", {}, r"reward\.onnx: unexpected model input 'pixel_values'"),
        (f"onnx:{tmp_path / 'none.onnx'}", {}, r"none\.onnx: no such file"),
        (f"onnx:{masked}", {"label": 5}, r"label=5 but the model has 2 labels"),
        (f"onnx:{masked}", {"label": "joy"}, r"label 'joy' is not in .*config\.json's id2label \(negative, positive\)"),
        (f"onnx:{masked}", {"output": "probs"}, r"no output 'probs' \(outputs: logits\)"),
        (f"onnx:{masked}", {"score": "odds"}, r"unknown score 'odds'"),
    ]
    for spec, opts, message in cases:
        with pytest.raises(TaskError, match=message) as info:
            get_task(spec, **opts)
        assert "\n" not in str(info.value)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(TaskError, match=r"junk\.onnx: onnxruntime cannot load it"):
        get_task(f"onnx:{junk}")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "m.onnx").write_bytes(masked.read_bytes())
    with pytest.raises(TaskError, match=r"lonely/tokenizer\.json: no such file"):
        get_task(f"onnx:{lonely / 'm.onnx'}")
    (lonely / "tokenizer.json").write_text('{"model":\n  {"type": }')
    with pytest.raises(TaskError, match=r"lonely/tokenizer\.json:2: not valid JSON"):
        get_task(f"onnx:{lonely / 'm.onnx'}")


def test_make_onnx_reward_is_deterministic(tmp_path):
    pytest.importorskip("onnx")
    maker = load_maker()
    a, b = maker.build(tmp_path / "a"), maker.build(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "make_onnx_reward.py"), str(tmp_path / "c")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("reward.onnx") and (tmp_path / "c" / "tokenizer.json").is_file()


# ---- calibration ---------------------------------------------------------------------------------

def test_calibration_rewards_and_metrics():
    from edgees.tasks.calibration import join

    task = get_task("calibration")
    assert task.split(5, 5) == get_task("arithmetic").split(5, 5)  # same prompts and split
    ex = [task.example(45, 33)]
    cases = {
        join("78", "Yes"): 1.0, join("78", "yes."): 1.0, join("78", "No"): 0.5,
        join("77", "No"): 0.5 * (0.15 + 0.1 + 0.1 * 0.95) + 0.5, join("77", "Yes, sure"): 0.5 * 0.345,
        join("45 + 33 = 78", "Yes"): 0.5 * 0.575 + 0.5, join("78", "Maybe"): 0.5, join("78", ""): 0.5,
        join("", "No"): 0.5, "78": 0.5, "": 0.0, join(LONG, LONG): 0.0,
    }
    for completion, reward in cases.items():
        assert task.rewards(ex, [completion])[0] == pytest.approx(reward), completion[:40]
    comps = [join("78", "Yes")] * 3 + [join("78", "No")] + [join("70", "Yes")] + [join("70", "No")] * 3
    m = task.metrics(ex * 8, comps)
    assert m["accuracy"] == 0.5 and m["p_yes_correct"] == 0.75 and m["p_yes_wrong"] == 0.25
    z = __import__("statistics").NormalDist().inv_cdf
    assert m["d_prime"] == pytest.approx(z(0.75) - z(0.25)) and m["verdict_rate"] == 1.0
    perfect = task.metrics(ex * 4, [join("78", "Yes")] * 2 + [join("1", "No")] * 2)
    assert perfect["d_prime"] == pytest.approx(z(0.75) - z(0.25))  # clipped to [0.5/n, 1-0.5/n], n=2
    assert math.isnan(task.metrics(ex, [join("78", "Yes")])["d_prime"])  # no wrong answers: undefined


def test_calibration_evaluate_two_turns():
    task = get_task("calibration")
    _, heldout = task.split(n_heldout=4)

    def answer(prompt):
        if len(prompt) == 1:  # first turn: right on even sums
            a, b = map(int, prompt[0]["content"].split()[2].rstrip("?").split("+"))
            return str(a + b) if (a + b) % 2 == 0 else "0"
        assert prompt[-1]["content"].startswith("Are you confident") and prompt[1]["role"] == "assistant"
        return "Yes" if prompt[1]["content"] != "0" else "No"

    engine = FakeEngine(answer)
    rewards, metrics, comps = task.evaluate(engine, heldout)
    assert len(engine.calls) == 2 and engine.calls[1][1] == task.verdict_tokens
    assert metrics["d_prime"] > 1 or math.isnan(metrics["d_prime"])
    assert all(r >= 0.5 for r in rewards) and metrics["verdict_rate"] == 1.0
    assert comps[0].startswith("0\n[confidence] No") or comps[0].endswith("Yes")


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


def test_likelihood_reward_scores_the_reference_and_the_end_of_turn(tmp_path):
    engine_mod = pytest.importorskip("edgees.engine.engine")
    from edgees.engine.decode import last_logits
    from edgees.gguf.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny.gguf", "Q8_0", seed=0)
    data = write(tmp_path / "d.jsonl", ['{"prompt": "say one", "answer": ["1", "1.0"]}',
                                        '{"prompt": "say two", "answer": "2"}'])
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


def test_eval_reports_loglik_with_reward_likelihood(tiny_models):
    out = _eval_cli(tiny_models["Q4_K"], "arithmetic", "reward=likelihood")
    assert out.returncode == 0, out.stderr[-800:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])["metrics"]
    assert metrics["loglik"] < 0 and {"strict", "lenient", "reward"} <= set(metrics)
