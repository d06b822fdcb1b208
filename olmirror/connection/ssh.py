"""A remote host over SSH (paramiko): one login per host per run, reused by every resource.

Commands are single argv lists quoted with `shlex.join` for the remote login shell (SSH has
no way around it); files travel over SFTP and replace their target atomically. Facts and the
apply lock are each one remote `python3` process, so a no-op plan costs one command per host.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import secrets
import select
import shlex
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import paramiko
from paramiko.sftp import CMD_EXTENDED

from olmirror.connection import apply_lock, probe
from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts, PathFact
from olmirror.connection.local import DEFAULT_STATE_DIR, TMP_SUFFIX
from olmirror.connection.ssh_dial import Session, open_session
from olmirror.errors import OlmirrorError, Unreachable
from olmirror.spec import Host

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPERATION_TIMEOUT = 120.0
PROBE_SOURCE = Path(probe.__file__).read_text()
log = logging.getLogger(__name__)

# Holds the apply lock for as long as its stdin stays open: when the connection dies, sshd
# closes that stdin, the process exits and the kernel drops the lock. Same file and flock
# as the local connection, so a local and a remote apply on one machine exclude each other.
LOCKER_SOURCE = Path(apply_lock.__file__).read_text()

# Where distributions put OpenSSH's SFTP server, for SFTP as root through sudo.
SFTP_SERVER = (
    "for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server "
    "/usr/lib/ssh/sftp-server /usr/libexec/sftp-server /usr/lib/sftp-server; do "
    '[ -x "$p" ] && exec "$p"; done; echo "sftp-server not found" >&2; exit 127'
)


class SSHConnection(Connection):
    """A host reached over SSH; `become` runs every step through sudo."""

    def __init__(self, name: str, host: Host, session: Session) -> None:
        self.name = name
        self.host = host
        self.python = host.python
        self.session = session
        self._sftp: paramiko.SFTPClient | None = None

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

    def _sftp_client(self) -> paramiko.SFTPClient:
        """The host's SFTP session, opened on first use (a no-op plan never needs one)."""
        if self._sftp is None:
            if self.host.become:
                channel, _ = self._open(["sh", "-c", SFTP_SERVER])
                self._sftp = paramiko.SFTPClient(channel)
            else:
                self._sftp = self.session.client.open_sftp()
            self._sftp.get_channel().settimeout(OPERATION_TIMEOUT)
        return self._sftp

    # -- the Connection interface ------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        with self._guard(f"running {shlex.join(argv)}"):
            channel, early = self._open(_with_env(argv, env))
            try:
                code, out, err = self._communicate(channel, stdin, timeout, on_line)
            finally:
                channel.close()
        return CommandResult(
            tuple(argv), code, out.decode(errors="replace"), (early + err).decode(errors="replace")
        )

    def read_file(self, path: str) -> bytes:
        with self._guard(f"reading {path}", path), self._sftp_client().open(path, "rb") as handle:
            handle.prefetch()
            return handle.read()

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        with self._guard(f"writing {path}", path):
            _atomic_write(self._sftp_client(), path, data, mode)

    def stat(self, path: str) -> PathFact:
        with self._guard(f"checking {path}"):
            try:
                attrs = self._sftp_client().stat(path)
            except FileNotFoundError:
                return PathFact(None)
            except PermissionError as exc:
                return PathFact("error", error=exc.strerror or str(exc))
        kind = {stat.S_IFDIR: "dir", stat.S_IFREG: "file"}.get(
            stat.S_IFMT(attrs.st_mode or 0), "other"
        )
        return PathFact(kind, stat.S_IMODE(attrs.st_mode or 0))

    def make_dir(self, path: str, mode: int = 0o755) -> None:
        with self._guard(f"creating directory {path}", path):
            sftp = self._sftp_client()
            missing, folder = [], posixpath.normpath(path)
            while folder not in ("/", "", "."):
                try:
                    attrs = sftp.stat(folder)
                except FileNotFoundError:
                    missing.append(folder)
                    folder = posixpath.dirname(folder)
                    continue
                if not stat.S_ISDIR(attrs.st_mode or 0):
                    raise NotADirectoryError(20, "Not a directory", folder)
                break
            for folder in reversed(missing):
                try:
                    sftp.mkdir(folder, mode)
                except OSError:
                    if not stat.S_ISDIR(sftp.stat(folder).st_mode or 0):
                        raise
            sftp.chmod(path, mode)

    def gather(self, request: FactRequest) -> Facts:
        argv = list(self.script(PROBE_SOURCE))
        with self._guard("reading facts"):
            channel, early = self._open(argv)
            try:
                stdin = json.dumps(request.as_json()).encode()
                code, out, err = self._communicate(channel, stdin, self.host.facts_timeout)
            finally:
                channel.close()
        said = (early + err).decode(errors="replace").strip()[-800:] or "no output"
        if code == 124:
            raise OlmirrorError(
                f"host {self.name!r}: {self.python or 'python3'} gave no answer within "
                f"{self.host.facts_timeout:g} s "
                f"while reading facts; olmirror stopped waiting. Check the host (a stalled disk "
                f"or its Python), or raise hosts.{self.name}.facts_timeout"
            )
        if code == 127:
            raise OlmirrorError(
                f"host {self.name!r}: {self.python or 'python3'} is not found there; olmirror "
                f"needs a Python 3 to read facts: install python3, or set "
                f"hosts.{self.name}.python to one ({said})"
            )
        if code != 0:
            raise OlmirrorError(f"host {self.name!r}: reading facts failed (exit {code}): {said}")
        try:
            # The probe prints one line of JSON last; a chatty login shell may print before it.
            raw = json.loads(out.strip().rsplit(b"\n", 1)[-1])
            facts = Facts.from_probe(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise OlmirrorError(
                f"host {self.name!r}: the fact probe printed something unexpected ({exc}): {said}"
            ) from None
        python = raw.get("python") if isinstance(raw, dict) else None
        if isinstance(python, dict) and python.get("shim"):
            log.debug(
                "host %s: python3 on PATH is a script (%s), so olmirror's programs run with %s "
                "(hosts.%s.python chooses)",
                self.name, python["shim"], python.get("executable"), self.name,
            )  # fmt: skip
        return facts

    @contextmanager
    def lock(self, state_dir: str | None) -> Iterator[None]:
        holder = apply_lock.holder_name(os.getpid(), socket.gethostname())
        argv = list(self.script(LOCKER_SOURCE, state_dir or DEFAULT_STATE_DIR, holder))
        with self._guard("taking the apply lock"):
            channel, _ = self._open(argv)
            try:
                channel.settimeout(OPERATION_TIMEOUT)
                answer = _lock_answer(channel)
            except BaseException:
                channel.close()
                raise
        try:
            if answer.startswith("busy "):
                path, _, who = answer.removeprefix("busy ").partition("\t")
                raise OlmirrorError(apply_lock.busy(self.name, path, who or "unknown"))
            if answer != "locked":
                said = channel.makefile_stderr("rb").read().decode(errors="replace").strip()
                raise OlmirrorError(
                    f"host {self.name!r}: could not take the apply lock: "
                    f"{said[-800:] or 'no output'}"
                )
            yield
        finally:
            _release(channel)

    def close(self) -> None:
        if self._sftp is not None:
            with suppress(Exception):
                self._sftp.close()
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


def _lock_answer(channel: paramiko.Channel) -> str:
    """The lock holder's answer ("locked", "busy PATH\tWHO"), past any login-shell chatter;
    "" if it ends without one."""
    handle = channel.makefile("rb")
    while line := handle.readline():
        _, found, answer = line.decode(errors="replace").partition(apply_lock.ANSWER)
        if found:  # shell output without a newline may come first on the line
            return answer.strip()
    return ""


def _release(channel: paramiko.Channel) -> None:
    """End the lock holder by closing its stdin, and wait for it so the lock is free on return."""
    with suppress(OSError, EOFError, paramiko.SSHException):
        channel.shutdown_write()
        channel.status_event.wait(OPERATION_TIMEOUT)
    channel.close()


def _atomic_write(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int | None) -> None:
    """Temp file beside `path` (mode set before any byte lands), fsync, then POSIX rename.

    The temp name is fixed per target: writes happen under the apply lock, so one left by
    a connection that died is simply replaced by the next write of the same file.
    """
    try:
        old: paramiko.SFTPAttributes | None = sftp.stat(path)
    except FileNotFoundError:
        old = None
    if mode is None:
        mode = stat.S_IMODE(old.st_mode or 0) if old is not None else 0o644
    folder, base = posixpath.split(path)
    temp = posixpath.join(folder, f".{base}.ssh{TMP_SUFFIX}")
    with suppress(FileNotFoundError):
        sftp.remove(temp)
    try:
        with sftp.open(temp, "wbx") as handle:
            handle.chmod(mode)
            if old is not None:
                _keep_owner(handle, old)
            handle.set_pipelined(True)
            handle.write(data)
            handle.flush()
            _fsync(sftp, handle)
        sftp.posix_rename(temp, path)
    except BaseException:
        with suppress(Exception):
            sftp.remove(temp)
        raise


def _keep_owner(handle: paramiko.SFTPFile, old: paramiko.SFTPAttributes) -> None:
    """Give the new file the old one's owner when we may (as root, through `become`)."""
    now = handle.stat()
    if (now.st_uid, now.st_gid) != (old.st_uid, old.st_gid) and old.st_uid is not None:
        with suppress(PermissionError):
            handle.chown(old.st_uid, old.st_gid or 0)


def _fsync(sftp: paramiko.SFTPClient, handle: paramiko.SFTPFile) -> None:
    """OpenSSH's fsync@openssh.com extension; servers without it just skip the fsync."""
    try:
        sftp._request(CMD_EXTENDED, "fsync@openssh.com", handle.handle)  # no public API
    except OSError as exc:
        if "unsupported" not in str(exc).lower():
            raise
