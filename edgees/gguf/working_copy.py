"""Mapped tensors: read-only views of a GGUF, and the writable working copy in RAM-backed storage.

The working copy is what training mutates: a private copy of the user's file in /dev/shm (or
$EDGEES_WORKDIR, or the temp dir), mapped MAP_SHARED, so llama.cpp, mapping the same file, reads
the very pages written here. The user's file is only ever opened for reading.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import secrets
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from edgees.errors import EdgeesError, GGUFError
from edgees.gguf.header import GGUFFile
from edgees.gguf.reader import read_gguf


def _check_same_file(info: GGUFFile, f) -> None:
    size = os.fstat(f.fileno()).st_size
    if size != info.file_size:
        raise GGUFError(f"{info.path}: file size changed from {info.file_size} to {size} bytes "
                        "since it was validated; is another program writing it?")


def _release_map(mm: mmap.mmap | None) -> None:
    if mm is not None:
        try:
            mm.close()
        except BufferError:
            pass  # numpy views still alive: the mapping goes away with the last of them


class TensorMap:
    """Read-only numpy views of a GGUF file's tensors through one mmap (ACCESS_READ)."""

    def __init__(self, path_or_info):
        self.info = path_or_info if isinstance(path_or_info, GGUFFile) else read_gguf(path_or_info)
        with open(self.info.path, "rb") as f:
            _check_same_file(self.info, f)
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def view(self, name: str) -> np.ndarray:
        """(nbytes,) uint8, read-only, backed by the file's pages."""
        if self._mm is None:
            raise ValueError("TensorMap is closed")
        t = self.info.tensor(name)
        return np.frombuffer(self._mm, dtype=np.uint8, count=t.nbytes, offset=t.offset)

    def close(self) -> None:
        mm, self._mm = self._mm, None
        _release_map(mm)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- the working copy -----------------------------------------------------------------------


def _free_bytes(d: str) -> int:
    try:
        st = os.statvfs(d)
        return st.f_bavail * st.f_frsize
    except (OSError, AttributeError):
        return -1


def workdir_for(nbytes: int) -> str:
    """Where a working copy of nbytes goes: $EDGEES_WORKDIR, else /dev/shm if it has room (plus
    a 64 MiB margin), else the temp dir."""
    env = os.environ.get("EDGEES_WORKDIR")
    if env:
        os.makedirs(env, exist_ok=True)
        return env
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and _free_bytes(shm) >= nbytes + (64 << 20):
        return shm
    return tempfile.gettempdir()


_COPY_NAME = re.compile(r"edgees-(\d+)-[0-9a-f]+\.gguf")


def remove_stale_copies(d: str) -> list[str]:
    """Unlink working copies in d left by edgees processes that no longer exist (killed, crashed);
    return their paths. Files of live processes, or of other users, are left alone."""
    removed = []
    try:
        names = os.listdir(d)
    except OSError:
        return removed
    for name in names:
        m = _COPY_NAME.fullmatch(name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # alive (or pid reused): keep
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, OSError):
            continue
        try:
            os.unlink(os.path.join(d, name))
            removed.append(os.path.join(d, name))
        except OSError:
            pass
    return removed


class _Held:
    """What the finalizer releases; holds no reference to the WorkingCopy itself."""

    def __init__(self):
        self.mm = None
        self.file = None
        self.path: str | None = None

    def release(self):
        mm, self.mm = self.mm, None
        _release_map(mm)
        f, self.file = self.file, None
        if f is not None:
            f.close()
        p, self.path = self.path, None
        if p is not None:
            try:
                os.unlink(p)
            except OSError:
                pass


class WorkingCopy:
    """A private, writable copy of a GGUF in RAM-backed storage, mapped MAP_SHARED.

    llama.cpp maps the same file (`.path`), so writes through `.view(name)` reach the model at
    its next decode. The base file is only ever opened "rb". The copy is unlinked on close(),
    on context-manager exit, at garbage collection and at interpreter exit.
    """

    def __init__(self, base_path):
        self.base_path = Path(base_path)
        base_info = read_gguf(self.base_path)
        self._held = _Held()
        self._finalizer = weakref.finalize(self, self._held.release)
        d = os.environ.get("EDGEES_WORKDIR") or "the temp dir"
        try:
            d = workdir_for(base_info.file_size)
            remove_stale_copies(d)
            path = os.path.join(d, f"edgees-{os.getpid()}-{secrets.token_hex(4)}.gguf")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise EdgeesError(f"cannot create a working copy in {d}: {exc.strerror}; set "
                              "EDGEES_WORKDIR to a writable directory") from None
        self._held.path = path
        self._held.file = f = os.fdopen(fd, "r+b")
        try:
            with open(self.base_path, "rb") as src:
                _check_same_file(base_info, src)
                shutil.copyfileobj(src, f, 8 << 20)
            f.flush()
        except OSError as exc:
            self.close()
            raise EdgeesError(f"cannot copy {self.base_path} to {d}: {exc.strerror} (needs "
                              f"{base_info.file_size} bytes); free space or set "
                              "EDGEES_WORKDIR") from None
        except BaseException:
            self.close()
            raise
        self.path = Path(path)
        try:
            self.info = read_gguf(self.path)
            if self.info.file_size != base_info.file_size:
                raise GGUFError(f"{self.base_path}: changed while being copied; try again")
            self._held.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE)
        except BaseException:
            self.close()
            raise

    @property
    def closed(self) -> bool:
        return self._held.mm is None

    def _map(self) -> mmap.mmap:
        if self._held.mm is None:
            raise ValueError("working copy is closed")
        return self._held.mm

    def view(self, name: str) -> np.ndarray:
        """(nbytes,) uint8, writable, aliasing the working file's pages."""
        t = self.info.tensor(name)
        return np.frombuffer(self._map(), dtype=np.uint8, count=t.nbytes, offset=t.offset)

    def sha256(self, names=None) -> str:
        """sha256 of the concatenated bytes of the named tensors (default: all) in file order.
        Pages read here are released from this process's mapping as it goes (see release)."""
        ts = self.info.tensors if names is None else [self.info.tensor(n) for n in names]
        h = hashlib.sha256()
        with memoryview(self._map()) as mv:
            for t in sorted(ts, key=lambda t: t.offset):
                h.update(mv[t.offset:t.end])
                self.release_range(t.offset, t.end)
        return h.hexdigest()

    def release_range(self, start: int, end: int) -> None:
        """Drop this process's page-table entries for [start, end) of the mapping (MADV_DONTNEED).
        The bytes stay in the RAM-backed file (llama.cpp's own mapping sees them unchanged); only
        this second mapping stops counting them in our RSS until they are touched again."""
        mm = self._map()
        if not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        a = start // page * page
        b = min(len(mm), -(-end // page) * page)
        if b > a:
            mm.madvise(mmap.MADV_DONTNEED, a, b - a)

    def release(self, names=None) -> None:
        """release_range over the named tensors (default: all)."""
        ts = self.info.tensors if names is None else [self.info.tensor(n) for n in names]
        for t in ts:
            self.release_range(t.offset, t.end)

    def flush(self) -> None:
        self._map().flush()

    def close(self) -> None:
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"WorkingCopy({str(self.base_path)!r} -> {str(self.path) if hasattr(self, 'path') else '?'!r})"

