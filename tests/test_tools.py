"""The measurement tools under tools/ that a results page cites, run as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from toy_task import subprocess_env

DIGIT_LOGLIK = Path(__file__).resolve().parent.parent / "tools" / "digit_loglik.py"


def digit_loglik(*args: str):
    return subprocess.run([sys.executable, str(DIGIT_LOGLIK), *args, "--threads", "1"], capture_output=True,
                          text=True, env=subprocess_env(), timeout=600)


def check_report(report: dict, n: int) -> None:
    """Each group (2- and 3-digit sums) has one column a digit and one for the end of the turn; the
    columns add up to the total; log-probabilities are <= 0 and greedy shares are shares."""
    assert report["n"] == n and sum(g["n"] for g in report["groups"]) == n
    for g in report["groups"]:
        names = [t["token"] for t in g["tokens"]]
        assert names == [f"digit {k}" for k in range(1, g["digits"] + 1)] + ["end"]
        assert sum(t["logp"] for t in g["tokens"]) == pytest.approx(g["total_logp"])
        assert all(t["logp"] <= 1e-6 and 0.0 <= t["greedy"] <= 1.0 for t in g["tokens"])
        assert 0.0 <= g["strict_greedy"] <= min(t["greedy"] for t in g["tokens"])


def test_digit_loglik_splits_the_sum_into_its_tokens(tiny_models):
    res = digit_loglik(str(tiny_models["Q4_1"]), "--n", "12", "--json")
    assert res.returncode == 0, res.stderr[-1000:]
    check_report(json.loads(res.stdout), 12)
    table = digit_loglik(str(tiny_models["Q4_1"]), "--n", "12")  # the table a person reads
    assert table.returncode == 0 and "2-digit sums" in table.stdout and "total" in table.stdout


@pytest.mark.real
@pytest.mark.slow
def test_digit_loglik_on_smollm2(smollm2_path):
    """The tool's premise holds for the model the results pages measure: one token a digit."""
    res = digit_loglik(str(smollm2_path), "--n", "12", "--json")
    assert res.returncode == 0, res.stderr[-1000:]
    check_report(json.loads(res.stdout), 12)


def test_digit_loglik_names_a_missing_model_in_one_line(tmp_path):
    res = digit_loglik(str(tmp_path / "nope.gguf"), "--n", "5")
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == [f"digit_loglik: no such file: {tmp_path / 'nope.gguf'} "
                                               "(give a path to a .gguf file or a registry name)"]
