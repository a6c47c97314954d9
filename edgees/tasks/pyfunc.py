"""`python:MODULE:FUNCTION`: your own reward function, with the signature trl users know.

    # my_reward.py
    def brevity(prompts, completions, answer, **kwargs):
        return [1.0 if c.strip() == a else -len(c) / 100 for c, a in zip(completions, answer)]

    edgees eval MODEL --task python:my_reward.py:brevity --task-opt data=prompts.jsonl

MODULE is a path to a .py file (anything ending in .py or holding a path separator) or a dotted
import name. Prompts come from the JSONL file `data=PATH` (the forms jsonl: accepts; an answer is
optional). As in trl, the function gets the prompts as written in the file, the completions (plain
strings for string/raw prompts; [{"role": "assistant", "content": ...}] for chat-message prompts,
as trl passes conversational completions), and every other column of the file as a keyword argument
holding one value per example (None where a line lacks that key). It must return one finite number
per completion; anything else, or an exception, is a TaskError naming the function (and, for an
exception, the file and line where it was raised). The data file may grow while a daemon job trains
on it (refresh(), as jsonl: does): new lines join at step boundaries, old ones keep their side.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import traceback
from pathlib import Path
from typing import Sequence

from edgees.errors import TaskError
from edgees.tasks.base import Example, Task, check_lengths, is_finite_number, mean, stable_hash
from edgees.tasks.jsonl import FileBacked, load_jsonl, split_records, stop_list


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_function(module: str, function: str):
    """Import MODULE (path or dotted name) and return its callable FUNCTION."""
    label = f"{module}:{function}"
    if module.endswith(".py") or "/" in module or "\\" in module:
        path = Path(module).expanduser()
        if not path.is_file():
            raise TaskError(f"{path}: no such file (reward python:{label}); give the path of a .py file "
                            "or an importable module name")
        name = f"edgees_user_reward_{stable_hash(str(path.resolve())):x}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except SyntaxError as exc:
            raise TaskError(f"{exc.filename}:{exc.lineno}: syntax error in reward module ({exc.msg}); fix "
                            "the file") from None
        except Exception as exc:  # noqa: BLE001 (any import-time failure is the user's to fix)
            raise TaskError(f"{_where(exc, path)}: importing {path} failed: {type(exc).__name__}: "
                            f"{_one_line(exc)}; fix the module") from None
    else:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise TaskError(f"reward python:{label}: no module named {exc.name!r}; give a .py path or a "
                            "module on PYTHONPATH") from None
        except SyntaxError as exc:
            raise TaskError(f"{exc.filename}:{exc.lineno}: syntax error in reward module ({exc.msg}); fix "
                            "the file") from None
        except Exception as exc:  # noqa: BLE001
            raise TaskError(f"{_where(exc, None)}: importing {module} failed: {type(exc).__name__}: "
                            f"{_one_line(exc)}; fix the module") from None
    fn = getattr(mod, function, None)
    if fn is None:
        names = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
        raise TaskError(f"reward python:{label}: the module has no {function!r} (callables: "
                        f"{', '.join(names) or 'none'}); name an existing function")
    if not callable(fn):
        raise TaskError(f"reward python:{label}: {function!r} is a {type(fn).__name__}, not a function")
    return fn


def _where(exc: BaseException, prefer: Path | None) -> str:
    """file:line of the innermost frame in `prefer` (or the innermost frame at all)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if prefer is not None:
        mine = [f for f in frames if Path(f.filename).resolve() == prefer.resolve()]
        frames = mine or frames
    if not frames:
        return "<unknown>"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


class PythonRewardTask(FileBacked, Task):
    description = "your reward function f(prompts, completions, **fields) -> list[float] (trl signature); option data=PATH.jsonl"
    default_heldout = None

    def __init__(self, target: str, *, data: str | None = None, max_tokens: int = 64, stop=None,
                 chat: bool = True, heldout_every: int = 5):
        module, sep, function = target.rpartition(":")
        if not sep or not module or not function:
            raise TaskError(f"task spec python:{target} is incomplete; the form is python:MODULE:FUNCTION, "
                            "e.g. python:my_reward.py:score")
        if data is None:
            raise TaskError(f"task python:{target} needs its prompts: pass the option data=PATH (a JSONL "
                            "file, e.g. --task-opt data=prompts.jsonl)")
        self.name = f"python:{target}"
        self.label = target
        self.fn = load_function(module, function)
        self.module_path = Path(module) if module.endswith(".py") else None
        self.path = Path(data)
        self._chat_opt = chat
        self._load()
        self.max_tokens = int(max_tokens)
        self.stop = stop_list(stop)
        self.heldout_every = int(heldout_every)

    def _read(self, torn_ok: bool) -> list:
        records = load_jsonl(self.path, need_answer=False, chat=self._chat_opt, torn_ok=torn_ok)
        self.chat = any(isinstance(r.prompt, list) for r in records)
        self.columns = sorted({k for r in records for k in r.fields})
        return records

    def _split_all(self, n_train, n_heldout):
        train, heldout = split_records(self.records, self.heldout_every, self.path)
        make = lambda r: Example(prompt=r.prompt, fields=r.fields)  # noqa: E731
        return [make(r) for r in train], [make(r) for r in heldout]

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        check_lengths(self.name, examples, completions)
        examples = list(examples)
        prompts = [e.prompt for e in examples]
        comps = [[{"role": "assistant", "content": c}] if isinstance(e.prompt, list) else c
                 for e, c in zip(examples, completions)]
        columns = sorted({k for e in examples for k in e.fields})
        kwargs = {k: [e.fields.get(k) for e in examples] for k in columns}
        try:
            out = self.fn(prompts, comps, **kwargs)
        except Exception as exc:  # noqa: BLE001 (the user's code: report it, never crash the run)
            where = _where(exc, self.module_path)
            raise TaskError(f"{where}: reward function {self.label} raised {type(exc).__name__}: "
                            f"{_one_line(exc)[:300]}; fix the function") from None
        try:
            values = list(out)
        except TypeError:
            raise TaskError(f"reward function {self.label} returned a {type(out).__name__}, not a list; "
                            "return one float per completion") from None
        if len(values) != len(examples):
            raise TaskError(f"reward function {self.label} returned {len(values)} values for "
                            f"{len(examples)} completions; return one float per completion")
        for i, v in enumerate(values):
            if not is_finite_number(v):
                kind = "NaN or infinite" if _is_nonfinite(v) else f"not a number ({type(v).__name__} {v!r:.40})"
                raise TaskError(f"reward function {self.label} returned a value that is {kind} at index {i}; "
                                "return finite floats")
        return [float(v) for v in values]

    def metrics(self, examples, completions) -> dict[str, float]:
        return {"reward": mean(self.rewards(examples, completions))}


def _is_nonfinite(v) -> bool:
    try:
        return not isinstance(v, (str, bytes, bool)) and not math.isfinite(float(v))
    except (TypeError, ValueError):
        return False

