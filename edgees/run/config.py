"""A run's settings from the command line, a --config TOML file and run.json, resolved in one place.

QESConfig (qes/algorithm.py) holds what a run computes, and run.json records it; RunOptions below
holds how a run executes (the task, threads, batch, time budget, the executor and its workers). A
config file is flat TOML with keys of both, and the task's options as a [task_opt] table at the end:

    task = "arithmetic"
    steps = 80
    sigma = 0.01
    threads = 2

    [task_opt]
    max_tokens = 16

Precedence, highest first (as mlx-lm does): the command line, the config file, run.json on
--resume, the defaults. task_opt merges option by option. A key of neither kind, a value of the
wrong type or out of range is a ConfigError naming the key and where it was set.
"""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from edgees.errors import EdgeesError
from edgees.qes.algorithm import QESConfig, default_alpha_decay
from edgees.tasks.base import TEACHER_FORCED

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

SOURCES = ("default", "run.json", "file", "cli")  # lowest precedence first
EXECUTORS = ("local", "ray")  # run/executor.py, scale/executor.py
KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string in quotes"}
EXAMPLES = {int: 2, float: 30.0, str: "arithmetic"}  # for settings whose default is "not set"


class ConfigError(EdgeesError):
    """A --config file that is missing or not TOML, or a setting with an unknown key, a wrong type
    or a value out of range."""

    exit_code = 2


