"""Publishing an exported GGUF to the tools people chat in: Ollama (a Modelfile, then `ollama create`),
LM Studio (the file placed in its models tree) and llama-server in router mode (the file in its
--models-dir, then a rescan). The user's file is never moved. `edgees export --to` and the daemon's
`[publish] to` both go through publish_to().

    --to ollama:NAME                 OUT.Modelfile beside OUT: FROM OUT, and when the base model came
                                     from an Ollama store, the TEMPLATE, SYSTEM and PARAMETER lines it
                                     has of the tag the run was started from (run.json base_name; else
                                     the first tag using the blob), so the adapted model chats as the
                                     base did; then `ollama create NAME -f OUT.Modelfile`
                                     when ollama is on PATH (Ollama copies the GGUF into its own
                                     store), else the command to run
    --to lmstudio[:PUBLISHER/MODEL]  <LM Studio models dir>/PUBLISHER/MODEL/<OUT's name>, a hard link
                                     to OUT when the file system allows, else a copy (default
                                     PUBLISHER/MODEL: edgees/<OUT's stem>); with the lms CLI on PATH,
                                     also the `lms import --copy` command that does the same (without
                                     --copy, lms import moves the file)
    --to llama-server:URL            the file in the server's models dir (--models-dir DIR: a hard link
                                     or copy there; default OUT's own dir), then `GET URL/models?reload=1`,
                                     which makes a router-mode llama-server (started without -m, with
                                     --models-dir) rescan its dir; the answer names the model's id

check_target() runs before the (slow) export, so a bad target or an existing file fails first.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from edgees import __version__
from edgees.errors import EdgeesError
from edgees.fileio import atomic_write, fsync_dir
from edgees.stores import files, ollama

OLLAMA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*){0,2}(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$")
LMS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
TARGETS = "ollama:NAME, lmstudio[:PUBLISHER/MODEL] or llama-server:URL"
RELOAD_TIMEOUT = 60.0  # seconds: a rescan may load a preset's model before it answers


def parse_target(text: str, out: Path, form: str = "--to {}") -> tuple[str, str]:
    """--to TEXT -> ("ollama", NAME), ("lmstudio", "PUBLISHER/MODEL") or ("llama-server", URL);
    `form` shows a value as the user writes it (a job file: 'to = "{}"')."""
    kind, sep, arg = text.partition(":")
    given = form.format(text)
    if kind == "ollama":
        if not arg or not OLLAMA_NAME.match(arg):
            examples = form.format("ollama:" + _slug(out.stem)), form.format("ollama:me/adapted:v1")
            raise EdgeesError(f"{given}: give an Ollama model name, e.g. {examples[0]} or {examples[1]}")
        return kind, arg
    if kind == "lmstudio":
        arg = arg or f"edgees/{_slug(out.stem)}"
        if not LMS_NAME.match(arg):
            example = form.format("lmstudio:edgees/" + _slug(out.stem))
            raise EdgeesError(f"{given}: give PUBLISHER/MODEL, e.g. {example}")
        return kind, arg
    if kind == "llama-server":
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", arg):
            example = form.format("llama-server:http://127.0.0.1:8080")
            raise EdgeesError(f"{given}: give the server's URL, e.g. {example}")
        return kind, arg.rstrip("/")
    raise EdgeesError(f"{given}: not a target; give {TARGETS}")


def _slug(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "adapted"


def modelfile_path(out: Path) -> Path:
    return out.with_suffix(".Modelfile")


def lmstudio_dest(arg: str, out: Path) -> Path:
    roots = files.lmstudio_roots()
    if not roots:
        looked = ", ".join(map(str, files.lmstudio_roots(existing=False)))
        raise EdgeesError(f"LM Studio's models dir was not found (looked in {looked}); start LM Studio once, "
                          f"or load {out} in it by hand")
    return roots[0] / arg / out.name


def server_dest(out: Path, models_dir: Path | None) -> Path:
    """Where llama-server finds the file: models_dir/<OUT's name>, or OUT itself."""
    if models_dir is None:
        return Path(out)
    if not Path(models_dir).is_dir():
        raise EdgeesError(f"--models-dir {models_dir} is not a directory; give the dir llama-server was started "
                          "with (--models-dir)")
    return Path(models_dir) / Path(out).name


