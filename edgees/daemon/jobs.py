"""A daemon job: one TOML file naming a model, a task, a QES config, a budget and a publish target.

    name = "mail-triage"                 # [A-Za-z0-9_.-], the run dir's and published files' name
    model = "smollm2-135m"               # registry name or path (relative to workdir)
    task = "jsonl:triage.jsonl"
    threads = 1                          # llama.cpp threads (default 1: polite)
    batch = 32
    workdir = "/home/me/triage"          # relative paths resolve here (default: the file's dir)

    [task_opt]
    reward = "likelihood"
    [config]                             # QESConfig fields (steps goes in [budget])
    sigma = 0.01
    [budget]
    steps = 200                          # total steps of the job (default: no end with minutes)
    minutes = 30                         # at most 30 minutes of training a (local) day
    [publish]                            # optional: no table, nothing is published
    dir = "/home/me/models"              # default: <data dir>/daemon/published
    every = 10                           # evaluate held-out and maybe publish every 10 steps
    keep = 3                             # published versions kept
    margin = 0.0                         # publish unless worse than the last published by more
    hook = "ollama create triage -f Modelfile"   # run with EDGEES_PUBLISHED=<path>
    to = "ollama:triage"                 # or "lmstudio[:PUBLISHER/MODEL]", "llama-server:URL" (the
                                         # server's --models-dir is `dir`): as `edgees export --to`

Every problem is a JobError naming the file, the key and the fix, on one line.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from edgees.errors import EdgeesError
from edgees.fileio import atomic_write
from edgees.qes.algorithm import QESConfig
from edgees.run import config as run_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SLICE_STEPS = 10  # steps a job runs before the next job's turn when it publishes nothing
TOP = {"name": str, "model": str, "task": str, "threads": int, "batch": int, "workdir": str}
TABLES = ("task_opt", "config", "budget", "publish")
BUDGET = {"steps": int, "minutes": float}
FOREVER = 1 << 62  # budget.steps of a job given only minutes: it trains every day, without end
PUBLISH = {"dir": str, "every": int, "keep": int, "margin": float, "hook": str, "to": str}
KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string in quotes"}


class JobError(EdgeesError):
    """A job file that cannot run: not TOML, an unknown key, a wrong type or value."""

    exit_code = 2


@dataclass(frozen=True)
class Publish:
    dir: Path
    every: int = 10
    keep: int = 3
    margin: float = 0.0
    hook: str | None = None
    to: str | None = None  # a publishing target, as `edgees export --to` takes (stores/publish.py)


@dataclass(frozen=True)
class Job:
    name: str
    model: str
    task: str
    cfg: QESConfig
    workdir: Path
    task_opt: dict = field(default_factory=dict)
    threads: int = 1
    batch: int = 32
    publish: Publish | None = None
    minutes: float | None = None  # [budget] minutes: wall time a day (daemon/budget.py)
    path: Path | None = None  # the file it came from
    config_keys: frozenset = frozenset()  # the [config] keys the file sets (resume_config)

    @property
    def steps(self) -> int:
        return self.cfg.steps

    def slice_end(self, done: int) -> int:
        """The step the job's next turn runs to: the next publish point (or SLICE_STEPS on)."""
        every = self.publish.every if self.publish else SLICE_STEPS
        return min(self.steps, (done // every + 1) * every)


def _typed(where: str, key: str, value, kind: type):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise JobError(f"{where}: {key} must be {KIND_NAMES[kind]}, not {value!r}; fix the job file")


def _table(where: str, raw: dict, name: str, known: dict) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise JobError(f"{where}: {name} must be a table ([{name}] on its own line, then key = value lines)")
    out = {}
    for key, v in value.items():
        if key not in known:
            raise JobError(f"{where}: unknown key {key!r} in [{name}]; the keys are {', '.join(known)}")
        out[key] = _typed(where, f"{name}.{key}", v, known[key])
    return out


def parse_job(text: str, path: Path | None = None, default_name: str | None = None) -> Job:
    """A Job from a job file's text; relative paths stay relative to its workdir. Raises JobError."""
    where = str(path) if path else "job"
    try:
        raw = tomllib.loads(text)
    except ValueError as exc:
        raise JobError(f"{where}: not a valid TOML file ({' '.join(str(exc).split())}); "
                       "write `key = value` lines, then [tables]") from None
    for key in raw:
        if key not in TOP and key not in TABLES:
            raise JobError(f"{where}: unknown key {key!r}; the keys are {', '.join(TOP)} and the tables "
                           f"{', '.join('[' + t + ']' for t in TABLES)}")
    top = {k: _typed(where, k, v, TOP[k]) for k, v in raw.items() if k in TOP}
    for key in ("model", "task"):
        if not top.get(key):
            raise JobError(f'{where}: no {key}; add a line {key} = "..." at the top of the job file')
    name = top.get("name") or default_name
    if not name or not NAME_RE.match(name):
        raise JobError(f"{where}: name {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                       "(it names the run dir and the published files)")
    qes_kinds = {f.name: QESConfig.kind(f.name) for f in fields(QESConfig)}
    config = _table(where, raw, "config", qes_kinds)
    if "steps" in config:
        raise JobError(f"{where}: steps goes in [budget] (steps = N), not in [config]")
    budget = _table(where, raw, "budget", BUDGET)
    minutes = budget.get("minutes")
    task_opt = raw.get("task_opt", {})
    if not isinstance(task_opt, dict) or not all(isinstance(v, (str, int, float, bool)) for v in task_opt.values()):
        raise JobError(f"{where}: [task_opt] must be a table of strings, numbers or true/false")
    cfg = QESConfig(**config, steps=budget.get("steps", QESConfig.steps if minutes is None else FOREVER))
    problems = [f"config.{k} {what}" if k != "steps" else f"budget.steps {what}" for k, what in cfg.problems()]
    if cfg.steps < 1:
        problems.append("budget.steps must be >= 1")
    if minutes is not None and not 0 < minutes <= 1440:
        problems.append("budget.minutes must be in (0, 1440] (minutes of training a day)")
    publish = None
    if "publish" in raw:
        p = _table(where, raw, "publish", PUBLISH)
        from edgees.daemon.paths import published_dir
        publish = Publish(dir=Path(p.pop("dir", None) or published_dir()), **p)
        if publish.every < 1 or publish.keep < 1:
            problems.append("publish.every and publish.keep must be >= 1")
        if publish.margin < 0:
            problems.append("publish.margin must be >= 0")
        if publish.to is not None:
            from edgees.stores.publish import parse_target
            try:
                parse_target(publish.to, Path(f"{name}.gguf"), form='[publish] to = "{}"')
            except EdgeesError as exc:
                problems.append(str(exc))
    for key in ("threads", "batch"):
        if key in top and top[key] < 1:
            problems.append(f"{key} must be >= 1")
    if problems:
        raise JobError(f"{where}: " + "; ".join(problems))
    workdir = Path(top.get("workdir") or (path.parent if path else os.getcwd()))
    return Job(name=name, model=top["model"], task=top["task"], cfg=cfg, workdir=workdir,
               task_opt={k.replace("-", "_"): v for k, v in task_opt.items()},
               threads=top.get("threads", 1), batch=top.get("batch", 32), publish=publish, minutes=minutes,
               path=path, config_keys=frozenset(config))


def task_defaults(job: Job, reward_mode: str) -> QESConfig:
    """The config a job starts a new run with: the file's, with run/config.task_defaults() for the
    keys its [config] does not set, as finetune's run/config.for_task."""
    unset = {k: v for k, v in run_config.task_defaults(reward_mode).items() if k not in job.config_keys}
    return replace(job.cfg, **unset) if unset else job.cfg


def resume_config(job: Job, header: dict) -> QESConfig:
    """The config a job resumes its run with: the file's, except that a field the run predates (its
    run.json does not record it) and the file does not set keeps the value the run ran with (the
    field's "absent" metadata: alpha_decay 0), and a field whose default follows the task
    (TASK_DEFAULTED) keeps the value run.json records, as `finetune --resume` does; a new default
    never changes a running job's course unless its file asks for it."""
    recorded = header.get("config", {})
    keep = {**QESConfig.predated(header), **{k: recorded[k] for k in run_config.TASK_DEFAULTED if k in recorded}}
    keep = {k: v for k, v in keep.items() if k not in job.config_keys}
    return replace(job.cfg, **keep) if keep else job.cfg


def read_job(path: Path) -> Job:
    """The job in a file of the jobs dir (its name defaults to the file's stem)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"{path}: cannot read the job file ({exc}); write it as UTF-8 TOML") from None
    job = parse_job(text, path, default_name=path.stem)
    if job.name != path.stem:
        raise JobError(f"{path}: name {job.name!r} differs from the file's name; name the file {job.name}.toml")
    return job


def toml_value(value) -> str:
    from edgees.run.config import toml_value as tv
    return tv(str(value) if isinstance(value, Path) else value)


def job_text(name: str, model: str, task: str, workdir: str, task_opt: dict, config: dict, steps: int | None,
             publish: dict | None, threads: int | None = None, minutes: float | None = None) -> str:
    """A job file for `edgees daemon submit MODEL --task T ...` (no file of the user's)."""
    lines = [f"name = {toml_value(name)}", f"model = {toml_value(model)}", f"task = {toml_value(task)}",
             f"workdir = {toml_value(workdir)}"]
    if threads is not None:
        lines.append(f"threads = {threads}")
    for table, values in (("task_opt", task_opt), ("config", config),
                          ("budget", {"steps": steps, "minutes": minutes}), ("publish", publish)):
        if values is None:
            continue
        lines += ["", f"[{table}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def check_tensors(job: Job) -> None:
    """A [config] tensors glob that matches no trainable tensor of the job's model is the one-line
    error finetune gives, at submit rather than when the job starts; a model not there yet (not
    pulled, a file still to come) is left to the job's start, which resolves it again."""
    if not job.cfg.tensors:
        return
    from edgees.errors import ModelNotFound
    from edgees.gguf.reader import read_gguf
    from edgees.models import resolve_model
    from edgees.qes.trainable import trainable_tensors

    file = job.workdir / Path(job.model).expanduser()  # as the runner resolves it: from the workdir
    try:
        path = resolve_model(file if file.is_file() else job.model)
    except ModelNotFound:
        return
    trainable_tensors(read_gguf(path), job.cfg.include_embeddings, job.cfg.tensors)


def submit(text: str, source: Path | None, jobs: Path, name: str | None = None) -> Job:
    """Check a job file's text and write it as <jobs>/<name>.toml atomically; a file of the
    user's gets `workdir` (its own dir) added so its relative paths keep working from there."""
    job = parse_job(text, source, default_name=name or (source.stem if source else None))
    if name and job.name != name:
        raise JobError(f"{source}: name {job.name!r} in the file differs from --name {name}; drop one")
    if source is not None and "workdir" not in tomllib.loads(text):
        text = f"workdir = {toml_value(str(source.resolve().parent))}\n" + text
    if "name" not in tomllib.loads(text):
        text = f"name = {toml_value(job.name)}\n" + text
    check_tensors(job)
    jobs.mkdir(parents=True, exist_ok=True)
    out = jobs / f"{job.name}.toml"
    atomic_write(out, text.encode())
    return parse_job(text, out)
