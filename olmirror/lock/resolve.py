"""The lock of a spec: each requirement set resolved for each target (`uv_compile.py`), each
target's files chosen (`file_choice.py`), assembled; and the lock a plan uses, kept from
earlier runs where its inputs did not change (`relock.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.utils import canonicalize_name

from olmirror.errors import OlmirrorError
from olmirror.lock import uv_compile
from olmirror.lock.engine_choice import choose_engine
from olmirror.lock.file_choice import locked_files
from olmirror.lock.lockfile import (
    Lock,
    TargetLock,
    inputs_digest,
    lock_path,
    read_lock,
    set_digest,
)
from olmirror.lock.relock import (
    Upgrade,
    keep_resolved,
    kept_entries,
    preferred,
    read_resolved,
    resolved_path,
)
from olmirror.lock.requirement_sets import (
    FoundIn,
    RequirementSet,
    requirement_name,
    requirement_sets,
)
from olmirror.lock.requirements_txt import REQUESTED
from olmirror.lock.targets import Target, targets_of
from olmirror.lock.upstream_auth import auth_source, credentials, credentials_from
from olmirror.lock.upstream_index import retries_of, upstream_of
from olmirror.lock.uv_compile import Resolution, Unresolvable
from olmirror.spec import LoadedSpec

log = logging.getLogger(__name__)

RESOLVERS = 4


def _chain(requirements: RequirementSet, resolution: Resolution, name: str) -> list[str]:
    """Names from a requirement of the set down to `name`, along uv's `via` annotations."""
    roots = {canonicalize_name(requirement_name(line)) for line in requirements.requirements}
    paths = {name: [name]}
    todo = [name]
    while todo:
        current = todo.pop(0)
        if current in roots:
            return paths[current][::-1]
        for parent in resolution.needed_by.get(current, []):
            if parent not in paths:
                paths[parent] = [*paths[current], parent]
                todo.append(parent)
    return [name]


def _blocked(
    sets: list[RequirementSet], resolutions: dict[tuple[str, str], Resolution], block: list[str]
) -> Iterator[tuple[str, str]]:
    """(set, why) of every set whose closure, for some target, holds a blocked project."""
    blocked = {canonicalize_name(b) for b in block}
    by_name = {s.name: s for s in sets}
    for (set_name, target_key), resolution in sorted(resolutions.items()):
        versions = dict(pin.partition("==")[::2] for pin in resolution.pins)
        for name in sorted(blocked & set(versions)):
            requirements = by_name[set_name]
            chain = _chain(requirements, resolution, name)
            root = next(
                (
                    line
                    for line in requirements.requirements
                    if canonicalize_name(requirement_name(line)) == chain[0]
                ),
                None,
            )
            path = " -> ".join(f"{n}=={versions[n]}" for n in chain)
            via = f" through {path}" if len(chain) > 1 else ""
            asked = f" ({root!r} from {requirements.source_of(root)})" if root else ""
            yield (
                set_name,
                f"{name}=={versions[name]} is blocked by allowlist.block but "
                f"{requirements.origin} needs it for target {target_key}{via}{asked}; "
                "drop the requirement that pulls it in, or unblock it",
            )


def _via(requirements: RequirementSet, resolution: Resolution) -> dict[str, list[str]]:
    """Why each pin is in the set: REQUESTED by the set itself, and/or the pins that need it."""
    roots = {canonicalize_name(requirement_name(line)) for line in requirements.requirements}
    return {
        name: [*([REQUESTED] if name in roots else []), *sorted(parents)]
        for name, parents in sorted(resolution.needed_by.items())
    }


