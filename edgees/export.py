"""A run's weights rebuilt from base file + log (verify, export), and the adapted model as a GGUF.

    with rebuild_run("runs/demo", check="all") as r:      # verify: every step's hash checked
        print(r.step, r.state.sha256())
    export_gguf("runs/demo", "adapted.gguf")              # the weights after the last step

The base model is the file run.json names (or `model`, an explicit path); its bytes are checked
against the run's sha256 on the working copy they were copied into, so what is rebuilt is exactly
what was hashed. The base file is only ever opened for reading.

The exported file is the base GGUF with only the trainable weight bytes changed: the base header's
metadata entries verbatim (minus any `edgees.*` left by an earlier export), four `edgees.*` entries
appended, the tensor-info table verbatim, padding to the alignment, then the working copy's data
section. Nothing in it depends on the clock or the machine, so two exports of one run (same edgees
version) are byte-identical. It is written to a temp file beside OUT, fsynced, checked, renamed over
OUT and the directory fsynced: OUT is the old file or the complete new one, never torn.

Metadata added (a base that is itself an export gets fresh values; base_sha256 names the file the
run was made on):
  edgees.base_sha256  str   sha256 of the base GGUF file
  edgees.step         u64   number of logged steps applied (records 0..step-1)
  edgees.log_sha256   str   sha256 of those records' lines as they are in steps.log, newlines included
  edgees.version      str   the edgees version that wrote the file
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgees import __version__
from edgees.errors import EdgeesError, GGUFError, RunError
from edgees.gguffile import WorkingCopy, read_gguf, rewrite_header, sha256_file
from edgees.runlog import STEPS_MAGIC, RunDir, StepRecord, fsync_dir, read_steps
from edgees.state import WeightState, rebuild

CHUNK = 8 << 20  # bytes per read/write when streaming the data section
RUN_FILES = ("run.json", "steps.log", "metrics.jsonl", "run.lock", "curve.png")


def log_sha256(steps_path: Path, n: int) -> str:
    """sha256 of the first n record lines of a step log (the magic line excluded)."""
    data = Path(steps_path).read_bytes()
    h, pos = hashlib.sha256(), len(STEPS_MAGIC)
    for i in range(n):
        end = data.find(b"\n", pos)
        if end < 0:
            raise RunError(f"{steps_path}: record {i} is missing; the log changed while being read")
        h.update(data[pos:end + 1])
        pos = end + 1
    return h.hexdigest()


@dataclass
class Rebuilt:
    """A run's weights at `step`, live in a working copy; close() (or `with`) frees the copy."""

    path: Path
    header: dict
    records: list[StepRecord]  # every complete record in the log (torn tail dropped)
    torn: bool  # the log ended in a torn record (a step in flight when the writer died)
    step: int  # records[:step] are applied
    base_path: Path
    wc: WorkingCopy
    state: WeightState

    def close(self) -> None:
        self.wc.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def base_model_path(header: dict, run_path: Path, model=None) -> Path:
    """The file to rebuild from: `model` if given, else run.json's base_model; it must exist."""
    if model is not None:
        p = Path(model).expanduser()
        if not p.is_file():
            raise EdgeesError(f"--model {model}: no such file; give the run's base .gguf")
        return p
    p = Path(header.get("base_model", ""))
    if not p.is_file():
        raise RunError(f"{run_path}: its base model {p} is gone; pass the base file with --model PATH "
                       f"(sha256 {str(header.get('base_sha256'))[:16]}...)")
    return p


