"""Prove the mirror serves every locked requirement to every target, as pip would see it.

For each target and each pinned requirement, the project's simple page in the
mirror must list the locked file with the locked sha256, and the stored file
must have that hash. Everything is read in one round trip to the mirror host.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import Version

from olmirror.bandersnatch_config import stored_path, web_dir
from olmirror.connection import Connection, FactRequest
from olmirror.index import parse_simple_html
from olmirror.lockfile import Lock
from olmirror.targets import release_of


@dataclass(frozen=True)
class Gap:
    target: str
    pin: str
    problem: str

    def __str__(self) -> str:
        return f"{self.target}: {self.pin}: {self.problem}"


def _page(directory: str, project: str) -> str:
    return posixpath.join(web_dir(directory), "simple", canonicalize_name(project), "index.html")


def verify_mirror(
    conn: Connection, directory: str, lock: Lock, *, deep: bool = True
) -> tuple[int, list[Gap]]:
    """(requirements checked, gaps found) for the mirror at `directory` on `conn`.

    `deep` hashes every stored file; otherwise stored files are checked by size,
    which is what an apply does after each sync to stay fast on large mirrors.
    """
    files = lock.files()
    projects = {pin.partition("==")[0] for t in lock.targets.values() for pin in t.files}
    stored = frozenset(stored_path(directory, url) for url in files)
    facts = conn.gather(
        FactRequest(
            content=frozenset(_page(directory, p) for p in projects),
            hashes=stored if deep else frozenset(),
            paths=frozenset() if deep else stored,
        )
    )
    gaps: list[Gap] = []
    checked = 0
    for key, target in sorted(lock.targets.items()):
        for pin, locked in sorted(target.files.items()):
            checked += 1
            page = facts.path(_page(directory, pin.partition("==")[0]))
            if page.kind != "file" or page.content is None:
                gaps.append(Gap(key, pin, "the mirror has no simple page for this project"))
                continue
            listed = {f.filename: f for f in parse_simple_html(page.content.decode(), "/")}
            entry = listed.get(locked.filename)
            if entry is None:
                release = (pin.partition("==")[0], Version(pin.partition("==")[2]))
                same = sorted(n for n in listed if release_of(n) == release) or ["no file of it"]
                gaps.append(
                    Gap(
                        key,
                        pin,
                        f"{locked.filename} is not listed (the mirror has: {', '.join(same)})",
                    )
                )
                continue
            if entry.sha256 != locked.sha256:
                gaps.append(
                    Gap(
                        key,
                        pin,
                        f"{locked.filename} is listed with sha256 "
                        f"{entry.sha256}, the lock says {locked.sha256}",
                    )
                )
                continue
            stored_file = facts.path(stored_path(directory, locked.url))
            if stored_file.kind != "file":
                gaps.append(Gap(key, pin, f"{locked.filename} is listed but the file is missing"))
            elif locked.size is not None and stored_file.size != locked.size:
                gaps.append(
                    Gap(
                        key,
                        pin,
                        f"{locked.filename} is stored with {stored_file.size} "
                        f"bytes, the lock says {locked.size}",
                    )
                )
            elif deep and stored_file.sha256 != locked.sha256:
                gaps.append(
                    Gap(
                        key,
                        pin,
                        f"{locked.filename} is stored with sha256 "
                        f"{stored_file.sha256}, the lock says {locked.sha256}",
                    )
                )
    return checked, gaps
