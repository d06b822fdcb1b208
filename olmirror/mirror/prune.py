"""The mirror serves the lock and nothing more: what a spec no longer asks for goes.

A package dropped from the spec would otherwise stay installable (its simple page
stays, since neither engine touches a project it no longer mirrors), which a curated
cluster cannot have. Removed: the pages and metadata of projects the lock no longer
holds (`simple/<p>/`, bandersnatch's `json/<p>` and `pypi/<p>/`), and every file
under `packages/` that no locked requirement installs. The folders are listed in the
plan's one round trip.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError

# Paths given to one `rm`, well below any system's argument limit.
BATCH = 200
# Where the engines keep a project's pages and metadata, and where the files go.
PROJECT_FOLDERS = ("simple", "pypi")
PROJECT_FILES = "json"
PACKAGES = "packages"


@dataclass(frozen=True)
class PruneMirror(Resource):
    kind = "prune_mirror"
    after_all_hosts = True  # workers still pinning a dropped release keep it until then
    web: str
    projects: tuple[str, ...]  # the lock's projects, canonical names
    keep: tuple[str, ...]  # where the locked files are stored

    @property
    def id(self) -> str:
        return f"mirror prune {self.web}"

    def _root(self, name: str) -> str:
        return posixpath.join(self.web, name)

    def request(self) -> FactRequest:
        names = (*PROJECT_FOLDERS, PROJECT_FILES, PACKAGES)
        return FactRequest(trees=frozenset(self._root(name) for name in names))

    def _stale(self, facts: Facts) -> list[str]:
        """Everything to remove, never a locked file nor a folder holding one, and nothing
        through a symbolic link: a link at web/ or web/packages/ points elsewhere."""
        linked = sorted(root for root, files in facts.trees.items() if files is None)
        if linked:
            raise ResourceError(
                f"{linked[0]} (or the folder above it) is a symbolic link; olmirror removes "
                "nothing through it, since the files it lists lie elsewhere. Replace the link "
                "with a folder of the mirror"
            )
        projects = set(self.projects)
        stale = []
        for name in PROJECT_FOLDERS:
            root = self._root(name)
            folders = {rel.split("/", 1)[0] for rel in facts.trees[root] if "/" in rel}
            stale += [posixpath.join(root, f) for f in folders if f not in projects]
        root = self._root(PROJECT_FILES)
        stale += [
            posixpath.join(root, rel)
            for rel in facts.trees[root]
            if "/" not in rel and rel not in projects
        ]
        keep = set(self.keep)
        root = self._root(PACKAGES)
        for rel in facts.trees[root]:
            path = posixpath.join(root, rel)
            if path not in keep and path.removesuffix(".metadata") not in keep:
                stale.append(path)
        holding = {folder for path in keep for folder in _folders_above(path)}
        return sorted(path for path in stale if path not in keep and path not in holding)

    def observe(self, facts: Facts) -> str:
        return ",".join(self._stale(facts))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        stale = self._stale(facts)
        if not stale:
            return self.unchanged("the mirror holds nothing beyond the lock")
        diff = tuple(f"- {posixpath.relpath(path, self.web)}" for path in stale)
        count = f"{len(stale)} path{'' if len(stale) == 1 else 's'}"
        return Change(self, "run", f"remove {count} the lock no longer holds from the mirror", diff)

    def apply(self, conn: Connection) -> None:
        stale = self._stale(conn.gather(self.request()))
        for start in range(0, len(stale), BATCH):
            result = conn.run(("rm", "-rf", "--", *stale[start : start + BATCH]), timeout=600)
            if not result.ok:
                raise ResourceError(
                    f"cannot remove what the lock no longer holds from {self.web}: "
                    f"{result.stderr.strip()[-800:]}"
                )


def _folders_above(path: str) -> list[str]:
    """Every folder that holds `path` (an upstream may store files under simple/)."""
    folders = []
    while (path := posixpath.dirname(path)) not in ("/", ""):
        folders.append(path)
    return folders
