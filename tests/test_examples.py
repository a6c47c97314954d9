"""examples/: every `edgees ...` command an example's README names runs as written (same files, same
flags) on the tiny toy model with a few steps, in the example's directory; its reward table holds."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest

from edgees import cli
from edgees.gguf.reader import read_gguf
from edgees.tasks.base import get_task
from toy_task import toy_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TRIAGE = EXAMPLES / "support-triage"

# What makes a README command tiny: appended flags (argparse keeps the last value of an option).
SMALL = {
    "eval": ["--n", "2", "--threads", "1"],
    "probe": ["--n-members", "2", "--prompts", "2", "--sigmas", "0.3", "--threads", "1", "--quiet"],
    "finetune": ["--steps", "2", "--pairs", "2", "--prompts", "2", "--sigma", "0.3", "--alpha", "1",
                 "--window", "4", "--eval-n", "2", "--threads", "1", "--quiet"],
}


def readme_commands(readme: Path) -> list[list[str]]:
    """The `edgees ...` lines of the README's fenced code blocks, split as a shell would."""
    out, fenced = [], False
    for line in readme.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and line.startswith("edgees "):
            out.append(shlex.split(line)[1:])
    return out


def test_triage_files_are_valid_tasks():
    jsonl = get_task(f"jsonl:{TRIAGE / 'support.jsonl'}")
    train, heldout = jsonl.split()
    assert (len(train), len(heldout)) == (64, 80)
    labels = {"billing", "bug", "account", "feature request"}
    assert {e.fields["answer"] for e in heldout} == labels
    for label in labels:  # 20 held out per label, 5 of them among the first 20 (a run's --eval-n 20)
        assert sum(e.fields["answer"] == label for e in heldout) == 20
        assert sum(e.fields["answer"] == label for e in heldout[:20]) == 5
    assert set(jsonl.labels) == labels and jsonl.primary == "macro_f1"  # a classification: collapse shows
    py = get_task(f"python:{TRIAGE / 'triage.py'}:triage", data=str(TRIAGE / "support.jsonl"))
    assert [len(s) for s in py.split()] == [64, 80]


def test_triage_reward_table():
    spec = importlib.util.spec_from_file_location("triage_example", TRIAGE / "triage.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    completions = ["billing", " billing\n", "Billing.", "This is a billing question.", "bug", "It is a bug.",
                   "billing, bug, account or feature request", "I am not sure.", "Feature-request",
                   [{"role": "assistant", "content": "feature request"}]]
    answers = ["billing"] * 8 + ["feature request"] * 2
    assert mod.triage([None] * 10, completions, answers) == [1.0, 1.0, 0.6, 0.6, 0.2, 0.1, 0.0, 0.0, 0.6, 1.0]


def test_triage_readme_commands_run_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    model = toy_model(tmp_path / "toy.gguf")
    commands = readme_commands(TRIAGE / "README.md")
    names = [c[0] if c[0] != "tasks" else "tasks " + c[1] for c in commands]
    assert names.count("finetune") == 2 and {"tasks show", "eval", "probe", "export"} <= set(names)
    swap = {"smollm2-135m": str(model), "runs/triage": str(tmp_path / "runs/triage"),
            "runs/triage-py": str(tmp_path / "runs/triage-py"), "triage.gguf": str(tmp_path / "triage.gguf")}
    monkeypatch.chdir(TRIAGE)  # the README's relative paths: support.jsonl, triage.py
    for argv in commands:
        argv = [swap.get(a, a) for a in argv] + SMALL.get(argv[0], [])
        rc = cli.main(argv)
        err = capsys.readouterr().err
        assert rc == 0, f"edgees {shlex.join(argv)} failed: {err}"
    for run in ("runs/triage", "runs/triage-py"):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "reward_mean" in r] == [1, 2]
        assert "heldout" in rows[0] and "heldout" in rows[-1]
    exported = read_gguf(tmp_path / "triage.gguf")
    assert [t.name for t in exported.tensors] == [t.name for t in read_gguf(model).tensors]
    assert not list(TRIAGE.glob("runs")) and not (TRIAGE / "triage.gguf").exists()  # nothing left in the repo
