"""Reaching hosts: one connection per host per run, and bounded parallel work across hosts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from olmirror.connection import Connection, LocalConnection
from olmirror.connection.bucket import BucketConnection, is_bucket
from olmirror.errors import Unreachable
from olmirror.spec import LOCAL, Host

T = TypeVar("T")
DEFAULT_FORKS = 20


def _open(name: str, host: Host) -> Connection:
    if is_bucket(name):
        return BucketConnection(name)
    if name == LOCAL:
        return LocalConnection(name, host.python)
    # Imported here so that runs on the local host alone never load paramiko.
    from olmirror.connection.ssh import SSHConnection

    return SSHConnection.connect(name, host)


class Connections:
    """Opens each host's connection on first use and keeps it for the whole run.

    Hosts connect in parallel (a slow or dead host holds up only itself), and a host that
    could not be reached is not tried again in the same run. With `hold_locks` (an apply)
    each host's apply lock is taken as it connects, so facts are gathered under it and
    stay true until the apply ends, and another apply is refused from the start.
    """

    def __init__(self, inventory: dict[str, Host], hold_locks: bool = False) -> None:
        self.inventory = inventory
        self.hold_locks = hold_locks
        self._open: dict[str, Connection] = {}
        self._failed: dict[str, str] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def host(self, name: str) -> Host:
        """How to reach `name`: its inventory entry; a bucket needs none (its name says)."""
        return Host() if is_bucket(name) else self.inventory[name]

    def get(self, name: str) -> Connection:
        with self._lock:
            host_lock = self._host_locks.setdefault(name, threading.Lock())
        with host_lock:
            if name in self._failed:
                raise Unreachable(self._failed[name])
            with self._lock:
                if name in self._open:
                    return self._open[name]
            try:
                conn = _open(name, self.host(name))
            except Unreachable as exc:
                self._failed[name] = str(exc)
                raise
            if self.hold_locks:
                try:
                    conn.hold_lock(self.host(name).state_dir)
                except BaseException:
                    conn.close()
                    raise
            with self._lock:
                self._open[name] = conn
            return conn

    def close(self) -> None:
        """Close every connection at once: each may wait a round trip for its host to let
        go of its lock, and N hosts one after another would wait N of them."""
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        if opened:
            with ThreadPoolExecutor(max_workers=min(len(opened), DEFAULT_FORKS)) as pool:
                list(pool.map(lambda conn: conn.close(), opened))

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_parallel(names: Iterable[str], work: Callable[[str], T], forks: int) -> dict[str, T]:
    """Run `work(name)` for every host, at most `forks` at a time; results keep `names`' order."""
    ordered = list(names)
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(ordered) or 1))) as pool:
        results = dict(zip(ordered, pool.map(work, ordered), strict=True))
    return results
