"""A bandersnatch sync, run only when its config changed or locked files are missing.

Plan checks each locked file's presence and size in the one fact round trip;
after a sync every locked file must be there, or the apply fails with
bandersnatch's own reason and the next apply resumes.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError
from olmirror.resources.python_tool import locate

TLS_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


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
        missing = []
        for path, size in self.files:
            fact = facts.path(path)
            if fact.kind != "file" or (size is not None and fact.size != size):
                missing.append(path)
        return missing + [p for p in self.pages if facts.path(p).kind != "file"]

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
        env = {name: self.ca_file for name in TLS_VARIABLES} if self.ca_file else None
        result = conn.run(
            (program, "--config", self.config, "mirror", "--force-check"), timeout=None, env=env
        )
        missing = self._missing(conn.gather(self.request()))
        if result.ok and not missing:
            return
        log = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        errors = [line for line in log if "ERROR" in line or "Error" in line] or log[-5:]
        raise ResourceError(
            f"bandersnatch mirror {'exited ' + str(result.returncode) if not result.ok else 'left'}"
            f" {len(missing)} locked files missing; bandersnatch said: {' | '.join(errors[-5:])}; "
            "the mirror keeps what it has, and the next apply resumes"
        )
