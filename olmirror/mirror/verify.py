"""Prove the mirror serves every locked requirement to every target, as pip would see it.

For each target and each pinned requirement, the project's simple page in the
mirror must list the locked file with the locked sha256, and the stored file
must have that hash. Everything is read in one round trip to the mirror host.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from packaging.utils import canonicalize_name
from packaging.version import Version

from olmirror.connection import Connection, FactRequest
from olmirror.lock.lockfile import Lock, LockedFile
from olmirror.lock.requirement_sets import describe_set
from olmirror.lock.simple_api import parse_simple_html
from olmirror.lock.targets import Target, release_of
from olmirror.mirror.layout import project_page, stored_path


@dataclass(frozen=True)
class Gap:
    target: str
    pin: str
    problem: str
    needed_by: tuple[str, ...] = ()  # the workers (and the allowlist) whose closure has the pin

    def __str__(self) -> str:
        needed = f" (needed by {', '.join(self.needed_by)})" if self.needed_by else ""
        return f"{self.target}: {self.pin}{needed}: {self.problem}"


def _needed_by(lock: Lock, gap: Gap) -> Gap:
    sets = lock.targets[gap.target].sets
    names = sorted(name for name, pins in sets.items() if gap.pin in pins)
    return replace(gap, needed_by=tuple(describe_set(name) for name in names))


def _release(pin: str) -> tuple[str, Version]:
    name, _, version = pin.partition("==")
    return canonicalize_name(name), Version(version)


def _page_url(project: str) -> str:
    """The page's URL as pip sees it, relative to the web folder (its links are relative)."""
    return f"file:///simple/{canonicalize_name(project)}/"


def _describe(names: list[str], target: Target) -> str:
    """What the mirror has instead, and whether this target could install it."""
    if not names:
        return "no other file of this release"
    described = []
    for name in names:
        if target.wheel_rank(name) is not None:
            described.append(f"{name}, which this target can install but is not the locked file")
        elif name.endswith(".whl"):
            described.append(f"{name}, which this target cannot install")
        else:
            described.append(f"{name}, a source distribution pip would have to build")
    return "; ".join(described)


def verify_mirror(
    conn: Connection, directory: str, lock: Lock, *, deep: bool = True
) -> tuple[int, list[Gap]]:
    """(requirements checked, gaps found) for the mirror at `directory` on `conn`.

    `deep` hashes every stored file; otherwise stored files are checked by size,
    which is what an apply does after each sync to stay fast on large mirrors.
    Each gap says what the mirror has instead of the locked file (a second round
    trip, only when a locked file is missing).
    """
    files = lock.files()
    projects = lock.projects()
    stored = frozenset(stored_path(directory, url) for url in files)
    facts = conn.gather(
        FactRequest(
            content=frozenset(project_page(directory, p) for p in projects),
            hashes=stored if deep else frozenset(),
            paths=frozenset() if deep else stored,
        )
    )
    gaps: list[Gap] = []
    # (target key, pin, locked file, other stored paths by file name) of files not stored
    absent: list[tuple[str, str, LockedFile, dict[str, str]]] = []
    checked = 0
    for key, target in sorted(lock.targets.items()):
        for pin, locked in sorted(target.files.items()):
            checked += 1
            project = pin.partition("==")[0]
            page = facts.path(project_page(directory, project))
            if page.kind != "file" or page.content is None:
                gaps.append(
                    Gap(
                        key,
                        pin,
                        f"{locked.filename} is not served: the mirror has no simple page for "
                        f"{project}, so pip finds no release of it",
                    )
                )
                continue
            listed = {
                f.filename: f for f in parse_simple_html(page.content.decode(), _page_url(project))
            }
            same = sorted(n for n in listed if release_of(n) == _release(pin))
            entry = listed.get(locked.filename)
            if entry is None:
                gaps.append(
                    Gap(
                        key,
                        pin,
                        f"{locked.filename} is not listed on the mirror's page for {project} "
                        f"(the mirror has: {_describe(same, target.env)})",
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
                others = {
                    n: stored_path(directory, listed[n].url) for n in same if n != locked.filename
                }
                absent.append((key, pin, locked, others))
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
    if absent:
        others = frozenset(p for *_, paths in absent for p in paths.values())
        present = conn.gather(FactRequest(paths=others)) if others else None
        for key, pin, locked, paths in absent:
            have = [n for n, p in paths.items() if present and present.path(p).kind == "file"]
            gaps.append(
                Gap(
                    key,
                    pin,
                    f"{locked.filename} is listed but the file is missing "
                    f"(the mirror has: {_describe(have, lock.targets[key].env)})",
                )
            )
    gaps.sort(key=lambda gap: (gap.target, gap.pin))
    return checked, [_needed_by(lock, gap) for gap in gaps]
