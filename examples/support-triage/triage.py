"""The reward for support-triage: one label per message, and nothing gained by naming them all.

Used as `--task python:triage.py:triage --task-opt data=support.jsonl` (edgees passes the prompts,
the completions and every other column of the file, here `answer` and `split`, as trl does).

    the completion is exactly the right label             1.0   (as `edgees eval`'s strict counts it)
    it names the right label and no other one             0.6
    it is exactly one wrong label (the format is right)   0.2
    it names one wrong label among other words            0.1
    it names no label, or several                         0.0

Why not the built-in `jsonl:` exact match: its lenient credit (0.5) goes to any answer that contains
the label, so "billing, bug, account or feature request" would earn 0.5 on every message, more than
an honest guess earns on average, and ES would find that out.
"""

import re

LABELS = ("billing", "bug", "account", "feature request")


def _text(completion) -> str:
    """The completion's text: chat prompts give [{"role": "assistant", "content": ...}]."""
    return completion[0]["content"] if isinstance(completion, list) else completion


def _norm(text: str) -> str:
    """Lower case, '_' and '-' as spaces, whitespace collapsed, quotes and end punctuation dropped."""
    text = re.sub(r"[\s_-]+", " ", text.casefold())
    return text.strip(" .,;:!?\"'`*()[]")


def _named(text: str) -> set:
    return {label for label in LABELS if re.search(r"\b" + re.escape(label) + r"\b", text)}


def triage(prompts, completions, answer, **kwargs):
    rewards = []
    for completion, label in zip(completions, answer):
        raw = _text(completion)
        text = _norm(raw)
        named = _named(text)
        if " ".join(raw.split()) == label:
            rewards.append(1.0)
        elif named == {label}:
            rewards.append(0.6)
        elif len(named) == 1:
            rewards.append(0.2 if text in LABELS else 0.1)
        else:
            rewards.append(0.0)
    return rewards
