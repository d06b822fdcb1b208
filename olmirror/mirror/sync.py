"""A bandersnatch sync, run only when its config changed or locked files are missing.

Plan checks each locked file's presence and size in the one fact round trip. bandersnatch
retries no request: one 503 or cut body costs it the whole package. So after its sync,
what is still missing is repaired (see `BandersnatchSync.apply`); when even that fails,
the apply fails with bandersnatch's own reason and the next apply resumes.
"""

from __future__ import annotations

import logging
import posixpath
import re
import time
from dataclasses import dataclass

from olmirror import progress
from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts
from olmirror.lock.targets import release_of
from olmirror.lock.upstream_index import CA_VARIABLES
from olmirror.mirror.fetch import StoredFile, fetch_missing, missing
from olmirror.mirror.python_tool import locate
from olmirror.remote.upstream_http import DEFAULT_RETRIES, Retries
from olmirror.resources.base import Change, Resource, ResourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BandersnatchSync(Resource):
    kind = "bandersnatch_sync"
    config: str
    venv_program: str
    files: tuple[StoredFile, ...]  # every locked file
    pages: tuple[str, ...]  # every locked project's <web>/simple/<project>/index.html
    ca_file: str | None = None
    min_seconds: float = 300.0  # mirror.download_timeout, for the files fetched after a sync
    origins: tuple[str, ...] | None = None  # where those may come from; None: anywhere
    retries: Retries = DEFAULT_RETRIES  # mirror.retries

    @property
    def id(self) -> str:
        return f"bandersnatch sync {self.config}"

    def request(self) -> FactRequest:
        return FactRequest(paths=frozenset([f[0] for f in self.files] + list(self.pages)))

    def _missing(self, facts: Facts) -> list[str]:
        files = [f[0] for f in missing(facts, self.files)]
        return files + [p for p in self.pages if facts.path(p).kind != "file"]

    def observe(self, facts: Facts) -> str:
        return ",".join(self._missing(facts))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        gaps = self._missing(facts)
        if not gaps and self.config not in pending:
            return self.unchanged(f"mirror holds all {len(self.files)} locked files")
        reason = f"{len(gaps)} missing" if gaps else "configuration changed"
        diff = tuple(f"+ {posixpath.relpath(p, posixpath.dirname(self.config))}" for p in gaps)
        return Change(self, "run", f"sync the mirror with bandersnatch ({reason})", diff)

    def apply(self, conn: Connection) -> None:
        """A full sync; then, while locked files or pages are missing (a network fault cost
        bandersnatch a package), olmirror's fetcher brings the files, with its retries,
        and `bandersnatch sync` writes the pages of just those projects, at most
        `attempts` runs of bandersnatch in all."""
        program = locate(conn, "bandersnatch", self.venv_program)
        started = time.monotonic()
        before = missing(conn.gather(self.request()), self.files)
        result = self._run(conn, (program, "--config", self.config, "mirror", "--force-check"))
        runs, fetched = 1, 0
        facts = conn.gather(self.request())
        gaps = self._missing(facts)
        # _lasting: the upstream lacks what bandersnatch needs, so another run would fail too
        while gaps and runs < self.retries.attempts and not _lasting(result):
            lacking = [f for f in self.files if f[0] in gaps]
            if lacking:
                try:
                    report = fetch_missing(
                        conn, lacking, self.ca_file, self.min_seconds, self.origins, self.retries
                    )
                    fetched += report["fetched"]
                except ResourceError as exc:  # bandersnatch may still bring them
                    log.warning("the fetch of %d missing files failed: %s", len(lacking), exc)
            projects = sorted({_project(path) for path in gaps})
            progress.report(
                f"bandersnatch: run {runs + 1} of at most {self.retries.attempts}, for "
                f"{len(projects)} projects it could not finish"
            )
            time.sleep(self.retries.wait(runs))
            result = self._run(conn, (program, "--config", self.config, "sync", *projects))
            progress.retried(len(projects))
            runs += 1
            facts = conn.gather(self.request())
            gaps = self._missing(facts)
        if runs > 1 or not result.ok:
            self._remove_leftovers(conn, facts)
        if gaps:
            raise ResourceError(self._failure(gaps, result, runs))
        size = sum(f[3] or 0 for f in before)
        rest = f" (olmirror's fetcher brought {fetched} files)" if fetched else ""
        again = f" in {runs} runs{rest}" if runs > 1 else ""
        progress.report(
            f"bandersnatch synced {len(self.pages)} projects{again}: fetched {len(before)} files "
            f"({size:,} bytes) in {time.monotonic() - started:.1f} s",
            final=True,
        )

    def _run(self, conn: Connection, argv: tuple[str, ...]) -> CommandResult:
        env = dict.fromkeys(CA_VARIABLES, self.ca_file) if self.ca_file else None
        counts = {"projects": 0, "files": 0}

        def on_line(line: str) -> None:
            if match := _TO_SYNC.search(line):
                counts["projects"] = int(match["count"])
            elif "Downloading: " in line:
                counts["files"] += 1
                progress.report(f"bandersnatch: {counts['files']} files fetched")

        return conn.run(argv, timeout=None, env=env, on_line=on_line)

    def _remove_leftovers(self, conn: Connection, facts: Facts) -> None:
        """bandersnatch leaves its temporary file (`.<name>.<random>`, beside the file) when
        a download fails; the package folders hold no hidden file otherwise. Only folders
        that exist, those of the files present, are searched: what is left beside a file
        still missing goes when a later run brings that file."""
        present = [f for f in self.files if facts.path(f[0]).kind == "file"]
        folders = sorted({posixpath.dirname(f[0]) for f in present})
        for start in range(0, len(folders), BATCH):
            batch = folders[start : start + BATCH]
            argv = ("find", *batch, "-maxdepth", "1", "-type", "f", "-name", ".*", "-delete")
            result = conn.run(argv, timeout=600)
            if not result.ok:  # not worth failing for: the prune removes them later
                log.warning("cannot remove bandersnatch's unfinished downloads: %s", result.stderr)

    def _failure(self, gaps: list[str], result: CommandResult, runs: int) -> str:
        files = {f[0] for f in self.files}
        missing_files = [posixpath.basename(p) for p in gaps if p in files]
        missing_pages = [p for p in gaps if p not in files]
        parts = []
        if missing_files:
            shown = ", ".join(missing_files[:SHOWN])
            more = f" and {len(missing_files) - SHOWN} more" if len(missing_files) > SHOWN else ""
            parts.append(f"{len(missing_files)} of {len(files)} locked files ({shown}{more})")
        if missing_pages:
            parts.append(f"{len(missing_pages)} simple page{'s' if len(missing_pages) > 1 else ''}")
        exit = f"exited with code {result.returncode}" if not result.ok else "exited 0"
        outcome = f"ran {runs} times (the last run {exit})" if runs > 1 else f"mirror {exit}"
        return (
            f"bandersnatch {outcome}, and {' and '.join(parts)} are still missing; "
            "bandersnatch said: "
            f"{bandersnatch_reason(result.stderr + chr(10) + result.stdout)}; the mirror keeps "
            "every file it has, and the next apply resumes once the cause is fixed"
        )


