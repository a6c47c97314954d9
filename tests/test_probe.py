"""`edgees probe`: the report's numbers (pure functions on hand-made rewards), a real probe on the toy
model (its keys, the base file and the weights untouched, --json), no-signal detection on a constant
reward, and bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgees import cli
from edgees.errors import EdgeesError
from edgees.fileio import sha256_file
from edgees.gguf.working_copy import WorkingCopy
from edgees.run.probe import best_of, probe, recommend, summarize
from edgees.tasks.base import get_task
from toy_task import toy_model, write_answers, write_prompts

ROW_KEYS = {"sigma", "mean", "mean_minus_base", "std", "min", "max", "pairs_differ", "pairs", "near_base",
            "wide", "best_of_n", "rewards", "seconds"}
REPORT_KEYS = {"task", "reward_mode", "prompts", "n_members", "seed", "sigmas", "base_reward", "per_sigma",
               "recommended_sigma", "no_signal", "advice", "rule", "weights_sha256", "weights_restored", "seconds"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    const = d / "const.py"
    const.write_text("def half(prompts, completions, **kw):\n    return [0.5] * len(completions)\n")
    return {"model": toy_model(d / "toy.gguf"), "answers": write_answers(d / "answers.jsonl"),
            "prompts": write_prompts(d / "prompts.jsonl"), "const": const}


# ---- the numbers ---------------------------------------------------------------------------------

def test_best_of_powers_of_two_then_n():
    assert [b["k"] for b in best_of([0.0] * 8)] == [1, 2, 4, 8]
    assert [b["k"] for b in best_of([0.0] * 6)] == [1, 2, 4, 6]
    assert [b["k"] for b in best_of([0.0] * 2)] == [1, 2]
    assert [b["best"] for b in best_of([0.1, 0.3, 0.2, 0.25, 0.6, 0.0])] == [0.1, 0.3, 0.3, 0.6]


def test_summarize_interleaves_pairs_and_counts_differences():
    row = summarize(0.01, 0.5, r_plus=[0.6, 0.5], r_minus=[0.4, 0.5])
    assert row["rewards"] == [0.6, 0.4, 0.5, 0.5]  # +s_0, -s_0, +s_1, -s_1
    assert row["pairs_differ"] == 1 and row["pairs"] == 2
    assert row["min"] == 0.4 and row["max"] == 0.6 and row["mean_minus_base"] == pytest.approx(0.0)
    assert row["near_base"] and row["wide"]  # one of two pairs is half of them


def test_recommend_takes_the_largest_sigma_near_the_base_with_wide_spread():
    base = 0.5
    rows = [summarize(0.01, base, [0.52, 0.49], [0.48, 0.51]),   # near, wide
            summarize(0.02, base, [0.60, 0.45], [0.40, 0.55]),   # near, wider
            summarize(0.04, base, [0.10, 0.20], [0.00, 0.30])]   # mean falls far below the base
    assert [r["near_base"] for r in rows] == [True, True, False]
    sigma, no_signal, advice = recommend(base, rows, "generate")
    assert sigma == 0.02 and not no_signal and "--sigma 0.02" in advice


def test_recommend_stops_at_twice_the_smallest_sigma_at_which_pairs_differ():
    base = 0.15
    # every sigma keeps the mean near the base and every pair differs (a jumpy generated reward)
    rows = [summarize(s, base, [0.18, 0.12, 0.20, 0.10], [0.12, 0.18, 0.10, 0.20]) for s in (0.005, 0.01, 0.02, 0.04)]
    assert all(r["near_base"] and r["wide"] for r in rows)
    sigma, _, advice = recommend(base, rows, "generate")
    assert sigma == 0.01 and "0.02, 0.04 also keep the mean near the base" in advice
    assert "largest tried" not in advice
    # the pairs differ only from 0.02 on: the cap is 0.04
    quiet = [summarize(s, base, [base] * 4, [base] * 4) for s in (0.005, 0.01)] + rows[2:]
    assert recommend(base, quiet, "generate")[0] == 0.04


def test_a_scored_reward_may_cost_its_mean_up_to_one_std():
    """A log-likelihood sum falls on average under any random move (its curvature): the triage
    example's labels reward fell 0.54 x its std at 0.005 and 0.75 x at 0.01, where runs learned."""
    from edgees.run.probe import near_limit
    assert near_limit("generate") == 0.5 and near_limit("likelihood") == near_limit("labels") == 1.0

    def rows(mode):  # at each sigma the mean falls 0.75 x the std (rewards 0.25 and -1.75 about 0)
        return [summarize(s, 0.0, [0.25] * 4, [-1.75] * 4, near_limit(mode)) for s in (0.005, 0.01, 0.02)]
    assert recommend(0.0, rows("labels"), "labels")[0] == 0.01  # the cap: 2 x the smallest with signal
    sigma, _, advice = recommend(0.0, rows("generate"), "generate")
    assert sigma is None and "more than 0.5 x the spread" in advice


def test_recommend_largest_tried_suggests_larger_within_range():
    rows = [summarize(2.0, 0.5, [0.6], [0.4])]
    sigma, _, advice = recommend(0.5, rows, "generate")
    assert sigma == 2.0 and "--sigmas 4" in advice and "8" not in advice


def test_recommend_says_when_there_is_no_signal_and_what_to_change():
    rows = [summarize(s, 0.0, [0.0] * 4, [0.0] * 4) for s in (0.01, 0.02)]
    sigma, no_signal, advice = recommend(0.0, rows, "generate")
    assert sigma is None and no_signal
    assert "no signal" in advice and "shape the reward" in advice and "reward=likelihood" in advice
    assert "reward=likelihood" not in recommend(0.0, rows, "likelihood")[2]  # already on it


