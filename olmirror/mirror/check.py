"""The mirror answers from a worker's host: its simple index is readable there.

A worker installs with `pip install --index-url <pip_mirror>/simple/`; if that
address or path does not answer from the worker's own host, every install fails
later with "unable to find /host/files". Checked from the worker's host itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError


@dataclass(frozen=True)
class MirrorReachable(Resource):
    kind = "mirror_reachable"
    needs_served_mirror = True
    worker: str
    pip_mirror: str
    host: str  # the worker's host in the spec, for messages

    @property
    def id(self) -> str:
        return f"mirror check {self.worker}"

    @property
    def _is_url(self) -> bool:
        return "://" in self.pip_mirror

    @property
    def _url(self) -> str:
        return f"{self.pip_mirror}/simple/"

    @property
    def _index(self) -> str:
        return f"{self.pip_mirror}/simple/index.html"

    @property
    def _where(self) -> str:
        return f"host {self.host!r}"

    def request(self) -> FactRequest:
        if self._is_url:
            return FactRequest(urls=frozenset({self._url}))
        return FactRequest(paths=frozenset({self._index}))

    def _problem(self, facts: Facts) -> str | None:
        if self._is_url:
            failure = facts.urls[self._url]
            return f"GET {self._url} from {self._where} failed: {failure}" if failure else None
        fact = facts.path(self._index)
        if fact.kind == "file":
            return None
        state = "missing" if fact.kind is None else f"a {fact.kind}, not a readable file"
        return f"{self._index} is {state} on {self._where}"

    def _fix(self) -> str:
        if self._is_url:
            return (
                "fix mirror.serve.url: it must be the base URL (without /simple) at which the "
                "worker's host reaches the mirror's web folder, that is the mirror host's name "
                "or address as seen from there, the port of mirror.serve.listen, and no path "
                "unless a proxy serves the mirror under one; or open that port to the worker's "
                "host. With serve.backend s3 it is the bucket's HTTP URL with the prefix, and "
                "the bucket must let anyone read its objects (or a CDN must front it)"
            )
        return (
            f"with serve.backend filesystem, the mirror's web folder {self.pip_mirror} must be "
            "readable at that same path on the worker's host (put the worker on the mirror "
            "host, or mount the folder there), or serve the mirror over http "
            "(mirror.serve.backend: http)"
        )

    def observe(self, facts: Facts) -> str:
        # A check, not state: the mirror being built by this same apply is no reason to refuse.
        return "check"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        problem = self._problem(facts)
        if problem is None:
            return self.unchanged(f"the mirror answers from worker {self.worker}'s host")
        return Change(
            self,
            "run",
            f"check that the mirror answers for worker {self.worker}, after the mirror's own "
            f"changes (now: {problem})",
        )

    def apply(self, conn: Connection) -> None:
        problem = self._problem(conn.gather(self.request()))
        if problem:
            raise ResourceError(
                f"worker {self.worker!r} cannot reach its mirror {self.pip_mirror}: {problem}; "
                f"nothing of worker {self.worker!r} was changed; {self._fix()}"
            )
