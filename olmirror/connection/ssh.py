"""A remote host over SSH (paramiko): one login per host per run, reused by every resource.

Commands are single argv lists quoted with `shlex.join` for the remote login shell (SSH has
no way around it). Everything else (facts, the apply lock, reads, and file changes in
batches) goes to one `python3` process per host per run, the host program: a no-op plan
costs one command and one round trip per host, and a fresh apply one more round trip.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import paramiko

from olmirror.connection.base import (
    CommandResult,
    Connection,
    FactRequest,
    Facts,
    FileChange,
    PartlyDone,
    PathFact,
    Run,
    WriteFile,
)
from olmirror.connection.local import DEFAULT_STATE_DIR
from olmirror.connection.ssh_dial import Session, open_session
from olmirror.connection.ssh_program import ProgramChannel, remote_error
from olmirror.errors import OlmirrorError, Unreachable
from olmirror.remote import apply_lock, source
from olmirror.spec import Host

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPERATION_TIMEOUT = 120.0
log = logging.getLogger(__name__)

# The host program: the probe's and the lock's sources first, then the loop that serves them.
HOST_PROGRAM = source("url_check", "probe", "apply_lock", "host_program") + (
    '\nserve({"facts": answer_facts, "stat": answer_stat, "lock": answer_lock})\n'
)


class SSHConnection(Connection):
    """A host reached over SSH; `become` runs every step through sudo."""

    def __init__(self, name: str, host: Host, session: Session) -> None:
        self.name = name
        self.host = host
        self.python = host.python
        self.session = session
        self._program = ProgramChannel(
            name, lambda: self._open(self.script(HOST_PROGRAM)), self.python or "python3"
        )
        self._told_shim = False

    @classmethod
    def connect(cls, name: str, host: Host) -> SSHConnection:
        return cls(name, host, open_session(name, host))

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def _transport(self) -> paramiko.Transport:
        transport = self.session.client.get_transport()
        if transport is None or not transport.is_active():
            raise Unreachable(f"host {self.name!r}: the connection was lost")
        return transport

    def _lost(self) -> bool:
        """Whether the connection is gone (after an error, let the transport finish dying)."""
        transport = self.session.client.get_transport()
        if transport is None or not transport.is_active():
            return True
        transport.join(2.0)
        return not transport.is_active()

    @contextmanager
    def _guard(self, what: str, path: str | None = None) -> Iterator[None]:
        """Turn transport failures into `Unreachable`, remote file errors into `OSError`s."""
        try:
            yield
        except OlmirrorError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            remote_file_error = (
                path is not None
                and isinstance(exc, OSError)
                and exc.errno is not None
                and not isinstance(exc, (TimeoutError, ConnectionError))
            )
            if remote_file_error:
                raise type(exc)(exc.errno, exc.strerror or reason, path) from None
            if self._lost():
                raise Unreachable(
                    f"host {self.name!r}: the connection was lost while {what} ({reason})"
                ) from None
            raise OlmirrorError(f"host {self.name!r}: {what} failed: {reason}") from None

    def _open(self, argv: Sequence[str]) -> tuple[paramiko.Channel, bytes]:
        """Start `argv` on the host (through sudo with `become`); return stderr sudo left over."""
        if not self.host.become:
            channel = self._transport.open_session(timeout=OPERATION_TIMEOUT)
            channel.exec_command(shlex.join(argv))
            return channel, b""
        token = secrets.token_hex(8)
        marker, prompt = f"olmirror-become-{token}", f"[olmirror sudo {token}] password:"
        password = self._become_password()
        channel = self._transport.open_session(timeout=OPERATION_TIMEOUT)
        flags = ["-S", "-p", prompt] if password is not None else ["-n"]
        wrapper = f'echo {marker} >&2; exec "$@"'
        channel.exec_command(shlex.join(["sudo", *flags, "--", "sh", "-c", wrapper, "sh", *argv]))
        try:
            return channel, self._sudo_handshake(channel, marker, prompt, password)
        except BaseException:
            channel.close()
            raise

    def _become_password(self) -> str | None:
        variable = self.host.become_password_env
        if variable is None:
            return None
        if variable not in os.environ:
            raise OlmirrorError(
                f"host {self.name!r}: become_password_env names {variable}, "
                "but that environment variable is not set"
            )
        return os.environ[variable]

    def _sudo_handshake(
        self, channel: paramiko.Channel, marker: str, prompt: str, password: str | None
    ) -> bytes:
        """Answer sudo's prompt once, then wait until the command itself has started."""
        channel.settimeout(OPERATION_TIMEOUT)
        seen, answered, end = b"", False, f"{marker}\n".encode()
        while end not in seen:
            data = channel.recv_stderr(4096)
            if not data:
                status = channel.recv_exit_status()
                said = seen.decode(errors="replace").replace(prompt, "").strip()
                hint = ""
                if "password is required" in said:
                    hint = (
                        "; sudo needs a password there: put it in an environment variable and "
                        "name that variable in the host's become_password_env"
                    )
                raise OlmirrorError(
                    f"host {self.name!r}: sudo failed (exit {status}): {said or 'no output'}{hint}"
                )
            seen += data
            prompts = seen.count(prompt.encode())
            if prompts > 1:
                raise OlmirrorError(
                    f"host {self.name!r}: sudo refused the password from "
                    f"${self.host.become_password_env}"
                )
            if prompts == 1 and not answered and password is not None:
                channel.sendall(password.encode() + b"\n")
                answered = True
        channel.settimeout(None)
        return seen[seen.index(end) + len(end) :]

    def _communicate(
        self,
        channel: paramiko.Channel,
        stdin: bytes | None,
        timeout: float | None,
        on_line: Callable[[str], None] | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Feed stdin while collecting stdout and stderr until the command ends or times out.

        `on_line` sees each complete stderr line as it arrives.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if stdin:
            threading.Thread(target=_feed, args=(channel, stdin), daemon=True).start()
        else:
            channel.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            ended = channel.eof_received or channel.closed
            while channel.recv_ready():
                out.extend(channel.recv(65536))
            while channel.recv_stderr_ready():
                chunk = channel.recv_stderr(65536)
                if on_line is not None:
                    start = err.rfind(b"\n") + 1
                    err.extend(chunk)
                    for line in bytes(err[start:]).split(b"\n")[:-1]:
                        on_line(line.decode(errors="replace"))
                else:
                    err.extend(chunk)
            if ended:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                channel.close()
                return 124, bytes(out), bytes(err) + f"timed out after {timeout} s".encode()
            select.select([channel], [], [], 5.0 if left is None else min(left, 5.0))
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not channel.status_event.wait(left):
            channel.close()
            return 124, bytes(out), bytes(err) + f"timed out after {timeout} s".encode()
        if channel.exit_status == -1 and self._lost():
            raise OSError("the connection closed before the command ended")
        return channel.exit_status, bytes(out), bytes(err)

    # -- the Connection interface ------------------------------------------------------------

    def _run(self, argv: tuple[str, ...], how: Run) -> CommandResult:
        with self._guard(f"running {shlex.join(argv)}"):
            channel, early = self._open(_with_env(argv, how.env))
            try:
                code, out, err = self._communicate(channel, how.stdin, how.timeout, how.on_line)
            finally:
                channel.close()
        return CommandResult(
            tuple(argv), code, out.decode(errors="replace"), (early + err).decode(errors="replace")
        )

    def read_file(self, path: str) -> bytes:
        with self._guard(f"reading {path}", path):
            answer = self._program.call(
                f"reading {path}", {"op": "read", "path": path}, timeout=OPERATION_TIMEOUT
            )
        return answer["data"]

    def stat(self, path: str) -> PathFact:
        with self._guard(f"checking {path}"):
            answer = self._program.call(
                f"checking {path}", {"op": "stat", "path": path}, timeout=OPERATION_TIMEOUT
            )
        return PathFact.from_probe(answer["fact"])

    def change_files(self, changes: Sequence[FileChange]) -> None:
        ops: list[dict[str, object]] = []
        for change in changes:
            if isinstance(change, WriteFile):
                ops.append({"op": "write", "path": change.path, "mode": change.mode,
                            "size": len(change.data)})  # fmt: skip
            else:
                ops.append({"op": "mkdir", "path": change.path, "mode": change.mode})
        data = b"".join(c.data for c in changes if isinstance(c, WriteFile))
        what = f"changing files ({len(ops)})"
        with self._guard(what):
            request = {"op": "changes", "ops": ops}
            answer = self._program.call(what, request, data, OPERATION_TIMEOUT)
        if "failed" in answer:
            raise PartlyDone(answer["done"], remote_error(answer["failed"], self.name))

    def gather(self, request: FactRequest) -> Facts:
        with self._guard("reading facts"):
            try:
                answer = self._program.call(
                    "reading facts",
                    {"op": "facts", "request": request.as_json()},
                    timeout=self.host.facts_timeout,
                )
            except TimeoutError:
                raise OlmirrorError(
                    f"host {self.name!r}: {self.python or 'python3'} gave no answer within "
                    f"{self.host.facts_timeout:g} s while reading facts; olmirror stopped "
                    "waiting. Check the host (a stalled disk or its Python), or raise "
                    f"hosts.{self.name}.facts_timeout"
                ) from None
        try:
            facts = Facts.from_probe(answer["facts"])
        except (KeyError, TypeError, ValueError) as exc:
            raise OlmirrorError(
                f"host {self.name!r}: the fact probe answered something unexpected "
                f"({type(exc).__name__}: {exc})"
            ) from None
        shim = self._program.hello.get("shim")
        if shim and not self._told_shim:
            self._told_shim = True
            log.debug(
                "host %s: python3 on PATH is a script (%s), so olmirror's programs run with %s "
                "(hosts.%s.python chooses)",
                self.name, shim, self._program.hello.get("python"), self.name,
            )  # fmt: skip
        return facts

    def hold_lock(self, state_dir: str | None) -> None:
        if self._program.holds_lock:
            return
        folder = state_dir or DEFAULT_STATE_DIR
        holder = apply_lock.holder_name(os.getpid(), socket.gethostname())

        def check(answer: dict[str, object]) -> None:
            if "locked" in answer:
                return
            self._program.holds_lock = False
            if "busy" in answer:
                raise OlmirrorError(
                    apply_lock.busy(self.name, str(answer["busy"]), str(answer["who"]))
                )
            failure = answer.get("error")
            reason = remote_error(failure, self.name) if isinstance(failure, dict) else answer
            raise OlmirrorError(f"host {self.name!r}: could not take the apply lock: {reason}")

        with self._guard("taking the apply lock"):
            request = {"op": "lock", "folder": folder, "holder": holder}
            self._program.send_ahead("taking the apply lock", request, check)
        self._program.holds_lock = True

    def close(self) -> None:
        with suppress(Exception):
            self._program.close()
        self.session.close()


def _with_env(argv: Sequence[str], env: dict[str, str] | None) -> list[str]:
    """`env NAME=VALUE... argv`: sshd accepts few variables from clients, `env` takes any."""
    if not env:
        return list(argv)
    bad = [name for name in env if not _ENV_NAME.fullmatch(name)]
    if bad:
        raise OlmirrorError(f"not valid environment variable names: {', '.join(map(repr, bad))}")
    return ["env", *(f"{name}={value}" for name, value in env.items()), *argv]


def _feed(channel: paramiko.Channel, data: bytes) -> None:
    with suppress(OSError, EOFError, paramiko.SSHException):
        channel.sendall(data)
        channel.shutdown_write()
