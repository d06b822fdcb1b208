"""The local host: this machine, reached without any transport."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from olmirror.connection.base import (
    CommandResult,
    Connection,
    FactRequest,
    Facts,
    FileChange,
    MakeDir,
    PartlyDone,
    PathFact,
    Run,
)
from olmirror.errors import OlmirrorError
from olmirror.remote import apply_lock, probe
from olmirror.remote.host_program import atomic_write, make_dir

DEFAULT_STATE_DIR = "~/.local/state/olmirror"


def _stream(
    process: subprocess.Popen[bytes], stdin: bytes | None, on_line: Callable[[str], None]
) -> tuple[bytes, bytes]:
    """Collect stdout whole and stderr line by line, handing each stderr line to `on_line`."""
    assert process.stdin and process.stdout and process.stderr
    collected: list[bytes] = []
    reader = threading.Thread(target=lambda: collected.append(process.stdout.read()))
    reader.start()
    if stdin:
        process.stdin.write(stdin)
    process.stdin.close()
    err = bytearray()
    for line in iter(process.stderr.readline, b""):
        err.extend(line)
        on_line(line.decode(errors="replace").rstrip("\n"))
    reader.join()
    process.wait()
    return collected[0], bytes(err)


class LocalConnection(Connection):
    def __init__(self, name: str = "local", python: str | None = None) -> None:
        self.name = name
        self.python = python or sys.executable  # olmirror's own: known, and no shim
        self._lock_fd: int | None = None

    def _run(self, argv: tuple[str, ...], how: Run) -> CommandResult:
        stdin, timeout, env, on_line = how.stdin, how.timeout, how.env, how.on_line
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **env} if env else None,
            )
        except FileNotFoundError:
            return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
        except PermissionError:
            return CommandResult(tuple(argv), 126, "", f"{argv[0]}: permission denied")
        if on_line is None:
            try:
                out, err = process.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                return CommandResult(tuple(argv), 124, "", f"timed out after {timeout} s")
        else:
            expired = threading.Event()
            timer = threading.Timer(timeout or 0, lambda: (expired.set(), process.kill()))
            if timeout:
                timer.start()
            out, err = _stream(process, stdin, on_line)
            timer.cancel()
            if expired.is_set():
                return CommandResult(tuple(argv), 124, "", f"timed out after {timeout} s")
        return CommandResult(
            tuple(argv),
            process.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )

    def read_file(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def change_files(self, changes: Sequence[FileChange]) -> None:
        for done, change in enumerate(changes):
            try:
                if isinstance(change, MakeDir):
                    make_dir(change.path, change.mode)
                else:
                    atomic_write(change.path, change.data, change.mode)
            except OSError as exc:
                raise PartlyDone(done, exc) from None

    def stat(self, path: str) -> PathFact:
        return PathFact.from_probe(probe.probe({"paths": [path]})["paths"][path])

    def gather(self, request: FactRequest) -> Facts:
        return Facts.from_probe(probe.probe(request.as_json()))

    def hold_lock(self, state_dir: str | None) -> None:
        if self._lock_fd is not None:
            return
        holder = apply_lock.holder_name(os.getpid(), socket.gethostname())
        fd, path, who = apply_lock.take(state_dir or DEFAULT_STATE_DIR, holder)
        if fd is None:
            raise OlmirrorError(apply_lock.busy(self.name, path, who))
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
