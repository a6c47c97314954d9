"""Helpers the task tests share: a fake engine, split checks, JSONL writing, and the user-reward
fixtures (a python reward module, the onnx reward models) that both their own family's tests and
the end-to-end tests use. Test modules import the fixtures by name."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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


def write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


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