def check_target(kind: str, arg: str, out: Path, force: bool, models_dir: Path | None = None) -> None:
    """Refuse, before anything is written, a target file that exists (without force)."""
    if kind == "llama-server":
        dest = server_dest(out, models_dir)
        if dest == Path(out):
            return
    else:
        dest = modelfile_path(out) if kind == "ollama" else lmstudio_dest(arg, out)
    if dest.exists() and not force:
        raise EdgeesError(f"{dest} exists; pass --force to replace it")


def publish_to(kind: str, arg: str, out: Path, base_path: Path, force: bool, models_dir: Path | None = None,
               base_name: str | None = None) -> dict:
    """Publish the GGUF at `out` to a parsed target (parse_target); what was done, as a dict.
    base_name: the store name the run's base was given by (run.json), for Ollama's chat settings."""
    if kind == "ollama":
        return publish_ollama(arg, out, base_path, base_name)
    if kind == "lmstudio":
        return publish_lmstudio(arg, out, force)
    return publish_llama_server(arg, out, force, models_dir)


# ---- Ollama ------------------------------------------------------------------------------------

def _block(keyword: str, text: str) -> str:
    if '"""' in text:
        raise EdgeesError(f"the base model's {keyword.lower()} holds \"\"\", which a Modelfile cannot quote; "
                          f"write the Modelfile's {keyword} by hand")
    return f'{keyword} """{text}"""'


def _param_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v) if isinstance(v, str) else str(v)


def _param_lines(params: dict | None) -> list[str]:
    return [f"PARAMETER {key} {_param_value(v)}" for key, value in (params or {}).items()
            for v in (value if isinstance(value, list) else [value])]


def carried(settings: dict | None) -> list[str]:
    """What a Modelfile carries from the base, e.g. ["TEMPLATE", "SYSTEM", "4 PARAMETER lines"]."""
    if settings is None:
        return []
    n = len(_param_lines(settings.get("params")))
    return ([k.upper() for k in ("template", "system") if settings.get(k) is not None]
            + ([f"{n} PARAMETER line{'s' * (n != 1)}"] if n else []))


def modelfile_text(gguf: Path, settings: dict | None) -> str:
    """A Modelfile: FROM the GGUF, then the base's TEMPLATE, SYSTEM and PARAMETERs when known."""
    lines = [f"# Written by edgees {__version__}: the adapted model"
             + (f", chatting as ollama:{settings['name']} does" if settings else ""),
             f"FROM {gguf}"]
    if settings is None:
        lines.append("# The base did not come from an Ollama store: Ollama takes the chat template from "
                     "the GGUF's metadata")
        return "\n".join(lines) + "\n"
    if settings.get("template") is not None:
        lines.append(_block("TEMPLATE", settings["template"]))
    if settings.get("system") is not None:
        lines.append(_block("SYSTEM", settings["system"]))
    lines += _param_lines(settings.get("params"))
    return "\n".join(lines) + "\n"


def publish_ollama(name: str, out: Path, base_path: Path, base_name: str | None = None) -> dict:
    """Write OUT.Modelfile; run `ollama create` when ollama is on PATH. The result says what ran
    (or the command to run), where the Modelfile is and what it carries from the base."""
    out = Path(out).resolve()
    settings = ollama.settings_for_blob(base_path, base_name)
    mf = modelfile_path(out)
    atomic_write(mf, modelfile_text(out, settings).encode())
    cmd = ["ollama", "create", name, "-f", str(mf)]
    res = {"target": f"ollama:{name}", "modelfile": str(mf), "command": shlex.join(cmd),
           "from_ollama_base": None if settings is None else f"ollama:{settings['name']}",
           "carried": carried(settings), "ran": False}
    exe = shutil.which("ollama")
    if exe is None:
        return res
    p = subprocess.run([exe, *cmd[1:]], stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]
    if p.returncode != 0:
        raise EdgeesError(f"`{res['command']}` failed (exit {p.returncode}): {tail[0][:200]}; {out} and {mf} "
                          "are written: fix the cause and run the command again")
    res.update(ran=True, output=tail[0])
    return res


