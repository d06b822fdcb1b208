"""What a plan does to the packages: the lock it starts from against the lock it writes.

A plan reads like a package change first (`omega 1.1 → 1.2`); the lock file's own diff
and the mirror files generated from it are mechanical, so their diffs stay behind --diff.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock, LockedFile, lock_path, read_lock
from olmirror.lock.requirement_sets import ALLOWLIST, WORKER_PREFIX, describe_set
from olmirror.mirror.layout import config_path, simple_dir
from olmirror.plan import Plan
from olmirror.resources import Change, File
from olmirror.spec import LOCAL

Action = Literal["add", "remove", "move", "file"]
MARKS: dict[Action, str] = {"add": "+", "remove": "-", "move": "~", "file": "~"}

# (set, target key) -> project -> (version, the file the target installs for it)
Pinned = dict[tuple[str, str], dict[str, tuple[str, LockedFile | None]]]


@dataclass(frozen=True)
class PackageChange:
    """One project's change, the same in every set and target listed."""

    action: Action
    project: str
    old: str | None  # the version before; None when added
    new: str | None  # the version after; None when removed
    sets: tuple[str, ...]
    targets: tuple[str, ...]
    detail: str = ""  # what else a reader needs: the file that changed, a file leaving

    @property
    def mark(self) -> str:
        return MARKS[self.action]

    def __str__(self) -> str:
        if self.action == "move":
            what = f"{self.project} {self.old} → {self.new}"
        else:
            what = f"{self.project} {self.new or self.old}"
        where = [", ".join(map(describe_set, self.sets)), ", ".join(self.targets)]
        return f"{what} ({'; '.join([*where, self.detail] if self.detail else where)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "project": self.project,
            "old": self.old,
            "new": self.new,
            "sets": list(self.sets),
            "targets": list(self.targets),
            "detail": self.detail,
        }


def _pinned(lock: Lock | None) -> Pinned:
    pinned: Pinned = {}
    for key, target in (lock.targets if lock else {}).items():
        for set_name, pins in target.sets.items():
            versions = pinned.setdefault((set_name, key), {})
            for pin in pins:
                name, _, version = pin.partition("==")
                versions[canonicalize_name(name)] = (version, target.files.get(pin))
    return pinned


def _file_detail(old: LockedFile | None, new: LockedFile | None) -> str | None:
    """What changed about a pin's file, kept at one version; None if nothing did."""
    if old is None or new is None or old == new:
        return None
    if old.filename != new.filename:
        return f"file {old.filename} → {new.filename}"
    if old.sha256 != new.sha256:
        return f"{new.filename} changed (sha256 {old.sha256[:12]} → {new.sha256[:12]})"
    if old.url != new.url:
        return f"{new.filename} from {new.url}"
    return None  # its recorded size or requires-python alone: nothing a reader acts on


def _compare(
    was: tuple[str, LockedFile | None] | None,
    now: tuple[str, LockedFile | None] | None,
    kept: set[str],
) -> tuple[Action, str | None, str | None, str] | None:
    """(action, old, new, detail) of one project in one set and target, None if unchanged.

    `kept`: the URLs of every file the new lock holds, to tell a file leaving the mirror."""
    if was is None and now is not None:
        return "add", None, now[0], ""
    if now is None and was is not None:
        file = was[1]
        leaves = file is not None and file.url not in kept
        return "remove", was[0], None, "leaves the mirror" if leaves else ""
    if was is None or now is None:
        return None
    if was[0] != now[0]:
        return "move", was[0], now[0], ""
    detail = _file_detail(was[1], now[1])
    return ("file", was[0], now[0], detail) if detail else None


def _set_order(name: str) -> tuple[int, str]:
    """The allowlist first, then the workers' sets, then the lambdas'."""
    rank = 0 if name == ALLOWLIST else 1 if name.startswith(WORKER_PREFIX) else 2
    return rank, name


def _merged(
    found: Iterable[tuple[str, str, str, tuple[Action, str | None, str | None, str]]],
) -> list[PackageChange]:
    """One line per change: the same change across targets, then across sets, merged."""
    targets: dict[tuple[Any, ...], list[str]] = {}
    for set_name, target, project, change in found:
        targets.setdefault((set_name, project, *change), []).append(target)
    sets: dict[tuple[Any, ...], list[str]] = {}
    for (set_name, *rest), keys in targets.items():
        sets.setdefault((*rest, tuple(sorted(keys))), []).append(set_name)
    lines = [
        PackageChange(action, project, old, new, tuple(sorted(names, key=_set_order)), keys, detail)
        for (project, action, old, new, detail, keys), names in sets.items()
    ]
    return sorted(lines, key=lambda c: (_set_order(c.sets[0]), c.targets, c.project, c.action))


def package_changes(old: Lock | None, new: Lock) -> list[PackageChange]:
    """Every project added, removed, moved or given another file, per set and target,
    from `old` (the lock on disk; None before the first) to `new` (the plan's)."""
    before, after = _pinned(old), _pinned(new)
    kept = set(new.files())
    found = []
    for set_name, target in sorted(before.keys() | after.keys()):
        was, now = before.get((set_name, target), {}), after.get((set_name, target), {})
        for project in sorted(was.keys() | now.keys()):
            change = _compare(was.get(project), now.get(project), kept)
            if change:
                found.append((set_name, target, project, change))
    return _merged(found)


def lock_file(plan: Plan) -> str:
    """Where the plan's lock file lies (on this machine, the host `local`)."""
    if plan.mirror:
        return plan.mirror["lock"]
    return str(lock_path(Path(plan.spec).resolve()))


def _lock_change(plan: Plan) -> Change | None:
    """The plan's pending write of the lock file, if it writes one."""
    pending = (c for h in plan.hosts for c in h.pending if writes_lock(plan, h.host, c))
    return next(pending, None)


def plan_packages(plan: Plan) -> list[PackageChange]:
    """The package changes of the lock `plan` writes, against the lock on disk now (a saved
    plan is refused once that lock changed, so this holds until it is applied)."""
    change = _lock_change(plan)
    if change is None or not isinstance(change.resource, File):
        return []
    path = Path(change.resource.path)
    try:
        old = read_lock(path)
    except OlmirrorError:  # damaged: the plan replaces all of it
        old = None
    return package_changes(old, Lock.from_text(change.resource.content, path))


def writes_lock(plan: Plan, host: str, change: Change) -> bool:
    """Whether `change` writes the lock file, whose package changes `plan_packages` tells."""
    return (
        host == LOCAL
        and isinstance(change.resource, File)
        and change.resource.path == lock_file(plan)
    )


def mirror_generated(plan: Plan, host: str, change: Change) -> bool:
    """Whether `change` writes a mirror file rendered whole from the lock: bandersnatch's
    configuration or a page of the simple index."""
    mirror = plan.mirror
    if not mirror or host != mirror["host"] or not isinstance(change.resource, File):
        return False
    path, directory = change.resource.path, mirror["directory"]
    return path == config_path(directory) or path.startswith(simple_dir(directory) + "/")
