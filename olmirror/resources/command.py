"""A program run only when its condition holds: the path it creates does not exist yet."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError


@dataclass(frozen=True)
class Command(Resource):
    kind = "command"
    argv: tuple[str, ...]
    creates: str
    missing_hint: str = ""
    also: tuple[str, ...] = ()  # other paths the program is known to create

    @property
    def id(self) -> str:
        return f"command {shlex.join(self.argv)}"

    def request(self) -> FactRequest:
        return FactRequest.for_program(self.argv[0]).merge(
            FactRequest(paths=frozenset({self.creates}))
        )

    def observe(self, facts: Facts) -> str:
        return "present" if facts.path(self.creates).kind else "absent"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        if facts.path(self.creates).kind is not None:
            return self.unchanged(f"{self.creates} exists, so `{shlex.join(self.argv)}` is not run")
        if facts.program_problem(self.argv[0]):
            where = "at that path" if "/" in self.argv[0] else "on PATH"
            raise ResourceError(
                f"program {self.argv[0]!r} not found {where}, and it is needed to create "
                f"{self.creates}{'; ' + self.missing_hint if self.missing_hint else ''}"
            )
        return Change(self, "run", f"run `{shlex.join(self.argv)}` (creates {self.creates})")

    def apply(self, conn: Connection) -> None:
        result = conn.run(self.argv, timeout=600)
        if not result.ok:
            reason = (result.stderr.strip() or result.stdout.strip() or "no output")[-800:]
            raise ResourceError(
                f"`{shlex.join(self.argv)}` failed with exit code {result.returncode}: {reason}"
            )
        if conn.stat(self.creates).kind is None:
            raise ResourceError(
                f"`{shlex.join(self.argv)}` succeeded but did not create {self.creates}"
            )

    def provides(self) -> frozenset[str]:
        return frozenset({self.creates, *self.also})