# ---- LM Studio ---------------------------------------------------------------------------------

def publish_lmstudio(arg: str, out: Path, force: bool) -> dict:
    """Place OUT in LM Studio's tree: a hard link when possible, else a copy; never a move. A dir
    that cannot be written is one line naming it, with the `lms import` command when lms is on PATH."""
    out = Path(out)
    dest = lmstudio_dest(arg, out)
    check_target("lmstudio", arg, out, force)
    hint = lms_import(arg, out)
    try:
        how = place(out, dest)
    except OSError as exc:
        fix = f"import it with `{hint}`" if hint else f"copy it to {dest} yourself"
        raise EdgeesError(f"cannot write into LM Studio's models dir {dest.parents[2]} ({exc.strerror or exc}: "
                          f"{exc.filename or dest}); {out} is written: {fix}") from None
    res = {"target": f"lmstudio:{arg}", "path": str(dest), "how": how, "name": f"lmstudio:{arg}/{dest.name}"}
    if hint:
        res["hint"] = hint
    return res


def lms_import(arg: str, out: Path) -> str | None:
    """The LM Studio CLI's command for what --to lmstudio:PUBLISHER/MODEL does, when `lms` is on PATH:
    --copy, because `lms import` moves the file when not told otherwise; --user-repo, the folder."""
    if shutil.which("lms") is None:
        return None
    return shlex.join(["lms", "import", str(Path(out).resolve()), "--copy", "--user-repo", arg])


def place(out: Path, dest: Path) -> str:
    """Put OUT's bytes at dest atomically: a hard link when the file system allows, else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(out, tmp)
            how = "hard link"
        except OSError:
            shutil.copyfile(out, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            how = "copy"
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(dest.parent)
    return how


# ---- llama-server (router mode) ------------------------------------------------------------------

def publish_llama_server(url: str, out: Path, force: bool, models_dir: Path | None = None) -> dict:
    """OUT into the server's models dir (unless it is there already), then GET URL/models?reload=1.
    An unreachable server or an error answer is one line; the file stays in place."""
    out = Path(out)
    dest = server_dest(out, models_dir)
    how = "in place"
    if dest.resolve() != out.resolve():
        check_target("llama-server", url, out, force, models_dir)
        how = place(out, dest)
    models = reload_server(url, dest)
    same = [m for m in models if isinstance(m, dict) and _same_path(m.get("path"), dest)]
    return {"target": f"llama-server:{url}", "path": str(dest), "how": how, "reloaded": True,
            "model": same[0].get("id") if same else None, "models": len(models)}


def reload_server(url: str, dest: Path) -> list:
    """GET URL/models?reload=1; the models the server lists afterwards (its JSON `data`)."""
    import urllib.error
    import urllib.request

    where = f"{url}/models?reload=1"
    fix = (f"{dest} is written: start llama-server in router mode (no -m; --models-dir {dest.parent}) and "
           f"ask it to rescan with `curl '{where}'`")
    try:
        with urllib.request.urlopen(urllib.request.Request(where, method="GET"), timeout=RELOAD_TIMEOUT) as r:
            body = r.read(1 << 22)
    except urllib.error.HTTPError as exc:
        raise EdgeesError(f"llama-server at {url} answered HTTP {exc.code} to GET /models?reload=1 (a router-mode "
                          f"server of a recent llama.cpp rescans on it); {fix}") from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", None) or exc
        raise EdgeesError(f"llama-server at {url} is not reachable ({why}); {fix}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    data = doc.get("data") if isinstance(doc, dict) else None
    return data if isinstance(data, list) else []


def _same_path(a, b: Path) -> bool:
    try:
        return isinstance(a, str) and Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError):
        return False
