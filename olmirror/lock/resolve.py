"""Resolve each requirement set to a pinned closure for each target, and pick each target's file.

pip-compile and pip's own resolver evaluate environment markers for the
interpreter they run on, not for the target, so a `python_version < "3.11"` or
`sys_platform == "win32"` dependency would be wrong for any other target. uv's
resolver evaluates markers and wheel tags for a named Python version and
platform, so olmirror uses `uv pip compile` for every target.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from uv import find_uv_bin

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import (
    REQUESTED,
    Lock,
    LockedFile,
    TargetLock,
    inputs_digest,
    lock_path,
    read_lock,
    set_digest,
)
from olmirror.lock.page_cache import PageCache
from olmirror.lock.relock import (
    Kept,
    Upgrade,
    keep_resolved,
    kept_entries,
    known_files,
    preferred,
    read_resolved,
    resolved_path,
)
from olmirror.lock.requirement_sets import RequirementSet, requirement_sets
from olmirror.lock.state_folder import made_state_folder
from olmirror.lock.targets import TargetEnv, release_of, uv_platform
from olmirror.lock.upstream_index import (
    Index,
    IndexFile,
    allowed_origins,
    default_upstream,
    retries_of,
)
from olmirror.lock.uv_env import uv_env
from olmirror.lock.wheel_build import Built, build_wheel, with_built_wheels
from olmirror.mirror.engine import choose_engine
from olmirror.openlambda.registry import Registry, default_registry
from olmirror.remote.upstream_http import Retries
from olmirror.spec import LoadedSpec, Worker

log = logging.getLogger(__name__)

RESOLVERS = 4
# The box-drawing characters uv decorates its error reports with.
# How long one uv resolution may take, whatever the upstream does.
RESOLVE_SECONDS = 900
_UV_DECORATION = " \u00d7\u2570\u2500\u25b6\u2502"
_NO_SOLUTION = "No solution found"
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?", re.IGNORECASE)
# uv's words for a download that arrived damaged or cut: its hash check, its wheel reader,
# and its HTTP client when the body ends early (seen against tests/upstream.py's faults).
_DAMAGED = (
    "Hash mismatch",
    "invalid package format",
    "error decoding response body",
    "close_notify",
    "unexpected end of file",
    "Failed to extract",
    "invalid zip",
)
# ... and for a failure of the network or a server that uv already retried on its own.
_BUSY = ("429 Too Many Requests", "408 Request Timeout")
_FLAKY = (
    "server error",
    "error sending request",
    "connection error",
    "timed out",
    "dns error",
    "failed to lookup address",
)
# Failures that another run would only repeat: nothing listens, TLS is refused, a 4xx
# (but `_BUSY`).
_LASTING = ("Connection refused", "certificate", "client error (4")
# uv building an sdist to read its metadata, and the build requirement it could not find.
_BUILT = re.compile(r"Failed to (?:download and )?build `([^`]+)`")
_BUILD_NEEDS = re.compile(r"No solution found when resolving: `([^`]+)`")
_URL = re.compile(r"https?://[^\s`'\")]+")


@dataclass(frozen=True)
class Resolution:
    """One set's closure for one target: sorted pins, and who needs each (canonical names)."""

    pins: list[str]
    needed_by: dict[str, list[str]]


def _uv_report(stderr: str) -> tuple[str, str]:
    """(headline, causes) of uv's error report, without decoration or `error:`/`cause:`."""
    lines = [line.strip(_UV_DECORATION) for line in stderr.splitlines()]
    lines = [line.strip() for line in lines if line.strip()]
    headline, causes = "", []
    for line in lines:
        if line.startswith("error:") and not headline:
            headline = line.removeprefix("error:").strip()
        elif line.startswith("warning:"):
            continue
        else:
            causes.append(line.removeprefix("cause:").strip())
    return headline or " ".join(causes), " ".join(causes)


def _mentioned(requirements: RequirementSet, text: str) -> list[str]:
    """The set's requirements whose project the resolver's explanation names."""
    named = {canonicalize_name(word) for word in _NAME.findall(text)}
    return [
        line for line in requirements.requirements if canonicalize_name(_name_of(line)) in named
    ]


def _name_of(line: str) -> str:
    return Requirement(line).name


class Unresolvable(OlmirrorError):
    """A set's requirements have no solution on the upstream: a fault of the set, not of
    reaching the upstream."""


def _damaged(stderr: str) -> bool:
    """Whether uv failed on a file or page that arrived damaged or cut."""
    return any(sign in stderr for sign in _DAMAGED)


