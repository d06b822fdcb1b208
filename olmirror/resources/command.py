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

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))

    @property
    def id(self) -> str:
        return f"command {shlex.join(self.argv)}"

    @property
    def _program_is_path(self) -> bool:
        return "/" in self.argv[0]

    def request(self) -> FactRequest:
        program = frozenset({self.argv[0]})
        if self._program_is_path:
            return FactRequest(paths=program | {self.creates})
        return FactRequest(paths=frozenset({self.creates}), programs=program)

    def observe(self, facts: Facts) -> str:
        return "present" if facts.path(self.creates).kind else "absent"

    def _program_found(self, facts: Facts) -> bool:
        if self._program_is_path:
            return facts.path(self.argv[0]).kind == "file"
        return facts.programs.get(self.argv[0]) is not None

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        if facts.path(self.creates).kind is not None:
            return self.unchanged(f"{self.creates} exists, so `{shlex.join(self.argv)}` is not run")
        if not self._program_found(facts):
            where = "at that path" if self._program_is_path else "on PATH"
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
        return frozenset({self.creates})
