"""Wheels built from source distributions, for pins whose only file for a target is an sdist.

An OpenLambda worker installs with `pip install --no-deps` in a sandbox that may have no
compiler, from a mirror that holds no build backend, so an sdist in the mirror would fail
there. olmirror builds the wheel once, with `uv build --wheel`, on the machine that runs
olmirror: the lock must record the wheel's sha256 before any host changes, uv and the
upstream are already at hand there for the resolution, and one build serves every mirror
host. The build runs in uv's build isolation, in a fresh temp folder, with its build
requirements from the upstream alone (through the spec's retries), and SOURCE_DATE_EPOCH
fixed, so that a rebuild gives the same bytes. The wheel is kept in the state folder
(`.olmirror/wheels/<sdist sha256>/`) for the apply that places it in the mirror.

A pure wheel (`py3-none-any`) serves every target. A platform wheel serves only the targets
that this machine stands for: the same CPython version and architecture, and a glibc at
least as new as the one it was built against.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.utils import parse_sdist_filename, parse_wheel_filename
from uv import find_uv_bin

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import LockedFile
from olmirror.lock.requirement_sets import RequirementSet
from olmirror.lock.targets import Target, compatible_platforms
from olmirror.lock.upstream_auth import Credentials, client_auth, redact
from olmirror.lock.upstream_index import SHA256, not_a_file_name
from olmirror.lock.uv_compile import missing_build_requirement, transient
from olmirror.lock.uv_env import build_env, index_args, uv_env, uv_refused
from olmirror.remote.fetch_files import check_url
from olmirror.remote.upstream_http import Auth, Client, Final, Retries, Transient, chunks

BUILD_SECONDS = 900
LOG_LINES = 15  # of a failed build's output, in its error
BUILDERS = 2  # builds at once: each may compile
log = logging.getLogger(__name__)


class BuildFailed(OlmirrorError):
    """An sdist that does not build: a fault of that release, reported on the sets that
    need it."""


@dataclass(frozen=True)
class Builder:
    """This machine as a builder: what a platform wheel built here needs to run."""

    uv: str  # "uv 0.13.9"
    python: str  # "3.11.7"
    platform: str | None  # "manylinux_2_36_x86_64"; None off glibc

    @property
    def describe(self) -> str:
        return f"{self.uv} build --wheel, CPython {self.python} on {self.platform or 'no glibc'}"

    def serves(self, wheel: str, target: Target) -> bool:
        """Whether `target` can install the wheel named `wheel`, built here."""
        if target.wheel_rank(wheel) is None:
            return False
        if all(tag.platform == "any" for tag in parse_wheel_filename(wheel)[3]):
            return True
        python = ".".join(self.python.split(".")[:2])
        return (
            self.platform is not None
            and target.python == python
            and self.platform in compatible_platforms(target.platform)
        )


@cache
def this_builder() -> Builder:
    version = subprocess.run(
        [find_uv_bin(), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[:2]
    libc, glibc = platform.libc_ver()
    major, _, minor = glibc.partition(".")
    arch = platform.machine()
    tag = f"manylinux_{major}_{minor}_{arch}" if libc == "glibc" and minor.isdigit() else None
    return Builder(" ".join(version) or "uv", platform.python_version(), tag)


@dataclass(frozen=True)
class Built:
    """A wheel built from `sdist`, kept at `path`."""

    sdist: LockedFile
    path: Path
    sha256: str
    size: int

    def locked(self, requires_python: str | None) -> LockedFile:
        """The wheel as the lock records it: at its own path on the mirror (`url`, beside no
        upstream file), with where it came from."""
        digest = self.sdist.sha256
        return LockedFile(
            self.path.name,
            f"/packages/built/{digest[:2]}/{digest[2:]}/{self.path.name}",
            self.sha256,
            self.size,
            requires_python,
            built={
                "sdist": self.sdist.filename,
                "sdist_url": self.sdist.url,
                "sdist_sha256": self.sdist.sha256,
                "builder": this_builder().describe,
            },
        )


def _wheels_dir(state: Path | None) -> Path | None:
    """Where the state folder keeps built wheels; None without one, or when that folder is
    a symbolic link (olmirror keeps no state through one, as `page_cache.py` does not)."""
    wheels = state / "wheels" if state else None
    return None if wheels is None or wheels.is_symlink() else wheels


def kept_wheel(state: Path | None, sdist_sha256: str) -> Path | None:
    """The wheel built earlier from the sdist with this sha256, if the state folder keeps it."""
    base = _wheels_dir(state)
    folder = base / sdist_sha256 if base else None
    found = sorted(folder.glob("*.whl")) if folder and folder.is_dir() else []
    return found[0] if len(found) == 1 else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(
    sdist: LockedFile, to: Path, ca_file: str | None, retries: Retries, auth: Auth
) -> None:
    """The sdist from the upstream, checked against its locked sha256 (a mismatch is a
    damaged transfer, tried again); `auth` goes to the upstream's origin alone."""
    import ssl

    def read(reply: object, _url: str) -> None:
        digest = hashlib.sha256()
        with to.open("wb") as f:
            for chunk in chunks(reply):
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != sdist.sha256:
            raise Transient(f"{sdist.filename} arrived with another sha256 than the index gives")

    client = Client(ssl.create_default_context(cafile=ca_file), retries=retries, auth=auth)
    try:
        client.get(sdist.url, read)
    except Final as exc:
        raise OlmirrorError(f"cannot download {sdist.url} to build it: {exc}") from None
    finally:
        client.close()