def _transient(stderr: str) -> bool:
    """Whether uv failed in a way another run may not meet (see `_DAMAGED`, `_FLAKY`)."""
    if _damaged(stderr) or any(sign in stderr for sign in _BUSY):
        return True  # uv says "no solution" of a wheel that arrived cut, too
    if _NO_SOLUTION in stderr or any(sign in stderr for sign in _LASTING):
        return False
    return any(sign in stderr for sign in _FLAKY)


def _resolve_error(
    requirements: RequirementSet, target: TargetEnv, upstream: str, stderr: str, tries: int = 1
) -> OlmirrorError:
    headline, causes = _uv_report(stderr)
    where = f"cannot resolve {requirements.origin} for target {target.key}"
    runs = f" ({tries} tries)" if tries > 1 else ""
    if _damaged(stderr) and not headline.startswith(_NO_SOLUTION):
        url = _URL.search(stderr)
        return OlmirrorError(
            f"{where}: the upstream sent a damaged or cut file for "
            f"{url[0] if url else upstream}{runs}, a network or proxy fault ({headline}); "
            "try again later, or raise mirror.retries.attempts"
        )
    built = _BUILT.search(stderr)
    if built and not headline.startswith(_NO_SOLUTION):
        return _build_error(where, built[1], stderr, causes)
    if not headline.startswith(_NO_SOLUTION):
        return OlmirrorError(
            f"{where}: the upstream {upstream} could not be read{runs} ({headline}"
            f"{': ' + causes if causes and causes != headline else ''}); check that it is "
            "reachable from this machine and that mirror.upstream and mirror.ca_file are right"
        )
    asked = "; ".join(
        f"{line!r} from {requirements.source_of(line)}" for line in _mentioned(requirements, causes)
    )
    damaged = (
        f" (read{runs}: if that file is whole on the upstream, it arrived damaged, a network "
        "or proxy fault)"
        if _damaged(stderr)
        else ""
    )
    return Unresolvable(
        f"{where}: {causes or headline}{' (asked for by ' + asked + ')' if asked else ''}"
        f"{damaged}; fix the requirement, or add the missing release to the upstream"
    )


def _build_error(where: str, pin: str, stderr: str, causes: str) -> Unresolvable:
    """uv had to build `pin`'s sdist to read its metadata, and could not: a fault of that
    release on this upstream, so a set found on a host fails alone."""
    missing = _BUILD_NEEDS.search(stderr)
    if "Failed to resolve requirements from" in stderr and missing:
        return Unresolvable(
            f"{where}: uv cannot read the metadata of {pin}, which the upstream has only as a "
            f"source distribution: building it needs {missing[1]}, one of its build "
            f"requirements, and the upstream does not have it ({causes}). Add its build "
            f"requirements to the upstream, or pin a release of {pin.partition('==')[0]} "
            "that has a wheel"
        )
    return Unresolvable(
        f"{where}: uv cannot read the metadata of {pin}, which the upstream has only as a "
        f"source distribution, because building it failed ({causes}); pin a release that "
        "has a wheel, or fix the sdist's build"
    )


def _compile(
    requirements: RequirementSet,
    target: TargetEnv,
    upstream: str,
    ca: str | None,
    index_timeout: float = 30,
    retries: Retries | None = None,
    prefer: list[str] | None = None,
    upgrade: frozenset[str] = frozenset(),
) -> Resolution:
    """`prefer`: the pins to start from (uv keeps those of its output file, as pip-compile
    does), but for the projects in `upgrade`."""
    with tempfile.TemporaryDirectory(prefix="olmirror-resolve-") as folder:
        output = Path(folder, "requirements.txt")
        output.write_text("".join(f"{pin}\n" for pin in prefer or []))
        return _compile_to(
            requirements, target, upstream, ca, index_timeout, retries, output, upgrade
        )


