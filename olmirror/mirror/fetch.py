"""The locked files a mirror must hold, and the fetch that brings the missing ones.

Presence is checked by size in the plan's one round trip; the fetch runs on the
mirror host itself (`olmirror/remote/fetch_files.py` sent to its python3), verifies each
file's sha256 before moving it into place, and reports every failure. A private upstream's
credentials are read when the fetch starts and sent on the fetcher's stdin, over SSH too:
never in its argv, a file, or the plan (which holds only where they come from).
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from typing import Any

from olmirror import progress
from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.lock.upstream_auth import NETRC, AuthSource, client_auth, credentials
from olmirror.remote import source
from olmirror.remote.upstream_http import DEFAULT_RETRIES, Auth, Retries
from olmirror.resources.base import Change, Resource, ResourceError

# The client first: fetch_files uses it, and imports it only when it is not run this way.
FETCH_SOURCE = source("upstream_http", "fetch_files")

# (stored path on the mirror host, url, sha256, size or None)
StoredFile = tuple[str, str, str, int | None]


def absent(facts: Facts, path: str, size: int | None) -> bool:
    """Whether the file at `path` is missing from the mirror, or there with the wrong size."""
    fact = facts.path(path)
    return fact.kind != "file" or (size is not None and fact.size != size)


def missing(facts: Facts, files: tuple[StoredFile, ...]) -> list[StoredFile]:
    """The files absent from the mirror, or present with the wrong size."""
    return [file for file in files if absent(facts, file[0], file[3])]


def size_text(count: float) -> str:
    """A byte count as people read it: 812 B, 14 kB, 3 MB, 1.2 GB."""
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


@dataclass(frozen=True)
class FetchFiles(Resource):
    kind = "fetch_files"
    directory: str
    files: tuple[StoredFile, ...]
    why: str
    ca_file: str | None = None
    min_seconds: float = 300.0  # mirror.download_timeout
    origins: tuple[str, ...] | None = None  # where files may come from; None: anywhere
    retries: Retries = DEFAULT_RETRIES  # mirror.retries
    upstream: str | None = None  # whose credentials (from `auth`) go with its requests
    auth: AuthSource = NETRC  # mirror.upstream_auth: where they are, never what

    @property
    def id(self) -> str:
        return f"mirror files {self.directory}"

    def request(self) -> FactRequest:
        return FactRequest(paths=frozenset(f[0] for f in self.files))

    def observe(self, facts: Facts) -> str:
        return ",".join(f[0] for f in missing(facts, self.files))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        absent = missing(facts, self.files)
        if not absent:
            return self.unchanged(f"mirror holds all {len(self.files)} locked files")
        total = sum(f[3] or 0 for f in absent)
        diff = tuple(f"+ {posixpath.relpath(f[0], self.directory)}" for f in absent)
        count = f"{len(absent)} file{'' if len(absent) == 1 else 's'}"
        summary = f"fetch {count} ({size_text(total)}) into the mirror: {self.why}"
        return Change(self, "run", summary, diff)

    def apply(self, conn: Connection) -> None:
        absent = missing(conn.gather(self.request()), self.files)
        started = time.monotonic()
        upstream = self.upstream
        auth = client_auth(credentials(self.auth, upstream), upstream) if upstream else None
        report = fetch_missing(
            conn, absent, self.ca_file, self.min_seconds, self.origins, self.retries, auth
        )
        if report["errors"]:
            shown = "; ".join(report["errors"][:5])
            raise ResourceError(
                f"fetched {report['fetched']} of {len(absent)} files, {len(report['errors'])} "
                f"failed: {shown}; files already fetched are kept, the next apply fetches the rest"
            )
        stats = report["stats"]
        retried = f", {stats['retries']} requests retried" if stats["retries"] else ""
        progress.report(
            f"fetched {report['fetched']} files ({size_text(report['bytes'])}) "
            f"in {time.monotonic() - started:.1f} s over {stats['connections']} connections"
            f"{retried}",
            final=True,
        )


def fetch_missing(
    conn: Connection,
    files: list[StoredFile],
    ca_file: str | None,
    min_seconds: float,
    origins: tuple[str, ...] | None,
    retries: Retries,
    auth: Auth | None = None,
) -> dict[str, Any]:
    """Fetch `files` on the mirror host; its report (fetched, bytes, errors, stats), with
    the progress and retries reported as they happen. `auth`: the upstream's credentials,
    which go on the fetcher's stdin alone."""
    request = {
        "ca_file": ca_file,
        "min_seconds": min_seconds,
        "origins": list(origins) if origins is not None else None,
        "retries": retries._asdict(),
        "auth": auth._asdict() if auth else None,
        "files": [{"path": p, "url": u, "sha256": h, "size": s} for p, u, h, s in files],
    }
    state = {"done": "0", "retries": 0, "last": ""}

    def on_line(line: str) -> None:
        if line.startswith("progress "):
            state["done"] = line.split()[1]
        elif line.startswith("retry "):
            state["retries"] += 1
            state["last"] = line.removeprefix("retry ")
        else:
            return
        retried = f"; {state['retries']} retried, last: {state['last']}" if state["retries"] else ""
        progress.report(f"fetching files: {state['done']} of {len(files)}{retried}")

    result = conn.run(
        conn.script(FETCH_SOURCE),
        stdin=json.dumps(request).encode(),
        timeout=None,
        on_line=on_line,
    )
    if not result.ok:
        raise ResourceError(f"the fetch on the mirror host failed: {result.stderr.strip()[-800:]}")
    report: dict[str, Any] = json.loads(result.stdout)
    progress.retried(report["stats"]["retries"])
    return report