@dataclass(frozen=True)
class RunOptions:
    """How a run executes, beside QESConfig's what: none of it changes the log's arithmetic, so all
    of it may change on --resume except the task (run.json records task and task_opt)."""

    task: str | None = field(default=None, metadata={
        "kind": str, "help": "task name or spec (`edgees tasks ls`); required, here or in --config"})
    threads: int | None = field(default=None, metadata={
        "kind": int, "unset": "all CPUs", "help": "compute threads (default: all CPUs)"})
    batch: int = field(default=32, metadata={
        "kind": int, "help": "most sequences decoded together (default 32)"})
    minutes: float | None = field(default=None, metadata={
        "kind": float, "unset": "no time budget",
        "help": "time budget: start no new step after this many minutes (resume continues); without --steps, the run goes on until the budget"})
    executor: str = field(default="local", metadata={
        "kind": str, "help": "who evaluates a step's members: local (this process) or ray (Ray worker "
                             "processes, here or on a cluster; pip install 'edgees[ray]'). The log is the same"})
    address: str | None = field(default=None, metadata={
        "kind": str, "unset": "a local Ray on 127.0.0.1",
        "help": "with --executor ray: the address of a Ray cluster (HOST:PORT, as `ray start --head` prints it); "
                "default: a private local Ray on 127.0.0.1, stopped at the end"})
    workers: int | None = field(default=None, metadata={
        "kind": int, "unset": "as many as the CPUs allow",
        "help": "with --executor ray: worker processes, each with its own copy of the model (default: the "
                "cluster's CPUs / --threads-per-worker, and more as machines join the cluster)"})
    threads_per_worker: int = field(default=1, metadata={
        "kind": int, "help": "with --executor ray: compute threads per worker (default 1); a run's rewards "
                             "are the same at the same threads per evaluating process"})
    task_opt: dict = field(default_factory=dict, metadata={
        "kind": dict, "help": "the task's options (edgees tasks show TASK lists them)"})

    @classmethod
    def help(cls, name: str) -> str:
        """A field's help text (its flag's, in every command that has the flag)."""
        return next(f.metadata["help"] for f in fields(cls) if f.name == name)

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong with it) for every out-of-range field."""
        out = [(name, "must be at least 1") for name in ("threads", "batch", "workers", "threads_per_worker")
               if getattr(self, name) is not None and getattr(self, name) < 1]
        if self.executor not in EXECUTORS:
            out.append(("executor", f"must be one of {', '.join(EXECUTORS)}"))
        elif self.executor == "local":
            out += [(name, "needs --executor ray") for name in ("address", "workers")
                    if getattr(self, name) is not None]
        if self.minutes is not None and not self.minutes > 0:
            out.append(("minutes", "must be > 0 (leave it out for no time budget)"))
        return out


@dataclass(frozen=True)
class Resolved:
    """The settings of one command, and where each came from: sources maps every key of cfg and
    opts ("steps", "task_opt.max_tokens"...) to one of SOURCES."""

    cfg: QESConfig
    opts: RunOptions
    sources: dict[str, str]
    config_file: str | None = None

    def label(self, key: str) -> str:
        """Where a key's value came from, for a person: command line, the file's path, run.json, default."""
        source = self.sources.get(key, "default")
        if key == "alpha" and source == "default":
            return "default: 0.25 x sigma x pairs"
        if key == "alpha_decay" and source == "default":
            return "default for the task's reward"
        return {"cli": "command line", "file": str(self.config_file)}.get(source, source)


def kinds() -> dict[str, type]:
    """Every key a config file may hold -> the type of its value (QESConfig's fields first)."""
    out = {f.name: QESConfig.kind(f.name) for f in fields(QESConfig)}
    out.update({f.name: f.metadata["kind"] for f in fields(RunOptions)})
    return out


def config_keys_help() -> str:
    """The accepted keys, for a command's --help."""
    qes = ", ".join(f.name for f in fields(QESConfig))
    run = ", ".join(f.name for f in fields(RunOptions) if f.name != "task_opt")
    return f"{qes}, {run}, and a [task_opt] table"


def load_file(path) -> dict:
    """A config file's settings, checked: {key: value}, task_opt a dict. Raises ConfigError."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; check the path given to --config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); "
                          "give --config a readable TOML file") from None
    except ValueError as exc:  # TOMLDecodeError, or bytes that are not UTF-8
        what = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not a valid TOML file ({what}); write one `key = value` per line") from None
    known = kinds()
    out: dict = {}
    for key, value in raw.items():
        if key not in known:
            near = difflib.get_close_matches(key.replace("-", "_"), known, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ConfigError(f"{path}: unknown key {key!r}; {hint}the keys are {config_keys_help()}")
        if key == "task_opt":
            out[key] = _task_opt(value, path)
        else:
            out[key] = _typed(key, value, known[key], path)
    return out


def resolve(cli: dict, config_file=None, header: dict | None = None) -> Resolved:
    """The settings with precedence cli > config file > run.json header > defaults.

    cli: the values given on the command line only (a flag left out is no key; task_opt a dict).
    Raises ConfigError for a bad file, no task at all, or a value out of range (naming its source).
    """
    file = load_file(config_file) if config_file else {}
    recorded: dict = {}
    if header:
        # what the run ran with: its recorded fields, and a field it predates at its "absent" value
        keep = set(header.get("config", {})) | set(QESConfig.predated(header))
        recorded = {k: v for k, v in asdict(QESConfig.from_header(header)).items() if k in keep}
        recorded["task"] = header.get("task")
        recorded["task_opt"] = dict(header.get("task_options") or {})
    defaults = {**{f.name: f.default for f in fields(QESConfig)}, **asdict(RunOptions())}  # alpha None: derived
    values: dict = {}
    task_opt: dict = {}
    sources: dict[str, str] = {}
    for source, layer in zip(SOURCES, (defaults, recorded, file, cli)):
        for key, value in layer.items():
            if key == "task_opt":
                task_opt.update(value)
                sources.update({f"task_opt.{k}": source for k in value})
            else:
                values[key] = value
                sources[key] = source
    values["task_opt"] = task_opt
    res = Resolved(QESConfig(**{f.name: values[f.name] for f in fields(QESConfig)}),
                   RunOptions(**{f.name: values[f.name] for f in fields(RunOptions)}),
                   sources, str(config_file) if config_file else None)
    problems = res.cfg.problems() + res.opts.problems()
    if problems:
        raise ConfigError("; ".join(f"{_where(res, name)} {what}" for name, what in problems))
    if res.opts.task is None:
        raise ConfigError('no task given: pass --task NAME (see `edgees tasks ls`) or set task = "NAME" '
                          "in a --config file")
    return res


TASK_DEFAULTED = ("alpha_decay",)  # the config fields whose default follows the task (task_defaults)


def task_defaults(reward_mode: str) -> dict:
    """{field: its default for a task with this reward} for the TASK_DEFAULTED fields: alpha_decay is
    default_alpha_decay() of whether the reward is scored on reference answers."""
    return {"alpha_decay": default_alpha_decay(reward_mode in TEACHER_FORCED)}


def for_task(res: Resolved, reward_mode: str) -> Resolved:
    """The settings with task_defaults() for the fields no source set."""
    unset = {k: v for k, v in task_defaults(reward_mode).items() if res.sources.get(k, "default") == "default"}
    return replace(res, cfg=replace(res.cfg, **unset)) if unset else res


def to_toml(res: Resolved, comments: list[str] = ()) -> str:
    """The resolved settings as a config file (each line says where its value came from): what
    finetune --dry-run prints, and a file --config reads back to the same settings."""
    lines = [f"# {c}" for c in comments]

    def add(key: str, value, unset: str = "not set") -> None:
        text = f"{key} = {toml_value(value)}" if value is not None else f"# {key} = ({unset})"
        lines.append(f"{text:<34} # {res.label(key)}")

    add("task", res.opts.task)
    for f in fields(QESConfig):
        add(f.name, getattr(res.cfg, f.name))
    for f in fields(RunOptions):
        if f.name not in ("task", "task_opt"):
            add(f.name, getattr(res.opts, f.name), f.metadata.get("unset", "not set"))
    lines += ["", "[task_opt]"]
    for key, value in res.opts.task_opt.items():
        lines.append(f"{key + ' = ' + toml_value(value):<34} # {res.label('task_opt.' + key)}")
    return "\n".join(lines) + "\n"


def toml_value(value) -> str:
    """A TOML literal for a bool, number or string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # repr of a float (0.01, 1e-05, inf, nan) is a TOML float
    return json.dumps(str(value)).replace("\x7f", "\\u007f")  # JSON escapes are TOML escapes; DEL is not allowed raw


def _typed(key: str, value, kind: type, path: Path):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # sigma = 1 means 1.0, and run.json keeps recording floats
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    default = {f.name: f.default for f in (*fields(QESConfig), *fields(RunOptions))}[key]
    example = toml_value(default if default is not None else EXAMPLES[kind])
    raise ConfigError(f"{path}: {key} must be {KIND_NAMES[kind]}, not {_shown(value)}; write e.g. {key} = {example}")


def _task_opt(value, path: Path) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: task_opt must be a table: a [task_opt] line, then one `key = value` per option")
    out = {}
    for key, v in value.items():
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigError(f"{path}: task_opt.{key} must be a string, a number or true/false, not {_shown(v)}")
        out[key.replace("-", "_")] = v
    return out


def _shown(value) -> str:
    if isinstance(value, (bool, int, float, str)):
        return toml_value(value)
    return f"a {'table' if isinstance(value, dict) else 'list' if isinstance(value, list) else type(value).__name__}"


def _where(res: Resolved, key: str) -> str:
    source = res.sources.get(key)
    if source == "cli":
        return "--" + key.replace("_", "-")
    if source == "file":
        return f"{res.config_file}: {key}"
    return f"{key} (from {source})"