def _compile_to(
    requirements: RequirementSet,
    target: TargetEnv,
    upstream: str,
    ca: str | None,
    index_timeout: float,
    retries: Retries | None,
    output: Path,
    upgrade: frozenset[str],
) -> Resolution:
    platform = uv_platform(target.platform)
    if platform is None:
        raise OlmirrorError(
            f"target {target.key}: cannot resolve for platform {target.platform!r} "
            "(uv knows manylinux, musllinux, linux, macosx and win platforms of x86_64/aarch64)"
        )
    argv = [
        find_uv_bin(), "pip", "compile", "-",
        "--python", sys.executable,  # any interpreter: markers use --python-version
        "--python-version", target.python,
        "--python-platform", platform,
        "--index-url", f"{upstream}/simple/",
        "--no-header", "--annotation-style", "line", "--quiet", "--no-config",
        "--color", "never", "--output-file", str(output),
        *(f"--upgrade-package={name}" for name in sorted(upgrade)),
    ]  # fmt: skip
    retries = retries or Retries()
    env = uv_env(ca, index_timeout, retries)
    failed: float | None = None  # when the first run failed (mirror.retries.within)
    tries = 0
    while True:
        tries += 1
        try:
            done = subprocess.run(
                argv,
                input="\n".join(requirements.requirements) + "\n",
                capture_output=True,
                text=True,
                env=env,
                timeout=RESOLVE_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise OlmirrorError(
                f"resolving {requirements.origin} for target {target.key} against {upstream} "
                f"took more than {RESOLVE_SECONDS} s and was stopped; the upstream may be silent "
                "or dripping: check that it answers"
            ) from None
        if done.returncode == 0:
            break
        # uv retries each request itself, but not a file that arrives damaged: run it again
        # (what it already read is in its cache), as long as the retries allow.
        failed = failed or time.monotonic()
        pause = retries.pause(tries, failed)
        if pause is None or not _transient(done.stderr):
            raise _resolve_error(requirements, target, upstream, done.stderr, tries)
        log.debug("resolving %s for %s again: %s", requirements.origin, target.key, done.stderr)
        time.sleep(pause)
    pins, needed_by = [], {}
    for raw in output.read_text().splitlines():
        line, _, comment = raw.partition("#")
        if not line.strip():
            continue
        requirement = Requirement(line.strip())
        (spec,) = requirement.specifier
        name = canonicalize_name(requirement.name)
        pins.append(f"{name}=={spec.version}")
        via = comment.strip().removeprefix("via").strip()
        needed_by[name] = [
            canonicalize_name(p.strip()) for p in via.split(",") if _NAME.fullmatch(p.strip())
        ]
    return Resolution(sorted(pins), needed_by)


def choose_file(pin: str, files: list[IndexFile], target: TargetEnv) -> LockedFile:
    """The file pip on `target` would install for `pin`: its best wheel, else the sdist."""
    name, _, version = pin.partition("==")
    release = [
        f
        for f in files
        if release_of(f.filename) == (name, Version(version))
        and target.accepts_python(f.requires_python)
    ]
    ranked = [(target.wheel_rank(f.filename), f) for f in release]
    wheels = sorted(((rank, f.filename, f) for rank, f in ranked if rank is not None))
    sdists = [f for rank, f in ranked if rank is None and not f.filename.endswith(".whl")]
    if wheels:
        chosen = wheels[0][2]
    elif sdists:
        chosen = sdists[0]
    else:
        present = ", ".join(
            f.filename for f in files if release_of(f.filename) == (name, Version(version))
        )
        raise OlmirrorError(
            f"{pin}: the upstream has no file that target {target.key} can install "
            f"(it has: {present or 'no files of this version'})"
        )
    if not chosen.sha256:
        raise OlmirrorError(f"{chosen.url}: the upstream gives no sha256 for this file")
    return LockedFile(
        chosen.filename, chosen.url, chosen.sha256, chosen.size, chosen.requires_python
    )


def _chain(requirements: RequirementSet, resolution: Resolution, name: str) -> list[str]:
    """Names from a requirement of the set down to `name`, along uv's `via` annotations."""
    roots = {canonicalize_name(_name_of(line)) for line in requirements.requirements}
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
                    if canonicalize_name(_name_of(line)) == chain[0]
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
    roots = {canonicalize_name(_name_of(line)) for line in requirements.requirements}
    return {
        name: [*([REQUESTED] if name in roots else []), *sorted(parents)]
        for name, parents in sorted(resolution.needed_by.items())
    }


def upstream_of(loaded: LoadedSpec) -> str:
    return (loaded.spec.mirror.upstream or default_upstream()).rstrip("/")


def targets_of(loaded: LoadedSpec) -> list[TargetEnv]:
    return [TargetEnv(t.python, t.platform) for t in loaded.spec.mirror.targets]


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

    def attempt(job: tuple[RequirementSet, TargetEnv]) -> Resolution | Unresolvable:
        s, t = job
        prefer = preferred(earlier, s.name, t.key, upgrade)
        try:
            return _compile(
                s, t, upstream, ca, loaded.spec.mirror.index_timeout, retries, prefer,
                upgrade.packages,
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
    chosen = _files(loaded, sets, targets, resolutions, kept, earlier, failed, retries)
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
        lock.auto_engine, lock.auto_engine_why = choose_engine("auto", lock, ca, retries)
    lock.note = _note(len(jobs), len(digests), upgrade)
    return lock


def _files(
    loaded: LoadedSpec,
    sets: list[RequirementSet],
    targets: list[TargetEnv],
    resolutions: dict[tuple[str, str], Resolution],
    kept: dict[tuple[str, str], Kept],
    earlier: list[Lock],
    failed: dict[str, str],
    retries: Retries,
) -> dict[tuple[str, str], LockedFile]:
    """(target key, pin) -> the file it installs: kept, known from an earlier lock, or
    chosen from the index, which is read once per project, for the pins new to a target."""
    chosen = {(key, pin): f for (_, key), entry in kept.items() for pin, f in entry.files.items()}
    known = {t.key: known_files(earlier, t.key) for t in targets}
    for (set_name, key), resolution in resolutions.items():
        if set_name not in failed:
            chosen |= {(key, p): known[key][p] for p in resolution.pins if p in known[key]}
    new = {
        (set_name, key, pin) for (set_name, key), r in resolutions.items()
        if set_name not in failed for pin in r.pins if (key, pin) not in chosen
    }  # fmt: skip
    if new:
        _choose(loaded, sets, targets, new, chosen, failed, retries)
    users: dict[tuple[str, str], list[RequirementSet]] = {}
    by_name = {s.name: s for s in sets}
    for (set_name, key), entry in [*resolutions.items(), *kept.items()]:
        for pin in entry.pins if set_name not in failed else []:
            users.setdefault((key, pin), []).append(by_name[set_name])
    mirror, state = loaded.spec.mirror, made_state_folder(Path(loaded.path))

    def build(sdist: LockedFile) -> Built:
        return build_wheel(
            sdist, upstream_of(loaded), mirror.ca_file, mirror.index_timeout, retries, state
        )

    with_built_wheels(chosen, users, {t.key: t for t in targets}, build, failed)
    return chosen


def _choose(
    loaded: LoadedSpec,
    sets: list[RequirementSet],
    targets: list[TargetEnv],
    new: set[tuple[str, str, str]],
    chosen: dict[tuple[str, str], LockedFile],
    failed: dict[str, str],
    retries: Retries,
) -> None:
    """Add to `chosen` the file of each (set, target key, pin) in `new`, from the index."""
    mirror, upstream = loaded.spec.mirror, upstream_of(loaded)
    origins = allowed_origins(mirror.upstream, list(mirror.file_origins))
    names = {pin.partition("==")[0] for _, _, pin in new}
    pages = PageCache(made_state_folder(Path(loaded.path)))
    index = Index(upstream, mirror.ca_file, origins, mirror.index_timeout, retries, pages)
    index_files = index.many(names)
    by_key = {t.key: t for t in targets}
    for s in sets:
        try:
            files = {
                (key, pin): chosen.get((key, pin))
                or choose_file(pin, index_files[pin.partition("==")[0]], by_key[key])
                for set_name, key, pin in new
                if set_name == s.name
            }
        except OlmirrorError as exc:
            if not s.discovered:
                raise
            failed[s.name] = f"{s.origin}: {exc}"
            continue
        chosen |= files


def _note(resolved: int, pairs: int, upgrade: Upgrade) -> str:
    """What the resolution did, for the plan's reader."""
    if upgrade.everything or resolved == pairs:
        return f"resolved every set for every target ({pairs})"
    return f"resolved {resolved} of {pairs} (set, target) pairs again; kept the rest as locked"


def recorded_registries(loaded: LoadedSpec, lock: Lock | None) -> dict[str, Registry]:
    """Each worker's registry as the lock last recorded it, else as `ol worker init` makes it."""
    recorded = lock.registries if lock else {}

    def registry(worker: Worker) -> Registry:
        try:
            return Registry.from_json(recorded[worker.name])
        except (KeyError, TypeError, ValueError, AttributeError):  # not yet, or edited by hand
            return default_registry(worker)

    return {w.name: registry(w) for w in loaded.spec.workers}


def lock_inputs(
    loaded: LoadedSpec, registries: dict[str, Registry]
) -> tuple[list[RequirementSet], str]:
    """The requirement sets, and the digest a lock of them records."""
    sets = requirement_sets(loaded, registries)
    block = list(loaded.spec.allowlist.block)
    auto = loaded.spec.mirror.engine == "auto"
    return sets, inputs_digest(sets, targets_of(loaded), upstream_of(loaded), block, auto)


def current_lock(
    loaded: LoadedSpec,
    registries: dict[str, Registry] | None = None,
    *,
    upgrade: Upgrade | None = None,
) -> Lock:
    """The lock of the spec's inputs now: the one beside the spec, or the one the last plan
    resolved (`relock.resolved_path`), when either was made from exactly these inputs; else
    a new resolution, which keeps their entries for the sets that did not change.

    `registries`: each worker's registry as found on its host; by default, as recorded.
    `upgrade`: what `olmirror lock` resolves afresh.
    """
    spec_path = Path(loaded.path)
    existing = read_lock(lock_path(spec_path))
    if registries is None:
        registries = recorded_registries(loaded, existing)
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
