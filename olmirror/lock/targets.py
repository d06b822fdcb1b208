"""Target environments: the wheel tags a target accepts, and the one file it would install.

pip picks, among a release's files, the wheel whose tags rank highest for the
interpreter, or the sdist when no wheel fits. olmirror makes the same choice for
each target without running there, with `packaging.tags`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from packaging import tags
from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from olmirror.spec import LoadedSpec

_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY_MANYLINUX = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
_MUSLLINUX = re.compile(r"^musllinux_(\d+)_(\d+)_(\w+)$")
_MACOS = re.compile(r"^macosx_(\d+)_(\d+)_(\w+)$")
_UV_MANYLINUX = {17, 28, *range(31, 41)}
_UV_ARCHES = {"x86_64", "aarch64"}


def _modern(platform: str) -> str:
    """`manylinux2014_x86_64` and its kin under their PEP 600 names."""
    for legacy, (major, minor) in _LEGACY_MANYLINUX.items():
        if platform.startswith(legacy + "_"):
            return f"manylinux_{major}_{minor}_{platform[len(legacy) + 1 :]}"
    return platform


def compatible_platforms(platform: str) -> list[str]:
    """Every platform tag a machine of `platform` accepts, best first (as pip expands them)."""
    platform = _modern(platform)
    if match := _MANYLINUX.match(platform):
        major, minor, arch = int(match[1]), int(match[2]), match[3]
        found = []
        for glibc in range(minor, 4, -1):
            found.append(f"manylinux_{major}_{glibc}_{arch}")
            found += [f"{old}_{arch}" for old, v in _LEGACY_MANYLINUX.items() if v == (2, glibc)]
        return [*found, f"linux_{arch}"]  # pip also takes a plain linux wheel, last
    if match := _MUSLLINUX.match(platform):
        major, minor, arch = int(match[1]), int(match[2]), match[3]
        return [*(f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)), f"linux_{arch}"]
    if match := _MACOS.match(platform):
        return list(tags.mac_platforms((int(match[1]), int(match[2])), match[3]))
    return [platform]


def uv_platform(platform: str) -> str | None:
    """The name uv's `--python-platform` uses for `platform`, or None when it has none."""
    platform = _modern(platform)
    if (match := _MANYLINUX.match(platform)) and match[3] in _UV_ARCHES:
        glibc = max((v for v in _UV_MANYLINUX if v <= int(match[2])), default=None)
        return f"{match[3]}-manylinux_2_{glibc}" if glibc else None
    if (match := _MUSLLINUX.match(platform)) and match[3] in _UV_ARCHES:
        return f"{match[3]}-unknown-linux-musl"
    if (match := _MACOS.match(platform)) and match[3] in ("x86_64", "arm64"):
        return "aarch64-apple-darwin" if match[3] == "arm64" else "x86_64-apple-darwin"
    return {
        "linux_x86_64": "x86_64-unknown-linux-gnu",
        "linux_aarch64": "aarch64-unknown-linux-gnu",
        "win_amd64": "x86_64-pc-windows-msvc",
        "win_arm64": "aarch64-pc-windows-msvc",
        "win32": "i686-pc-windows-msvc",
    }.get(platform)


# The operating system of a platform tag, by its prefix.
_SYSTEMS = (("macosx", "Darwin"), ("win", "Windows"))
# `platform.machine()` on a platform tag's architecture, by the tag's suffix.
_MACHINES = (  # Windows' own names first: win_arm64 ends in arm64 too
    ("win_amd64", "AMD64"), ("win32", "x86"), ("win_arm64", "ARM64"),
    ("x86_64", "x86_64"), ("aarch64", "aarch64"), ("i686", "i686"), ("armv7l", "armv7l"),
    ("ppc64le", "ppc64le"), ("s390x", "s390x"), ("arm64", "arm64"), ("universal2", "arm64"),
)  # fmt: skip


@dataclass(frozen=True)
class Target:
    """One Python environment that installs from the mirror."""

    python: str
    platform: str

    @property
    def key(self) -> str:
        return f"py{self.python}-{self.platform}"

    @cached_property
    def _ranks(self) -> dict[tags.Tag, int]:
        version = tuple(int(p) for p in self.python.split("."))
        platforms = compatible_platforms(self.platform)
        supported = [
            *tags.cpython_tags(version, platforms=platforms),
            *tags.compatible_tags(version, f"cp{version[0]}{version[1]}", platforms=platforms),
        ]
        return {tag: rank for rank, tag in reversed(list(enumerate(supported)))}

    def accepts_python(self, requires_python: str | None) -> bool:
        if not requires_python:
            return True
        try:
            return SpecifierSet(requires_python).contains(self.python, prereleases=True)
        except InvalidSpecifier:
            return True

    def installs(self, requirement: Requirement) -> bool:
        """Whether pip on this target installs `requirement`: its marker holds here."""
        if requirement.marker is None:
            return True
        system = next(
            (name for prefix, name in _SYSTEMS if self.platform.startswith(prefix)), "Linux"
        )
        machine = next((m for tag, m in _MACHINES if self.platform.endswith(tag)), "")
        environment = {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "implementation_version": f"{self.python}.0",  # CPython's is its own version
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "platform_system": system,
            "sys_platform": {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}[system],
            "os_name": "nt" if system == "Windows" else "posix",
            "platform_machine": machine,
        }
        try:
            return requirement.marker.evaluate(environment)
        except (UndefinedComparison, UndefinedEnvironmentName) as exc:
            raise ValueError(f"its marker cannot be evaluated ({exc})") from None

    def wheel_rank(self, filename: str) -> int | None:
        """How much this target prefers the wheel (lower is better), or None if it cannot use it."""
        try:
            _, _, _, wheel_tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            return None
        ranks = [self._ranks[t] for t in wheel_tags if t in self._ranks]
        return min(ranks) if ranks else None


def release_of(filename: str) -> tuple[str, Version] | None:
    """(canonical name, version) of a wheel or sdist file name, None for anything else."""
    try:
        name, version, *_ = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        try:
            name, version = parse_sdist_filename(filename)
        except InvalidSdistFilename:
            return None
    return canonicalize_name(name), version


def targets_of(loaded: LoadedSpec) -> list[Target]:
    """The spec's mirror targets."""
    return [Target(t.python, t.platform) for t in loaded.spec.mirror.targets]
