"""The requirement sets a spec asks for: the allowlist as one set, each worker as another.

Sets are resolved separately, so two workers may pin different versions of one
package; the mirror holds the union of their closures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from olmirror.errors import SpecError
from olmirror.spec import LoadedSpec

ALLOWLIST = "allowlist"
_HASH_OPTION = re.compile(r"\s--hash[=\s]\S+")


@dataclass(frozen=True)
class RequirementSet:
    name: str
    origin: str
    requirements: tuple[str, ...]


def worker_set_name(worker: str) -> str:
    return f"worker:{worker}"


def read_requirements_file(path: Path, seen: frozenset[Path] = frozenset()) -> list[str]:
    """The requirements of a pip requirements file, following `-r` includes."""
    if path in seen:
        raise SpecError(f"{path}: includes itself through -r; remove the loop")
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            f"{path}: cannot read this requirements file ({exc.strerror}); "
            "check allowlist.requirements in the spec"
        ) from None
    found: list[str] = []
    logical = text.replace("\\\n", " ").splitlines()
    for number, raw in enumerate(logical, start=1):
        line = _HASH_OPTION.sub("", raw.split(" #")[0]).strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            include = line.split(maxsplit=1)[1]
            found += read_requirements_file(path.parent / include, seen | {path})
            continue
        if line.startswith("-"):
            raise SpecError(
                f"{path}:{number}: option {line.split()[0]!r} is not supported here; the mirror "
                "decides the index, so list only requirements (and -r includes)"
            )
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise SpecError(
                f"{path}:{number}: {line!r} is not a PEP 508 requirement "
                f"({str(exc).splitlines()[0]})"
            ) from None
        if requirement.url:
            raise SpecError(f"{path}:{number}: {line!r} names a URL; give a name and version")
        found.append(line)
    return found


def requirement_sets(loaded: LoadedSpec) -> list[RequirementSet]:
    spec = loaded.spec
    name = loaded.path.name
    allowlist = list(spec.allowlist.packages)
    for file in spec.allowlist.requirements:
        allowlist += read_requirements_file(Path(file))
    sets = []
    if allowlist:
        sources = ", ".join(["allowlist.packages", *spec.allowlist.requirements])
        sets.append(
            RequirementSet(ALLOWLIST, f"the allowlist ({name}: {sources})", tuple(allowlist))
        )
    for i, worker in enumerate(spec.workers):
        if worker.requirements:
            sets.append(
                RequirementSet(
                    worker_set_name(worker.name),
                    f"worker {worker.name!r} ({name}: workers[{i}].requirements)",
                    tuple(worker.requirements),
                )
            )
    return sets
