"""The calibration task: answer-then-verdict rewards, d' metrics, the two-turn evaluate."""

from __future__ import annotations

import math

import pytest

from edgees.tasks.base import get_task

from task_helpers import LONG, FakeEngine


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


def test_d_prime_is_zero_when_the_rates_are_equal():
    """A model that always says No separates nothing: d' 0, not the artefact of clipping two
    conditions of different sizes (29 right, 171 wrong gave 0.64)."""
    from edgees.tasks.calibration import d_prime, join
    assert d_prime(0.0, 29, 0.0, 171) == 0.0 and d_prime(1.0, 3, 1.0, 9) == 0.0
    task = get_task("calibration")
    ex = [task.example(45, 33)]
    m = task.metrics(ex * 4, [join("78", "No")] + [join("1", "No")] * 3)
    assert m["yes_rate"] == 0.0 and m["d_prime"] == 0.0


def test_p_yes_travels_in_the_completion_and_gives_auroc():
    from edgees.tasks.calibration import auroc, join, p_yes_of, unjoin
    c = join("78", "No", 0.25)
    assert c == "78\n[confidence] No [p_yes 0.2500]" and unjoin(c) == ("78", "No") and p_yes_of(c) == 0.25
    assert p_yes_of(join("78", "No")) is None and p_yes_of("78") is None
    task = get_task("calibration")
    ex = [task.example(45, 33)]
    # greedy says No to all four, but P(Yes) ranks the right answers above the wrong ones but one
    comps = [join("78", "No", 0.4), join("78", "No", 0.3), join("1", "No", 0.35), join("1", "No", 0.1)]
    m = task.metrics(ex * 4, comps)
    assert m["d_prime"] == 0.0 and m["yes_rate"] == 0.0  # the verdicts separate nothing
    assert m["auroc"] == 0.75 and m["p_yes_right"] == pytest.approx(0.35) and m["p_yes_wrong"] == pytest.approx(0.225)
    assert task.rewards(ex * 4, comps) == task.rewards(ex * 4, [join(*unjoin(c)) for c in comps])  # reward: verdicts
    assert auroc([0.5], [0.5]) == 0.5 and math.isnan(auroc([], [0.1]))
    assert "auroc" not in task.metrics(ex, [join("78", "No")])  # completions without P(Yes)


def test_training_rewards_skip_the_confidence_scores():
    task = get_task("calibration")
    _, heldout = task.split(n_heldout=4)
    engine = FakeEngine(lambda p: "12" if len(p) == 1 else "Yes")
    scored = []
    engine.score = lambda prompts, targets: scored.append(targets) or [-1.0 if t == "Yes" else -2.0 for t in targets]
    rewards, metrics, comps = task.evaluate(engine, heldout)
    assert scored == [["Yes"] * 4, ["No"] * 4]  # the held-out path reads P(Yes): 1 / (1 + e^-1)
    assert all(c.endswith("[p_yes 0.7311]") for c in comps) and metrics["p_yes_wrong"] == pytest.approx(0.7311)
    scored.clear()
    assert task.train_rewards(engine, heldout) == rewards and scored == []


def test_reward_confidence_pays_the_probability_of_the_right_verdict():
    from edgees.errors import TaskError
    from edgees.tasks.calibration import join
    task = get_task("calibration", reward="confidence")
    ex = [task.example(45, 33)]
    assert task.rewards(ex, [join("78", "No", 0.8)])[0] == pytest.approx(0.5 + 0.5 * 0.8)  # right: P(Yes)
    assert task.rewards(ex, [join("1", "Yes", 0.8)])[0] == pytest.approx(
        get_task("calibration").rewards(ex, [join("1", "No")])[0] - 0.5 * 0.8)  # wrong: 1 - P(Yes)
    assert task.rewards(ex, [join("78", "Yes")]) == get_task("calibration").rewards(ex, [join("78", "Yes")])
    engine = FakeEngine(lambda p: "78" if len(p) == 1 else "No")
    engine.score = lambda prompts, targets: [-1.0 if t == "Yes" else -2.0 for t in targets]
    _, heldout = task.split(n_heldout=3)
    rewards = task.train_rewards(engine, heldout)
    assert len(engine.calls) == 1  # the answers only: no verdict generated
    p_yes = 1 / (1 + math.exp(-1.0))  # scores -1 (Yes) and -2 (No)
    assert rewards == task.rewards(heldout, [join("78", "", p_yes)] * 3)
    assert rewards != get_task("calibration").rewards(heldout, [join("78", "No")] * 3)
    with pytest.raises(TaskError, match="reward=confidence"):
        get_task("calibration", reward="likelihood")


def test_reward_balanced_pays_separation_not_wrong_answers():
    from edgees.tasks.arithmetic import shaped_reward
    from edgees.tasks.calibration import join
    task = get_task("calibration", reward="balanced")
    ex = [task.example(45, 33)] * 4  # the sum is 78

    def agreement(answers, p_yes):  # the agreement half of the member's mean reward
        rewards = task.rewards(ex, [join(a, "", p) for a, p in zip(answers, p_yes)])
        return 2 * sum(r - 0.5 * shaped_reward(a, 78) for r, a in zip(rewards, answers)) / len(ex)

    # a confidence that ignores the answer earns 0.5 whatever the accuracy: being wrong buys nothing
    assert agreement(["78", "1", "1", "1"], [0.1] * 4) == pytest.approx(0.5)
    assert agreement(["78", "78", "78", "1"], [0.1] * 4) == pytest.approx(0.5)
    # under reward=confidence the same low P(Yes) pays for the wrong answers
    confidence = get_task("calibration", reward="confidence")
    low = lambda answers: sum(confidence.rewards(ex, [join(a, "", 0.1) for a in answers]))  # noqa: E731
    assert low(["1", "1", "1", "1"]) > low(["78", "78", "78", "78"])
    # separating right from wrong pays; an empty side adds nothing
    assert agreement(["78", "1", "1", "1"], [0.9, 0.1, 0.1, 0.1]) == pytest.approx(0.9)
    assert agreement(["1", "1", "1", "1"], [0.1] * 4) == pytest.approx(0.45)
    assert agreement(["78"] * 4, [0.9] * 4) == pytest.approx(0.45)
