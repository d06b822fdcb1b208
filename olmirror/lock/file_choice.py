"""The file each target installs for each pin: kept from an earlier lock, else chosen from
the upstream's index as pip would choose on the target (its best wheel), and for a pin
whose only file is an sdist, the wheel olmirror builds from it (`wheel_build.py`)."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import parse_wheel_filename
from packaging.version import Version

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock, LockedFile
from olmirror.lock.page_cache import PageCache
from olmirror.lock.relock import Kept, Upgrade, known_files
from olmirror.lock.requirement_sets import RequirementSet
from olmirror.lock.simple_api import IndexFile
from olmirror.lock.state_folder import made_state_folder
from olmirror.lock.targets import Target, release_of
from olmirror.lock.upstream_auth import Credentials, client_auth
from olmirror.lock.upstream_index import Index, allowed_origins, upstream_of
from olmirror.lock.uv_compile import Resolution
from olmirror.lock.wheel_build import Built, build_wheel, with_built_wheels
from olmirror.remote.upstream_http import Retries
from olmirror.spec import LoadedSpec


def _rank(file: IndexFile, target: Target) -> tuple[int, int] | None:
    """(tag rank, minus the build number) of a wheel the target can install; else None."""
    rank = target.wheel_rank(file.filename)
    if rank is None:
        return None
    build = parse_wheel_filename(file.filename)[2]
    return rank, -(build[0] if build else 0)


def _preference(file: IndexFile, target: Target) -> tuple[object, ...]:
    """pip's order among a release's files (its PackageFinder's sort key): a file not yanked
    first, then a wheel before the sdist, the best-ranked tags, the highest build tag; of
    files equal in all that, the first by name (pip takes the first listed: a lock must not
    change when an upstream lists the same files in another order)."""
    wheel = _rank(file, target) if file.filename.endswith(".whl") else None
    return (file.yanked, wheel is None, wheel or (0, 0), file.filename)


def choose_file(pin: str, files: list[IndexFile], target: Target) -> LockedFile:
    """The file pip on `target` would install for `pin`: its best wheel, else the sdist."""
    name, _, version = pin.partition("==")
    release = [
        f
        for f in files
        if release_of(f.filename) == (name, Version(version))
        and target.accepts_python(f.requires_python)
    ]
    usable = [f for f in release if not f.filename.endswith(".whl") or _rank(f, target)]
    if usable:
        chosen = min(usable, key=lambda f: _preference(f, target))
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


def locked_files(
    loaded: LoadedSpec,
    sets: list[RequirementSet],
    targets: list[Target],
    resolutions: dict[tuple[str, str], Resolution],
    kept: dict[tuple[str, str], Kept],
    earlier: list[Lock],
    failed: dict[str, str],
    retries: Retries,
    upgrade: Upgrade,
    credentials: Credentials | None = None,
) -> dict[tuple[str, str], LockedFile]:
    """(target key, pin) -> the file it installs: kept, known from an earlier lock, or
    chosen from the index, which is read once per project, for the pins new to a target.
    A wheel olmirror built is built again (`olmirror lock`, `-P` of its project) unless this
    machine keeps it, so a build that is not reproducible can be locked anew."""
    chosen = {(key, pin): f for (_, key), entry in kept.items() for pin, f in entry.files.items()}
    known = {
        t.key: {
            pin: f
            for pin, f in known_files(earlier, t.key).items()
            if not (f.built and upgrade.forces("", [pin]))
        }
        for t in targets
    }
    for (set_name, key), resolution in resolutions.items():
        if set_name not in failed:
            chosen |= {(key, p): known[key][p] for p in resolution.pins if p in known[key]}
    new = {
        (set_name, key, pin) for (set_name, key), r in resolutions.items()
        if set_name not in failed for pin in r.pins if (key, pin) not in chosen
    }  # fmt: skip
    if new:
        _choose(loaded, sets, targets, new, chosen, failed, retries, credentials)
    users: dict[tuple[str, str], list[RequirementSet]] = {}
    by_name = {s.name: s for s in sets}
    for (set_name, key), entry in [*resolutions.items(), *kept.items()]:
        for pin in entry.pins if set_name not in failed else []:
            users.setdefault((key, pin), []).append(by_name[set_name])
    mirror, state = loaded.spec.mirror, made_state_folder(Path(loaded.path))

    def build(sdist: LockedFile) -> Built:
        return build_wheel(
            sdist, upstream_of(loaded), mirror.ca_file, mirror.index_timeout, retries, state,
            credentials,
        )  # fmt: skip

    with_built_wheels(chosen, users, {t.key: t for t in targets}, build, failed)
    return chosen


def _choose(
    loaded: LoadedSpec,
    sets: list[RequirementSet],
    targets: list[Target],
    new: set[tuple[str, str, str]],
    chosen: dict[tuple[str, str], LockedFile],
    failed: dict[str, str],
    retries: Retries,
    credentials: Credentials | None,
) -> None:
    """Add to `chosen` the file of each (set, target key, pin) in `new`, from the index."""
    mirror, upstream = loaded.spec.mirror, upstream_of(loaded)
    origins = allowed_origins(mirror.upstream, list(mirror.file_origins))
    names = {pin.partition("==")[0] for _, _, pin in new}
    pages = PageCache(made_state_folder(Path(loaded.path)))
    auth = client_auth(credentials, upstream)
    index = Index(upstream, mirror.ca_file, origins, mirror.index_timeout, retries, pages, auth)
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
