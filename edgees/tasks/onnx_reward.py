"""`onnx:PATH`: a reward model (text classifier or scorer) run with onnxruntime on CPU, batched.

Needs onnxruntime and tokenizers, the `edgees[onnx]` extra: without either, creating the task is a
TaskError saying so, before anything is loaded. The tokenizer is the tokenizer.json next to the
model, read by `tokenizers`. Model inputs must be input_ids, plus optionally attention_mask and
token_type_ids (int64 or int32, shape [batch, seq]); any other input is a TaskError. The output
(option output=NAME, default the first) is [batch] or [batch, n_labels]; the reward is the chosen
label's logit (score=logit, default) or probability (score=prob: softmax over labels, or sigmoid of
a single logit). label= is an index or a name from config.json's id2label next to the model;
default the last label (the "positive" one of binary classifiers).

What is scored: the completion alone (input=completion, default), or the prompt's text and the
completion joined by a newline (input=prompt+completion; a chat prompt contributes its last user
message). Prompts come from data=PATH (a JSONL file as for jsonl:, answers optional) or, without it,
a small built-in set of open writing prompts. Texts are truncated to max_length tokens. A data file
may grow while a daemon job trains on it (refresh(), as jsonl: does): new lines join at step
boundaries, old ones keep their side.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Sequence

from edgees.errors import TaskError
from edgees.tasks.base import Example, Task, check_lengths, hash_split, mean, user
from edgees.tasks.jsonl import FileBacked, load_jsonl, split_records, stop_list

ALLOWED_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BUILTIN_PROMPTS = [
    "Write one sentence about your favourite food.", "Describe a sunny day in one sentence.",
    "Write a short review of a movie you liked.", "Say something kind to a friend.",
    "Describe your ideal weekend in one sentence.", "Write a one-line review of a restaurant.",
    "Tell me about a good book in one sentence.", "Describe the sea in one sentence.",
    "Write a sentence about a happy memory.", "What do you think of summer? One sentence.",
    "Write a short thank-you note.", "Describe a walk in the park in one sentence.",
    "Write a one-sentence review of a concert.", "Describe your morning coffee in one sentence.",
    "Write a sentence about a great teacher.", "Describe a birthday party in one sentence.",
    "Write a one-line review of a video game.", "Say something about music in one sentence.",
    "Describe a mountain view in one sentence.", "Write a sentence welcoming a new colleague.",
]


EXTRA_PACKAGES = ("onnxruntime", "tokenizers")  # pyproject's `onnx` extra


def require_packages() -> None:
    """TaskError naming the extra unless onnxruntime and tokenizers both import."""
    missing = []
    for package in EXTRA_PACKAGES:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise TaskError(f"the onnx: tasks need onnxruntime and tokenizers ({' and '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} not installed): pip install 'edgees[onnx]'")


def load_tokenizer(path: Path):
    """(encode(text) -> ids, pad id) from tokenizer.json."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"{path}: no such file; put the model's tokenizer.json next to the .onnx file") from None
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); use the model's tokenizer.json") from None
    vocab = (spec.get("model") or {}).get("vocab") or {}
    pad = ((spec.get("padding") or {}).get("pad_id") or
           next((vocab[t] for t in ("[PAD]", "<pad>", "<|pad|>") if isinstance(vocab, dict) and t in vocab), 0))
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 (the library's own message says what is wrong)
        raise TaskError(f"{path}: the tokenizers package cannot read it ({' '.join(str(exc).split())[:200]})") from None
    tok.no_padding()
    tok.no_truncation()
    return (lambda text: tok.encode(text).ids), int(pad)


class OnnxRewardTask(FileBacked, Task):
    description = "an ONNX reward model (text classifier/scorer) + tokenizer.json beside it; options label=, data="
    default_heldout = None

    def __init__(self, path: str, *, label=None, output: str | None = None, score: str = "logit",
                 input: str = "completion", data: str | None = None, max_length: int = 256,
                 batch_size: int = 16, max_tokens: int = 64, stop=None, chat: bool = True,
                 heldout_every: int = 5):
        self.name = f"onnx:{path}"
        require_packages()
        self.path = Path(path).expanduser()
        if score not in ("logit", "prob"):
            raise TaskError(f"task {self.name}: unknown score {score!r}; use score=logit or score=prob")
        if input not in ("completion", "prompt+completion"):
            raise TaskError(f"task {self.name}: unknown input {input!r}; use input=completion or prompt+completion")
        self.score, self.input = score, input
        self.max_length, self.batch_size = int(max_length), max(1, int(batch_size))
        self.max_tokens, self.stop, self.heldout_every = int(max_tokens), stop_list(stop), int(heldout_every)
        self.session = self._load_session()
        self.encode, self.pad_id = load_tokenizer(self.path.parent / "tokenizer.json")
        self.output = self._choose_output(output)
        self.label = self._choose_label(label)
        self.chat = self.chat_builtin = self._chat_opt = chat
        self.records = None
        if data is not None:
            self.path = Path(data)
            self._load()

    def _read(self, torn_ok: bool) -> list:
        records = load_jsonl(self.path, need_answer=False, chat=self._chat_opt, torn_ok=torn_ok)
        self.chat = any(isinstance(r.prompt, list) for r in records)
        return records

    def refresh(self) -> bool:
        """Re-read a grown data file (FileBacked); the built-in prompts never change."""
        return False if self.records is None else FileBacked.refresh(self)

    # ---- model ---------------------------------------------------------------------------------
    def _load_session(self):
        if not self.path.is_file():
            raise TaskError(f"{self.path}: no such file; give the path of an .onnx reward model")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 (onnxruntime raises its own types)
            raise TaskError(f"{self.path}: onnxruntime cannot load it ({' '.join(str(exc).split())[:200]}); "
                            "export the model to ONNX again") from None
        names = [i.name for i in session.get_inputs()]
        for i in session.get_inputs():
            if i.name not in ALLOWED_INPUTS or i.type not in ("tensor(int64)", "tensor(int32)") or len(i.shape) != 2:
                raise TaskError(f"{self.path}: unexpected model input {i.name!r} ({i.type}, shape {i.shape}); "
                                "a text reward model takes input_ids [batch, seq] and optionally "
                                "attention_mask, token_type_ids")
        if "input_ids" not in names:
            raise TaskError(f"{self.path}: the model has no input_ids input (inputs: {', '.join(names)}); "
                            "export it with input_ids")
        return session

    def _choose_output(self, output):
        outs = self.session.get_outputs()
        if output is None:
            chosen = outs[0]
        else:
            chosen = next((o for o in outs if o.name == output), None)
            if chosen is None:
                raise TaskError(f"{self.path}: no output {output!r} (outputs: {', '.join(o.name for o in outs)}); "
                                "pass output=NAME")
        if len(chosen.shape) not in (1, 2):
            raise TaskError(f"{self.path}: output {chosen.name!r} has shape {chosen.shape}; a reward model "
                            "outputs [batch] or [batch, labels] (pick another with output=NAME)")
        self.n_labels = chosen.shape[1] if len(chosen.shape) == 2 and isinstance(chosen.shape[1], int) else None
        return chosen.name

    def _choose_label(self, label):
        if isinstance(label, str) and not label.lstrip("-").isdigit():
            config = self.path.parent / "config.json"
            id2label = {}
            if config.is_file():
                try:
                    id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label") or {}
                except (json.JSONDecodeError, AttributeError):
                    id2label = {}
            found = [int(k) for k, v in id2label.items() if str(v).lower() == label.lower()]
            if not found:
                raise TaskError(f"{self.path}: label {label!r} is not in {config}'s id2label "
                                f"({', '.join(map(str, id2label.values())) or 'none'}); pass label=INDEX")
            label = found[0]
        if label is None:
            return -1
        label = int(label)
        if self.n_labels is not None and not -self.n_labels <= label < self.n_labels:
            raise TaskError(f"{self.path}: label={label} but the model has {self.n_labels} labels; pass "
                            f"label=0..{self.n_labels - 1}")
        return label

    def scores(self, texts: Sequence[str]) -> list[float]:
        """The reward model's score of each text, in batches of batch_size."""
        import numpy as np

        wanted = {i.name: i.type for i in self.session.get_inputs()}
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            ids = [self.encode(t)[: self.max_length] or [self.pad_id] for t in texts[start:start + self.batch_size]]
            width = max(len(x) for x in ids)
            ids_bs = np.full((len(ids), width), self.pad_id, dtype=np.int64)
            mask_bs = np.zeros((len(ids), width), dtype=np.int64)
            for row, x in enumerate(ids):
                ids_bs[row, : len(x)] = x
                mask_bs[row, : len(x)] = 1
            feed = {"input_ids": ids_bs, "attention_mask": mask_bs, "token_type_ids": np.zeros_like(ids_bs)}
            feed = {k: (v.astype(np.int32) if wanted[k] == "tensor(int32)" else v) for k, v in feed.items() if k in wanted}
            (logits,) = self.session.run([self.output], feed)
            logits = np.asarray(logits, dtype=np.float64)
            if logits.ndim == 1 or logits.shape[1] == 1:
                x = logits.reshape(len(ids))
                vals = x if self.score == "logit" else 1.0 / (1.0 + np.exp(-x))
            else:
                if not -logits.shape[1] <= self.label < logits.shape[1]:
                    raise TaskError(f"{self.path}: label={self.label} but the model outputs {logits.shape[1]} labels")
                if self.score == "logit":
                    vals = logits[:, self.label]
                else:
                    e = np.exp(logits - logits.max(axis=1, keepdims=True))
                    vals = (e / e.sum(axis=1, keepdims=True))[:, self.label]
            out.extend(float(v) for v in vals)
        bad = [v for v in out if not math.isfinite(v)]
        if bad:
            raise TaskError(f"{self.path}: the model returned a non-finite score ({bad[0]}); check the export")
        return out

    # ---- task ----------------------------------------------------------------------------------
    def _split_all(self, n_train, n_heldout):
        if self.records is None:
            train, heldout = hash_split(BUILTIN_PROMPTS, key=lambda p: ("onnx", p), heldout_every=self.heldout_every)
            make = lambda p: Example(prompt=user(p) if self.chat_builtin else p, fields={})  # noqa: E731
            return [make(p) for p in train], [make(p) for p in heldout]
        train, heldout = split_records(self.records, self.heldout_every, self.path)
        make = lambda r: Example(prompt=r.prompt, fields=r.fields)  # noqa: E731
        return [make(r) for r in train], [make(r) for r in heldout]

    def _text(self, example: Example, completion: str) -> str:
        if self.input == "completion":
            return completion
        p = example.prompt
        if isinstance(p, list):
            p = next((m["content"] for m in reversed(p) if m.get("role") == "user"), "")
        return f"{p}\n{completion}"

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        check_lengths(self.name, examples, completions)
        return self.scores([self._text(e, c) for e, c in zip(examples, completions)])

    def metrics(self, examples, completions) -> dict[str, float]:
        return {"reward": mean(self.rewards(examples, completions))}
