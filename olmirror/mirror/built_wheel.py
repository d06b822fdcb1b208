"""A wheel olmirror built from an sdist (`lock/wheel_build.py`), placed in the mirror from the
machine that runs olmirror: the upstream has no such file for the mirror host to fetch.

It comes from the state folder beside the spec, where the plan that locked it kept it. A
checkout without it (another machine, a CI job) builds it again only when the mirror lacks
it, at apply, and places it only if the rebuild is the very wheel the lock records.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

from olmirror.connection.base import Connection, FactRequest, Facts, MakeDir, WriteFile
from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import LockedFile
from olmirror.lock.upstream_auth import NETRC, AuthSource, credentials
from olmirror.lock.wheel_build import build_wheel, kept_wheel, rebuilt
from olmirror.remote.upstream_http import Retries
from olmirror.resources.base import Change, Resource, ResourceError


@dataclass(frozen=True)
class BuiltWheel(Resource):
    kind = "built_wheel"
    path: str  # in the mirror's web folder
    sha256: str
    size: int
    sdist: tuple[str, str, str]  # (name, URL, sha256) of what it is built from
    state: str | None  # the state folder that keeps built wheels; None: none
    upstream: str  # where a rebuild gets its build requirements, with these:
    ca_file: str | None
    index_timeout: float
    retries: Retries
    auth: AuthSource = NETRC  # where the upstream's credentials are, read at a rebuild

    @property
    def id(self) -> str:
        return f"built wheel {self.path}"

    def request(self) -> FactRequest:
        return FactRequest(hashes=frozenset({self.path}))

    def observe(self, facts: Facts) -> str:
        fact = facts.path(self.path)
        return f"{fact.kind}:{fact.sha256}"

    def _kept(self) -> Path | None:
        return kept_wheel(Path(self.state) if self.state else None, self.sdist[2])

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        fact = facts.path(self.path)
        name = posixpath.basename(self.path)
        if fact.kind == "file" and fact.sha256 == self.sha256:
            return self.unchanged(f"built wheel {name}")
        if fact.kind not in (None, "file"):
            raise ResourceError(
                f"{self.path} is not a regular file ({fact.error or fact.kind}); move it away "
                "so olmirror can place the wheel it built"
            )
        how = "" if self._kept() else ", to be built again first (not kept on this machine)"
        return Change(
            self,
            "create" if fact.kind is None else "update",
            f"place {name} ({self.size / 1000:.0f} kB), built from {self.sdist[0]}{how}",
        )

    def _wheel(self) -> bytes:
        """The locked wheel's bytes: kept, else built again and checked against the lock."""
        kept = self._kept()
        if kept is None:
            sdist = LockedFile(*self.sdist)
            state = Path(self.state) if self.state else None
            try:
                found = credentials(self.auth, self.upstream)
                built = build_wheel(
                    sdist, self.upstream, self.ca_file, self.index_timeout, self.retries, state,
                    found,
                )  # fmt: skip
                kept = rebuilt(posixpath.basename(self.path), self.sha256, built)
            except OlmirrorError as exc:
                raise ResourceError(str(exc)) from None
        data = kept.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ResourceError(
                f"{kept} is not the wheel the lock records for {self.sdist[0]}; remove it so "
                "the next apply builds it again"
            )
        return data

    def apply(self, conn: Connection) -> None:
        data = self._wheel()
        conn.change_files(
            [MakeDir(posixpath.dirname(self.path)), WriteFile(self.path, data, 0o644)]
        )

    def provides(self) -> frozenset[str]:
        return frozenset({self.path})