def rebuild_run(run_path, model=None, step: int | None = None, check: str = "last",
                threads: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> Rebuilt:
    """Rebuild a run's weights after `step` logged steps (default: all) from its base file + log.

    check: "all" compares every step's weight hash with the log, "last" only the final one.
    Raises RunError for a base file that is not the run's (by sha256), a corrupted log (naming the
    line), a step beyond the log, or a rebuilt hash that differs from the logged one (naming the step).
    """
    run_path = Path(run_path)
    run = RunDir(run_path)
    header = run.read_header()
    records, _, torn = read_steps(run_path / "steps.log")
    if step is None:
        step = len(records)
    if not 0 <= step <= len(records):
        raise RunError(f"{run_path}: --step {step} is not in the log, which holds steps 0..{len(records)}; "
                       "give a step in that range")
    base = base_model_path(header, run_path, model)
    cfg = header.get("config", {})
    wc = WorkingCopy(base)
    try:
        got = sha256_file(wc.path)  # hash what was copied: exactly the bytes rebuilt from
        if got != header.get("base_sha256"):
            raise RunError(f"{base}: sha256 {got[:16]}... is not the run's base model "
                           f"({str(header.get('base_sha256'))[:16]}..., {header.get('base_model')}); "
                           "pass the file the run was made on with --model")
        state = WeightState(wc, ef=cfg.get("ef", "replay"), window=cfg.get("window", 50),
                            gamma=cfg.get("gamma", 0.9),
                            include_embeddings=bool(cfg.get("include_embeddings", False)),
                            threads=threads)
        rebuild(state, records, upto=step, check=check, progress=progress)
    except BaseException:
        wc.close()
        raise
    return Rebuilt(run_path, header, records, torn, step, base, wc, state)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(out: Path, run_path: Path, protected: list[Path], force: bool) -> None:
    """Refuse to write over the base model, the user's input file or the run's own files; refuse
    an existing OUT unless force."""
    for p in protected + [run_path / n for n in RUN_FILES]:
        if _same_file(out, p):
            raise EdgeesError(f"-o {out} is {p}: refusing to overwrite it; choose another output path")
    if out.is_dir():
        raise EdgeesError(f"-o {out} is a directory; give a file name, e.g. {out / 'adapted.gguf'}")
    if not out.parent.is_dir():
        raise EdgeesError(f"-o {out}: directory {out.parent} does not exist; create it first")
    if out.exists() and not force:
        raise EdgeesError(f"{out} exists; pass --force to replace it")


def export_gguf(run_path, out, step: int | None = None, model=None, force: bool = False,
                threads: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the run's weights after `step` steps (default: all logged) as a GGUF at `out`."""
    run_path, out = Path(run_path), Path(out)
    protected = [Path(model)] if model is not None else []
    header = RunDir(run_path).read_header()
    protected.append(Path(header.get("base_model", "")))
    check_output(out, run_path, protected, force)
    with rebuild_run(run_path, model, step, check="last", threads=threads, progress=progress) as r:
        check_output(out, run_path, protected + [r.base_path], force)
        meta = {"edgees.base_sha256": r.header["base_sha256"], "edgees.step": r.step,
                "edgees.log_sha256": log_sha256(run_path / "steps.log", r.step),
                "edgees.version": __version__}
        weights = r.state.sha256()
        r.wc.flush()
        sha, size = _write_atomic(r.wc.path, out, meta)
    return {"out": str(out), "step": r.step, "steps_logged": len(r.records), "torn": r.torn,
            "base_model": str(r.base_path), "base_sha256": meta["edgees.base_sha256"],
            "log_sha256": meta["edgees.log_sha256"], "weights_sha256": weights,
            "sha256": sha, "bytes": size, "version": __version__}


def _write_atomic(src: Path, out: Path, meta: dict) -> tuple[str, int]:
    """Stream base-header-with-meta + src's data section to a temp file beside out, fsync, check it
    is the same model, rename over out, fsync the dir. Returns (sha256, size) of what was written."""
    info = read_gguf(src)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    h, size = hashlib.sha256(), 0
    try:
        with open(src, "rb") as f, open(tmp, "xb") as g:
            head = rewrite_header(info, f.read(info.data_offset), meta, "edgees.")
            f.seek(info.data_offset)
            block = head
            while block:
                g.write(block)
                h.update(block)
                size += len(block)
                block = f.read(CHUNK)
            g.flush()
            os.fsync(g.fileno())
        _check_same_model(info, read_gguf(tmp), meta)
        os.replace(tmp, out)
    except OSError as exc:
        raise EdgeesError(f"cannot write {out}: {exc.strerror or exc}; free space or choose another -o") from None
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    fsync_dir(out.parent)
    return h.hexdigest(), size


def _check_same_model(base, new, meta: dict) -> None:
    """The written file must hold the base's tensors (name, type, shape, size, order) at the same
    offsets relative to the data section, and the new metadata."""
    rel = lambda g: [(t.name, t.type_id, t.shape, t.nbytes, t.offset - g.data_offset) for t in g.tensors]  # noqa: E731
    if rel(base) != rel(new) or any(new.metadata.get(k) != v for k, v in meta.items()) \
            or new.file_size - new.data_offset != base.file_size - base.data_offset:
        raise GGUFError(f"{new.path}: the written file does not match its base model's layout "
                        "(an edgees bug); the output was not replaced")
