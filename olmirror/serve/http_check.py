"""A URL that must answer 200 when fetched from a host: proof that a web server really serves.

The plan fetches the URL from the host itself, inside its one fact round trip, so
`plan` shows a mirror that does not answer. When an earlier change in the same apply
rewrites what serves it (a new config, a start or a reload), the answer seen by the
plan is about to change, so the check runs after that change instead; it waits only
while the port still refuses connections, since a server just started or reloaded
takes a moment to bind it.
"""

from __future__ import annotations

from dataclasses import dataclass

from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts
from olmirror.remote import source
from olmirror.resources.base import Change, Resource, ResourceError

# How long apply waits for a refused port to open, after a start or reload.
REFUSED_WAIT = 15.0

FETCH = source("http_fetch")  # run on the host with its python3


def _problem(result: CommandResult) -> str | None:
    if result.ok:
        return None
    lines = (result.stderr.strip() or result.stdout.strip() or "no answer").splitlines()
    return lines[-1]


@dataclass(frozen=True)
class HttpCheck(Resource):
    kind = "http_check"
    host: str  # the host's name in the spec, for messages
    url: str
    after: tuple[str, ...] = ()  # paths whose change in this apply means: check after it
    log: str | None = None  # a log whose last warnings and errors explain a failure
    hint: str = ""  # what to look at when the URL answers 403

    @property
    def id(self) -> str:
        return f"http check {self.url}"

    def _fetch(self, wait: float) -> tuple[str, ...]:
        return ("python3", "-I", "-S", "-c", FETCH, self.url, str(wait))

    def request(self) -> FactRequest:
        return FactRequest(commands=frozenset({self._fetch(0)}))

    def observe(self, facts: Facts) -> str:
        return "answers" if facts.command(self._fetch(0)).ok else "does not answer"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        if any(p in pending for p in self.after):
            return Change(
                self,
                "run",
                f"check that {self.url} answers from host {self.host!r} (after the changes above)",
            )
        problem = _problem(facts.command(self._fetch(0)))
        if problem is None:
            return self.unchanged(f"{self.url} answers from host {self.host!r}")
        return Change(
            self, "run", f"check that {self.url} answers from host {self.host!r} (now: {problem})"
        )

    def apply(self, conn: Connection) -> None:
        problem = _problem(conn.run(self._fetch(REFUSED_WAIT), timeout=120))
        if problem is None:
            return
        hint = f"; {self.hint}" if self.hint and "HTTP 403" in problem else ""
        # A 404 is the server's plain answer; anything else may be explained in its log.
        tail = log_tail(conn, self.log) if self.log and "HTTP 404" not in problem else ""
        raise ResourceError(
            f"{self.url} does not answer from host {self.host!r}: {problem}{hint}{tail}"
        )


def log_tail(conn: Connection, path: str, lines: int = 3) -> str:
    """'; <path> says: ...' with the log's last warnings and errors, or '' if it has none.

    nginx logs each start and reload at notice level, so notices are left out, and so
    are each line's date and process ids.
    """
    result = conn.run(("tail", "-n", "200", path), timeout=30)
    kept = [
        line[line.index("[") :].split(": ", 1)[-1].strip()
        for line in result.stdout.splitlines()
        if any(f"[{level}]" in line for level in ("warn", "error", "crit", "alert", "emerg"))
    ]
    return f"; {path} says: {' | '.join(kept[-lines:])}" if result.ok and kept else ""
