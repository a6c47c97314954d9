"""The adapted model as a GGUF: a run's weights after step t, written beside the user's files.

    export_gguf("runs/demo", "adapted.gguf")              # the weights after the last step
    export_gguf("runs/demo", "adapted.gguf", step="best") # the best held-out step's (run/best.py)

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

import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from edgees import __version__
from edgees.errors import EdgeesError
from edgees.gguf.writer import write_with_metadata
from edgees.run.best import Best, best_step
from edgees.run.log import RunDir, log_sha256
from edgees.run.rebuild import rebuild_run

RUN_FILES = ("run.json", "steps.log", "metrics.jsonl", "run.lock", "curve.png")  # never an export's -o


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(out: Path, run_path: Path, protected: list[Path], force: bool,
                 example: str = "adapted.gguf") -> None:
    """Refuse to write over the base model, the user's input file or the run's own files; refuse
    an existing OUT unless force. `example` is the file name the directory error suggests."""
    for p in protected + [run_path / n for n in RUN_FILES]:
        if _same_file(out, p):
            raise EdgeesError(f"-o {out} is {p}: refusing to overwrite it; choose another output path")
    if out.is_dir():
        raise EdgeesError(f"-o {out} is a directory; give a file name, e.g. {out / example}")
    if not out.parent.is_dir():
        raise EdgeesError(f"-o {out}: directory {out.parent} does not exist; create it first")
    if out.exists() and not force:
        raise EdgeesError(f"{out} exists; pass --force to replace it")


def export_gguf(run_path, out, step: int | str | None = None, model=None, force: bool = False,
                threads: int | None = None,
                progress: Callable[[int, int], None] | None = None, checkpoints: bool = True) -> dict:
    """Write the run's weights after `step` steps (default: all logged; "best": the best held-out
    step, run/best.py) as a GGUF at `out`, from the newest matching checkpoint (checkpoints=False:
    replayed from the base)."""
    run_path, out = Path(run_path), Path(out)
    step, best, warnings = resolve_step(run_path, step)
    protected = [Path(model)] if model is not None else []
    header = RunDir(run_path).read_header()
    protected.append(Path(header.get("base_model", "")))
    check_output(out, run_path, protected, force)
    with rebuild_run(run_path, model, step, check="last", threads=threads, progress=progress,
                     checkpoints=checkpoints) as r:
        check_output(out, run_path, protected + [r.base_path], force)
        result = write_live(run_path, r.header, r.wc, r.state.sha256(), r.step, out)
    return {**result, "steps_logged": len(r.records), "torn": r.torn, "base_model": str(r.base_path),
            "base_name": r.header.get("base_name"),
            "from_checkpoint": r.checkpoint_step, "warnings": warnings + r.warnings,
            "best": None if best is None else asdict(best)}


def resolve_step(run_path: Path, step: int | str | None) -> tuple[int | None, Best | None, list[str]]:
    """(step to export: None = the last, the best step when asked for, warnings). step="best" on a
    run whose metrics name no primary metric (made before edgees recorded it) is the last step,
    with a warning saying so."""
    if step is None or step == "last":
        return None, None, []
    if step != "best":
        return int(step), None, []
    from edgees.run import checkpoint
    run = RunDir(run_path)
    best = best_step(run.read_metrics(), len(run.read_steps(checkpoint.log_claim(run_path))))
    if best is None:
        return None, None, [f"{run_path}'s held-out evaluations name no primary metric (a run made before "
                            "edgees recorded it, or none ran): exporting the last step"]
    return best.step, best, []


def write_live(run_path, header: dict, wc, weights_sha256: str, step: int, out) -> dict:
    """Write the weights a process holds live (a working copy after `step` logged steps: the
    trainer at the end of a run, the daemon, a rebuild) as a GGUF at `out`: one pass over the
    file, no replay. The caller has checked `out` (check_output)."""
    run_path, out = Path(run_path), Path(out)
    meta = {"edgees.base_sha256": header["base_sha256"], "edgees.step": step,
            "edgees.log_sha256": log_sha256(run_path / "steps.log", step),
            "edgees.version": __version__}
    wc.flush()
    sha, size = write_with_metadata(wc.path, out, meta, drop_prefix="edgees.")
    return {"out": str(out), "step": step, "base_sha256": meta["edgees.base_sha256"],
            "log_sha256": meta["edgees.log_sha256"], "weights_sha256": weights_sha256,
            "sha256": sha, "bytes": size, "version": __version__}
