"""A wheel olmirror built from an sdist (`wheel_build.py`), placed in the mirror from the
machine that runs olmirror: the upstream has no such file for the mirror host to fetch."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts, MakeDir, WriteFile
from olmirror.resources.base import Change, Resource, ResourceError


@dataclass(frozen=True)
class BuiltWheel(Resource):
    kind = "built_wheel"
    path: str  # in the mirror's web folder
    sha256: str
    size: int
    source: str  # the wheel on this machine, in the state folder
    sdist: str  # what it was built from, for the plan's reader

    @property
    def id(self) -> str:
        return f"built wheel {self.path}"

    def request(self) -> FactRequest:
        return FactRequest(hashes=frozenset({self.path}))

    def observe(self, facts: Facts) -> str:
        fact = facts.path(self.path)
        return f"{fact.kind}:{fact.sha256}"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        fact = facts.path(self.path)
        if fact.kind == "file" and fact.sha256 == self.sha256:
            return self.unchanged(f"built wheel {posixpath.basename(self.path)}")
        if fact.kind not in (None, "file"):
            raise ResourceError(
                f"{self.path} is not a regular file ({fact.error or fact.kind}); move it away "
                "so olmirror can place the wheel it built"
            )
        action = "create" if fact.kind is None else "update"
        return Change(
            self,
            action,
            f"place {posixpath.basename(self.path)} ({self.size / 1000:.0f} kB), built from "
            f"{self.sdist}",
        )

    def apply(self, conn: Connection) -> None:
        try:
            with open(self.source, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ResourceError(
                f"cannot read the wheel built from {self.sdist} ({exc.strerror}); run the plan "
                "again so olmirror builds it again"
            ) from None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ResourceError(
                f"{self.source} is not the wheel the lock records for {self.sdist}; run the "
                "plan again so olmirror builds it again"
            )
        conn.change_files(
            [MakeDir(posixpath.dirname(self.path)), WriteFile(self.path, data, 0o644)]
        )

    def provides(self) -> frozenset[str]:
        return frozenset({self.path})
