"""A directory that must exist, optionally with a mode."""

from __future__ import annotations

from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError


@dataclass(frozen=True)
class Directory(Resource):
    kind = "directory"
    path: str
    mode: int | None = None

    @property
    def id(self) -> str:
        return f"directory {self.path}"

    def request(self) -> FactRequest:
        return FactRequest(paths=frozenset({self.path}))

    def observe(self, facts: Facts) -> str:
        fact = facts.path(self.path)
        return f"{fact.kind}:{fact.mode}"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        fact = facts.path(self.path)
        if fact.kind is None:
            mode = f" (mode {self.mode:04o})" if self.mode is not None else ""
            return Change(self, "create", f"create directory {self.path}{mode}")
        if fact.kind != "dir":
            raise ResourceError(
                f"{self.path} exists but is not a directory ({fact.error or fact.kind}); "
                "move it away so the directory can be created"
            )
        if self.mode is not None and fact.mode != self.mode:
            return Change(
                self,
                "update",
                f"chmod directory {self.path}",
                (f"mode {fact.mode:04o} -> {self.mode:04o}",),
            )
        return self.unchanged(f"directory {self.path}")

    def apply(self, conn: Connection) -> None:
        conn.make_dir(self.path, 0o755 if self.mode is None else self.mode)

    def provides(self) -> frozenset[str]:
        return frozenset({self.path})
