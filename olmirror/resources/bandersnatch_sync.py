"""A bandersnatch sync, run only when its config changed or locked files are missing.

Plan checks each locked file's presence and size in the one fact round trip;
after a sync every locked file must be there, or the apply fails with
bandersnatch's own reason and the next apply resumes.
"""

from __future__ import annotations

import posixpath
import re
import time
from dataclasses import dataclass

from olmirror import progress
from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.index import CA_VARIABLES
from olmirror.resources.base import Change, Resource, ResourceError
from olmirror.resources.mirror_files import absent
from olmirror.resources.python_tool import locate


@dataclass(frozen=True)
class BandersnatchSync(Resource):
    kind = "bandersnatch_sync"
    config: str
    venv_program: str
    # (stored path, size or None) of every locked file
    files: tuple[tuple[str, int | None], ...]
    pages: tuple[str, ...]
    ca_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple((p, s) for p, s in self.files))
        object.__setattr__(self, "pages", tuple(self.pages))

    @property
    def id(self) -> str:
        return f"bandersnatch sync {self.config}"

    def request(self) -> FactRequest:
        return FactRequest(paths=frozenset([p for p, _ in self.files] + list(self.pages)))

    def _missing(self, facts: Facts) -> list[str]:
        files = [path for path, size in self.files if absent(facts, path, size)]
        return files + [p for p in self.pages if facts.path(p).kind != "file"]

    def observe(self, facts: Facts) -> str:
        return ",".join(self._missing(facts))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        missing = self._missing(facts)
        if not missing and self.config not in pending:
            return self.unchanged(f"mirror holds all {len(self.files)} locked files")
        reason = f"{len(missing)} missing" if missing else "configuration changed"
        diff = tuple(f"+ {posixpath.relpath(p, posixpath.dirname(self.config))}" for p in missing)
        return Change(self, "run", f"sync the mirror with bandersnatch ({reason})", diff)

    def apply(self, conn: Connection) -> None:
        program = locate(conn, "bandersnatch", self.venv_program)
        env = dict.fromkeys(CA_VARIABLES, self.ca_file) if self.ca_file else None
        files = {path for path, _ in self.files}
        before = set(self._missing(conn.gather(self.request()))) & files
        counts = {"projects": 0, "files": 0}

        def on_line(line: str) -> None:
            if match := _TO_SYNC.search(line):
                counts["projects"] = int(match["count"])
            elif "Downloading: " in line:
                counts["files"] += 1
                progress.report(
                    f"bandersnatch: {counts['files']} of {len(before)} files fetched "
                    f"({counts['projects']} projects to sync)"
                )

        started = time.monotonic()
        result = conn.run(
            (program, "--config", self.config, "mirror", "--force-check"),
            timeout=None,
            env=env,
            on_line=on_line,
        )
        missing = self._missing(conn.gather(self.request()))
        if result.ok and not missing:
            fetched = sum(size or 0 for path, size in self.files if path in before)
            progress.report(
                f"bandersnatch synced {counts['projects']} projects: fetched {len(before)} files "
                f"({fetched:,} bytes) in {time.monotonic() - started:.1f} s",
                final=True,
            )
            return
        missing_files = [posixpath.basename(p) for p in missing if p in files]
        missing_pages = [p for p in missing if p not in files]
        gaps = []
        if missing_files:
            shown = ", ".join(missing_files[:SHOWN])
            more = f" and {len(missing_files) - SHOWN} more" if len(missing_files) > SHOWN else ""
            gaps.append(f"{len(missing_files)} of {len(files)} locked files ({shown}{more})")
        if missing_pages:
            gaps.append(f"{len(missing_pages)} simple page{'s' if len(missing_pages) > 1 else ''}")
        outcome = f"exited with code {result.returncode}" if not result.ok else "exited 0"
        left = f", and {' and '.join(gaps)} are still missing" if gaps else ""
        raise ResourceError(
            f"bandersnatch mirror {outcome}{left}; bandersnatch said: "
            f"{bandersnatch_reason(result.stderr + chr(10) + result.stdout)}; the mirror keeps "
            "every file it has, and the next apply resumes once the cause is fixed"
        )


SHOWN = 5
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
