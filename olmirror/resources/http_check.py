"""A URL that must answer 200 when fetched from a host: the check that a web server really serves.

A plan reads files only, one round trip per host, so it cannot fetch the URL
itself. Instead each passing check writes a record of what answered: the URL and
the sha256 of the files that define the server (its config and pid file). The
plan runs the check again whenever that record does not match, or an earlier
change in the same apply rewrites one of those files (a new config, a start or a
reload); otherwise the last answer still stands. A failed check writes no record,
so it is tried, and fails loudly, on every apply until it passes.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError

# A server just started or reloaded may take a moment to bind its port.
REFUSED_WAIT = 15.0

# Runs on the host with its python3: GET the URL, no proxies, waiting only while refused.
FETCH = """
import sys, time, urllib.error, urllib.request
url, wait = sys.argv[1], float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(url, headers={"Accept": "text/html"})
deadline = time.monotonic() + wait
while True:
    try:
        with opener.open(request, timeout=15) as r:
            r.read(1 << 16)
            print(r.status)
            sys.exit(0 if r.status == 200 else 1)
    except urllib.error.HTTPError as exc:
        print("it answered HTTP %d %s" % (exc.code, exc.reason))
        sys.exit(1)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionError) and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        print("%s: %s" % (type(reason).__name__, reason))
        sys.exit(1)
"""


@dataclass(frozen=True)
class HttpCheck(Resource):
    kind = "http_check"
    host: str  # the host's name in the spec, for messages
    url: str
    record: str
    watch: tuple[str, ...]  # files that define what answers: a change means check again
    log: str | None = None  # a log whose last lines explain a failure
    hint: str = ""  # what to look at when the URL answers 403

    def __post_init__(self) -> None:
        object.__setattr__(self, "watch", tuple(self.watch))

    @property
    def id(self) -> str:
        return f"http check {self.url}"

    def request(self) -> FactRequest:
        return FactRequest(content=frozenset({self.record}), hashes=frozenset(self.watch))

    def _expected(self, facts: Facts) -> bytes:
        lines = [f"{self.url} answered 200 while these files were:"]
        lines += [f"{facts.path(p).sha256 or 'absent'}  {p}" for p in sorted(self.watch)]
        return ("\n".join(lines) + "\n").encode()

    def observe(self, facts: Facts) -> str:
        record = facts.path(self.record).content or b""
        return hashlib.sha256(record + self._expected(facts)).hexdigest()

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        changing = sorted(p for p in self.watch if p in pending)
        if changing:
            why = f"{posixpath.basename(changing[0])} changes"
        elif facts.path(self.record).content == self._expected(facts):
            return self.unchanged(f"{self.url} answered after the server last changed")
        elif facts.path(self.record).kind is None:
            why = "not checked yet"
        else:
            why = "the server changed since the last check"
        return Change(self, "run", f"check that {self.url} answers from host {self.host!r} ({why})")

    def apply(self, conn: Connection) -> None:
        result = conn.run(("python3", "-c", FETCH, self.url, str(REFUSED_WAIT)), timeout=120)
        said = (result.stdout.strip() or result.stderr.strip() or "no output").splitlines()[-1]
        if not result.ok:
            hint = f"; {self.hint}" if self.hint and " 403 " in f" {said} " else ""
            tail = log_tail(conn, self.log) if self.log else ""
            raise ResourceError(
                f"{self.url} does not answer from host {self.host!r}: {said}{hint}{tail}"
            )
        facts = conn.gather(FactRequest(hashes=frozenset(self.watch)))
        conn.write_file(self.record, self._expected(facts))

    def provides(self) -> frozenset[str]:
        return frozenset({self.record})


def log_tail(conn: Connection, path: str, lines: int = 5) -> str:
    """'; <path> says: ...' with the log's last warnings and errors, or '' if it has none.

    nginx logs each start and reload at notice level, so notices are left out.
    """
    result = conn.run(("tail", "-n", "200", path), timeout=30)
    kept = [
        line.strip()
        for line in result.stdout.splitlines()
        if any(f"[{level}]" in line for level in ("warn", "error", "crit", "alert", "emerg"))
    ]
    return f"; {path} says: {' | '.join(kept[-lines:])}" if result.ok and kept else ""
