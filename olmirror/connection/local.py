"""The local host: this machine, reached without any transport."""

from __future__ import annotations

import glob
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from olmirror.connection import apply_lock, probe
from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts, PathFact
from olmirror.errors import OlmirrorError

DEFAULT_STATE_DIR = "~/.local/state/olmirror"
TMP_SUFFIX = ".olmirror-tmp"


def atomic_write(path: str, data: bytes, mode: int | None) -> None:
    """Write `data` to a temp file beside `path`, fsync it, then rename it over `path`.

    A reader, or a crash at any moment, sees either the old file or the new one; temp files
    a crash left behind are removed by the next write of the same file.
    """
    folder = os.path.dirname(path) or "."
    for leftover in glob.glob(
        os.path.join(glob.escape(folder), f".{glob.escape(os.path.basename(path))}.*{TMP_SUFFIX}")
    ):
        with suppress(FileNotFoundError):
            os.unlink(leftover)
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    if mode is None:
        mode = stat.S_IMODE(old.st_mode) if old else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=TMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
            if old is not None and os.geteuid() == 0:
                os.fchown(handle.fileno(), old.st_uid, old.st_gid)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
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

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        atomic_write(path, data, mode)

    def stat(self, path: str) -> PathFact:
        return PathFact.from_probe(probe.probe({"paths": [path]})["paths"][path])

    def make_dir(self, path: str, mode: int = 0o755) -> None:
        os.makedirs(path, mode=mode, exist_ok=True)
        os.chmod(path, mode)

    def gather(self, request: FactRequest) -> Facts:
        return Facts.from_probe(probe.probe(request.as_json()))

    @contextmanager
    def lock(self, state_dir: str | None) -> Iterator[None]:
        holder = apply_lock.holder_name(os.getpid(), socket.gethostname())
        fd, path, who = apply_lock.take(state_dir or DEFAULT_STATE_DIR, holder)
        if fd is None:
            raise OlmirrorError(apply_lock.busy(self.name, path, who))
        try:
            yield
        finally:
            os.close(fd)
