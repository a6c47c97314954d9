"""The default demo task: two-digit sums, "What is A+B? Answer with just the number."

Examples: every pair A, B in 10..99 (8100); a pair is held out when the hash of ("arithmetic", A, B)
is 0 mod 5 (1658 held out, 6442 train), so the sides are disjoint by construction and identical on
every machine. Fields: {"a": A, "b": B, "answer": A + B}.

Metrics:
  strict   the whole stripped answer is the sum (a trailing period allowed): "78", " 78."
  lenient  the last number in the answer is the sum: "45 + 33 = 78"
Reward (shaped; a binary strict reward gives ES nothing to climb on SmolLM2-135M, which starts at
0% strict and ~15-25% lenient, see DESIGN.md):
  1.0                       strict-correct
  0.5                       final number correct (lenient), plus up to 0.1 for brevity
  0.2                       the sum appears but is not the final number, plus brevity
  0.15                      a bare number that is wrong (right form), plus brevity and closeness
  + 0.1 * brevity           brevity = clip(1 - extra_chars / 40, 0, 1), extra_chars = characters
                            beyond the sum's own digits; only when the answer holds a number
  + 0.1 * closeness         when the final number is wrong: clip(1 - |final - sum| / 20, 0, 1)
  0.0                       no number at all (empty, prose, malformed)
Everything below strict stays < 0.7, so strict answers always win.
reward=likelihood instead trains on the log-likelihood of the bare sum and the end of the turn
("78<|im_end|>"): no generation per member, and a slope even while no answer is strict.
reward=margin scores the same tokens by their logit's lead over the runner-up, capped (base.MARGIN_CAP):
the greedy answer is strict-correct exactly when every one of them leads.
"""

from __future__ import annotations

from typing import Sequence

from edgees.tasks.base import (Example, Task, bare_number, check_lengths, hash_split, last_number, mean,
                               numbers_in, reward_mode, user)

QUESTION = "What is {a}+{b}? Answer with just the number."


def strict_correct(completion: str, answer: float) -> bool:
    value = bare_number(completion)
    return value is not None and value == answer


def lenient_correct(completion: str, answer: float) -> bool:
    value = last_number(completion)
    return value is not None and value == answer


def shaped_reward(completion: str, answer: int) -> float:
    """The reward table of the module docstring, for one completion."""
    if strict_correct(completion, answer):
        return 1.0
    final = last_number(completion)
    if final is None:
        return 0.0
    extra = max(0, len(completion.strip()) - len(str(answer)))
    brevity = max(0.0, 1.0 - extra / 40.0)
    r = 0.1 * brevity
    if final == answer:
        return r + 0.5
    if answer in numbers_in(completion):
        r += 0.2
    elif bare_number(completion) is not None:
        r += 0.15
    return r + 0.1 * max(0.0, 1.0 - abs(final - answer) / 20.0)


class Arithmetic(Task):
    name = "arithmetic"
    description = "two-digit sums A+B (chat); strict = just the number, lenient = last number right"
    chat = True
    default_heldout = 40
    # lenient leads: the sum a person reads in the answer ("45 + 33 = 78" is right). strict (only
    # the number) is reported beside it; SmolLM2-135M starts at 0 there and the default reward
    # moves lenient first (docs/results/arithmetic-baselines-and-margin.md).
    primary = "lenient"

    def __init__(self, *, max_tokens: int = 16, heldout_every: int = 5, reward: str = "generate"):
        self.reward_mode = reward_mode(self.name, reward)
        self.max_tokens = int(max_tokens)
        self.stop = ["\n\n"]
        self.heldout_every = int(heldout_every)

    @staticmethod
    def example(a: int, b: int) -> Example:
        return Example(prompt=user(QUESTION.format(a=a, b=b)), fields={"a": a, "b": b, "answer": a + b})

    def _split_all(self, n_train, n_heldout):
        pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
        train, heldout = hash_split(pairs, key=lambda p: ("arithmetic", p[0], p[1]),
                                    heldout_every=self.heldout_every)
        return [self.example(a, b) for a, b in train], [self.example(a, b) for a, b in heldout]

    def reference(self, example: Example) -> str:
        return str(example.fields["answer"])

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        check_lengths(self.name, examples, completions)
        return [shaped_reward(c, e.fields["answer"]) for e, c in zip(examples, completions)]

    def metrics(self, examples, completions) -> dict[str, float]:
        check_lengths(self.name, examples, completions)
        answers = [e.fields["answer"] for e in examples]
        return {
            "strict": mean([float(strict_correct(c, a)) for c, a in zip(completions, answers)]),
            "lenient": mean([float(lenient_correct(c, a)) for c, a in zip(completions, answers)]),
            "reward": mean(self.rewards(examples, completions)),
        }
