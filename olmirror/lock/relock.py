"""What a new resolution keeps from earlier locks: every set, per target, whose inputs are
unchanged.

The lock beside the spec, and the last plan's resolution in olmirror's state folder beside
it, record per set and target the digest of what its pins were resolved from
(`lockfile.set_digest`). An entry whose digest still matches is kept as it is; the others
are resolved again, starting from the pins they had (as pip-compile keeps the pins of its
output file), unless `olmirror lock` asks for upgrades.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock, LockedFile, lock_path, read_lock
from olmirror.lock.state_folder import STATE_FOLDER, made_state_folder, state_folder
from olmirror.remote.host_program import atomic_write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upgrade:
    """What to resolve afresh whatever the digests say: everything (`olmirror lock`), some
    sets (`--set`), or the sets that pin some projects (`--upgrade-package`)."""

    everything: bool = False
    sets: frozenset[str] = frozenset()
    packages: frozenset[str] = frozenset()  # canonical names

    def forces(self, set_name: str, pins: list[str]) -> bool:
        names = {canonicalize_name(pin.partition("==")[0]) for pin in pins}
        return self.everything or set_name in self.sets or bool(names & self.packages)

    def starts_afresh(self, set_name: str) -> bool:
        """Whether the set's old pins are no preference at all (the packages to upgrade
        are left out of the preferences by uv itself)."""
        return self.everything or set_name in self.sets


@dataclass(frozen=True)
class Kept:
    """One set's entry for one target, taken from an earlier lock as it is."""

    pins: list[str]
    via: dict[str, list[str]]
    files: dict[str, LockedFile] = field(default_factory=dict)


def kept_entries(
    earlier: list[Lock], digests: dict[tuple[str, str], str], upgrade: Upgrade
) -> dict[tuple[str, str], Kept]:
    """(set, target key) -> its entry in the first earlier lock that has it with the same
    digest, for every pair `upgrade` does not force."""
    kept = {}
    for (set_name, key), digest in digests.items():
        for lock in earlier:
            target = lock.targets.get(key)
            if target is None or set_name not in target.sets:
                continue
            if target.inputs.get(set_name) != digest:
                continue
            pins = target.sets[set_name]
            if not upgrade.forces(set_name, pins) and all(p in target.files for p in pins):
                files = {pin: target.files[pin] for pin in pins}
                kept[(set_name, key)] = Kept(pins, target.via.get(set_name, {}), files)
            break
    return kept


def preferred(earlier: list[Lock], set_name: str, key: str, upgrade: Upgrade) -> list[str]:
    """The pins a set last had for a target: where its new resolution starts from."""
    if upgrade.starts_afresh(set_name):
        return []
    for lock in earlier:
        target = lock.targets.get(key)
        if target is not None and set_name in target.sets:
            return target.sets[set_name]
    return []


def known_files(earlier: list[Lock], key: str) -> dict[str, LockedFile]:
    """Every pin's file for one target in the earlier locks: a pin kept by a new resolution
    needs no look at the index."""
    known: dict[str, LockedFile] = {}
    for lock in reversed(earlier):
        target = lock.targets.get(key)
        if target is not None:
            known |= target.files
    return known


def resolved_path(spec_path: Path) -> Path:
    """Where a plan keeps the lock it resolved, until an apply writes it beside the spec."""
    return spec_path.parent / STATE_FOLDER / lock_path(spec_path).name


def keep_resolved(lock: Lock, spec_path: Path) -> None:
    """Keep a plan's resolution for the next plan or apply; a folder that cannot be written
    only costs that run a resolution."""
    folder = made_state_folder(spec_path)
    if folder is None:
        return
    path = folder / lock_path(spec_path).name
    try:
        atomic_write(str(path), lock.to_text().encode(), None)
    except OSError as exc:
        log.debug("could not keep the resolution in %s: %s", path, exc)


def read_resolved(spec_path: Path) -> Lock | None:
    """The last plan's resolution; None when there is none or it cannot be read."""
    if state_folder(spec_path) is None:
        return None
    try:
        return read_lock(resolved_path(spec_path))
    except (OlmirrorError, OSError) as exc:
        log.debug("%s", exc)
        return None


def forget_resolved(spec_path: Path) -> None:
    """After `olmirror lock`: the lock beside the spec is the newest resolution."""
    resolved_path(spec_path).unlink(missing_ok=True)
