"""The daemon's control socket: JSON lines over a Unix socket only this user can reach.

The socket is <socket dir>/daemon.sock, mode 0600, in a 0700 dir; each connection's peer uid is read
with SO_PEERCRED and a peer of another uid is answered with an error and closed. No TCP listener.
One request per line, one answer per line:

    {"cmd": "status"}   -> {"ok": true, "pid": ..., "socket": ..., "jobs": {...}, ...}
    {"cmd": "pause"} | {"cmd": "resume"} | {"cmd": "stop"} | {"cmd": "jobs"}
    anything else       -> {"ok": false, "error": "unknown command ...; the commands are ..."}
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Callable

from edgees.errors import EdgeesError
from edgees.daemon.paths import private_dir, socket_path

log = logging.getLogger("edgees.daemon")
COMMANDS = ("status", "jobs", "pause", "resume", "stop")
MAX_LINE = 1 << 16


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED: pid, uid, gid as three ints)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class ControlServer:
    """Accepts connections on a thread; handle(request dict) -> answer dict runs on that thread."""

    def __init__(self, handle: Callable[[dict], dict], path: Path | None = None):
        self.handle = handle
        self.path = Path(path or socket_path())
        private_dir(self.path.parent)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # a stale socket: the instance lock says no daemon owns it
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: no moment with a looser mode
        try:
            self.sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.sock.listen(8)
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            uid = peer_uid(conn)
            if uid != os.getuid():
                log.warning("refused a control connection from uid %d", uid)
                _send(conn, {"ok": False, "error": "permission denied: this daemon belongs to another user"})
                return
            f = conn.makefile("rb")
            for line in f:
                if len(line) > MAX_LINE:
                    _send(conn, {"ok": False, "error": "request too long"})
                    return
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                except ValueError:
                    _send(conn, {"ok": False, "error": 'not a JSON object; send e.g. {"cmd": "status"}'})
                    continue
                if req.get("cmd") not in COMMANDS:
                    _send(conn, {"ok": False, "error": f"unknown command {req.get('cmd')!r}; "
                                                       f"the commands are {', '.join(COMMANDS)}"})
                    continue
                try:
                    answer = self.handle(req)
                except Exception as exc:  # noqa: BLE001 (a bad request never takes the daemon down)
                    log.exception("control command %s failed", req.get("cmd"))
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                _send(conn, answer)

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.path.unlink()
        except OSError:
            pass


def _send(conn: socket.socket, obj: dict) -> None:
    try:
        conn.sendall((json.dumps(obj, default=str) + "\n").encode())
    except OSError:
        pass


class DaemonNotRunning(EdgeesError):
    exit_code = 3


def request(cmd: str, path: Path | None = None, timeout: float = 30.0, **fields) -> dict:
    """Send one command to the running daemon and return its answer (raises DaemonNotRunning)."""
    path = Path(path or socket_path())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        raise DaemonNotRunning(f"no edgees daemon is running (no socket at {path}); "
                               "start one with `edgees daemon start`") from None
    except OSError as exc:
        s.close()
        raise DaemonNotRunning(f"cannot reach the daemon at {path} ({exc.strerror}); "
                               "is it another user's? start your own with `edgees daemon start`") from None
    with s:
        s.sendall((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        line = s.makefile("rb").readline()
    if not line:
        raise DaemonNotRunning(f"the daemon at {path} closed the connection without an answer; "
                               "see `edgees daemon logs`")
    answer = json.loads(line)
    if not answer.get("ok", False):
        raise EdgeesError(f"daemon: {answer.get('error', 'failed')}")
    return answer
