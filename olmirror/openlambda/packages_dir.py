"""What a worker's Pkgs_dir holds that OpenLambda would reuse instead of installing from the
mirror.

OpenLambda installs each requirements.txt line into <Pkgs_dir>/<line>/files, the line
lower-cased with '_' as '-' (go/worker/lambda/packages/packagePuller.go:77-79,158), and
dependencies it pulls by name (InstallRecursive, :82-120) into <Pkgs_dir>/<name>. A folder
that exists counts as installed, whatever it holds and wherever it came from (:161-166):
a folder filled from the public index, or with another version, is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


def entry_name(line: str) -> str:
    """The Pkgs_dir folder OpenLambda installs a requirements.txt line into."""
    return line.replace(" ", "").split("#")[0].lower().replace("_", "-")


def _dists(names: list[str]) -> list[tuple[str, str]]:
    """(canonical name, version) of each `<name>-<version>.dist-info` folder."""
    found = []
    for name in names:
        project, _, version = name.removesuffix(".dist-info").rpartition("-")
        if project:
            found.append((canonicalize_name(project), version))
    return found


def _same(version: str, wanted: str) -> bool:
    try:
        return Version(version) == Version(wanted)
    except InvalidVersion:
        return version == wanted


@dataclass(frozen=True)
class Stale:
    entry: str
    why: str


def stale_entries(installed: dict[str, list[str]], pins: set[str]) -> list[Stale]:
    """The folders OpenLambda would reuse for one of `pins` (name==version, as the worker's
    requirements.txt files list them) that do not hold that version; and folders of a bare
    name (installed unpinned) holding a version none of `pins` names."""
    wanted = {entry_name(pin): pin for pin in pins}
    locked: dict[str, set[str]] = {}
    for pin in pins:
        name, _, version = pin.partition("==")
        locked.setdefault(canonicalize_name(name), set()).add(version)
    stale = []
    for entry, dist_infos in sorted(installed.items()):
        dists = _dists(dist_infos)
        if entry in wanted:
            name, _, version = wanted[entry].partition("==")
            if not any(n == canonicalize_name(name) and _same(v, version) for n, v in dists):
                held = ", ".join(f"{n} {v}" for n, v in dists) or "no installed package"
                stale.append(Stale(entry, f"holds {held}, not {name} {version}"))
        elif "==" not in entry and canonicalize_name(entry) in locked:
            versions = locked[canonicalize_name(entry)]
            if not any(_same(v, w) for _, v in dists for w in versions):
                held = ", ".join(f"{n} {v}" for n, v in dists) or "no installed package"
                wanted_versions = " or ".join(sorted(versions))
                why = f"installed by name (unpinned), holds {held}, not {wanted_versions}"
                stale.append(Stale(entry, why))
    return stale
