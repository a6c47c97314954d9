"""onnx:PATH tasks: a classifier's score as the reward (models from tools/make_onnx_reward.py)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from edgees.errors import TaskError
from edgees.tasks.base import Example, get_task

from task_helpers import LONG, ROOT, check_split, contents, load_maker, onnx_models  # noqa: F401 (a fixture)


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