def test_recommend_weak_and_too_large():
    weak = [summarize(0.01, 0.0, [0.0, 0.0, 0.0, 0.1], [0.0] * 4)]  # 1 of 4 pairs differ
    sigma, no_signal, advice = recommend(0.0, weak, "generate")
    assert sigma is None and not no_signal and advice.startswith("weak signal")
    harsh = [summarize(0.04, 0.9, [0.1, 0.2], [0.0, 0.3])]  # pairs differ, but the mean collapses
    sigma, no_signal, advice = recommend(0.9, harsh, "generate")
    assert sigma is None and not no_signal and "smaller" in advice


# ---- a real probe on the toy model -------------------------------------------------------------

def test_probe_toy_likelihood_report_and_weights_untouched(toy):
    base_sha = sha256_file(toy["model"])
    task = get_task(f"jsonl:{toy['answers']}", reward="likelihood")
    seen = []
    report = probe(toy["model"], task, sigmas=[0.1, 0.3, 1.0], n_members=6, n_prompts=3, threads=1,
                   progress=lambda done, total, sigma: seen.append((done, total, sigma)))
    assert REPORT_KEYS <= set(report)
    assert report["prompts"] == 3 and report["n_members"] == 6 and report["reward_mode"] == "likelihood"
    assert [r["sigma"] for r in report["per_sigma"]] == [0.1, 0.3, 1.0]
    for row in report["per_sigma"]:
        assert ROW_KEYS <= set(row)
        assert len(row["rewards"]) == 6 and row["pairs"] == 3
        assert row["min"] <= row["mean"] <= row["max"]
        curve = [b["best"] for b in row["best_of_n"]]
        assert [b["k"] for b in row["best_of_n"]] == [1, 2, 4, 6]
        assert curve == sorted(curve) and curve[-1] == row["max"]
    assert not report["no_signal"]  # log-likelihoods of a moving model differ
    assert report["recommended_sigma"] in (None, 0.1, 0.3, 1.0)
    assert seen[0] == (1, 19, None) and seen[-1] == (19, 19, 1.0)  # base + 3 x 6 members
    # the user's file is never written; the working copy's weights came back exactly
    assert sha256_file(toy["model"]) == base_sha
    with WorkingCopy(toy["model"]) as wc:
        assert report["weights_sha256"] == wc.sha256()


def test_probe_cli_json_parses(toy, capsys):
    base_sha = sha256_file(toy["model"])
    rc = cli.main(["probe", str(toy["model"]), "--task", f"jsonl:{toy['answers']}", "--task-opt",
                   "reward=likelihood", "--n-members", "4", "--prompts", "2", "--sigmas", "0.3,1",
                   "--threads", "1", "--json"])
    out = capsys.readouterr().out
    assert rc == 0 and len(out.strip().splitlines()) == 1
    report = json.loads(out)
    assert REPORT_KEYS <= set(report) and report["model"] == str(toy["model"])
    assert report["sigmas"] == [0.3, 1.0] and report["weights_restored"]
    assert sha256_file(toy["model"]) == base_sha
    every = report["n_weights"]
    narrow = ["probe", str(toy["model"]), "--task", f"jsonl:{toy['answers']}", "--task-opt", "reward=likelihood",
              "--n-members", "2", "--prompts", "1", "--sigmas", "1", "--threads", "1", "--tensors", "blk.0.ffn_*"]
    assert cli.main(narrow + ["--json"]) == 0
    narrowed = json.loads(capsys.readouterr().out)
    assert narrowed["tensors"] == "blk.0.ffn_*" and 0 < narrowed["n_weights"] < every
    assert cli.main(narrow) == 0
    assert f"noise on {narrowed['n_weights']:,} weights: the tensors matching blk.0.ffn_*" in capsys.readouterr().out


def test_probe_constant_reward_is_no_signal(toy, capsys):
    args = ["probe", str(toy["model"]), "--task", f"python:{toy['const']}:half", "--task-opt",
            f"data={toy['prompts']}", "--task-opt", "max_tokens=4", "--n-members", "4", "--prompts", "2",
            "--sigmas", "0.3,1", "--threads", "1"]
    assert cli.main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["no_signal"] and report["recommended_sigma"] is None and report["base_reward"] == 0.5
    assert all(r["std"] == 0.0 and r["pairs_differ"] == 0 for r in report["per_sigma"])
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "no signal" in text and "shape the reward" in text and "reward=likelihood" in text


@pytest.mark.parametrize("flags, says", [
    (["--sigmas", "0"], r"--sigmas: 0.0 is out of range; each sigma must be in \(0, 4\]"),
    (["--sigmas", "0.01,-0.02"], r"--sigmas: -0.02 is out of range"),
    (["--sigmas", "small"], r"--sigmas 'small' is not a list of numbers; write e\.g\."),
    (["--n-members", "1"], r"--n-members must be an even number >= 2 .*got 1"),
    (["--n-members", "5"], r"--n-members must be an even number >= 2 .*got 5"),
    (["--prompts", "0"], r"--prompts must be >= 1, got 0"),
    (["--tensors", "blk.9.*"], r"--tensors 'blk\.9\.\*' matches no trainable tensor .*edgees info"),
])
def test_probe_bad_input_is_one_line(toy, capsys, flags, says):
    import re
    rc = cli.main(["probe", str(toy["model"]), "--task", f"jsonl:{toy['answers']}", *flags])
    err = capsys.readouterr().err
    assert rc != 0 and len(err.strip().splitlines()) == 1
    assert err.startswith("edgees: error: ") and re.search(says, err), err


def test_probe_library_checks_before_loading(tmp_path):
    task = get_task("arithmetic")
    with pytest.raises(EdgeesError, match="--n-members"):
        probe(Path(tmp_path / "not-there.gguf"), task, n_members=0)
