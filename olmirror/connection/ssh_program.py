"""The client of the host program (`host_program.py`) over one SSH channel.

The program starts with the first request and lives until the connection closes. A
request may be sent ahead, without waiting (the apply lock): its answer is read, and
checked, together with the next request's, so it costs no round trip of its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import paramiko

from olmirror.errors import OlmirrorError
from olmirror.remote.host_program import ANSWER

Answer = dict[str, Any]
Check = Callable[[Answer], None]


class ProgramEnded(OlmirrorError):
    """The host program is gone: it never started, or it ended while answering."""


def remote_error(failure: dict[str, Any], host: str) -> Exception:
    """The exception a failure the program reported stands for: an OSError with its errno
    (so FileNotFoundError and its kin) when it has one."""
    if failure.get("errno") is not None:
        return OSError(failure["errno"], failure["strerror"], failure.get("filename"))
    return OlmirrorError(f"host {host!r}: {failure.get('message', 'the host program failed')}")


class ProgramChannel:
    """One host program; `start` opens its channel (through sudo with `become`) and returns
    it with any stderr that sudo left over."""

    def __init__(
        self, host: str, start: Callable[[], tuple[paramiko.Channel, bytes]], python: str
    ) -> None:
        self.host, self._start, self._python = host, start, python
        self._channel: paramiko.Channel | None = None
        self._reader: Any = None
        self._early = b""
        self._greeted = False
        self._ahead: list[Check] = []
        self._lost: str | None = None  # why the program, and a lock it held, is gone
        self.holds_lock = False
        self.hello: Answer = {}
        self._mutex = threading.Lock()

    def send_ahead(self, what: str, request: Answer, check: Check) -> None:
        """Send `request` now; `check` sees its answer when the next call reads answers.
        `what` says what it is for, in errors ("taking the apply lock")."""
        with self._mutex:
            self._write(what, request, b"")
            self._ahead.append(check)

    def call(
        self, what: str, request: Answer, data: bytes = b"", timeout: float | None = None
    ) -> Answer:
        """Send `request` (and `data`) and return its answer, raw bytes under "data"; a
        failure the program reports is raised (`remote_error`)."""
        with self._mutex:
            self._write(what, request, data)
            checks, self._ahead = [*self._ahead, None], []
            answers = [self._answer(what, timeout) for _ in checks]
        for check, answer in zip(checks, answers, strict=True):
            if check is not None:
                check(answer)
        if "error" in answers[-1]:
            raise remote_error(answers[-1]["error"], self.host)
        return answers[-1]

    def close(self) -> None:
        """End the program; with a lock held, wait until it has ended, so that the lock is
        free when this returns."""
        if self._channel is not None:
            with suppress(OSError, EOFError, paramiko.SSHException):
                self._channel.shutdown_write()
                if self.holds_lock:
                    self._channel.status_event.wait(5)
            self._channel.close()
            self._channel = None

    # ---------------------------------------------------------------------------------------

    def _write(self, what: str, request: Answer, data: bytes) -> None:
        if self._lost is not None:
            raise ProgramEnded(self._lost)
        if self._channel is None:
            self._channel, early = self._start()
            self._reader = self._channel.makefile("rb")
            self._early, self._greeted = early, False
        try:
            self._channel.sendall(json.dumps(request).encode() + b"\n" + data)
        except OSError:
            ended = self._ended(what) if self._channel.closed else None
            self._drop(what)
            if ended is None:
                raise
            raise ended from None
        except BaseException:
            self._drop(what)
            raise

    def _answer(self, what: str, timeout: float | None) -> Answer:
        assert self._channel is not None
        self._channel.settimeout(timeout)
        try:
            if not self._greeted:
                self.hello, self._greeted = self._line(what), True
            answer = self._line(what)
            if "size" in answer:
                answer["data"] = self._exactly(what, answer["size"])
            return answer
        except BaseException:
            self._drop(what)
            raise

    def _line(self, what: str) -> Answer:
        """The next answer line, past anything a login shell printed before the program."""
        while True:
            line = self._reader.readline()
            if not line:
                raise self._ended(what)
            _, found, answer = line.decode(errors="replace").partition(ANSWER)
            if found:
                return json.loads(answer)

    def _exactly(self, what: str, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) != size:
            raise self._ended(what)
        return data

    def _ended(self, what: str) -> Exception:
        """Why the program stopped answering, from its exit status and what it said; an
        EOFError when it has none, as when the connection died (`_guard` tells which)."""
        assert self._channel is not None
        code = self._channel.exit_status if self._channel.status_event.wait(5) else -1
        if code == -1:
            return EOFError("the channel closed before olmirror's program answered")
        said = self._early + self._channel.makefile_stderr("rb").read()
        said_text = said.decode(errors="replace").strip()[-800:] or "no output"
        if code == 127:
            return ProgramEnded(
                f"host {self.host!r}: {self._python} is not found there; olmirror needs a "
                f"Python 3 there: install python3, or set hosts.{self.host}.python to one "
                f"({said_text})"
            )
        return ProgramEnded(f"host {self.host!r}: {what} failed (exit {code}): {said_text}")

    def _drop(self, what: str) -> None:
        """After a failure the stream is out of step: the program goes (a later request
        starts another), and with it any lock it held, which no later request may assume."""
        if self.holds_lock:
            self._lost = (
                f"host {self.host!r}: the connection to the host program was lost while "
                f"{what}, and the apply lock with it; run apply again"
            )
        self._ahead = []
        channel, self._channel = self._channel, None
        if channel is not None:
            with suppress(OSError, EOFError, paramiko.SSHException):
                channel.close()
