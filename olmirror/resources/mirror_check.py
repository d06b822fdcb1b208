"""The mirror answers from a worker's host: its simple index is readable there.

A worker installs with `pip install --index-url <pip_mirror>/simple/`; if that
address or path does not answer from the worker's own host, every install fails
later with "unable to find /host/files". Checked from the worker's host itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError

# Run by the worker host's python3, without a shell; the URL is its argument.
_GET = "import sys, urllib.request\nurllib.request.urlopen(sys.argv[1], timeout=10).read(1)\n"


@dataclass(frozen=True)
class MirrorReachable(Resource):
    kind = "mirror_reachable"
    worker: str
    pip_mirror: str

    @property
    def id(self) -> str:
        return f"mirror check {self.worker}"

    @property
    def _is_url(self) -> bool:
        return "://" in self.pip_mirror

    @property
    def _probe(self) -> tuple[str, ...]:
        return ("python3", "-c", _GET, f"{self.pip_mirror}/simple/")

    @property
    def _index(self) -> str:
        return f"{self.pip_mirror}/simple/index.html"

    def request(self) -> FactRequest:
        if self._is_url:
            return FactRequest(commands=frozenset({self._probe}))
        return FactRequest(paths=frozenset({self._index}))

    def _problem(self, facts: Facts) -> str | None:
        if self._is_url:
            done = facts.command(self._probe)
            if done.ok:
                return None
            lines = done.stderr.strip().splitlines() or ["no answer"]
            return f"GET {self.pip_mirror}/simple/ failed: {lines[-1]}"
        fact = facts.path(self._index)
        if fact.kind == "file":
            return None
        return f"{self._index} is {'not readable' if fact.kind else 'missing'} on this host"

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
            f"check the mirror answers for worker {self.worker} once it is built (now: {problem})",
        )

    def apply(self, conn: Connection) -> None:
        problem = self._problem(conn.gather(self.request()))
        if problem:
            raise ResourceError(
                f"worker {self.worker!r} cannot reach its mirror: {problem}; fix mirror.serve "
                "(url, or a path the worker's host can read) so pip_mirror answers from there"
            )
