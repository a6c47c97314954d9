"""The Task contract: prompts with a deterministic split, generation settings, and a reward.

A task is the one thing ES needs besides the model: for each prompt, a scalar reward of the
completion. Everything here is pure Python (no numpy, no llama.cpp) so rewards are testable on
hand-written completions.

    task = get_task("arithmetic")
    train, heldout = task.split(n_heldout=40)
    rewards, metrics, completions = task.evaluate(engine, heldout)

Specs: a built-in name (see `list_tasks()`), "jsonl:PATH", "python:MODULE:FUNCTION", "onnx:PATH",
"feedback:PATH".
Options are keyword arguments of the task's constructor (`get_task("jsonl:d.jsonl", match="numeric")`);
from the command line they arrive as strings "key=value" and go through `parse_options`.

Splits never use a global RNG: membership of the held-out set is a pure function of the example's
content (`stable_hash`), and order is by hash too, so the first n held-out examples are the same for
every n' >= n, on every machine, in every run.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, Union

from edgees.errors import TaskError

Prompt = Union[str, list]  # raw text, or chat messages [{"role": ..., "content": ...}]


@dataclass(frozen=True)
class Example:
    prompt: Prompt
    fields: dict = field(default_factory=dict)  # reference fields: "answer", "target", "numbers", ...


class Task:
    """Base class: subclasses set the attributes and implement `_examples`, `rewards`, `metrics`."""

    name: str = "task"
    description: str = ""
    chat: bool = True  # True: prompts are chat messages (the engine applies the model's chat template)
    max_tokens: int = 32
    stop: list = []
    default_heldout: int | None = 40  # n_heldout=None means this many (None: all there are)
    # The held-out metric a publish gate compares and a results table leads with: the figure a
    # person reading the answers would judge by. Higher is better.
    primary: str = "reward"
    labels: list | None = None  # a classification's labels (jsonl: a file of labels), else None

    # ---- split -------------------------------------------------------------------------------
    def split(self, n_train: int | None = None, n_heldout: int | None = None) -> tuple[list[Example], list[Example]]:
        """(train, heldout): disjoint, deterministic; each list a hash-ordered prefix of its side.

        n_train=None: every train example there is (generated tasks: their default count);
        n_heldout=None: `default_heldout` of them.
        Asking for more than exist returns all there are (no error: small user files are normal).
        """
        n_heldout = self.default_heldout if n_heldout is None else n_heldout  # None: all of them
        if (n_train or 0) < 0 or (n_heldout or 0) < 0:
            raise TaskError(f"task {self.name}: split sizes must be >= 0 (got n_train={n_train}, "
                            f"n_heldout={n_heldout})")
        train, heldout = self._split_all(n_train, n_heldout)
        return (train if n_train is None else train[:n_train]), heldout[:n_heldout]

    def _split_all(self, n_train: int | None, n_heldout: int) -> tuple[list[Example], list[Example]]:
        """Both sides in their canonical order; may stop early once the requested sizes are met."""
        raise NotImplementedError

    def refresh(self) -> bool:
        """Re-read the task's data file if it changed (an app appending lines); True when the examples
        changed, so the caller splits again. Tasks without a data file: nothing to do."""
        return False

    # ---- reward ------------------------------------------------------------------------------
    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        raise NotImplementedError

    def metrics(self, examples: Sequence[Example], completions: Sequence[str]) -> dict[str, float]:
        return {"reward": mean(self.rewards(examples, completions))}

    # ---- what ES climbs ------------------------------------------------------------------------
    reward_mode: str = "generate"  # or "likelihood" / "margin" (tasks with reference answers, option reward=)

    def reference(self, example: Example) -> str:
        """The reference answer of an example, as the model should write it (reward=likelihood)."""
        raise TaskError(f"task {self.name} has no reference answers, so reward=likelihood cannot "
                        "score them; use reward=generate")

    def train_rewards(self, engine, examples: Sequence[Example]) -> list[float]:
        """One reward per example, the number fine-tuning climbs on a step's prompts.

        reward=generate: greedy completions scored by rewards(). reward=likelihood: the teacher-forced
        log-likelihood of the reference answer followed by the end of the turn (Engine.score): one
        batched prefill and no generation, a dense signal even while no greedy answer is right,
        the objective of supervised fine-tuning. Held-out metrics always come from generation.
        reward=margin: each reference token (and the end of the turn) scores its logit's lead over the
        best other token, capped at MARGIN_CAP nats, summed: no credit for making a token that greedy
        decoding already writes more certain, so the search spends itself on the tokens still wrong
        (what strict accuracy counts)."""
        examples = list(examples)
        if self.reward_mode in TEACHER_FORCED:
            margin = MARGIN_CAP if self.reward_mode == "margin" else None
            return list(engine.score([e.prompt for e in examples], [self.reference(e) for e in examples],
                                     end_turn=True, margin=margin))
        return self.evaluate(engine, examples)[0]

    def loglik(self, engine, examples: Sequence[Example]) -> list[float]:
        """The log-likelihood of each example's reference answer and the end of the turn (the held-out
        figure reported beside the metrics of teacher-forced rewards, whichever of them trains)."""
        examples = list(examples)
        return list(engine.score([e.prompt for e in examples], [self.reference(e) for e in examples],
                                 end_turn=True))

    def complete(self, engine, examples: Sequence[Example]) -> list[str]:
        """The completions the task scores: greedy answers (a task of several turns runs them here,
        so that `edgees eval` and the held-out evaluation score the same text)."""
        examples = list(examples)
        completions = list(engine.generate([e.prompt for e in examples], max_tokens=self.max_tokens,
                                           stop=list(self.stop)))
        check_lengths(self.name, examples, completions)
        return completions

    def evaluate(self, engine, examples: Sequence[Example]) -> tuple[list[float], dict, list[str]]:
        """Complete greedily, then score: (rewards, metrics, completions)."""
        examples = list(examples)
        completions = self.complete(engine, examples)
        return self.rewards(examples, completions), self.metrics(examples, completions), completions

    def label_report(self, examples: Sequence[Example], completions: Sequence[str]) -> list[dict] | None:
        """Per-label counts for a classification task (jsonl: a file of labels), else None."""
        return None

    def primary_metric(self, metrics: dict) -> str:
        """The key of `primary` in these metrics; a task whose metrics lack it (a feedback file of
        ratings has no pair accuracy) falls back to its first reported metric."""
        if self.primary in metrics:
            return self.primary
        keys = [k for k in metrics if k not in ("seconds", "n")]
        if not keys:
            raise TaskError(f"task {self.name}: the held-out evaluation returned no metric; the task must report one")
        return keys[0]

    def leading(self, metrics: dict) -> dict:
        """The metrics to show, the primary one first (what a table or a progress line leads with)."""
        shown = {k: v for k, v in metrics.items() if k not in ("seconds", "n")}
        if not shown:
            return shown
        key = self.primary_metric(shown)
        return {key: shown[key], **{k: v for k, v in shown.items() if k != key}}

    def __repr__(self) -> str:
        return f"<Task {self.name} chat={self.chat} max_tokens={self.max_tokens} stop={self.stop!r}>"


# ---- helpers shared by the task modules ------------------------------------------------------

REWARD_MODES = ("generate", "likelihood", "margin")
TEACHER_FORCED = ("likelihood", "margin", "labels")  # scored on reference answers: no generation per member
# (labels: a jsonl: file of labels only, every label scored after each message; see jsonl.py)
MARGIN_CAP = 1.0  # reward=margin: a token's lead over the runner-up counts up to this many nats


def reward_mode(task_name: str, value: str) -> str:
    """Check a reward= option."""
    if value not in REWARD_MODES:
        raise TaskError(f"task {task_name}: unknown reward {value!r}; use reward=generate (score greedy "
                        "answers), reward=likelihood (log-likelihood of the reference answer) or "
                        "reward=margin (the reference tokens' capped lead over the runner-up)")
    return value


def stable_hash(*parts: Any) -> int:
    """A 64-bit integer from sha256 of the parts' repr: identical on every platform and run."""
    digest = hashlib.sha256("\x1f".join(repr(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def hash_split(items: Iterable, key, heldout_every: int = 5) -> tuple[list, list]:
    """Split items by content hash: 1 in `heldout_every` goes to held-out; each side hash-ordered.

    `key(item)` must be a pure function of the item's content (equal content -> same side).
    """
    train, heldout = [], []
    for item in items:
        h = stable_hash(key(item))
        (heldout if is_heldout(h, heldout_every) else train).append((h, item))
    train.sort(key=lambda t: t[0])
    heldout.sort(key=lambda t: t[0])
    return [i for _, i in train], [i for _, i in heldout]


def is_heldout(h: int, heldout_every: int) -> bool:
    """The held-out rule for a content hash `h` (from `stable_hash`): 1 in `heldout_every`."""
    return h % max(1, int(heldout_every)) == 0


def user(content: str) -> list[dict]:
    """A one-turn chat prompt."""
    return [{"role": "user", "content": content}]


def mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if len(xs) else float("nan")


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_BARE_NUMBER = re.compile(r"-?\d+(?:\.\d+)?\.?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # 1,234 -> 1234 (but 7,8 stays two numbers)


def numbers_in(text: str) -> list[float]:
    """Every number written in text (digits, optional sign and decimals, 1,234 as one number)."""
    return [float(x) for x in _NUMBER.findall(_THOUSANDS.sub("", text))]


def last_number(text: str) -> float | None:
    """The last number written in text, or None."""
    found = numbers_in(text)
    return found[-1] if found else None


def bare_number(text: str) -> float | None:
    """The number if the stripped text is just a number (a trailing period allowed), else None."""
    s = _THOUSANDS.sub("", text.strip())
    if not _BARE_NUMBER.fullmatch(s):
        return None
    return float(s.rstrip("."))


def check_lengths(name: str, examples: Sequence, completions: Sequence) -> None:
    if len(examples) != len(completions):
        raise TaskError(f"task {name}: got {len(completions)} completions for {len(examples)} "
                        f"examples; pass one completion per example")


def is_finite_number(x: Any) -> bool:
    try:
        return not isinstance(x, (bool, str, bytes)) and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# ---- registry --------------------------------------------------------------------------------

# name -> (module, class); spec prefixes -> (module, class, spec form).  Modules import lazily so
# `edgees tasks ls` does not load onnxruntime.
BUILTIN = {
    "arithmetic": ("edgees.tasks.arithmetic", "Arithmetic"),
    "countdown": ("edgees.tasks.countdown", "Countdown"),
    "conciseness": ("edgees.tasks.conciseness", "Conciseness"),
    "calibration": ("edgees.tasks.calibration", "Calibration"),
}
PREFIXES = {
    "jsonl": ("edgees.tasks.jsonl", "JsonlTask", "jsonl:PATH"),
    "python": ("edgees.tasks.pyfunc", "PythonRewardTask", "python:MODULE:FUNCTION"),
    "onnx": ("edgees.tasks.onnx_reward", "OnnxRewardTask", "onnx:PATH"),
    "feedback": ("edgees.tasks.feedback", "FeedbackTask", "feedback:PATH"),
}


def _task_class(spec: str):
    if not isinstance(spec, str) or not spec.strip():
        raise TaskError(f"task spec {spec!r} is empty; give a name from `edgees tasks ls` or jsonl:PATH")
    spec = spec.strip()
    if spec in BUILTIN:
        module, cls = BUILTIN[spec]
        return getattr(importlib.import_module(module), cls), ()
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in PREFIXES:
        if not rest:
            raise TaskError(f"task spec {spec!r} is incomplete; the form is {PREFIXES[prefix][2]}")
        module, cls, _ = PREFIXES[prefix]
        return getattr(importlib.import_module(module), cls), (rest,)
    known = ", ".join(list(BUILTIN) + [p[2] for p in PREFIXES.values()])
    raise TaskError(f"unknown task {spec!r}; use one of: {known} (see `edgees tasks ls`)")


def get_task(spec: str, **options) -> Task:
    """Build the task a spec names; options are its constructor's keyword arguments."""
    cls, args = _task_class(spec)
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p != "self" and params[p].kind == inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TaskError(f"task {spec}: unknown option {unknown[0]!r}; its options are: "
                        f"{', '.join(allowed) or '(none)'}")
    return cls(*args, **options)


def task_options(spec: str) -> list[str]:
    """The option names a task spec accepts (for help and `edgees tasks ls --json`)."""
    cls, _ = _task_class(spec if spec in BUILTIN else spec.split(":")[0] + ":x")
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if params[p].kind == inspect.Parameter.KEYWORD_ONLY]


def list_tasks() -> list[tuple[str, str]]:
    """(name or spec form, one-line description) for every task family."""
    out = []
    for name, (module, cls) in BUILTIN.items():
        out.append((name, getattr(importlib.import_module(module), cls).description))
    for module, cls, form in PREFIXES.values():
        out.append((form, _module_description(module, cls)))
    return out


def _module_description(module: str, cls: str) -> str:
    # The spec-form modules may import optional packages (onnxruntime) lazily inside; their class
    # description is a plain attribute, so importing the module is cheap.
    return getattr(importlib.import_module(module), cls).description


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """["match=numeric", "seed=3", "stop=\\n"] -> {"match": "numeric", "seed": 3, "stop": "\\n"}.

    Values that read as int, float, true/false stay typed; everything else is a string; backslash
    escapes (\\n, \\t) are decoded so stop strings can be given on a command line.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TaskError(f"task option {pair!r} is not KEY=VALUE; write e.g. match=numeric")
        out[key.strip().replace("-", "_")] = _typed(value)
    return out


def _typed(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value.replace("\\n", "\n").replace("\\t", "\t")
