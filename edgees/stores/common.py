"""What every store reader shares: the StoreEntry row, the GGUF magic check, split-set detection,
the walk that finds *.gguf files in a folder tree (read-only: opens files only to read 4 bytes), and
the one-line errors for a name that matches nothing (with the closest names) or a broken entry.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from edgees.errors import ModelNotFound, UnsupportedModel

GGUF_MAGIC = b"GGUF"
# llama.cpp's gguf-split naming: <stem>-00001-of-00003.gguf
SPLIT = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
PREFIXES = ("ollama", "lmstudio", "hf")


@dataclass(frozen=True)
class StoreEntry:
    source: str  # "ollama" | "lmstudio" | "hf" | "llama.cpp"
    ref: str  # what to type as MODEL (ollama:NAME:TAG, lmstudio:P/M/F, hf:O/R/F; a path for llama.cpp)
    path: Path | None  # the GGUF file (for a split set, its first part); None when there is none
    size: int  # bytes (a split set: all parts)
    error: str = ""  # one line: why edgees cannot use this entry, and the fix; "" when it can

    def as_json(self) -> dict:
        return {"source": self.source, "name": self.ref, "path": None if self.path is None else str(self.path),
                "size": self.size, "error": self.error or None}


def is_gguf(path: Path) -> bool:
    """The file starts with the GGUF magic (read-only, 4 bytes)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def split_error(path: Path, n_parts: int | None = None) -> str:
    """The one line for a multi-file GGUF ("" when `path` is not part of one)."""
    m = SPLIT.match(Path(path).name)
    n = n_parts if n_parts is not None else (int(m.group("n")) if m else 1)
    if n <= 1:
        return ""
    first = Path(path).with_name(f"{m.group('stem')}-00001-of-{m.group('n')}.gguf") if m else Path(path)
    return (f"{first.name} is a split GGUF in {n} files: not supported yet; merge it into one file with "
            f"`llama-gguf-split --merge {first} merged.gguf` and give merged.gguf")


def check_file(path: Path, what: str) -> str:
    """"" if `path` is a usable single-file GGUF; else one line saying what is wrong with it."""
    if not path.exists():
        return f"{what}: {path} is missing (a broken link or an interrupted download); download it again"
    if split := split_error(path):
        return f"{what}: {split}"
    if not is_gguf(path):
        return f"{what}: {path} is not a GGUF file (no GGUF magic); it cannot be used as a model"
    return ""


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def gguf_files(folder: Path, max_depth: int) -> list[Path]:
    """*.gguf under `folder` (not in hidden dirs), at most max_depth levels down, sorted; a split set
    appears once, as its first part (the others are folded into it)."""
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        try:
            children = sorted(d.iterdir())
        except OSError:
            return
        for c in children:
            if c.name.startswith("."):
                continue
            if c.name.endswith(".gguf") and (c.is_file() or c.is_symlink()):
                m = SPLIT.match(c.name)
                if m is None or int(m.group("i")) == 1 or int(m.group("n")) == 1:
                    found.append(c)
            elif depth < max_depth and c.is_dir():
                walk(c, depth + 1)

    if folder.is_dir():
        walk(folder, 1)
    return found


def file_entry(source: str, ref: str, path: Path) -> StoreEntry:
    """A StoreEntry for one GGUF found as a file (a split set: its size summed over the parts)."""
    m = SPLIT.match(path.name)
    size = file_size(path)
    if m and int(m.group("n")) > 1:
        parts = [path.with_name(f"{m.group('stem')}-{i:05d}-of-{m.group('n')}.gguf")
                 for i in range(2, int(m.group("n")) + 1)]
        size += sum(file_size(p) for p in parts)
    return StoreEntry(source, ref, path, size, check_file(path, ref))


def _variants(name: str) -> list[str]:
    """Forms of a store name a user might type: without the prefix, the tag, the folders, .gguf."""
    prefix, sep, rest = name.partition(":")
    bare = rest if sep and prefix in PREFIXES else name
    last = bare.rsplit("/", 1)[-1]
    return [bare, bare.rsplit(":", 1)[0], last, last.rsplit(":", 1)[0], last.removesuffix(".gguf")]


def closest(text: str, entries: list[StoreEntry], extra: tuple[str, ...] = (), n: int = 3) -> list[str]:
    """Up to n names close to `text` (difflib's ratio against each name's _variants; a name holding
    the text, or held in it, counts as close), best first."""
    key = _variants(text)[0].lower()
    scored = []
    for name in [e.ref for e in entries if e.source != "llama.cpp"] + list(extra):
        forms = [v.lower() for v in _variants(name) if v]
        score = max(difflib.SequenceMatcher(None, key, v).ratio() for v in forms)
        if key and any(key in v or v in key for v in forms):
            score = max(score, 0.9)
        if score >= 0.6:
            scored.append((-score, name))
    return [name for _, name in sorted(scored)[:n]]


def not_found(text: str, source: str, entries: list[StoreEntry], where: str) -> ModelNotFound:
    """The one line for a store name that matches nothing: the closest names, or where we looked."""
    close = closest(text, [e for e in entries if e.source == source])
    hint = (f"closest: {', '.join(close)}" if close else f"looked in {where}" if where else
            "none has a close name" if entries else "no store of this kind was found on this machine")
    return ModelNotFound(f"no model '{text}' in the {source} store ({hint}); `edgees models ls` lists them all")


def usable(entry: StoreEntry) -> Path:
    """The entry's GGUF, or its error as a one-line exception."""
    if entry.error or entry.path is None:
        cls = UnsupportedModel if "not supported yet" in entry.error else ModelNotFound
        raise cls(entry.error or f"{entry.ref}: no model file")
    return entry.path
