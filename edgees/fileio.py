"""Files edgees writes and checks: atomic replacement, directory fsync, sha256 of a file.

Every file edgees writes goes through atomic_write (or the same temp + fsync + rename + dir fsync
steps, streamed): a reader sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """temp file in the same dir + fsync + rename + dir fsync: the file is old or new, never torn."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_jsonl(path) -> list:
    """The records of a JSON-lines file we append to, skipping a line that does not parse (a torn
    last line from a crash); [] when the file does not exist."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
