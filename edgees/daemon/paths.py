"""Where the daemon keeps its files: jobs, runs, published models and its log under the user data
dir ($EDGEES_HOME/daemon/...); its socket in $XDG_RUNTIME_DIR/edgees/ (else beside the jobs)."""

from __future__ import annotations

import os
from pathlib import Path

from edgees.models import data_dir

SOCKET_NAME = "daemon.sock"


def daemon_dir() -> Path:
    return data_dir() / "daemon"


def jobs_dir() -> Path:
    return daemon_dir() / "jobs"


def runs_dir() -> Path:
    return daemon_dir() / "runs"


def published_dir() -> Path:
    """The default publish dir of a job that names none."""
    return daemon_dir() / "published"


def log_path() -> Path:
    return daemon_dir() / "daemon.log"


def lock_path() -> Path:
    return daemon_dir() / "daemon.lock"


def socket_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "edgees" if runtime else daemon_dir()


def socket_path() -> Path:
    return socket_dir() / SOCKET_NAME


def private_dir(path: Path) -> Path:
    """mkdir -p with mode 0700 for the last component (and chmod it if it existed looser)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
