"""Reaching hosts: one connection per host per run, and bounded parallel work across hosts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from olmirror.connection import Connection, LocalConnection
from olmirror.errors import OlmirrorError
from olmirror.spec import LOCAL, Host

T = TypeVar("T")
DEFAULT_FORKS = 20


class Unreachable(OlmirrorError):
    """The host could not be reached or refused us; its reason is the message."""


def _open(name: str, host: Host) -> Connection:
    if name == LOCAL:
        return LocalConnection(name)
    raise Unreachable(
        f"host {name!r}: remote hosts over SSH are not supported by this version of olmirror"
    )


class Connections:
    """Opens each host's connection on first use and keeps it for the whole run."""

    def __init__(self, inventory: dict[str, Host]) -> None:
        self.inventory = inventory
        self._open: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Connection:
        with self._lock:
            if name not in self._open:
                self._open[name] = _open(name, self.inventory[name])
            return self._open[name]

    def close(self) -> None:
        for conn in self._open.values():
            conn.close()
        self._open.clear()

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
