"""Countdown (the ES and QES papers' task): reach a target with 3-4 numbers and + - * /.

Problems are generated from `seed` by a counter-based hash stream (no RNG state): draw 3-4 numbers in
1..50, combine them all with random operations that keep every intermediate a positive integer
(subtraction larger-minus-smaller, exact division only, products <= 1000); the result is the
target, so every problem is solvable by construction. Duplicates (same numbers and target) are
skipped; a problem is held out when the hash of its numbers and target is 0 mod 5.
Fields: {"numbers": [...], "target": T, "solution": "an expression reaching T"}.

The model must end with <answer> EXPR </answer> (the closing tag may be missing: it is the stop
string, which engines may strip). EXPR is parsed with `ast` and evaluated exactly with Fractions:
only integer literals, + - * / and parentheses; anything else (names, calls, powers, unary minus)
is rejected without being evaluated. A trailing "= ..." is ignored; x and ÷ are read as * and /.

Reward (shaped; the papers use 0.1 format + 1.0 correct, we add a closeness term so near misses
are ranked):
  1.0   the expression equals the target and uses only the given numbers, each at most once
  0.1   an <answer> tag holding a parseable arithmetic expression (0.05 if it does not parse)
  +0.1  it uses only the given numbers, each at most once (not necessarily all)
  +0.3 * clip(1 - |value - target| / target, 0, 1)   when the numbers are valid
  0.0   no <answer> tag
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction
from typing import Sequence

from edgees.tasks.base import Example, Task, check_lengths, is_heldout, mean, stable_hash, user

PROMPT = ("Using the numbers {numbers}, create an equation that equals {target}. You can use basic "
          "arithmetic operations (+, -, *, /) and each number at most once. Show your final answer "
          "in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.")
MAX_EXPR_CHARS = 200
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S)


class _Stream:
    """Draws integers from sha256 of (seed, problem index, counter): pure and platform-independent."""

    def __init__(self, *key):
        self.key, self.counter = key, 0

    def below(self, n: int) -> int:
        self.counter += 1
        return stable_hash("countdown", *self.key, self.counter) % n


def generate(seed: int, index: int) -> tuple[list[int], int, str]:
    """Problem `index` of stream `seed`: (numbers, target, a solution), solvable by construction."""
    for attempt in range(1000):
        rnd = _Stream(seed, index, attempt)
        numbers = [1 + rnd.below(50) for _ in range(3 + rnd.below(2))]
        pool = [(Fraction(n), str(n)) for n in numbers]
        while len(pool) > 1:
            (x, ex) = pool.pop(rnd.below(len(pool)))
            (y, ey) = pool.pop(rnd.below(len(pool)))
            if x < y:
                (x, ex), (y, ey) = (y, ey), (x, ex)
            op = "+-*/"[rnd.below(4)]
            if op == "-" and x == y or op == "*" and x * y > 1000 or op == "/" and (y == 1 or x % y):
                op = "+"
            value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
            pool.append((value, f"({ex} {op} {ey})"))
        target, expr = pool[0]
        if 1 <= target <= 1000 and target not in numbers:
            return numbers, int(target), expr[1:-1]
    raise AssertionError("unreachable: a valid problem exists for nearly every attempt")


class _Rejected(Exception):
    pass


def _eval(node, used: list[int]) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body, used)
    if isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= 10**6:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        x, y = _eval(node.left, used), _eval(node.right, used)
        if isinstance(node.op, ast.Add):
            return x + y
        if isinstance(node.op, ast.Sub):
            return x - y
        if isinstance(node.op, ast.Mult):
            return x * y
        if y == 0:
            raise ZeroDivisionError
        return x / y
    raise _Rejected(type(node).__name__)


def parse_answer(completion: str) -> tuple[bool, str | None]:
    """(has an <answer> tag, the expression text inside the last one, cleaned)."""
    found = _ANSWER.findall(completion)
    if not found:
        return False, None
    expr = found[-1].split("=")[0].replace("×", "*").replace("÷", "/").replace("x", "*").strip()
    return True, expr


def check(completion: str, numbers: Sequence[int], target: int) -> dict:
    """{"tag", "parsed", "valid_numbers", "value", "correct"} for one completion."""
    out = {"tag": False, "parsed": False, "valid_numbers": False, "value": None, "correct": False}
    out["tag"], expr = parse_answer(completion)
    if not expr or len(expr) > MAX_EXPR_CHARS:
        return out
    used: list[int] = []
    try:
        tree = ast.parse(expr, mode="eval")
        value = _eval(tree, used)
        out["value"] = value
    except ZeroDivisionError:
        pass
    except (SyntaxError, ValueError, _Rejected, RecursionError, MemoryError):
        return out
    out["parsed"] = True
    left = Counter(numbers)
    left.subtract(used)
    out["valid_numbers"] = min(left.values(), default=0) >= 0 and set(used) <= set(numbers)
    out["correct"] = out["valid_numbers"] and out["value"] == target
    return out


def reward(completion: str, numbers: Sequence[int], target: int) -> float:
    c = check(completion, numbers, target)
    if c["correct"]:
        return 1.0
    if not c["tag"]:
        return 0.0
    if not c["parsed"]:
        return 0.05
    r = 0.1
    if c["valid_numbers"]:
        r += 0.1
        if c["value"] is not None:
            r += 0.3 * max(0.0, 1.0 - float(abs(c["value"] - target)) / target)
    return r


class Countdown(Task):
    name = "countdown"
    primary = "solved"
    description = "reach a target with 3-4 numbers and + - * / (ES/QES papers); <answer> tags"
    chat = True
    default_heldout = 40
    default_train = 1000

    def __init__(self, *, seed: int = 0, max_tokens: int = 128, heldout_every: int = 5):
        self.seed = int(seed)
        self.max_tokens = int(max_tokens)
        self.stop = ["</answer>"]
        self.heldout_every = int(heldout_every)

    def example(self, numbers: list[int], target: int, solution: str = "") -> Example:
        prompt = user(PROMPT.format(numbers=numbers, target=target))
        return Example(prompt=prompt, fields={"numbers": list(numbers), "target": target, "solution": solution})

    def _split_all(self, n_train, n_heldout):
        n_train = self.default_train if n_train is None else n_train
        train, heldout, seen, index = [], [], set(), 0
        while len(train) < n_train or len(heldout) < n_heldout:
            numbers, target, solution = generate(self.seed, index)
            index += 1
            key = (tuple(sorted(numbers)), target)
            if key in seen:
                continue
            seen.add(key)
            side = heldout if is_heldout(stable_hash(("countdown", key)), self.heldout_every) else train
            side.append(self.example(numbers, target, solution))
        # Generation order, not hash order: a prefix of either side is stable as n grows.
        return train, heldout

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        check_lengths(self.name, examples, completions)
        return [reward(c, e.fields["numbers"], e.fields["target"]) for e, c in zip(examples, completions)]

    def metrics(self, examples, completions) -> dict[str, float]:
        check_lengths(self.name, examples, completions)
        checks = [check(c, e.fields["numbers"], e.fields["target"]) for e, c in zip(examples, completions)]
        return {
            "solved": mean([float(c["correct"]) for c in checks]),
            "format": mean([float(c["parsed"]) for c in checks]),
            "valid_numbers": mean([float(c["valid_numbers"]) for c in checks]),
            "reward": mean(self.rewards(examples, completions)),
        }