def resolve(
    loaded: LoadedSpec,
    sets: list[RequirementSet],
    digest: str,
    earlier: list[Lock] | None = None,
    upgrade: Upgrade | None = None,
) -> Lock:
    """A new lock: each set resolved for each target, and each target's files picked and
    hashed; what `earlier` locks hold for unchanged inputs is kept as it is (`relock`).

    A set found on a host (`discovered`) that has no solution, needs a blocked project or
    has no file a target can install is left out, its reason kept in the lock; any other
    such set, and an upstream that cannot be read, stops here.
    """
    earlier, upgrade = earlier or [], upgrade or Upgrade()
    upstream, ca, targets = upstream_of(loaded), loaded.spec.mirror.ca_file, targets_of(loaded)
    block = list(loaded.spec.allowlist.block)
    digests = {(s.name, t.key): set_digest(s, t, upstream, block) for t in targets for s in sets}
    kept = kept_entries(earlier, digests, upgrade)
    jobs = [(s, t) for t in targets for s in sets if (s.name, t.key) not in kept]
    retries = retries_of(loaded.spec.mirror.retries)
    # read once, now that the upstream is asked: a plan that keeps the lock needs none
    found = credentials(auth_source(loaded.spec.mirror.upstream_auth), upstream)

    def attempt(job: tuple[RequirementSet, Target]) -> Resolution | Unresolvable:
        s, t = job
        prefer = preferred(earlier, s.name, t.key, upgrade)
        try:
            return uv_compile.compile_set(
                s, t, upstream, ca, loaded.spec.mirror.index_timeout, retries, prefer,
                upgrade.packages, found,
            )  # fmt: skip
        except Unresolvable as exc:
            if not s.discovered:
                raise
            return exc

    with ThreadPoolExecutor(RESOLVERS) as pool:
        results = list(pool.map(attempt, jobs))
    failed: dict[str, str] = {}
    resolutions = {}
    for (s, t), result in zip(jobs, results, strict=True):
        if isinstance(result, Unresolvable):
            failed.setdefault(s.name, str(result))
        else:
            resolutions[(s.name, t.key)] = result
    by_name = {s.name: s for s in sets}
    for set_name, why in _blocked(sets, resolutions, block):
        if not by_name[set_name].discovered:
            raise OlmirrorError(why)
        failed.setdefault(set_name, why)
    chosen = locked_files(
        loaded, sets, targets, resolutions, kept, earlier, failed, retries, upgrade, found
    )
    locked = {}
    for target in targets:
        target_lock = TargetLock(target.python, target.platform)
        for s in (s for s in sets if s.name not in failed):
            pair = (s.name, target.key)
            if pair in kept:
                pins, via = kept[pair].pins, kept[pair].via
            else:
                pins, via = resolutions[pair].pins, _via(s, resolutions[pair])
            target_lock.sets[s.name], target_lock.via[s.name] = pins, via
            target_lock.inputs[s.name] = digests[pair]
            target_lock.files |= {pin: chosen[(target.key, pin)] for pin in pins}
        target_lock.files = dict(sorted(target_lock.files.items()))
        locked[target.key] = target_lock
    lock = Lock(
        inputs=digest, upstream=upstream, targets=locked, failed=dict(sorted(failed.items()))
    )
    if loaded.spec.mirror.engine == "auto":
        with_credentials = found.source if found else None
        lock.auto_engine, lock.auto_engine_why = choose_engine(
            "auto", lock, ca, retries, with_credentials
        )
    lock.note = _note(len(jobs), len(digests), upgrade)
    return lock


def _note(resolved: int, pairs: int, upgrade: Upgrade) -> str:
    """What the resolution did, for the plan's reader."""
    if upgrade.everything or resolved == pairs:
        return f"resolved every set for every target ({pairs})"
    return f"resolved {resolved} of {pairs} (set, target) pairs again; kept the rest as locked"


def lock_inputs(
    loaded: LoadedSpec, registries: Mapping[str, FoundIn]
) -> tuple[list[RequirementSet], str]:
    """The requirement sets, and the digest a lock of them records."""
    sets = requirement_sets(loaded, registries)
    block = list(loaded.spec.allowlist.block)
    auto = loaded.spec.mirror.engine == "auto"
    upstream = upstream_of(loaded)
    # auto's choice rests on whether there are credentials: decided again when that changes
    source = auth_source(loaded.spec.mirror.upstream_auth)
    with_credentials = auto and credentials_from(source, upstream) is not None
    return sets, inputs_digest(sets, targets_of(loaded), upstream, block, auto, with_credentials)


def current_lock(
    loaded: LoadedSpec,
    registries: Mapping[str, FoundIn],
    *,
    upgrade: Upgrade | None = None,
) -> Lock:
    """The lock of the spec's inputs now: the one beside the spec, or the one the last plan
    resolved (`relock.resolved_path`), when either was made from exactly these inputs; else
    a new resolution, which keeps their entries for the sets that did not change.

    `registries`: each worker's registry as found on its host, or as the lock recorded it
    (`openlambda.registry.recorded_registries`).
    `upgrade`: what `olmirror lock` resolves afresh.
    """
    spec_path = Path(loaded.path)
    existing = read_lock(lock_path(spec_path))
    sets, digest = lock_inputs(loaded, registries)
    if upgrade is None and existing is not None and existing.inputs == digest:
        lock = _with_set_inputs(existing, loaded, sets)  # a no-op plan reads nothing more
        lock.registries = {name: r.to_json() for name, r in sorted(registries.items())}
        return lock
    resolved = read_resolved(spec_path) if upgrade is None else None
    if resolved is not None and resolved.inputs == digest:
        lock = resolved
        lock.note = f"the lock the last plan resolved, used as it is ({resolved_path(spec_path)})"
    else:
        earlier = [lock for lock in (existing, resolved) if lock is not None]
        lock = resolve(loaded, sets, digest, earlier, upgrade)
    lock.registries = {name: r.to_json() for name, r in sorted(registries.items())}
    if upgrade is None and lock is not resolved:  # resolved now: keep it for the next run
        keep_resolved(lock, spec_path)
    return lock


def _with_set_inputs(lock: Lock, loaded: LoadedSpec, sets: list[RequirementSet]) -> Lock:
    """A lock made from these very inputs by an older olmirror records no digest per set:
    add them (the next apply writes them), so its pins are kept when one set changes."""
    upstream, block = upstream_of(loaded), list(loaded.spec.allowlist.block)
    for target in targets_of(loaded):
        entry = lock.targets.get(target.key)
        for s in sets if entry is not None else []:
            if s.name in entry.sets:
                entry.inputs.setdefault(s.name, set_digest(s, target, upstream, block))
    return lock