def build_wheel(
    sdist: LockedFile,
    upstream: str,
    ca_file: str | None,
    index_timeout: float,
    retries: Retries,
    state: Path | None,
    credentials: Credentials | None = None,
) -> Built:
    """The wheel of `sdist`: the one kept from an earlier build, else built now and kept;
    `credentials`: the upstream's, for the download and uv's environment alone."""
    kept = kept_wheel(state, sdist.sha256)
    if kept is not None:
        return Built(sdist, kept, _sha256(kept), kept.stat().st_size)
    with tempfile.TemporaryDirectory(prefix="olmirror-build-") as folder:
        source, out = Path(folder, sdist.filename), Path(folder, "out")
        _download(sdist, source, ca_file, retries, client_auth(credentials, upstream))
        argv = [
            find_uv_bin(), "build", "--wheel", "--no-config", "--color", "never",
            "--python", sys.executable, "--out-dir", str(out),
            *index_args(upstream), str(source),
        ]  # fmt: skip
        env = build_env(uv_env(ca_file, index_timeout, retries, credentials))
        log.debug("building %s: %s", sdist.filename, " ".join(argv))
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, cwd=folder,
                timeout=BUILD_SECONDS, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BuildFailed(
                f"building {sdist.filename} took more than {BUILD_SECONDS} s and was stopped"
            ) from None
        wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
        if done.returncode != 0 or len(wheels) != 1:
            output = redact(done.stderr + done.stdout, credentials)  # the backend's too
            refused = uv_refused(output, upstream, credentials)
            if refused:
                raise OlmirrorError(f"building {sdist.filename} into a wheel: {refused}")
            raise _failure(sdist, output)
        return _keep(sdist, wheels[0], state)


def _failure(sdist: LockedFile, output: str) -> OlmirrorError:
    """Why the build failed: the upstream out of reach (not the release's fault), a build
    requirement the upstream lacks, or else the end of the build's log."""
    if transient(output):
        return OlmirrorError(
            f"building {sdist.filename} into a wheel could not reach the upstream for its build "
            f"requirements ({output.strip().splitlines()[-1]}); try again, or raise "
            "mirror.retries.attempts"
        )
    missing = missing_build_requirement(output)
    if missing:
        return BuildFailed(
            f"the upstream has only the source distribution {sdist.filename}, and building it "
            f"into a wheel needs {missing}, one of its build requirements, which the "
            "upstream does not have. Add its build requirements to the upstream, or pin a "
            "release that has a wheel for the target"
        )
    tail = output.strip().splitlines()[-LOG_LINES:]
    return BuildFailed(
        f"the upstream has only the source distribution {sdist.filename}, and building it into "
        f"a wheel failed ({this_builder().describe}); the build's last lines:\n  "
        + "\n  ".join(tail)
    )


def _keep(sdist: LockedFile, wheel: Path, state: Path | None) -> Built:
    """Move the new wheel into the state folder (kept for the apply; without one, in a temp
    folder that lives as long as this run)."""
    base = _wheels_dir(state) or Path(tempfile.mkdtemp(prefix="olmirror-wheels-"))
    folder = base / sdist.sha256
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.whl"):
        stale.unlink()
    target = folder / wheel.name
    shutil.move(wheel, target.with_suffix(".part"))
    os.replace(target.with_suffix(".part"), target)
    return Built(sdist, target, _sha256(target), target.stat().st_size)


