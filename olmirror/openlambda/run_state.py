"""An OpenLambda worker's run state, through `ol worker status|up -d|down -p PATH`.

A running worker whose config.json or requirements change in this apply is
restarted once, after all of its changes, as an Ansible handler would be.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError

# The longest path of a UNIX socket on Linux (sun_path holds 108 bytes with its NUL).
MAX_UNIX_PATH = 107
# Exit codes of a program that could not be run at all (POSIX shells, and our connections).
_CANNOT_RUN = (126, 127)


def _output(result: CommandResult) -> str:
    return result.stderr.strip() or result.stdout.strip() or "no output"


@dataclass(frozen=True)
class WorkerState(Resource):
    kind = "ol_worker_state"
    ol: str
    path: str
    state: str
    watches: tuple[str, ...]
    host: str  # the host's name in the spec, for messages
    worker: str  # the worker's name in the spec, for messages
    # Where OpenLambda's main branch listens for `ol worker up` (go/worker/event/server.go:
    # 285-297); empty for the older generation, which answers on its TCP port.
    unix_socket: str = ""

    @property
    def id(self) -> str:
        return f"worker {self.path}"

    @property
    def _name(self) -> str:
        return f"worker {self.worker!r}"

    def _ol(self, action: str, *extra: str) -> tuple[str, ...]:
        return (self.ol, "worker", action, "-p", self.path, *extra)

    @property
    def pid_file(self) -> str:
        """<worker_dir>/worker.pid, there while the worker runs (server.go:244-270)."""
        return posixpath.join(self.path, "worker", "worker.pid")

    def request(self) -> FactRequest:
        status = FactRequest(
            commands=frozenset({self._ol("status")}), paths=frozenset({self.pid_file})
        )
        return FactRequest.for_program(self.ol).merge(status)

    def _missing(self, reason: str) -> ResourceError:
        where, setting = f"host {self.host!r}", f"hosts.{self.host}.ol"
        return ResourceError(
            f"cannot run OpenLambda's {self.ol!r} on {where} ({reason}), which checks, starts "
            f"and stops {self._name}; install OpenLambda on {where}, or set {setting} to the "
            "path of its `ol` program"
        )

    def _check_program(self, facts: Facts) -> None:
        problem = facts.program_problem(self.ol)
        if problem:
            raise self._missing(problem)

    def _running(self, status: CommandResult, pid_file: str | None) -> bool:
        """`ol worker status` only asks localhost:<worker_port> (commands.go:215-240), which
        any program on that port answers; the worker's own pid file must be there too."""
        if status.returncode in _CANNOT_RUN:
            raise self._missing(_output(status).splitlines()[-1])
        return status.returncode == 0 and pid_file == "file"

    def observe(self, facts: Facts) -> str:
        status = facts.command(self._ol("status"))
        if status.returncode in _CANNOT_RUN:
            return "cannot run ol"
        running = status.ok and facts.path(self.pid_file).kind == "file"
        return "running" if running else "stopped"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        self._check_program(facts)
        if self.state == "running" and len(self.unix_socket.encode()) > MAX_UNIX_PATH:
            raise ResourceError(
                f"{self._name} cannot start: OpenLambda listens on {self.unix_socket}, "
                f"{len(self.unix_socket.encode())} bytes, and a UNIX socket's path may have at "
                f"most {MAX_UNIX_PATH}; give the worker a shorter path"
            )
        running = self._running(facts.command(self._ol("status")), facts.path(self.pid_file).kind)
        changed = sorted(set(self.watches) & pending)
        if self.state == "stopped":
            if running:
                return Change(self, "run", f"stop the worker: `{shlex.join(self._ol('down'))}`")
            return self.unchanged(f"worker {self.path} is stopped")
        if not running:
            return Change(self, "run", f"start the worker: `{shlex.join(self._ol('up', '-d'))}`")
        if changed:
            return Change(
                self,
                "run",
                f"restart the worker {self.path}, as its configuration changes",
                tuple(f"~ {path}" for path in changed),
            )
        return self.unchanged(f"worker {self.path} is running")

    def _do(self, conn: Connection, argv: tuple[str, ...], what: str) -> None:
        result = conn.run(argv, timeout=900)
        if result.returncode in _CANNOT_RUN:
            raise self._missing(_output(result).splitlines()[-1])
        if not result.ok:
            raise ResourceError(
                f"{self._name} did not {what}: `{shlex.join(argv)}` failed "
                f"({result.returncode}): {_output(result)[-800:]}"
            )

    def apply(self, conn: Connection) -> None:
        status = conn.run(self._ol("status"), timeout=60)
        running = self._running(status, conn.stat(self.pid_file).kind)
        if running:
            self._do(conn, self._ol("down"), "stop")
        if self.state == "running":
            self._do(conn, self._ol("up", "-d"), "start")
