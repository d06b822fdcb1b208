"""A lambda's `<registry>/<name>.tar.gz`: present with exactly these files, or gone.

Compared member by member (name, mode, text), not byte by byte, so that another zlib
on another machine never makes an unchanged lambda look changed. `present=False` is
for an older OpenLambda that reads folder lambdas: it reads `<name>.tar.gz` first
(src/worker/lambda/handlerPuller.go:140-145 at 63e30bc6), so a tarball olmirror wrote
for this lambda before must go; one that holds anything else is left for its owner.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.openlambda.tarball import Member, build, read
from olmirror.resources.base import Change, Resource, ResourceError
from olmirror.resources.file import unified_diff


def wanted_members(members: tuple[tuple[str, str, int], ...]) -> list[Member]:
    """A resource's (name, text, mode) members, in the tarball's order."""
    return sorted((Member(name, text.encode(), mode) for name, text, mode in members),
                  key=lambda m: m.name)  # fmt: skip


def members_diff(path: str, current: list[Member], wanted: list[Member]) -> tuple[str, ...]:
    """The tarball `path`'s change, member by member, as a unified diff of each text."""
    old = {m.name: m for m in current}
    new = {m.name: m for m in wanted}
    lines: list[str] = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        label = f"{path}:{name}"
        if before and after and before.mode != after.mode:
            lines.append(f"{label}: mode {before.mode:04o} -> {after.mode:04o}")
        text_before = before.data.decode(errors="replace") if before else ""
        text_after = after.data.decode(errors="replace") if after else ""
        if not before or not after or before.data != after.data:
            lines += unified_diff(label, text_before, text_after)
    return tuple(lines)


@dataclass(frozen=True)
class LambdaTarball(Resource):
    kind = "lambda_tarball"
    path: str
    members: tuple[tuple[str, str, int], ...]  # (name, text, mode)
    present: bool = True

    @property
    def id(self) -> str:
        return f"lambda {self.path}"

    def _wanted(self) -> list[Member]:
        return wanted_members(self.members)

    def request(self) -> FactRequest:
        return FactRequest(
            paths=frozenset({posixpath.dirname(self.path)}), content=frozenset({self.path})
        )

    def observe(self, facts: Facts) -> str:
        fact = facts.path(self.path)
        return f"{fact.kind}:{fact.sha256}"

    def _current(self, facts: Facts) -> list[Member] | None:
        fact = facts.path(self.path)
        if fact.kind is None:
            return None
        if fact.kind != "file" or fact.content is None:
            raise ResourceError(
                f"{self.path} is not a regular file olmirror can read ({fact.error or fact.kind}); "
                "move it away so olmirror can write the lambda"
            )
        try:
            return read(fact.content)
        except ValueError as exc:
            if not self.present:
                return []
            raise ResourceError(
                f"{self.path}: {exc}; remove it so that olmirror writes the lambda again"
            ) from None

    def _diff(self, current: list[Member]) -> tuple[str, ...]:
        return members_diff(self.path, current, self._wanted())

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        current = self._current(facts)
        if not self.present:
            if current is None:
                return self.unchanged(f"no {self.path}")
            if current != self._wanted():
                raise ResourceError(
                    f"{self.path} shadows the lambda folder olmirror writes beside it (OpenLambda "
                    "reads <name>.tar.gz first), and olmirror did not write it; remove it"
                )
            return Change(self, "update", f"remove {self.path}, which shadows the lambda folder")
        if current is None:
            parent = posixpath.dirname(self.path)
            if facts.path(parent).kind != "dir" and parent not in pending:
                raise ResourceError(f"cannot create {self.path}: {parent} does not exist")
            return Change(self, "create", f"create lambda {self.path}", self._diff([]))
        if current == self._wanted():
            return self.unchanged(f"lambda {self.path}")
        return Change(self, "update", f"update lambda {self.path}", self._diff(current))

    def apply(self, conn: Connection) -> None:
        if self.present:
            conn.write_file(self.path, build(self._wanted()), 0o644)
            return
        result = conn.run(("rm", "-f", "--", self.path), timeout=60)
        if not result.ok:
            raise ResourceError(f"cannot remove {self.path}: {result.stderr.strip()[-400:]}")

    def provides(self) -> frozenset[str]:
        return frozenset({self.path}) if self.present else frozenset()
