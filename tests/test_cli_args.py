"""Bad counts on the command line: one line naming the flag, exit 2, nothing started or written."""

import subprocess

import pytest

from toy_task import edgees_cmd, subprocess_env


@pytest.mark.parametrize("args, flag", [
    (["bench", "engine", "MODEL", "--n", "0"], "--n"),
    (["bench", "engine", "MODEL", "--repeat", "two"], "--repeat"),
    (["bench", "kernels", "MODEL", "--reps", "0"], "--reps"),
    (["eval", "MODEL", "--batch", "0"], "--batch"),
    (["eval", "MODEL", "--threads", "-3"], "--threads"),
    (["finetune", "MODEL", "--task", "arithmetic", "--run", "RUN", "--batch", "0"], "--batch"),
    (["finetune", "MODEL", "--task", "arithmetic", "--run", "RUN", "--n-seq", "0"], "--n-seq"),  # the old name
])
def test_a_count_below_one_is_refused_in_one_line(tmp_path, args, flag):
    run = tmp_path / "run"
    args = [str(tmp_path / "no-model.gguf") if a == "MODEL" else str(run) if a == "RUN" else a for a in args]
    out = subprocess.run(edgees_cmd(args), capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert f"argument {flag}:" in last and ("at least 1" in last or "whole number" in last), last
    assert "Traceback" not in out.stderr
    assert not run.exists()


def test_clip_keeps_a_long_prompts_end_on_one_line():
    """eval and compare show a sample's prompt clipped: the message at the end of a long prompt shows."""
    from edgees.commands import clip
    prompt = "Classify this message with one of these labels: billing, bug. Answer with just the label.\n\nMessage: " + \
             "I was charged twice for March."
    shown = clip(prompt, 60)
    assert len(shown) == 60 and "\n" not in shown
    assert shown.startswith("Classify") and shown.endswith("I was charged twice for March.")
    assert clip("What is 2 + 2?", 60) == "What is 2 + 2?"
