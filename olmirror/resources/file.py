"""A text file with exact content and mode."""

from __future__ import annotations

import difflib
import hashlib
import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError


def unified_diff(path: str, old: str, new: str) -> tuple[str, ...]:
    """A unified diff without trailing newlines, ready to print line by line."""
    return tuple(
        line.rstrip("\n")
        for line in difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path} (now)",
            tofile=f"{path} (planned)",
        )
    )


@dataclass(frozen=True)
class File(Resource):
    kind = "file"
    path: str
    content: str
    mode: int = 0o644

    @property
    def id(self) -> str:
        return f"file {self.path}"

    @property
    def _parent(self) -> str:
        return posixpath.dirname(self.path)

    def request(self) -> FactRequest:
        return FactRequest(paths=frozenset({self._parent}), content=frozenset({self.path}))

    def observe(self, facts: Facts) -> str:
        fact = facts.path(self.path)
        return f"{fact.kind}:{fact.mode}:{fact.sha256}"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        fact = facts.path(self.path)
        data = self.content.encode()
        if fact.kind is None:
            parent = facts.path(self._parent)
            if parent.kind != "dir" and self._parent not in pending:
                raise ResourceError(
                    f"cannot create {self.path}: its folder {self._parent} does not exist"
                )
            return Change(
                self,
                "create",
                f"create file {self.path} (mode {self.mode:04o})",
                unified_diff(self.path, "", self.content),
            )
        if fact.kind != "file":
            raise ResourceError(
                f"{self.path} exists but is not a regular file ({fact.error or fact.kind}); "
                "move it away so olmirror can write the file"
            )
        diff: tuple[str, ...] = ()
        if fact.sha256 != hashlib.sha256(data).hexdigest():
            old = (fact.content or b"").decode(errors="replace")
            diff = unified_diff(self.path, old, self.content)
        if fact.mode != self.mode:
            diff = (f"mode {fact.mode:04o} -> {self.mode:04o}", *diff)
        if diff:
            return Change(self, "update", f"update file {self.path}", diff)
        return self.unchanged(f"file {self.path}")

    def apply(self, conn: Connection) -> None:
        conn.write_file(self.path, self.content.encode(), self.mode)

    def provides(self) -> frozenset[str]:
        return frozenset({self.path})