def built_as_pinned(built: Built) -> Built:
    """`built`, when its wheel is of the sdist's project and version (pip on a worker would
    pass over any other, and the pin would not install)."""
    wheel_name, wheel_version = parse_wheel_filename(built.path.name)[:2]
    sdist_name, sdist_version = parse_sdist_filename(built.sdist.filename)
    if (wheel_name, wheel_version) != (sdist_name, sdist_version):
        raise BuildFailed(
            f"building {built.sdist.filename} gave {built.path.name}, a wheel of another "
            "project or version; fix the sdist's metadata, or pin a release that has a wheel"
        )
    return built


def wrong_target(pin: str, built: Built, target: Target) -> str:
    """Why `target` cannot use the wheel built for `pin`, and the ways out."""
    builder = this_builder()
    python = ".".join(builder.python.split(".")[:2])
    return (
        f"{pin}: the upstream has only its source distribution {built.sdist.filename} for "
        f"target {target.key}, and building it here gives {built.path.name}, a wheel that "
        f"only CPython {python} on {builder.platform or 'this platform'} (or a newer glibc) "
        f"can install. Pin a release that has a wheel for {target.key}, publish one to the "
        "upstream, or run olmirror on a machine of that target so it builds one there"
    )


def with_built_wheels(
    chosen: dict[tuple[str, str], LockedFile],
    users: dict[tuple[str, str], list[RequirementSet]],
    targets: dict[str, Target],
    build: Callable[[LockedFile], Built],
    failed: dict[str, str],
) -> None:
    """Replace each sdist in `chosen` ((target key, pin) -> file) with the wheel built from
    it, each sdist built once; where the build fails, or gives a wheel a target cannot
    install, the sets that need it (`users`) fail: a set found on a host is left out with
    its reason in `failed`, any other stops the plan."""
    sdists = {f.sha256: f for f in chosen.values() if not f.filename.endswith(".whl")}
    if not sdists:
        return

    def attempt(sdist: LockedFile) -> Built | BuildFailed:
        try:
            return built_as_pinned(build(sdist))
        except BuildFailed as exc:  # the release's fault; an unreachable upstream stops here
            return exc

    with ThreadPoolExecutor(BUILDERS) as pool:
        results = dict(zip(sdists, pool.map(attempt, sdists.values()), strict=True))
    for (key, pin), file in sorted(chosen.items()):
        result = results.get(file.sha256) if not file.filename.endswith(".whl") else None
        if result is None:
            continue
        if isinstance(result, Built) and this_builder().serves(result.path.name, targets[key]):
            chosen[(key, pin)] = result.locked(file.requires_python)
            continue
        why = (
            f"{pin} for target {key}: {result}"
            if isinstance(result, BuildFailed)
            else wrong_target(pin, result, targets[key])
        )
        for s in users.get((key, pin), []):
            if not s.discovered:
                raise OlmirrorError(f"{s.origin}: {why}")
            failed.setdefault(s.name, f"{s.origin}: {why}")


def sdist_of(locked: LockedFile, origins: list[str] | None) -> LockedFile:
    """The sdist a built wheel of the lock came from, checked as upstream data is: a lock is
    a file anyone may edit, and its sdist is downloaded, built (run) and kept by name."""
    built = locked.built or {}
    sdist = LockedFile(
        built.get("sdist", ""), built.get("sdist_url", ""), built.get("sdist_sha256", "")
    )
    problem = None
    if not SHA256.fullmatch(sdist.sha256):
        problem = f"its sdist's sha256 {sdist.sha256!r} is not one"
    elif not_a_file_name(sdist.filename) or sdist.filename.startswith("."):
        problem = f"its sdist's name {sdist.filename!r} is not a file name"
    else:
        try:
            check_url(sdist.url, origins)
        except ValueError as exc:
            problem = f"its sdist's URL {sdist.url!r}: {exc}"
    if problem:
        raise OlmirrorError(
            f"{locked.filename} in the lock: {problem}; run `olmirror lock` to write it again"
        )
    return sdist


def rebuilt(wheel: str, sha256: str, built: Built) -> Path:
    """The rebuilt wheel's path, when it is the one the lock records (`wheel`, `sha256`)."""
    if built.sha256 != sha256:
        project = wheel.partition("-")[0]
        raise OlmirrorError(
            f"{wheel}: building it again from {built.sdist.filename} here gives sha256 "
            f"{built.sha256}, and the lock records {sha256}; builds of it are not reproducible "
            "between the machine that locked it and this one, and the mirror does not hold "
            "the locked one. Copy .olmirror/wheels/ from the machine that ran the plan, or run "
            f"`olmirror lock -P {project}` to build it again and lock that build"
        )
    return built.path
