"""Resolve each requirement set to a pinned closure for each target, and pick each target's file.

pip-compile and pip's own resolver evaluate environment markers for the
interpreter they run on, not for the target, so a `python_version < "3.11"` or
`sys_platform == "win32"` dependency would be wrong for any other target. uv's
resolver evaluates markers and wheel tags for a named Python version and
platform, so olmirror uses `uv pip compile` for every target.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from uv import find_uv_bin

from olmirror.errors import OlmirrorError
from olmirror.index import Index, IndexFile, default_upstream
from olmirror.lockfile import Lock, LockedFile, TargetLock, inputs_digest, lock_path, read_lock
from olmirror.requirement_sets import RequirementSet, requirement_sets
from olmirror.spec import LoadedSpec
from olmirror.targets import TargetEnv, release_of, uv_platform

RESOLVERS = 4
# The box-drawing characters uv decorates its error reports with.
_UV_DECORATION = " \u00d7\u2570\u2500\u25b6\u2502"


def tls_env(ca_file: str | None) -> dict[str, str]:
    """The environment for a subprocess that must trust `ca_file` (and only it) for HTTPS.

    pip lets REQUESTS_CA_BUNDLE override its --cert, and the machine may set these
    variables globally, so they are set explicitly for every child.
    """
    env = dict(os.environ)
    if ca_file:
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT"):
            env[name] = ca_file
    return env


def _compile(requirements: RequirementSet, target: TargetEnv, upstream: str, ca: str | None):
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
        "--no-header", "--no-annotate", "--quiet", "--no-config", "--color", "never",
    ]  # fmt: skip
    done = subprocess.run(
        argv,
        input="\n".join(requirements.requirements) + "\n",
        capture_output=True,
        text=True,
        # Never fetch a Python build: the target's version is only used for markers and tags.
        env=tls_env(ca) | {"UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never"},
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        reason = " ".join(
            line.strip(_UV_DECORATION)
            for line in done.stderr.splitlines()
            if line.strip(_UV_DECORATION)
        )
        raise OlmirrorError(
            f"cannot resolve {requirements.origin} for target {target.key}: {reason}; "
            "fix the requirement, or the package is missing from the upstream"
        )
    pins = []
    for line in done.stdout.splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            pins.append(f"{canonicalize_name(requirement.name)}=={spec.version}")
    return sorted(pins)


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


def _check_blocked(sets: list[RequirementSet], pins: dict, block: list[str]) -> None:
    blocked = {canonicalize_name(b) for b in block}
    for (set_name, target_key), pinned in pins.items():
        for pin in pinned:
            if pin.partition("==")[0] in blocked:
                origin = next(s.origin for s in sets if s.name == set_name)
                raise OlmirrorError(
                    f"{pin} is blocked by allowlist.block but {origin} needs it for target "
                    f"{target_key}; drop the requirement that pulls it in, or unblock it"
                )


def upstream_of(loaded: LoadedSpec) -> str:
    return (loaded.spec.mirror.upstream or default_upstream()).rstrip("/")


def targets_of(loaded: LoadedSpec) -> list[TargetEnv]:
    return [TargetEnv(t.python, t.platform) for t in loaded.spec.mirror.targets]


def resolve(loaded: LoadedSpec, sets: list[RequirementSet], digest: str) -> Lock:
    """A fresh lock: resolve every set for every target, then pick and hash each target's files."""
    upstream, ca, targets = upstream_of(loaded), loaded.spec.mirror.ca_file, targets_of(loaded)
    jobs = [(s, t) for t in targets for s in sets]
    with ThreadPoolExecutor(RESOLVERS) as pool:
        results = list(pool.map(lambda job: _compile(*job, upstream, ca), jobs))
    pins = {(s.name, t.key): r for (s, t), r in zip(jobs, results, strict=True)}
    _check_blocked(sets, pins, list(loaded.spec.allowlist.block))
    names = {pin.partition("==")[0] for pinned in pins.values() for pin in pinned}
    index_files = Index(upstream, ca).many(names)
    locked = {}
    for target in targets:
        target_lock = TargetLock(target.python, target.platform)
        for s in sets:
            target_lock.sets[s.name] = pins[(s.name, target.key)]
            for pin in target_lock.sets[s.name]:
                if pin not in target_lock.files:
                    files = index_files[pin.partition("==")[0]]
                    target_lock.files[pin] = choose_file(pin, files, target)
        locked[target.key] = target_lock
    return Lock(inputs=digest, upstream=upstream, targets=locked)


def current_lock(loaded: LoadedSpec, *, refresh: bool = False) -> Lock:
    """The lock beside the spec when its inputs are unchanged, else a new resolution."""
    sets = requirement_sets(loaded)
    block = list(loaded.spec.allowlist.block)
    digest = inputs_digest(sets, targets_of(loaded), upstream_of(loaded), block)
    existing = read_lock(lock_path(Path(loaded.path)))
    if existing is not None and existing.inputs == digest and not refresh:
        return existing
    return resolve(loaded, sets, digest)
