"""The optional dependencies: without the onnx extra an onnx: task is refused in one line naming it;
without the plot extra a run works the same and has no curve.png.

A missing package is simulated in a child interpreter by `sys.modules[name] = None`, which makes
`import name` raise ImportError exactly as when it is not installed; nothing is uninstalled.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgees.run.plot import curve_unavailable, write_curve

from toy_task import subprocess_env

CHILD = """\
import sys
for name in filter(None, sys.argv[1].split(",")):
    sys.modules[name] = None  # `import name` raises ImportError, as when it is not installed
from edgees.cli import main
sys.exit(main(sys.argv[2:]))
"""

ONNX_MESSAGE = ("edgees: error: the onnx: tasks need onnxruntime and tokenizers ({} not installed): "
                "pip install 'edgees[onnx]'")


def without(missing: list[str], *args) -> subprocess.CompletedProcess:
    """`edgees ARGS` in a child python where the `missing` modules cannot be imported."""
    return subprocess.run([sys.executable, "-c", CHILD, ",".join(missing), *map(str, args)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=600)


@pytest.mark.parametrize("missing, said", [(["onnxruntime"], "onnxruntime is"), (["tokenizers"], "tokenizers is"),
                                           (["onnxruntime", "tokenizers"], "onnxruntime and tokenizers are")])
def test_onnx_task_without_the_onnx_extra_is_one_line(tiny_models, tmp_path, missing, said):
    # a file onnxruntime would refuse: the extra is checked first, before anything is loaded
    (tmp_path / "reward.onnx").write_bytes(b"not a model")
    (tmp_path / "tokenizer.json").write_text("{}")
    r = without(missing, "eval", tiny_models["Q4_1"], "--task", f"onnx:{tmp_path / 'reward.onnx'}")
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [ONNX_MESSAGE.format(said)]
    assert r.stdout == ""


def test_tasks_ls_lists_the_onnx_family_without_the_extra():
    r = without(["onnxruntime", "tokenizers"], "tasks", "ls", "--json")
    assert r.returncode == 0, r.stderr
    assert "onnx:PATH" in [row["task"] for row in json.loads(r.stdout)]


def test_finetune_without_the_plot_extra_runs_and_draws_no_curve(tiny_models, tmp_path):
    run = tmp_path / "run"
    r = without(["matplotlib"], "finetune", tiny_models["Q4_1"], "--task", "arithmetic", "--task-opt", "max_tokens=2",
                "--run", run, "--steps", "1", "--pairs", "1", "--prompts", "2", "--eval-every", "0",
                "--eval-n", "2", "--threads", "1", "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["steps_done"] == 1 and summary["curve"] is None
    assert (run / "metrics.jsonl").read_text() and not (run / "curve.png").exists()
    # what the child lacked was matplotlib alone: here the same run's metrics draw a curve
    assert curve_unavailable() is None
    assert write_curve(run) == run / "curve.png" and (run / "curve.png").is_file()


def test_curve_unavailable_names_the_plot_extra():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from edgees.run.plot import curve_unavailable; print(curve_unavailable())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "no curve.png: drawing it needs matplotlib; pip install 'edgees[plot]'"
