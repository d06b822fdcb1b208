"""The lock: every pinned requirement of every set, per target, with the file each target installs.

Written beside the spec as sorted, indented JSON, so that a change reads well in
a diff; it records a digest of its inputs so a plan resolves again only when the
spec's requirements, targets or upstream changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from olmirror.errors import OlmirrorError
from olmirror.lock.requirement_sets import RequirementSet
from olmirror.lock.targets import Target
from olmirror.spec.yaml_reader import json_fault

LOCK_FORMAT = 1
# How olmirror makes a lock from its inputs; a lock made another way is resolved again
# (from its pins). 3: a pin whose only file is an sdist gets a built wheel, not the sdist.
LOCK_RECIPE = 3


STRICT = ConfigDict(strict=True)


@dataclass(frozen=True, config=STRICT)
class LockedFile:
    filename: str
    url: str
    sha256: str
    size: int | None = None
    requires_python: str | None = None
    # For a wheel olmirror built from the upstream's sdist: that sdist (name, URL, sha256)
    # and the builder; `url` is then the wheel's path on the mirror, not an upstream URL.
    built: dict[str, str] | None = None


@dataclass(config=STRICT)
class TargetLock:
    python: str
    platform: str
    sets: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, LockedFile] = field(default_factory=dict)
    # set -> project -> why it is in the set (REQUESTED, or the projects that need it)
    via: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # set -> the digest of what its pins were resolved from (`set_digest`): a plan resolves
    # a set for this target again only when that changed
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> Target:
        return Target(self.python, self.platform)


@dataclass(config=STRICT)
class Lock:
    inputs: str
    upstream: str
    targets: dict[str, TargetLock]
    # What `engine: auto` chose when this lock was resolved, and why: decided once, so a
    # plan neither asks the upstream again nor switches engines when it is briefly down;
    # again when credentials for the upstream appear or go (`inputs_digest`).
    auto_engine: str | None = None
    auto_engine_why: str | None = None
    # Each worker's registry as last found on its host (`Registry.to_json`): where the
    # next plan assumes it is, and the lambdas found there, whose sets are locked above.
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Sets found on a host that could not be locked, and why: reported on their lambda.
    failed: dict[str, str] = field(default_factory=dict)
    format: int = LOCK_FORMAT
    # How this run came by the lock (resolved, kept, the last plan's), for the plan's
    # reader; never written.
    note: str | None = field(default=None, compare=False)

    def to_text(self) -> str:
        data = asdict(self)
        del data["note"]
        for target in data["targets"].values():
            for file in target["files"].values():
                if file["built"] is None:  # as locks were before builds
                    del file["built"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_text(cls, text: str, source: Path) -> Lock:
        """The lock in `text`; a damaged one is an error naming the line and field."""
        try:
            lock = _LOCK.validate_json(text)
        except ValidationError as exc:
            raise OlmirrorError(
                f"{json_fault(str(source), text, exc)}; the lock file is damaged; run "
                "`olmirror lock` to write it again"
            ) from None
        if lock.format != LOCK_FORMAT:
            raise OlmirrorError(
                f"{source}: a lock of format {lock.format}, where this olmirror reads "
                f"{LOCK_FORMAT}; run `olmirror lock` to write it again"
            )
        return lock

    def files(self) -> dict[str, LockedFile]:
        """Every locked file of every target, by its URL (the mirror holds each once)."""
        return {f.url: f for t in self.targets.values() for f in t.files.values()}

    def projects(self) -> list[str]:
        """Every project with a locked file, by its canonical (PEP 503) name, sorted."""
        pins = (pin for t in self.targets.values() for pin in t.files)
        return sorted({canonicalize_name(pin.partition("==")[0]) for pin in pins})

    def pins(self, set_name: str) -> dict[str, list[str]]:
        """The pins of one requirement set, per target key."""
        return {key: t.sets[set_name] for key, t in self.targets.items() if set_name in t.sets}


def inputs_digest(
    sets: list[RequirementSet],
    targets: list[Target],
    upstream: str,
    block: list[str],
    auto_engine: bool,
    with_credentials: bool = False,
) -> str:
    """What the lock is made from. `with_credentials`: whether `engine: auto` decides with
    credentials for the upstream (never what they are), so that it decides again, asking
    the upstream, when they go; written only when true, so a lock without stays as it was."""
    data = {
        "sets": {s.name: [sorted(s.requirements), s.discovered] for s in sets},
        "targets": sorted(t.key for t in targets),
        "upstream": upstream,
        "block": sorted(block),
        "auto_engine": auto_engine,
        "recipe": LOCK_RECIPE,
    }
    if auto_engine and with_credentials:
        data["credentials"] = True
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def set_digest(
    requirements: RequirementSet, target: Target, upstream: str, block: list[str]
) -> str:
    """What one set's pins for one target depend on: its requirements, the target, the
    upstream and the blocked projects."""
    data = {
        "requirements": sorted(requirements.requirements),
        "discovered": requirements.discovered,
        "target": target.key,
        "upstream": upstream,
        "block": sorted(block),
        "recipe": LOCK_RECIPE,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


_LOCK: TypeAdapter[Lock] = TypeAdapter(Lock)


def lock_path(spec_path: Path) -> Path:
    return spec_path.with_suffix(".lock")


def read_lock(path: Path) -> Lock | None:
    try:
        return Lock.from_text(path.read_text(), path)
    except FileNotFoundError:
        return None
