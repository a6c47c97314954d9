"""A toy task for end-to-end runs on a tiny model: a reward module, its prompts, a model it can learn.

The plain tiny model's block weights barely move its output (it repeats one byte whatever the
weights), so ES has nothing to climb. `toy_model` centres each Q4_1 block (m = -7.5 d, so weights are
zero-mean) and scales d by 4: the blocks then dominate the residual stream and greedy completions
are varied byte soup that shifts with the weights. The reward, the share of completion characters
that are lowercase ASCII letters or spaces, then rises within ~10 steps at sigma 0.3, alpha 1
(checked over 6 run seeds: the mean member reward of the last 3 steps beat the first 3 every time).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from edgees.gguf.reader import read_gguf
from edgees.qes.trainable import trainable_tensors
from edgees.gguf.tiny import make_tiny_model

LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz ")


def _text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


def letters(prompts, completions, **fields):
    """Share of the completion's characters that are lowercase letters or spaces (0 when empty)."""
    return [sum(ch in LETTERS for ch in t) / max(len(t), 1) for t in map(_text, completions)]


def toy_model(path, seed: int = 0, **shape) -> Path:
    """The tiny Q4_1 llama with centred, 4x scaled blocks; shape: make_tiny_model's n_layer, n_ff..."""
    path = Path(path)
    make_tiny_model(path, "Q4_1", seed=seed, **shape)
    info = read_gguf(path)
    data = bytearray(path.read_bytes())
    for t in trainable_tensors(info):
        blocks = np.frombuffer(data, np.uint8, t.nbytes, t.offset).reshape(-1, 20)  # d f16 | m f16 | qs[16]
        d = blocks[:, 0:2].copy().view("<f2").astype(np.float32) * 4
        blocks[:, 0:2] = d.astype("<f2").view(np.uint8)
        blocks[:, 2:4] = (-7.5 * d).astype("<f2").view(np.uint8)
    path.write_bytes(bytes(data))
    return path


def write_prompts(path, n: int = 30) -> Path:
    path = Path(path)
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"Write a short sentence about {i} apples."}) + "\n")
    return path


ANSWER = "the apples are red"


def write_answers(path, n: int = 40) -> Path:
    """The toy likelihood task's data: each prompt with the same reference answer."""
    path = Path(path)
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"Write a short sentence about {i} apples.", "answer": ANSWER}) + "\n")
    return path


def finetune_args(model, run, data, *, steps: int, pairs: int = 2, prompts: int = 2, sigma: float = 0.3,
                  alpha: float = 1.0, max_tokens: int = 8, window: int = 4, seed: int = 1,
                  eval_n: int = 2, resume: bool = False, likelihood: bool = False,
                  checkpoint_every: int | None = None) -> list[str]:
    """`edgees finetune` arguments for the toy task (one thread: evaluation is deterministic).
    likelihood: the log-likelihood of ANSWER on write_answers() data instead of the letters reward
    on generated completions."""
    task = ([f"jsonl:{data}", "--task-opt", "reward=likelihood"] if likelihood else
            [f"python:{__file__}:letters", "--task-opt", f"data={data}", "--task-opt", f"max_tokens={max_tokens}"])
    args = ["finetune", str(model), "--task", *task, "--run", str(run),
            "--steps", str(steps), "--pairs", str(pairs), "--prompts", str(prompts),
            "--sigma", str(sigma), "--alpha", str(alpha), "--window", str(window), "--seed", str(seed),
            "--eval-every", "0", "--eval-n", str(eval_n), "--threads", "1", "--quiet"]
    if checkpoint_every is not None:
        args += ["--checkpoint-every", str(checkpoint_every)]
    return args + (["--resume"] if resume else [])


def edgees_cmd(args: list[str]) -> list[str]:
    """A subprocess command line running the edgees CLI with this interpreter."""
    return [sys.executable, "-m", "edgees.cli", *args]


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def raises_after(prompts, completions, **fields):
    """A broken user reward: fine for the first calls, then raises (counts calls in a file)."""
    counter = Path(os.environ["EDGEES_TOY_COUNTER"])
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if n >= int(os.environ.get("EDGEES_TOY_FAIL_AFTER", "20")):
        raise ValueError("reward server went away")
    return [0.5] * len(completions)
