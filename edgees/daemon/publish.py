"""Publishing a job's live weights: gated on held-out metrics, atomic, under a new name each time.

    <dir>/<name>-<step>.gguf        each published version (never overwritten: servers mmap them)
    <dir>/<name>.gguf               a symlink to the newest, switched atomically (temp link + rename)
    <dir>/<name>.history.jsonl      one line per version: step, metrics, the figure it beat, sha256

A job's `to` target then publishes the new version where people chat, by the code `edgees export
--to` runs (stores/publish.py): ollama:NAME (<dir>/<name>-<step>.Modelfile, `ollama create`),
lmstudio[:P/M] (a hard link or copy in LM Studio's tree, its last `keep` versions kept there too),
llama-server:URL (`dir` is the server's --models-dir; GET URL/models?reload=1). Like the hook, a
failing target is a warning in the log and in status, never a stop.

The gate: a candidate is published only if the task's primary held-out metric (Task.primary: the
figure a person reading the answers judges by, e.g. arithmetic's lenient; higher is better) is not
below the last published version's,
or the base model's before the first publish, by more than the job's margin. The file is written
from the weights the trainer holds (run/export.write_live: one pass over the model, no replay).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from pathlib import Path

from edgees.errors import EdgeesError
from edgees.fileio import fsync_dir, read_jsonl
from edgees.run.export import write_live
from edgees.stores import publish as targets

log = logging.getLogger("edgees.daemon")
HOOK_TIMEOUT = 600.0


def history(pub_dir: Path, name: str) -> list[dict]:
    """The publish history, oldest first (a torn last line from a crash: that version was not
    switched to, and is skipped)."""
    return read_jsonl(Path(pub_dir) / f"{name}.history.jsonl")


def gate(candidate: dict, reference: dict | None, key: str, margin: float) -> tuple[bool, str, str]:
    """(publish?, why, the metric compared) for candidate metrics against the reference (last published, or base).

    A reference without `key` (published before the task reported it: a label file's macro_f1 came
    after its strict) is compared on the first metric of the candidate's that it has, and the reason
    says so; with no metric in common, it publishes."""
    if reference is None:
        return True, "nothing to compare with", key
    note = ""
    if key not in reference:
        shared = [k for k, v in candidate.items() if k not in ("seconds", "n") and isinstance(v, (int, float))
                  and isinstance(reference.get(k), (int, float))]
        if not shared:
            return True, f"nothing to compare with ({key} is not in the reference)", key
        note = f" ({key} is not in the reference)"
        key = shared[0]
    new, old = candidate[key], reference[key]
    if new >= old - margin:
        return True, f"{key} {new:.4f} vs {old:.4f} (margin {margin:g}){note}", key
    return False, f"{key} {new:.4f} is worse than {old:.4f} by more than the margin {margin:g}{note}", key


def publish(job, run_path: Path, header: dict, wc, weights_sha256: str, step: int, metrics: dict,
            base_metrics: dict | None, key: str) -> dict:
    """Gate on metrics[key] and maybe publish; returns {published, reason, step, metrics, [path, sha256, ...]}."""
    pub = job.publish
    pub_dir = Path(pub.dir) if Path(pub.dir).is_absolute() else job.workdir / pub.dir
    pub_dir.mkdir(parents=True, exist_ok=True)
    clean_temps(pub_dir, job.name)
    past = history(pub_dir, job.name)
    reference = past[-1]["metrics"] if past else base_metrics
    if past and past[-1]["step"] >= step:
        return {"published": False, "reason": f"step {step} is published already", "step": step}
    ok, why, key = gate(metrics, reference, key, pub.margin)
    result = {"published": ok, "reason": why, "step": step, "metric": key, "value": metrics.get(key),
              "reference": None if reference is None else reference.get(key)}
    if not ok:
        return result
    t0 = time.perf_counter()
    out = pub_dir / f"{job.name}-{step}.gguf"
    res = write_live(run_path, header, wc, weights_sha256, step, out)
    link = pub_dir / f"{job.name}.gguf"
    tmp = pub_dir / f".{job.name}.gguf.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(out.name, tmp)
    os.replace(tmp, link)
    fsync_dir(pub_dir)
    row = {"step": step, "file": out.name, "sha256": res["sha256"], "bytes": res["bytes"],
           "weights_sha256": weights_sha256, "metrics": metrics, "metric": key,
           "reference": result["reference"], "time": time.time()}
    with open(pub_dir / f"{job.name}.history.jsonl", "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    prune(pub_dir, job.name, pub.keep, keep_file=out.name)
    result.update(path=str(out), sha256=res["sha256"], seconds=time.perf_counter() - t0)
    if pub.to:
        result["to"] = publish_to_target(job, out, Path(header["base_model"]), header.get("base_name"))
    if pub.hook:
        result["hook"] = run_hook(pub.hook, out, job.workdir)
    return result


def versions(pub_dir: Path, name: str) -> list[tuple[int, Path]]:
    pat = re.compile(re.escape(name) + r"-(\d+)\.gguf$")
    found = [(int(m.group(1)), p) for p in pub_dir.iterdir() if (m := pat.match(p.name))]
    return sorted(found)


def prune(pub_dir: Path, name: str, keep: int, keep_file: str) -> None:
    """Delete all but the newest `keep` versions (never the one the pointer names), and the
    Modelfile written beside each for Ollama."""
    for _, p in versions(pub_dir, name)[:-keep]:
        if p.name != keep_file:
            p.unlink(missing_ok=True)
            p.with_suffix(".Modelfile").unlink(missing_ok=True)


def publish_to_target(job, out: Path, base_path: Path, base_name: str | None = None) -> dict:
    """The job's `to` target for the version at `out`; its failure is logged and returned, not raised.
    base_name: run.json's store name of the base (Ollama's chat settings of that very tag)."""
    kind, arg = targets.parse_target(job.publish.to, out)
    try:
        res = targets.publish_to(kind, arg, out, base_path, force=True, base_name=base_name)
    except EdgeesError as exc:
        log.warning("job %s: publishing to %s failed: %s", job.name, job.publish.to, exc)
        return {"target": job.publish.to, "error": str(exc)}
    if kind == "lmstudio":  # our versions in LM Studio's tree: as many as beside the pointer
        prune(Path(res["path"]).parent, job.name, job.publish.keep, keep_file=out.name)
    log.info("job %s: published to %s (%s)", job.name, job.publish.to,
             res.get("command") if kind == "ollama" else res.get("path"))
    return res


def clean_temps(pub_dir: Path, name: str) -> None:
    """Temp files a killed daemon left mid-publish (the pointer was never switched to them)."""
    for p in pub_dir.glob(f".{name}*.tmp-*"):
        try:
            p.unlink()
        except OSError:
            pass


def run_hook(command: str, path: Path, cwd: Path) -> dict:
    """The job's hook, by the shell, with EDGEES_PUBLISHED=<path>; its failure is logged, not fatal."""
    env = {**os.environ, "EDGEES_PUBLISHED": str(path)}
    try:
        p = subprocess.run(command, shell=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=HOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("hook %r ran over %gs; killed", command, HOOK_TIMEOUT)
        return {"returncode": None}
    tail = p.stdout.decode(errors="replace").strip().splitlines()[-3:]
    (log.info if p.returncode == 0 else log.warning)("hook %r exited %d%s", command, p.returncode,
                                                      (": " + " | ".join(tail)) if tail else "")
    return {"returncode": p.returncode}
