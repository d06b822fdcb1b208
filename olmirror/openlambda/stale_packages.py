"""Folders of a worker's Pkgs_dir that OpenLambda would reuse although they do not hold the
locked version (`olmirror.openlambda.packages_dir`), removed so that the next call installs
from the mirror. Only with `stale_packages: remove`; the plan lists them first either way.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.openlambda.packages_dir import Stale, stale_entries
from olmirror.resources.base import Change, Resource, ResourceError


@dataclass(frozen=True)
class StalePackages(Resource):
    kind = "stale_packages"
    worker_path: str
    packages: str  # the worker's Pkgs_dir
    pins: tuple[str, ...]  # every name==version the worker's requirements.txt files list

    @property
    def id(self) -> str:
        return f"stale packages {self.packages}"

    def request(self) -> FactRequest:
        return FactRequest(registries=frozenset({self.worker_path}))

    def _stale(self, facts: Facts) -> list[Stale]:
        installed = facts.registries.get(self.worker_path, {}).get("installed", {})
        return [
            s for s in stale_entries(installed, set(self.pins))
            if s.entry not in ("", ".", "..") and "/" not in s.entry
        ]  # fmt: skip

    def observe(self, facts: Facts) -> str:
        return ",".join(s.entry for s in self._stale(facts))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        stale = self._stale(facts)
        if not stale:
            return self.unchanged(f"nothing stale in {self.packages}")
        return Change(
            self,
            "update",
            f"remove {len(stale)} stale folder(s) of {self.packages}, so the next call installs "
            "from the mirror",
            tuple(f"- {posixpath.join(self.packages, s.entry)}: {s.why}" for s in stale),
        )

    def apply(self, conn: Connection) -> None:
        stale = self._stale(conn.gather(self.request()))
        paths = [posixpath.join(self.packages, s.entry) for s in stale]
        if not paths:
            return
        result = conn.run(("rm", "-rf", "--", *paths), timeout=600)
        if not result.ok:
            raise ResourceError(
                f"cannot remove stale packages from {self.packages}: {result.stderr.strip()[-800:]}"
            )

    def provides(self) -> frozenset[str]:
        return frozenset({self.packages})