def _project(path: str) -> str:
    """The project of a missing page (<web>/simple/<project>/index.html) or file."""
    if path.endswith("/index.html"):
        return posixpath.basename(posixpath.dirname(path))
    release = release_of(posixpath.basename(path))
    return release[0] if release else posixpath.basename(path)


SHOWN = 5
BATCH = 200  # folders given to one `find`, well below any system's argument limit
_TO_SYNC = re.compile(r"(?P<count>\d+) packages to sync")
# "2024-01-01 00:00:00,123 ERROR: message (mirror.py:375)"
_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+): (?P<message>.*?)"
    r"(?: \([\w.]+:\d+\))?$"
)
# "aiohttp.client_exceptions.ClientResponseError: 500, message=..." (a traceback's last line)
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<kind>[A-Za-z_]\w*(?:Error|Exception)): (.+)$")
_NOISE = ("Exiting early after error", "Traceback (most recent call last)")
# bandersnatch logs a JSON-API 404 at INFO and carries on as if the project were deleted.
_GONE = " no longer exists on PyPI"
_HINTS = (
    (
        "Stale serial",
        "the upstream sends no X-PyPI-Last-Serial header (proxies, Artifactory, Nexus and "
        "devpi drop it), which bandersnatch needs; set mirror.engine to simple or auto",
    ),
    (
        _GONE,
        "the upstream has no JSON API (/pypi/NAME/json), which bandersnatch reads; "
        "set mirror.engine to simple or auto",
    ),
    (
        "Got invalid download URL",
        "the upstream serves files outside /packages/, where bandersnatch expects them; "
        "set mirror.engine to simple or auto",
    ),
    (
        "406, message='Not Acceptable'",
        "the upstream does not serve the PEP 691 JSON simple API that bandersnatch asks for; "
        "set mirror.engine to simple or auto",
    ),
)


def _lasting(result: CommandResult) -> bool:
    """Whether bandersnatch failed for a reason of the upstream's design (see `_HINTS`)."""
    return any(sign in result.stderr + result.stdout for sign, _ in _HINTS)


def bandersnatch_reason(output: str) -> str:
    """bandersnatch's own reason for a failed sync: its errors and exceptions, once each.

    Traceback frames and timestamps are dropped; when it logged no error, its last lines.
    """
    found: list[str] = []
    for raw in output.splitlines():
        line = raw.strip()
        if log := _LOG_LINE.match(line):
            message = log["message"]
            if (log["level"] in ("ERROR", "CRITICAL") and not message.startswith(_NOISE)) or (
                message.endswith(_GONE)
            ):
                found.append(message)
        elif (exception := _EXCEPTION.match(line)) and raw[:1] not in (" ", "\t"):
            found.append(f"{exception['kind']}: {exception[2]}")
    unique = list(dict.fromkeys(found))
    if not unique:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        unique = lines[-3:] or ["nothing (no output)"]
    reason = " | ".join(unique[-SHOWN:])
    hints = [hint for sign, hint in _HINTS if sign in output]
    return f"{reason} ({'; '.join(hints)})" if hints else reason
