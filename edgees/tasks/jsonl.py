"""`jsonl:PATH`: the user's own prompts and reference answers, one JSON object per line.

Accepted line forms (the names trl and mlx-lm users have):
  {"prompt": "What is 2+2?", "answer": "4"}                  also "completion", "response", "target"
  {"question": "...", "answer": "..."}                        GSM8K-style
  {"prompt": [{"role": "user", "content": "..."}], "answer": "..."}
  {"messages": [{"role": "user", ...}, {"role": "assistant", "content": "4"}]}
                                                              the last assistant message is the answer
  {"text": "..."}                                             a raw prompt, no answer (python:/onnx: tasks)
A string prompt is sent as one user chat turn (option chat=false sends it raw); "text" is always raw.
An answer may be a string, a number, or a list of strings (any one counts). Other keys are kept as
fields (python: rewards receive them as keyword arguments). Blank lines are skipped.

Split: a "split" field ("train", or "heldout"/"test"/"valid"/"validation"/"eval") decides where a line
goes; otherwise a line is held out when the hash of its prompt is 0 mod `heldout_every` (so repeated
prompts never straddle the split). A line's side is a function of that line alone, so it never
changes as the file grows (an app appending while the daemon trains: refresh() re-reads the file when
its size or mtime changed). A file none of whose lines is held out is a TaskError naming the fixes
(a "split": "heldout" line, more lines, a smaller heldout_every): a small file often has none, and
borrowing a train line for held-out would hand it back to train once the file grows. Both sides keep
file order; n_heldout=None means all held-out.

Matching (option match=):
  exact    strict: equal after trimming and collapsing whitespace; lenient: equal ignoring case and
           edge punctuation, or the answer appears as whole words in the completion
  numeric  strict: the completion is just the number; lenient: its last number equals the answer
  regex    the answer is a Python regex; strict: fullmatch of the trimmed completion; lenient: search
Labels: when the answers are a small set of labels (match=exact, one string an answer, 2 to
MAX_LABELS distinct answers, each used MIN_PER_LABEL times on average over the file), the task is a
classification and the held-out metrics add `macro_f1`, the F1 score per label of the strict answers,
averaged over the labels: the primary metric. A model that gives one label to everything scores its
label's share on strict (0.25 of four balanced labels) but 2/(K+1)/K on macro_f1 (0.1), so a collapse
after a better version fails the publish gate and loses the best-step pick (labels.py). labels=false
reads such a file as plain answers (no macro_f1; strict leads): repeated answers that are not labels.
Reward: 1.0 strict, 0.5 lenient; otherwise a small shaping term so ES has a slope: exact 0.25 x
character similarity (difflib ratio), numeric 0.2 if the number appears at all plus 0.1 x closeness of
the last number, regex 0. reward=likelihood trains on the log-likelihood of the (first) reference
answer instead (exact and numeric; a regex is not a text to score). reward=labels, for a file of labels:
the right label's log-likelihood plus its log-probability among the file's labels (labels.py).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgees.errors import TaskError
from edgees.tasks.base import (Example, Task, bare_number, check_lengths, is_heldout, last_number, mean,
                               numbers_in, REWARD_MODES, stable_hash, user)
from edgees.tasks.labels import MAX_LABELS, MIN_PER_LABEL, label_counts, label_rewards, label_set, macro_f1

PROMPT_KEYS = ("prompt", "question", "messages", "text")
ANSWER_KEYS = ("answer", "completion", "response", "target")
HELDOUT_NAMES = {"heldout", "held-out", "test", "valid", "validation", "eval", "dev"}
EXAMPLE_LINE = '{"prompt": "What is 2+2?", "answer": "4"}'


@dataclass(frozen=True)
class Record:
    line: int
    prompt: Any        # str or list of chat messages
    answer: Any        # str, list of str, or None
    fields: dict       # every other key, plus "answer" when there is one
    split: str | None  # "train", "heldout" or None (hash decides)


def _fail(path, line, problem, fix):
    where = f"{path}:{line}" if line else f"{path}"
    raise TaskError(f"{where}: {problem}; {fix}")


def _check_messages(path, n, messages):
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        _fail(path, n, "chat messages must be a non-empty list of {\"role\": ..., \"content\": ...}",
              "fix the messages list")


def json_objects(path: str | Path, example: str, torn_ok: bool = False) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; every problem is a TaskError
    naming the file and line, with `example` as the form to write. torn_ok: a last line without its
    newline that does not parse is being appended by another program; it is left out (and read once
    complete: any strict prefix of a JSON object is invalid JSON, so a half line never passes)."""
    path = Path(path).expanduser()
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "no such file"
        _fail(path, 0, problem, f"give the path of a JSONL file (one JSON object per line, e.g. {example})")
    data = path.read_bytes()
    tail = b""
    if torn_ok and data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        data, tail = data[:cut], data[cut:]
        try:
            if isinstance(json.loads(tail.decode("utf-8")), dict):
                data, tail = data + tail, b""
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass  # torn: wait for its newline
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        _fail(path, 0, f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8 JSONL")
    out = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            _fail(path, n, f"not valid JSON ({exc.msg} at column {exc.colno})",
                  f"each line must be one JSON object, e.g. {example}")
        if not isinstance(obj, dict):
            _fail(path, n, f"a JSON {type(obj).__name__}, not an object", f"write objects like {example}")
        out.append((n, obj))
    return out


def load_jsonl(path: str | Path, *, need_answer: bool, chat: bool = True, torn_ok: bool = False) -> list[Record]:
    """Parse and validate a task file; every problem is a TaskError naming the file and line."""
    path = Path(path).expanduser()
    records = [_record(path, n, obj, need_answer, chat) for n, obj in json_objects(path, EXAMPLE_LINE, torn_ok)]
    if not records:
        _fail(path, 0, "no examples (the file is empty)", f"add one JSON object per line, e.g. {EXAMPLE_LINE}")
    return records


def file_stamp(path: str | Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of a file, None if it cannot be stat'ed: what refresh() compares."""
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class FileBacked:
    """For tasks whose examples are the records of one JSONL file that may grow while a run goes on
    (an app appends ratings). The subclass sets `path` and implements `_read(torn_ok)`; `_load()`
    reads at construction (strict), `refresh()` between steps (a line still being written waits)."""

    path: Path
    records: list
    _stamp: tuple | None = None

    def _read(self, torn_ok: bool) -> list:
        raise NotImplementedError

    def _load(self) -> None:
        self._stamp = file_stamp(self.path)  # before reading: a write during the read shows next time
        self.records = self._read(torn_ok=False)

    def refresh(self) -> bool:
        """Re-read the file if its size or mtime changed; True when the examples changed. A bad line
        is a TaskError once per change of the file (the old examples stay)."""
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        records = self._read(torn_ok=True)
        changed = records != self.records
        self.records = records
        return changed


def _record(path, n, obj, need_answer, chat) -> Record:
    answer = next((obj[k] for k in ANSWER_KEYS if k in obj), None)
    if "messages" in obj:
        messages = obj["messages"]
        _check_messages(path, n, messages)
        if messages[-1]["role"] == "assistant" and answer is None:
            answer, messages = messages[-1]["content"], messages[:-1]
        if not messages:
            _fail(path, n, "\"messages\" has only the assistant answer", "put the user turn before it")
        prompt = messages
    elif "prompt" in obj or "question" in obj:
        prompt = obj["prompt"] if "prompt" in obj else obj["question"]
        if isinstance(prompt, list):
            _check_messages(path, n, prompt)
        elif not isinstance(prompt, str) or not prompt.strip():
            _fail(path, n, "the prompt must be a non-empty string or a list of chat messages", "fix the prompt")
        elif chat:
            prompt = user(prompt)
    elif "text" in obj:
        prompt = obj["text"]
        if not isinstance(prompt, str) or not prompt.strip():
            _fail(path, n, "\"text\" must be a non-empty string", "fix the text")
    else:
        _fail(path, n, f"no prompt (keys: {', '.join(sorted(obj)) or 'none'})",
              "give a \"prompt\" (or \"messages\", \"question\", \"text\") field")
    if answer is not None:
        answer = _answer(path, n, answer)
    elif need_answer:
        _fail(path, n, "no answer", "give an \"answer\" (or \"completion\") field, or end \"messages\" "
              "with an assistant message")
    split = obj.get("split")
    if split is not None:
        name = str(split).strip().lower()
        if name not in HELDOUT_NAMES | {"train"}:
            _fail(path, n, f"unknown split {split!r}", "use \"train\" or \"heldout\" (or test/valid)")
        split = "train" if name == "train" else "heldout"
    fields = {k: v for k, v in obj.items() if k not in ("prompt", "question", "messages", "text", "split")}
    if answer is not None:
        fields["answer"] = answer
    return Record(n, prompt, answer, fields, split)


def _answer(path, n, value):
    if isinstance(value, bool) or not isinstance(value, (str, int, float, list)):
        _fail(path, n, f"the answer is a {type(value).__name__}", "give a string, a number or a list of strings")
    if isinstance(value, list):
        if not value or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            _fail(path, n, "an answer list must hold strings or numbers", "fix the answer list")
        return [str(v) for v in value]
    return str(value)


def side_of(record: Record, heldout_every: int) -> str:
    """"train" or "heldout": the record's "split" field, else its prompt's hash; a pure function of
    the line, so a line keeps its side forever however the file grows."""
    if record.split:
        return record.split
    h = stable_hash("jsonl", json.dumps(record.prompt, sort_keys=True))
    return "heldout" if is_heldout(h, heldout_every) else "train"


def split_records(records: list[Record], heldout_every: int, source="the file") -> tuple[list[Record], list[Record]]:
    """(train, heldout) in file order, each line by side_of (see module doc); no held-out line at all
    is a TaskError naming `source` and the fixes."""
    side = [side_of(r, heldout_every) for r in records]
    if records and "heldout" not in side:
        raise TaskError(f"{source}: none of its {len(records)} examples is held out (1 prompt in {heldout_every} is, "
                        'by its hash, so that the split never changes); mark some lines "split": "heldout", add '
                        "lines, or pass a smaller heldout_every (e.g. heldout_every=2)")
    return ([r for r, s in zip(records, side) if s == "train"],
            [r for r, s in zip(records, side) if s == "heldout"])


def stop_list(stop) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    return [str(s) for s in stop]


# ---- matching ------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_EDGE_PUNCT = " \t\n.,;:!?\"'`*()[]"


def _norm(s: str) -> str:
    return _WS.sub(" ", s).strip()


def _loose(s: str) -> str:
    return _norm(s).casefold().strip(_EDGE_PUNCT)


def match(mode: str, completion: str, answer: str) -> tuple[bool, bool, float]:
    """(strict, lenient, shaping term in [0, 1)) for one completion against one answer."""
    if mode == "exact":
        strict = _norm(completion) == _norm(answer)
        a = _loose(answer)
        c = _loose(completion)
        lenient = strict or c == a or (bool(a) and re.search(r"(?<!\w)" + re.escape(a) + r"(?!\w)", c) is not None)
        return strict, lenient, 0.25 * difflib.SequenceMatcher(None, c[:4 * len(a) + 16], a).ratio()
    if mode == "numeric":
        target = float(answer)
        strict = bare_number(completion) == target
        final = last_number(completion)
        lenient = final == target
        appears = target in numbers_in(completion)
        close = 0.0 if final is None else max(0.0, 1.0 - abs(final - target) / max(1.0, abs(target)))
        return strict, lenient, 0.2 * appears + 0.1 * close
    pattern = re.compile(answer)
    return pattern.fullmatch(completion.strip()) is not None, pattern.search(completion) is not None, 0.0


def best_match(mode, completion, answer) -> tuple[bool, bool, float]:
    answers = answer if isinstance(answer, list) else [answer]
    return max((match(mode, completion, a) for a in answers), key=lambda t: (t[0], t[1], t[2]))


class JsonlTask(FileBacked, Task):
    primary = "strict"  # the user wrote the answers: their exact form is the target (a label file: macro_f1)
    description = "your data: one JSON object per line (prompt/answer, messages, mlx-lm keys); option match=exact|numeric|regex"
    default_heldout = None  # all held-out lines

    def __init__(self, path: str, *, match: str = "exact", max_tokens: int = 64, stop=None,
                 chat: bool = True, heldout_every: int = 5, reward: str = "generate", labels: bool = True):
        if match not in ("exact", "numeric", "regex"):
            raise TaskError(f"task jsonl:{path}: unknown match {match!r}; use match=exact, numeric or regex")
        self.name = f"jsonl:{path}"
        if reward not in (*REWARD_MODES, "labels"):
            raise TaskError(f"task {self.name}: unknown reward {reward!r}; use reward=generate (score greedy "
                            "answers), likelihood (of the reference answer), margin, or labels (a file of labels: "
                            "the right label's probability among them)")
        self.reward_mode = reward
        if reward in ("likelihood", "margin", "labels") and match == "regex":
            raise TaskError(f"task {self.name}: reward={reward} scores a reference text, and with "
                            "match=regex the answers are patterns; use match=exact or numeric")
        self.path = Path(path)
        self.match = match
        self.max_tokens = int(max_tokens)
        self.stop = stop_list(stop)
        self.heldout_every = int(heldout_every)
        self._chat_opt = chat
        if labels not in (True, False):
            raise TaskError(f"task {self.name}: labels={labels!r}; use labels=false to read repeated answers "
                            "as plain answers, or leave it out")
        self._labels_opt = labels
        self._load()
        self._need_labels()

    def _read(self, torn_ok: bool) -> list[Record]:
        records = load_jsonl(self.path, need_answer=True, chat=self._chat_opt, torn_ok=torn_ok)
        for r in records:
            for a in (r.answer if isinstance(r.answer, list) else [r.answer]):
                self._check_answer(r.line, a)
        self.chat = any(isinstance(r.prompt, list) for r in records)
        answers = [_norm(r.answer) if isinstance(r.answer, str) else None for r in records]
        self.labels = label_set(answers) if self._labels_opt and self.match == "exact" else None
        self.primary = "macro_f1" if self.labels else "strict"
        return records

    def _check_answer(self, line, answer):
        if self.match == "numeric":
            try:
                ok = math.isfinite(float(answer))
            except ValueError:
                ok = False
            if not ok:
                _fail(self.path, line, f"answer {answer!r} is not a number (match=numeric)",
                      "give a number, or use match=exact")
        elif self.match == "regex":
            try:
                re.compile(answer)
            except re.error as exc:
                _fail(self.path, line, f"answer {answer!r} is not a valid regex ({exc})",
                      "fix the pattern, or use match=exact")

    def _split_all(self, n_train, n_heldout):
        train, heldout = split_records(self.records, self.heldout_every, self.path)
        make = lambda r: Example(prompt=r.prompt, fields=r.fields)  # noqa: E731
        return [make(r) for r in train], [make(r) for r in heldout]

    def reference(self, example: Example) -> str:
        answer = example.fields["answer"]
        return answer[0] if isinstance(answer, list) else answer

    def _need_labels(self) -> None:
        if self.reward_mode == "labels" and not self.labels:
            raise TaskError(f"task {self.name}: reward=labels needs a file of labels (match=exact, 2-{MAX_LABELS} "
                            f"distinct answers, {MIN_PER_LABEL}+ lines a label on average); use reward=likelihood")

    def train_rewards(self, engine, examples: Sequence[Example]) -> list[float]:
        """reward=labels: label_rewards() of each example's label; other modes as Task's."""
        if self.reward_mode != "labels":
            return super().train_rewards(engine, examples)
        self._need_labels()  # a refreshed file may have stopped being one
        examples = list(examples)
        labels = self.labels
        scores = engine.score([e.prompt for e in examples for _ in labels], labels * len(examples), end_turn=True)
        return label_rewards(scores, labels, [_norm(e.fields["answer"]) for e in examples])

    def _matches(self, examples, completions):
        check_lengths(self.name, examples, completions)
        return [best_match(self.match, c, e.fields["answer"]) for e, c in zip(examples, completions)]

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        return [1.0 if s else 0.5 if l else shaping for s, l, shaping in self._matches(examples, completions)]

    def metrics(self, examples, completions) -> dict[str, float]:
        m = self._matches(examples, completions)
        out = {"strict": mean([float(s) for s, _, _ in m]), "lenient": mean([float(l) for _, l, _ in m]),
               "reward": mean(self.rewards(examples, completions))}
        if self.labels and examples:
            out = {"macro_f1": macro_f1(*self._labelled(examples, completions)), **out}
        return out

    def _labelled(self, examples, completions) -> tuple[list[str], list[str | None]]:
        labels = set(self.labels)
        return ([_norm(e.fields["answer"]) for e in examples],
                [_norm(c) if _norm(c) in labels else None for c in completions])

    def label_report(self, examples, completions) -> list[dict] | None:
        """label_counts() of held-out completions for a file of labels (None for other files): which
        labels the model gets right, and which it answers too often (a collapse)."""
        if not self.labels:
            return None
        check_lengths(self.name, examples, completions)
        return label_counts(self.labels, *self._labelled(examples, completions))
