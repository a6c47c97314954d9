"""The Ray cluster a run scales out on: imported only when asked for, checked before any step.

    cluster = connect(address=None, workers=None, threads_per_worker=1)   # a local Ray, loopback only
    cluster = connect("10.0.0.5:6379", workers=8)                         # a cluster started by `ray start`
    ...
    cluster.close()                                                        # stops Ray if connect started it

Without an address, a new local Ray instance is started for this process alone, bound to 127.0.0.1:
Ray's single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read when ray is imported; its
default on Linux, 1, resolves 127.0.0.1 to the machine's address and its servers listen on every
interface), no dashboard, no usage report, and a small object store (only a base model shipped to a
worker that lacks it would use it, and a local worker never lacks it). Ray >= 2.59 also turns its
token authentication on for such an instance. With an address, the cluster is reached
first by a plain TCP connect, so an unreachable address is one line within seconds rather than a
long retry inside Ray. Each worker asks Ray for `threads_per_worker` CPUs; asking for more than the
cluster has would wait forever, so it is refused here. Every failure is an EdgeesError (one line);
a Ray that this call started is stopped again before it is raised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from dataclasses import dataclass

from edgees.errors import EdgeesError

INSTALL = "pip install 'edgees[ray]'"
OBJECT_STORE_BYTES = 96 << 20  # the local instance's object store; Ray's own floor is 75 MiB
CONNECT_TIMEOUT = 5.0  # seconds for the TCP check of --address


class ClusterError(EdgeesError):
    """Ray missing, a cluster not reachable, or not enough CPUs for the workers asked for."""

    exit_code = 2


def import_ray():
    """The ray module, or ClusterError naming the install command."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


@dataclass
class Cluster:
    ray: object  # the module
    address: str  # what the user gave, or "local"
    cpus: int
    workers: int
    threads_per_worker: int
    started: bool  # this process started the Ray instance (and stops it at close)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "HOST:PORT" or "ray://HOST:PORT"; None for forms Ray resolves itself ("auto")."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def _stderr_muted():
    """File descriptor 2 goes to /dev/null meanwhile (C++ code writes there, not to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _asked_for_a_token(exc: BaseException | None) -> bool:
    """Whether Ray failed because the cluster wants a token this process did not send (the cause
    sits somewhere in the exception's chain)."""
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ClusterError(f"--address {address}: cannot reach a Ray cluster there ({why}); start one with "
                           "`ray start --head` on that machine and give its address as printed, or leave "
                           "--address out for a local Ray") from None


def connect(address: str | None, workers: int | None, threads_per_worker: int = 1,
            num_cpus: int | None = None) -> Cluster:
    """Join the cluster at `address` (or start a local one with `num_cpus`, default all CPUs) and
    check it has the CPUs for `workers` x `threads_per_worker` (workers None: as many as fit).
    A Ray already initialised in this process (a test's) is used as it is and left running."""
    if not address and "ray" not in sys.modules:  # read at import: loopback only (module docstring)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    started = False
    if not ray.is_initialized():
        quiet = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        try:
            if address:
                check_reachable(address)
                with _stderr_muted():  # Ray's C++ client logs a line a second while a cluster refuses it
                    ray.init(address=address, **quiet)
            else:
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), _node_ip_address="127.0.0.1",
                         object_store_memory=OBJECT_STORE_BYTES, **quiet)
                if ray.nodes()[0]["NodeManagerAddress"] != "127.0.0.1":
                    raise RuntimeError("Ray did not bind to 127.0.0.1 (was ray imported before edgees set "
                                       "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0?); refusing to run it on every "
                                       "interface")
        except EdgeesError:
            raise
        except Exception as exc:  # ConnectionError, RuntimeError, a version mismatch...
            if ray.is_initialized():
                ray.shutdown()
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            if _asked_for_a_token(exc):
                raise ClusterError(f"{where} asks for its token: run with RAY_AUTH_MODE=token and the cluster's "
                                   "token in ~/.ray/auth_token or RAY_AUTH_TOKEN (`ray get-auth-token` on its "
                                   "head prints it)") from None
            line = " ".join(str(exc).split())[:300]
            raise ClusterError(f"cannot start or join {where}: {type(exc).__name__}: {line}") from None
        started = True
    cluster = Cluster(ray, address or "local", int(ray.cluster_resources().get("CPU", 0)), 0,
                      threads_per_worker, started)
    fit = cluster.cpus // threads_per_worker
    n = workers if workers is not None else max(fit, 1)
    if n * threads_per_worker > cluster.cpus:
        cluster.close()
        where = f"the Ray cluster at {address}" if address else "this machine"
        raise ClusterError(f"--workers {n} x --threads-per-worker {threads_per_worker} needs {n * threads_per_worker} "
                           f"CPUs and {where} has {cluster.cpus}; ask for at most {max(fit, 0)} workers"
                           + ("" if not address else ", or add machines with `ray start --address`"))
    cluster.workers = n
    return cluster
