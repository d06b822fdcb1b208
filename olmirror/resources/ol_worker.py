"""An OpenLambda worker's run state, through `ol worker status|up -d|down -p PATH`.

A running worker whose config.json or requirements change in this apply is
restarted once, after all of its changes, as an Ansible handler would be.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError


@dataclass(frozen=True)
class WorkerState(Resource):
    kind = "ol_worker_state"
    ol: str
    path: str
    state: str
    watches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "watches", tuple(self.watches))

    @property
    def id(self) -> str:
        return f"worker {self.path}"

    def _ol(self, action: str, *extra: str) -> tuple[str, ...]:
        return (self.ol, "worker", action, "-p", self.path, *extra)

    def request(self) -> FactRequest:
        return FactRequest(commands=frozenset({self._ol("status")}))

    def _running(self, status: CommandResult) -> bool:
        return status.returncode == 0

    def observe(self, facts: Facts) -> str:
        return "running" if self._running(facts.command(self._ol("status"))) else "stopped"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        running = self._running(facts.command(self._ol("status")))
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

    def _do(self, conn: Connection, argv: tuple[str, ...]) -> None:
        result = conn.run(argv, timeout=900)
        if not result.ok:
            reason = (result.stderr.strip() or result.stdout.strip() or "no output")[-800:]
            raise ResourceError(f"`{shlex.join(argv)}` failed ({result.returncode}): {reason}")

    def apply(self, conn: Connection) -> None:
        running = self._running(conn.run(self._ol("status"), timeout=60))
        if running:
            self._do(conn, self._ol("down"))
        if self.state == "running":
            self._do(conn, self._ol("up", "-d"))
