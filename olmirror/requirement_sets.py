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
    """One set resolved on its own; `sources[i]` says where `requirements[i]` was written."""

    name: str
    origin: str
    requirements: tuple[str, ...]
    sources: tuple[str, ...] = ()

    def source_of(self, requirement: str) -> str:
        """Where `requirement` (one of this set's lines) was written, else the set's origin."""
        for line, source in zip(self.requirements, self.sources, strict=False):
            if line == requirement:
                return source
        return self.origin


WORKER_PREFIX = "worker:"


def worker_set_name(worker: str) -> str:
    return f"{WORKER_PREFIX}{worker}"


_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s*=\s*|\s+|(?=[^\s-]))(\S.*)$")


def read_requirements_file(
    path: Path, seen: frozenset[Path] = frozenset()
) -> list[tuple[str, str]]:
    """(requirement, "file:line") of a pip requirements file, following `-r` includes."""
    if path in seen:
        raise SpecError(f"{path}: includes itself through -r; remove the loop")
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            f"{path}: cannot read this requirements file ({exc.strerror}); "
            "check allowlist.requirements in the spec"
        ) from None
    found: list[tuple[str, str]] = []
    for number, raw in _logical_lines(text):
        line = _HASH_OPTION.sub("", raw.split(" #")[0]).strip()
        if not line or line.startswith("#"):
            continue
        if include := _INCLUDE.match(line):
            found += read_requirements_file(path.parent / include[1].strip(), seen | {path})
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
        found.append((line, f"{path}:{number}"))
    return found


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines joined across backslash continuations, each with the number of its first line."""
    lines: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, physical in enumerate(text.splitlines(), start=1):
        start, joined = pending if pending else (number, "")
        if physical.endswith("\\"):
            pending = (start, joined + physical[:-1] + " ")
            continue
        pending = None
        lines.append((start, joined + physical))
    if pending:
        lines.append(pending)
    return lines


def requirement_sets(loaded: LoadedSpec) -> list[RequirementSet]:
    spec = loaded.spec
    name = loaded.path.name
    allowlist = [
        (line, f"{name}: allowlist.packages[{i}]") for i, line in enumerate(spec.allowlist.packages)
    ]
    for file in spec.allowlist.requirements:
        allowlist += read_requirements_file(Path(file))
    sets = []
    if allowlist:
        parts = ["allowlist.packages"] if spec.allowlist.packages else []
        sources = ", ".join([*parts, *spec.allowlist.requirements])
        sets.append(
            RequirementSet(
                ALLOWLIST,
                f"the allowlist ({name}: {sources})",
                tuple(line for line, _ in allowlist),
                tuple(source for _, source in allowlist),
            )
        )
    for i, worker in enumerate(spec.workers):
        if worker.requirements:
            where = f"{name}: workers[{i}].requirements"
            sets.append(
                RequirementSet(
                    worker_set_name(worker.name),
                    f"worker {worker.name!r} ({where})",
                    tuple(worker.requirements),
                    tuple(f"{where}[{j}]" for j in range(len(worker.requirements))),
                )
            )
    return sets
