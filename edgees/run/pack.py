"""The pack format: an adaptation shared as a file of kilobytes, rebuilt bit-exactly on another
machine from the base model (`edgees pack` / `edgees unpack`, commands/pack.py, are its CLI).

    write_pack("runs/demo", "demo.edgees")                  # the run's header, log and metrics
    unpack("demo.edgees", base_path, "adapted.gguf")       # the same bytes `edgees export` writes

The weights after step t are a pure function of the base file and the log's records 0..t-1, so the
log is all another machine needs besides the base. A pack holds no weights:

    NAME.edgees    a zip archive (deflate; fixed timestamps, so one run packs to the same bytes);
                   its comment is `edgees-pack 1`; members, in this order:
      edgees-pack.json   format "edgees-pack", version 1; base {sha256, file, size}; steps (records
                         in the log); weights_sha256 (after the last step, as logged); task and
                         task_options (the spec only, not its data file); edgees_version; members
                         {name: {sha256, size}}
      run.json           the run header, verbatim (format edgees-run: config, task, base sha256)
      steps.log          the step log's complete records (a torn tail is left out)
      metrics.jsonl      per-step metrics (not needed to rebuild; kept for `edgees compare` and people)

Unpack checks the base by sha256 (a different file: one line naming the expected hash), writes the
run into a private temp dir, and exports it (run/export.py): the same bytes `edgees export` writes
from the original run, with the same edgees version (the version is part of the GGUF's metadata).
Members are read by their fixed names only, each size-capped and sha256-checked; nothing is
extracted by a name taken from the archive, and OUT is written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from pathlib import Path

from edgees import __version__
from edgees.errors import EdgeesError, RunError

FORMAT, VERSION = "edgees-pack", 1
COMMENT = b"edgees-pack 1"
MANIFEST = "edgees-pack.json"
# member -> the most bytes unpack reads of it (a 60-minute SmolLM2 log is ~1 MB; a year of daemon
# steps stays under the log cap)
MEMBERS = {"run.json": 1 << 20, "steps.log": 1 << 30, "metrics.jsonl": 1 << 30}
MAX_MANIFEST = 1 << 20
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack_bytes(run_path: Path) -> tuple[bytes, dict]:
    """The pack of a run, as bytes, and its manifest."""
    from edgees.run.log import RunDir, read_steps

    header = RunDir(run_path).read_header()
    records, good, torn = read_steps(run_path / "steps.log")
    log = (run_path / "steps.log").read_bytes()[:good] if good else b""
    metrics_path = run_path / "metrics.jsonl"
    members = {"run.json": (run_path / "run.json").read_bytes(), "steps.log": log,
               "metrics.jsonl": metrics_path.read_bytes() if metrics_path.exists() else b""}
    base = Path(header.get("base_model", ""))
    manifest = {
        "format": FORMAT, "version": VERSION,
        "base": {"sha256": header["base_sha256"], "file": base.name,
                 "size": base.stat().st_size if base.is_file() else None},
        "steps": len(records), "torn_tail_dropped": torn,
        "weights_sha256": records[-1].weights_sha256 if len(records) else None,
        "task": header.get("task"), "task_options": header.get("task_options", {}),
        "edgees_version": __version__,
        "members": {name: {"sha256": _sha(data), "size": len(data)} for name, data in members.items()},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.comment = COMMENT
        for name, data in [(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()),
                           *members.items()]:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue(), manifest


def read_pack(path: Path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, {member: bytes}) of a pack, every member checked; EdgeesError in one line."""
    def bad(why: str) -> EdgeesError:
        return EdgeesError(f"{path}: {why}; give a file written by `edgees pack`")
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise EdgeesError(f"{path}: no such file; give the .edgees file written by `edgees pack`") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise bad(f"not an edgees pack ({exc})") from None
    with zf:
        def read(name: str, cap: int) -> bytes:
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise bad(f"no member {name}") from None
            if info.file_size > cap:
                raise bad(f"member {name} claims {info.file_size} bytes, more than the {cap} a pack holds")
            try:
                return zf.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
                raise bad(f"member {name} is damaged ({exc})") from None
        try:
            manifest = json.loads(read(MANIFEST, MAX_MANIFEST))
        except ValueError as exc:
            raise bad(f"{MANIFEST} is not JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise bad("not an edgees pack (no edgees-pack manifest)")
        if manifest.get("version") != VERSION:
            raise EdgeesError(f"{path}: edgees pack version {manifest.get('version')}; this edgees reads "
                              f"version {VERSION}: unpack it with the edgees that wrote it")
        listed = manifest.get("members")
        base = manifest.get("base")
        if not isinstance(listed, dict) or not isinstance(base, dict) or not isinstance(base.get("sha256"), str):
            raise bad(f"{MANIFEST} lacks its members or base")
        if not (len(base["sha256"]) == 64 and set(base["sha256"]) <= set("0123456789abcdef")):
            raise bad(f"{MANIFEST} names no base sha256")
        members = {}
        for name, cap in MEMBERS.items():
            data = read(name, cap)
            want = listed.get(name)
            if not isinstance(want, dict) or want.get("sha256") != _sha(data):
                raise bad(f"member {name} does not match its sha256 in {MANIFEST} (the file is damaged)")
            members[name] = data
    try:
        header_sha = json.loads(members["run.json"]).get("base_sha256")
    except (ValueError, AttributeError):
        header_sha = None
    if header_sha != base["sha256"]:
        raise bad(f"its run.json and {MANIFEST} name different base models")
    return manifest, members


def write_pack(run_path, out, force: bool = False) -> dict:
    """Pack a run into `out` (atomically); refuse an existing out unless force."""
    from edgees.fileio import atomic_write
    from edgees.run.export import check_output

    run_path, out = Path(run_path), Path(out)
    check_output(out, run_path, [], force, example="adaptation.edgees")
    data, manifest = pack_bytes(run_path)
    atomic_write(out, data)
    return {"out": str(out), "bytes": len(data), "steps": manifest["steps"], "base_sha256": manifest["base"]["sha256"],
            "base_file": manifest["base"]["file"], "base_size": manifest["base"]["size"],
            "torn_tail_dropped": manifest["torn_tail_dropped"]}


def unpack(pack_path, base, out, step: int | None = None, force: bool = False, progress=None) -> dict:
    """Rebuild the pack's adapted GGUF from `base` (a path) into `out`; the export's result."""
    from edgees.fileio import sha256_file
    from edgees.run.export import check_output, export_gguf

    pack_path, base, out = Path(pack_path), Path(base), Path(out)
    manifest, members = read_pack(pack_path)
    want = manifest["base"]["sha256"]
    got = sha256_file(base)
    if got != want:
        raise RunError(f"{base} is not this adaptation's base model: it needs the file with sha256 {want} "
                       f"({manifest['base'].get('file')}), this one is {got[:16]}...")
    with tempfile.TemporaryDirectory(prefix="edgees-unpack-") as tmp:
        run_path = Path(tmp) / "run"
        check_output(out, run_path, [base, pack_path], force)
        run_path.mkdir()
        for name, data in members.items():
            (run_path / name).write_bytes(data)
        res = export_gguf(run_path, out, step=step, model=base, force=force, progress=progress)
    res.update(pack=str(pack_path), base_model=str(base), pack_version=manifest.get("edgees_version"))
    if manifest.get("edgees_version") != __version__:
        res["warnings"].append(f"the pack was made with edgees {manifest.get('edgees_version')}, this is "
                               f"{__version__}: the weights are the same, the GGUF's edgees.version differs")
    return res
