"""k-shot prompts: the baseline a user would try before fine-tuning (worked examples in the prompt).

    shots = task.split(n_train=k)[0]             # the first k train examples (hash order: fixed)
    prompted = with_shots(task, heldout, shots)  # the same examples, each prompt led by the k

A chat prompt becomes a conversation: for each shot, its user turn(s) and an assistant turn with the
task's reference answer, then the example's own turns. A raw-text prompt gets each shot's prompt and
reference, one blank line apart, before its own. Shots come from the train side of the split, so a
held-out question never appears as its own example. Fields (the reference answers that metrics read)
are the example's own, unchanged. Tasks without reference answers cannot be prompted this way.
"""

from __future__ import annotations

from typing import Sequence

from edgees.errors import TaskError
from edgees.tasks.base import Example, Task


def with_shots(task: Task, examples: Sequence[Example], shots: Sequence[Example]) -> list[Example]:
    """Each example with the shots' prompts and reference answers before its own prompt."""
    if not shots:
        return list(examples)
    answers = [task.reference(s) for s in shots]  # no reference answers: the task's one-line error
    return [Example(prompt=_prompt(task, e.prompt, shots, answers), fields=e.fields) for e in examples]


def shot_examples(task: Task, k: int) -> list[Example]:
    """The first k train examples (the same on every machine), checked to be k."""
    if k < 0:
        raise TaskError(f"--shots must be >= 0 (got {k})")
    shots = task.split(n_train=k, n_heldout=0)[0] if k else []
    if len(shots) < k:
        raise TaskError(f"task {task.name} has {len(shots)} training examples, fewer than --shots {k}; "
                        "give a smaller --shots")
    return shots


def _prompt(task: Task, prompt, shots: Sequence[Example], answers: Sequence[str]):
    if isinstance(prompt, list):
        messages: list[dict] = []
        for shot, answer in zip(shots, answers):
            if not isinstance(shot.prompt, list):
                raise TaskError(f"task {task.name} mixes chat and raw-text prompts; --shots needs one kind")
            messages += [m for m in shot.prompt if m.get("role") != "system"]
            messages.append({"role": "assistant", "content": answer})
        system = [m for m in prompt if m.get("role") == "system"]
        return system + messages + [m for m in prompt if m.get("role") != "system"]
    parts = []
    for shot, answer in zip(shots, answers):
        if isinstance(shot.prompt, list):
            raise TaskError(f"task {task.name} mixes chat and raw-text prompts; --shots needs one kind")
        parts.append(f"{shot.prompt}{answer}")
    return "\n\n".join(parts + [prompt])
