"""The stores that keep GGUFs as plain files, read-only: LM Studio, the Hugging Face hub cache and
llama.cpp's download cache.

    LM Studio   <root>/<publisher>/<model>/<file>.gguf; root: the dir ~/.lmstudio-home-pointer names
                + /models, ~/.lmstudio/models, and the older ~/.cache/lm-studio/models
    HF cache    <root>/models--<org>--<repo>/snapshots/<revision>/<path>.gguf, symlinks into
                ../../blobs/; refs/main names the revision `main` is at. root: $HF_HUB_CACHE, else
                $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub (~/.cache/huggingface/hub)
    llama.cpp   <root>/**/*.gguf; root: $LLAMA_CACHE, else $XDG_CACHE_HOME/llama.cpp (~/.cache/llama.cpp)

A vision projector (mmproj*.gguf) is not a language model and is left out. When several snapshots
of a HF repo hold the same file, the one `main` points at wins, then the newest.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgees.errors import ModelNotFound
from edgees.stores.common import StoreEntry, file_entry, gguf_files, not_found, usable


def _is_model(path: Path) -> bool:
    return not path.name.lower().startswith("mmproj")


def _cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg else Path.home() / ".cache"


def _check_parts(text: str, prefix: str) -> list[str]:
    parts = text.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ModelNotFound(f"{prefix}:{text}: not a model name (empty, '.' or '..' part); "
                            "`edgees models ls` shows the names")
    return parts


def _pick_one(ref: str, choices: dict[str, Path], source: str) -> Path:
    """The only model file of a folder or repo; several: one line listing them."""
    models = {k: p for k, p in choices.items() if _is_model(p)}
    if len(models) == 1:
        (name, path), = models.items()
        return usable(file_entry(source, f"{ref}/{name}", path))
    if not models:
        raise ModelNotFound(f"{ref} holds no .gguf model file; `edgees models ls` lists what is there")
    listed = ", ".join(f"{ref}/{k}" for k in sorted(models)[:6])
    more = f" and {len(models) - 6} more" if len(models) > 6 else ""
    raise ModelNotFound(f"{ref} holds {len(models)} model files; name one: {listed}{more}")


# ---- LM Studio ----------------------------------------------------------------------------------

def lmstudio_roots(existing: bool = True) -> list[Path]:
    """LM Studio's model dirs, the one its home pointer names first."""
    home = Path.home()
    found = []
    try:
        pointed = (home / ".lmstudio-home-pointer").read_text().strip()
        if pointed:
            found.append(Path(pointed).expanduser() / "models")
    except (OSError, UnicodeDecodeError):
        pass
    found += [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    out = []
    for r in found:
        if (r.is_dir() or not existing) and all(r.resolve() != o.resolve() for o in out):
            out.append(r)
    return out


def discover_lmstudio() -> list[StoreEntry]:
    out, seen = [], set()
    for root in lmstudio_roots():
        for path in gguf_files(root, max_depth=3):
            ref = "lmstudio:" + "/".join(path.relative_to(root).parts)
            if _is_model(path) and ref not in seen:
                seen.add(ref)
                out.append(file_entry("lmstudio", ref, path))
    return out


def resolve_lmstudio(text: str) -> Path:
    """lmstudio:PUBLISHER/MODEL[/FILE] (prefix taken off) -> the file."""
    _check_parts(text, "lmstudio")
    for root in lmstudio_roots():
        cand = root / text
        if cand.is_file():
            return usable(file_entry("lmstudio", f"lmstudio:{text}", cand))
        if cand.is_dir() and text.count("/") >= 1:
            files = {p.name: p for p in gguf_files(cand, max_depth=1)}
            if files:
                return _pick_one(f"lmstudio:{text}", files, "lmstudio")
    roots = lmstudio_roots()
    where = ", ".join(map(str, roots)) if roots else ", ".join(map(str, lmstudio_roots(existing=False)))
    entries = discover_lmstudio()
    raise not_found(f"lmstudio:{text}", "lmstudio", entries, "" if entries else where)


# ---- Hugging Face hub cache --------------------------------------------------------------------

def hf_root() -> Path:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return _cache_home() / "huggingface" / "hub"


def repo_name(repo_dir: Path) -> str:
    """models--org--repo -> org/repo (HF writes / as --; a repo name cannot hold --)."""
    return repo_dir.name[len("models--"):].replace("--", "/", 1)


def snapshot_files(repo_dir: Path) -> dict[str, Path]:
    """Path inside the repo -> the snapshot file (main's revision first, then the newest)."""
    snaps = repo_dir / "snapshots"
    try:
        revisions = sorted((d for d in snaps.iterdir() if d.is_dir()), key=lambda d: -d.stat().st_mtime)
    except OSError:
        return {}
    try:
        main = (repo_dir / "refs" / "main").read_text().strip()
        revisions.sort(key=lambda d: d.name != main)
    except (OSError, UnicodeDecodeError):
        pass
    files: dict[str, Path] = {}
    for rev in revisions:
        for path in gguf_files(rev, max_depth=4):
            files.setdefault("/".join(path.relative_to(rev).parts), path)
    return files


def discover_hf() -> list[StoreEntry]:
    root = hf_root()
    out = []
    for repo_dir in sorted(root.glob("models--*")) if root.is_dir() else []:
        repo = repo_name(repo_dir)
        for rel, path in sorted(snapshot_files(repo_dir).items()):
            if _is_model(path):
                out.append(file_entry("hf", f"hf:{repo}/{rel}", path))
    return out


def resolve_hf(text: str) -> Path:
    """hf:ORG/REPO[/FILE] (prefix taken off) -> the snapshot file (a symlink into the blobs)."""
    parts = _check_parts(text, "hf")
    root = hf_root()
    for k in (2, 1):  # org/repo, then a repo without an org (models--gpt2)
        if len(parts) < k:
            continue
        repo, file = "/".join(parts[:k]), "/".join(parts[k:])
        repo_dir = root / ("models--" + repo.replace("/", "--"))
        if not repo_dir.is_dir():
            continue
        files = snapshot_files(repo_dir)
        if not file:
            return _pick_one(f"hf:{repo}", files, "hf")
        if file in files:
            return usable(file_entry("hf", f"hf:{text}", files[file]))
        entries = [file_entry("hf", f"hf:{repo}/{r}", p) for r, p in files.items() if _is_model(p)]
        raise not_found(f"hf:{text}", "hf", entries, str(repo_dir))
    entries = discover_hf()
    raise not_found(f"hf:{text}", "hf", entries, "" if entries else str(root))


# ---- llama.cpp's cache -------------------------------------------------------------------------

def llamacpp_root() -> Path:
    env = os.environ.get("LLAMA_CACHE")
    return Path(env).expanduser() if env else _cache_home() / "llama.cpp"


def discover_llamacpp() -> list[StoreEntry]:
    return [file_entry("llama.cpp", str(p), p) for p in gguf_files(llamacpp_root(), max_depth=6) if _is_model(p)]
