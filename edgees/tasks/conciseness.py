"""Conciseness (the ES paper's task): reward by how close the answer's length is to a short reference.

The ES paper rewards -|len(y) - len(y_ref)|; we measure length in characters of the stripped
completion (tokenizer-independent) and normalise to (0, 1]:

  length_reward = 1 / (1 + |len(completion) - len(reference)| / 10)

so a reference-length answer scores 1, 10 characters off 0.5, a 200-character ramble ~0.05: never
flat, so ES always has a direction. An empty completion scores 0 (an answer of the right length
must at least exist). Option `correct_weight` w mixes in correctness, reward = (1 - w) * length +
w * contains, where `contains` = the reference's words appear in the completion (case and
punctuation ignored); w = 0 by default, as in the paper. Metrics: reward, length_reward,
contains, mean_chars, mean_abs_diff.

The questions are a small built-in set of factual questions with one-or-few-word answers; the split
is by hash of the question (about 1 in 4 held out).
"""

from __future__ import annotations

import re
from typing import Sequence

from edgees.tasks.base import Example, Task, check_lengths, hash_split, mean, user

PAIRS = [
    ("What is the capital of France?", "Paris."),
    ("What is the largest planet in the solar system?", "Jupiter."),
    ("How many legs does a spider have?", "Eight."),
    ("What is the chemical symbol for gold?", "Au."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare."),
    ("What is the boiling point of water in degrees Celsius at sea level?", "100 degrees."),
    ("What color is the sky on a clear day?", "Blue."),
    ("How many days are in a week?", "Seven."),
    ("What is the freezing point of water in Fahrenheit?", "32 degrees."),
    ("What gas do plants absorb from the air?", "Carbon dioxide."),
    ("What is the capital of Japan?", "Tokyo."),
    ("How many continents are there?", "Seven."),
    ("What is the square root of 81?", "9."),
    ("Which planet is known as the Red Planet?", "Mars."),
    ("What is the longest river in Africa?", "The Nile."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci."),
    ("What is the hardest natural substance?", "Diamond."),
    ("How many sides does a hexagon have?", "Six."),
    ("What is the capital of Italy?", "Rome."),
    ("What language is spoken in Brazil?", "Portuguese."),
    ("What is the smallest prime number?", "2."),
    ("What is H2O commonly called?", "Water."),
    ("How many minutes are in an hour?", "Sixty."),
    ("What is the capital of Canada?", "Ottawa."),
    ("Which animal is known as the king of the jungle?", "The lion."),
    ("What is the opposite of hot?", "Cold."),
    ("How many hours are in a day?", "24."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean."),
    ("What is the main ingredient of guacamole?", "Avocado."),
    ("Which organ pumps blood through the body?", "The heart."),
    ("What is the capital of Germany?", "Berlin."),
    ("How many strings does a standard guitar have?", "Six."),
    ("What is the closest star to Earth?", "The Sun."),
    ("What do bees make?", "Honey."),
    ("What is 10 times 10?", "100."),
    ("What is the capital of Spain?", "Madrid."),
    ("Which metal is liquid at room temperature?", "Mercury."),
    ("How many players are on a soccer team on the field?", "Eleven."),
    ("What is the tallest mountain in the world?", "Mount Everest."),
    ("What is the currency of the United Kingdom?", "The pound sterling."),
    ("What shape has three sides?", "A triangle."),
    ("What is frozen water called?", "Ice."),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong."),
    ("What is the capital of Australia?", "Canberra."),
    ("How many months have 28 days?", "All twelve."),
    ("What is the largest mammal?", "The blue whale."),
    ("What is the primary language of Mexico?", "Spanish."),
    ("How many wheels does a bicycle have?", "Two."),
]
_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = {"the", "a", "an", "degrees"}


def length_reward(completion: str, reference: str) -> float:
    text = completion.strip()
    if not text:
        return 0.0
    return 1.0 / (1.0 + abs(len(text) - len(reference)) / 10.0)


def contains(completion: str, reference: str) -> bool:
    """The reference's content words all appear in the completion (case, punctuation ignored)."""
    words = set(_WORD.findall(completion.lower()))
    needed = [w for w in _WORD.findall(reference.lower()) if w not in _STOP_WORDS]
    return bool(needed) and all(w in words for w in needed)


class Conciseness(Task):
    name = "conciseness"
    description = "short factual Q&A; reward = closeness of the answer's length to a short reference (ES paper)"
    chat = True
    default_heldout = 10

    def __init__(self, *, max_tokens: int = 48, correct_weight: float = 0.0, heldout_every: int = 4):
        self.max_tokens = int(max_tokens)
        self.stop = ["\n\n"]
        self.correct_weight = float(correct_weight)
        self.heldout_every = int(heldout_every)

    def _split_all(self, n_train, n_heldout):
        train, heldout = hash_split(PAIRS, key=lambda p: ("conciseness", p[0]), heldout_every=self.heldout_every)
        make = lambda q, a: Example(prompt=user(q), fields={"answer": a})  # noqa: E731
        return [make(*p) for p in train], [make(*p) for p in heldout]

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        check_lengths(self.name, examples, completions)
        w = self.correct_weight
        return [(1 - w) * length_reward(c, e.fields["answer"]) + w * contains(c, e.fields["answer"])
                for e, c in zip(examples, completions)]

    def metrics(self, examples, completions) -> dict[str, float]:
        check_lengths(self.name, examples, completions)
        refs = [e.fields["answer"] for e in examples]
        return {
            "reward": mean(self.rewards(examples, completions)),
            "length_reward": mean([length_reward(c, r) for c, r in zip(completions, refs)]),
            "contains": mean([float(contains(c, r)) for c, r in zip(completions, refs)]),
            "mean_chars": mean([float(len(c.strip())) for c in completions]),
            "mean_abs_diff": mean([float(abs(len(c.strip()) - len(r))) for c, r in zip(completions, refs)]),
        }
