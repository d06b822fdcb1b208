"""The index of a worker's sandbox: its /etc/pip.conf names the mirror (see
`olmirror.openlambda.pip_conf`), and no other pip configuration file there names another.

Every key olmirror does not manage keeps its line; a file that does not exist yet (a
worker `ol worker init` is still to make) is created once its folder is.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.openlambda.pip_conf import converge, index_options
from olmirror.resources.base import Change, Resource, ResourceError
from olmirror.resources.file import unified_diff


@dataclass(frozen=True)
class SandboxPipConf(Resource):
    kind = "sandbox_pip_conf"
    path: str
    values: tuple[tuple[str, str], ...]  # (option, value) for [global]
    others: tuple[str, ...]  # the sandbox's other pip configuration files
    worker: str  # for messages

    @property
    def id(self) -> str:
        return f"pip.conf {self.path}"

    @property
    def _folder(self) -> str:
        return posixpath.dirname(self.path)

    def request(self) -> FactRequest:
        return FactRequest(
            paths=frozenset({self._folder}), content=frozenset({self.path, *self.others})
        )

    def observe(self, facts: Facts) -> str:
        return ":".join(str(facts.path(p).sha256) for p in (self.path, *self.others))

    def _text(self, facts: Facts, path: str) -> str | None:
        fact = facts.path(path)
        if fact.kind is None:
            return None
        if fact.kind != "file" or fact.content is None:
            raise ResourceError(
                f"{path} is not a readable file ({fact.error or fact.kind}); worker "
                f"{self.worker!r}'s pip reads it, so make it a file or remove it"
            )
        return fact.content.decode(errors="replace")

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        for other in self.others:
            found = index_options(self._text(facts, other) or "")
            if found:
                raise ResourceError(
                    f"{other} sets {', '.join(found)}, which overrides {self.path} for the pip "
                    f"that installs worker {self.worker!r}'s packages; remove those lines so "
                    "that it installs from the mirror alone"
                )
        current = self._text(facts, self.path)
        new = converge(current or "", dict(self.values))
        if current is None:
            if facts.path(self._folder).kind != "dir" and self._folder not in pending:
                raise ResourceError(
                    f"cannot write {self.path}: worker {self.worker!r}'s sandbox has no "
                    f"{self._folder}; run `ol worker init` for it"
                )
            return Change(self, "create", f"point the sandbox's pip at the mirror: {self.path}",
                          unified_diff(self.path, "", new))  # fmt: skip
        if new == current:
            return self.unchanged(f"pip.conf {self.path}")
        return Change(
            self,
            "update",
            f"point the sandbox's pip at the mirror: {self.path}",
            unified_diff(self.path, current, new),
        )

    def apply(self, conn: Connection) -> None:
        try:
            current = conn.read_file(self.path).decode(errors="replace")
        except FileNotFoundError:
            current = ""
            conn.make_dir(self._folder)
        new = converge(current, dict(self.values))
        if new != current:
            conn.write_file(self.path, new.encode())

    def provides(self) -> frozenset[str]:
        return frozenset({self.path})
