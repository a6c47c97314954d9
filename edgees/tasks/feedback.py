"""`feedback:PATH`: learn from what people said about answers (preferences, thumbs up/down), scored
by log-likelihood with the batched scorer; nothing is generated.

Line forms, one JSON object per line (the shapes trl's DPO and KTO trainers read):
  {"prompt": "...", "chosen": "...", "rejected": "..."}      a preference pair
  {"prompt": "...", "completion": "...", "label": true}        a rated answer: true = thumbs up
The prompt may be a list of chat messages; chosen, rejected and completion may be trl's
conversational form, a list of messages ending with the assistant's answer. Without a "prompt",
conversational chosen and rejected carry it: their turns before the answer (trl's implicit prompt).
A string prompt is sent as one user turn (chat=false sends it raw). An optional "split" works as in
jsonl:; other keys are kept as fields. A file with no pair and no thumbs-up is refused (see below).

Reward of one example, with ll(x) = log p(x + end of turn | prompt) under the weights being scored
(natural log, summed over the answer's tokens, Engine.score), all texts of a batch in one call:
  pair    ll(chosen) - ll(rejected)
  rated   +ll(completion) for a thumbs up, -ll(completion) for a thumbs down
Why raw log-likelihoods and not margins against the base model (DPO's and KTO's log-ratios): the
base's figure is a constant per example, and every member of an ES step scores the same examples,
so it cancels in the difference of an antithetic pair: both climb the same way. The raw form needs
no second model in memory and no stored base scores (a resumed daemon job never holds the base
weights). Sums, not per-token means, as in trl: a long answer weighs more. Neither form is bounded:
making a rejected or thumbs-down answer ever less likely keeps paying, and a broken model makes any
text unlikely. So a file must hold something to pull up (a pair's chosen answer, a thumbs-up), and
the daemon publishes only when held-out figures hold.

Split: by the hash of the prompt (jsonl.split_records), so all ratings of one prompt fall on the
same side, and a line keeps its side as the file grows.

Held-out metrics (evaluate(): the same scores, no generation):
  accuracy     share of held-out pairs whose chosen answer scores above the rejected one (pairs only)
  margin       mean ll(chosen) - ll(rejected) over held-out pairs (pairs only)
  good_loglik  mean ll of held-out thumbs-up answers; bad_loglik of thumbs-down ones (rated only)
The primary metric is the mean held-out reward: the task's reward_mode is "likelihood", so the
trainer reports it as `loglik` (loglik() below) and the daemon's publish gate compares it. For a file
of pairs it is the mean margin; `accuracy` is the figure to show a person. Held-out examples are
scored once: loglik() right after evaluate() on the same examples and engine takes evaluate's
scores (any train_rewards call in between, i.e. any member, drops them). Nothing is generated:
max_tokens is 0, so `edgees eval` decodes no token for these prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from edgees.errors import TaskError
from edgees.tasks.base import Example, Task, mean, user
from edgees.tasks.jsonl import HELDOUT_NAMES, FileBacked, Record, json_objects, split_records

EXAMPLE = '{"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}'
RATED = '{"prompt": "Hi?", "completion": "Hello!", "label": true}'


def _fail(path, line, problem, fix):
    raise TaskError(f"{path}:{line}: {problem}; {fix}" if line else f"{path}: {problem}; {fix}")


def _messages_ok(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)


def _answer(path, n, obj, key) -> tuple[str, list | None]:
    """(answer text, the turns before it if it came as a conversation, else None)."""
    value = obj[key]
    if isinstance(value, str):
        if not value.strip():
            _fail(path, n, f'"{key}" is empty', "give the answer's text (or drop the line)")
        return value, None
    if not _messages_ok(value) or value[-1]["role"] != "assistant":
        _fail(path, n, f'"{key}" must be a string or a list of chat messages ending with the assistant\'s answer',
              f"write e.g. {EXAMPLE}")
    if not value[-1]["content"].strip():
        _fail(path, n, f'"{key}" ends with an empty answer', "give the answer's text (or drop the line)")
    return value[-1]["content"], value[:-1]


def _prompt(path, n, obj, turns, chat):
    if "prompt" in obj:
        prompt = obj["prompt"]
        if isinstance(prompt, str) and prompt.strip():
            return user(prompt) if chat else prompt
        if _messages_ok(prompt):
            return prompt
        _fail(path, n, "the prompt must be a non-empty string or a list of chat messages", "fix the prompt")
    if turns:  # trl's implicit prompt: the conversation before the answer
        return turns
    _fail(path, n, f"no prompt (keys: {', '.join(sorted(obj)) or 'none'})",
          f'give a "prompt" field, e.g. {EXAMPLE} or {RATED}')


def parse_line(path, n: int, obj: dict, chat: bool = True) -> Record:
    """One feedback line as a jsonl Record: fields {"chosen", "rejected"} or {"completion", "label"}."""
    has_pair = "chosen" in obj or "rejected" in obj
    if has_pair and "completion" in obj:
        _fail(path, n, 'both a pair ("chosen"/"rejected") and a "completion"', "write one example per line")
    if has_pair:
        if "chosen" not in obj or "rejected" not in obj:
            missing = "rejected" if "chosen" in obj else "chosen"
            _fail(path, n, f'a pair without "{missing}"', f'give both answers, e.g. {EXAMPLE}, or rate one: {RATED}')
        (chosen, c_turns), (rejected, r_turns) = _answer(path, n, obj, "chosen"), _answer(path, n, obj, "rejected")
        if "prompt" not in obj and c_turns != r_turns:
            _fail(path, n, "chosen and rejected conversations differ before their answers", 'give a "prompt" field')
        if chosen == rejected:
            _fail(path, n, "chosen and rejected are the same text", "drop the line (it says nothing)")
        fields = {"chosen": chosen, "rejected": rejected}
        turns = c_turns
    elif "completion" in obj:
        if not isinstance(obj.get("label"), bool):
            got = "no label" if "label" not in obj else f"label {obj['label']!r}"
            _fail(path, n, f"{got} for the completion", 'give "label": true (thumbs up) or false (thumbs down)')
        completion, turns = _answer(path, n, obj, "completion")
        fields = {"completion": completion, "label": obj["label"]}
    else:
        _fail(path, n, f"no answer to learn from (keys: {', '.join(sorted(obj)) or 'none'})",
              f"write a pair {EXAMPLE} or a rated answer {RATED}")
    prompt = _prompt(path, n, obj, turns, chat)
    split = obj.get("split")
    if split is not None:
        name = str(split).strip().lower()
        if name not in HELDOUT_NAMES | {"train"}:
            _fail(path, n, f"unknown split {split!r}", 'use "train" or "heldout" (or test/valid)')
        split = "train" if name == "train" else "heldout"
    skip = ("prompt", "chosen", "rejected", "completion", "label", "split")
    fields.update({k: v for k, v in obj.items() if k not in skip})
    return Record(n, prompt, None, fields, split)


def load_feedback(path: str | Path, chat: bool = True, torn_ok: bool = False) -> list[Record]:
    path = Path(path).expanduser()
    records = [parse_line(path, n, obj, chat) for n, obj in json_objects(path, EXAMPLE, torn_ok)]
    if not records:
        _fail(path, 0, "no examples (the file is empty)", f"add one JSON object per line, e.g. {EXAMPLE}")
    if not any("chosen" in r.fields or r.fields["label"] for r in records):
        _fail(path, 0, "only thumbs-down ratings: the reward would only push answers down, which any broken "
              "model does", "add thumbs-up ratings (label true) or preference pairs")
    return records


def is_pair(example: Example) -> bool:
    return "chosen" in example.fields


class FeedbackTask(FileBacked, Task):
    primary = "loglik"  # the mean held-out reward (see the module docstring); accuracy is for people
    description = ("your ratings: {prompt, chosen, rejected} pairs and {prompt, completion, label} thumbs "
                   "up/down (trl DPO/KTO shapes); log-likelihood margins, no generation")
    default_heldout = None  # all held-out lines
    max_tokens = 0  # nothing is generated (`edgees eval` asks for no token, so the engine decodes none)
    reward_mode = "likelihood"  # the reward is a log-likelihood figure: held-out `loglik` is the primary metric
    _last = None  # (engine, examples, rewards) of the last evaluate(), for the loglik() that follows it

    def __init__(self, path: str, *, chat: bool = True, heldout_every: int = 5):
        self.name = f"feedback:{path}"
        self.path = Path(path)
        self.heldout_every = int(heldout_every)
        if self.heldout_every < 1:
            raise TaskError(f"task {self.name}: heldout_every must be >= 1 (1 in N prompts is held out)")
        self._chat_opt = chat
        self._load()

    def _read(self, torn_ok: bool) -> list[Record]:
        records = load_feedback(self.path, self._chat_opt, torn_ok)
        self.chat = any(isinstance(r.prompt, list) for r in records)
        return records

    def _split_all(self, n_train, n_heldout):
        train, heldout = split_records(self.records, self.heldout_every, self.path)
        make = lambda r: Example(prompt=r.prompt, fields=r.fields)  # noqa: E731
        return [make(r) for r in train], [make(r) for r in heldout]

    # ---- scoring -----------------------------------------------------------------------------
    def scores(self, engine, examples: Sequence[Example]) -> list[tuple[float, ...]]:
        """Per example (ll(chosen), ll(rejected)) or (ll(completion),): one batched Engine.score."""
        prompts, texts, sizes = [], [], []
        for e in examples:
            answers = (e.fields["chosen"], e.fields["rejected"]) if is_pair(e) else (e.fields["completion"],)
            prompts += [e.prompt] * len(answers)
            texts += answers
            sizes.append(len(answers))
        flat = list(engine.score(prompts, texts, end_turn=True)) if texts else []
        out, i = [], 0
        for k in sizes:
            out.append(tuple(float(x) for x in flat[i:i + k]))
            i += k
        return out

    @staticmethod
    def reward_of(example: Example, ll: tuple[float, ...]) -> float:
        if is_pair(example):
            return ll[0] - ll[1]
        return ll[0] if example.fields["label"] else -ll[0]

    def train_rewards(self, engine, examples: Sequence[Example]) -> list[float]:
        examples = list(examples)
        self._last = None  # the weights may have moved since evaluate(): its scores are stale
        return [self.reward_of(e, ll) for e, ll in zip(examples, self.scores(engine, examples))]

    def loglik(self, engine, examples: Sequence[Example]) -> list[float]:
        """The held-out `loglik` figure: each example's reward (there is no reference answer). Right
        after evaluate() on the same examples and engine, its scores: held-out is scored once."""
        examples = list(examples)
        last, self._last = self._last, None
        if last is not None and last[0] is engine and last[1] == examples:
            return list(last[2])
        return self.train_rewards(engine, examples)

    def evaluate(self, engine, examples: Sequence[Example]) -> tuple[list[float], dict, list[str]]:
        """(rewards, metrics, the answers scored): see the module docstring; nothing is generated."""
        examples = list(examples)
        lls = self.scores(engine, examples)
        rewards = [self.reward_of(e, ll) for e, ll in zip(examples, lls)]
        self._last = (engine, examples, rewards)
        margins = [r for e, r in zip(examples, rewards) if is_pair(e)]
        metrics: dict[str, float] = {}
        if margins:
            metrics["accuracy"] = mean([float(m > 0) for m in margins])
            metrics["margin"] = mean(margins)
        good = [ll[0] for e, ll in zip(examples, lls) if not is_pair(e) and e.fields["label"]]
        bad = [ll[0] for e, ll in zip(examples, lls) if not is_pair(e) and not e.fields["label"]]
        if good:
            metrics["good_loglik"] = mean(good)
        if bad:
            metrics["bad_loglik"] = mean(bad)
        answers = [e.fields["chosen"] if is_pair(e) else e.fields["completion"] for e in examples]
        return rewards, metrics, answers

    def rewards(self, examples, completions) -> list[float]:
        raise TaskError(f"task {self.name} scores the answers in its file, not generated ones; "
                        "its rewards come from train_rewards(engine, examples)")

    def metrics(self, examples, completions) -> dict[str, float]:
        """Generated completions say nothing about these preferences: no metric from them (`edgees
        eval` reports `loglik`, the mean reward, from the scorer)."""
        return {}
