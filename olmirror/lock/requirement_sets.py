"""The requirement sets a spec asks for: the allowlist as one set, each worker as another.

Sets are resolved separately, so two workers may pin different versions of one
package; the mirror holds the union of their closures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement

from olmirror.errors import SpecError
from olmirror.spec import LoadedSpec


class Found(Protocol):
    """A lambda found in a worker's registry (`openlambda.registry.FoundLambda`)."""

    @property
    def name(self) -> str: ...
    @property
    def file(self) -> str: ...
    @property
    def requirements(self) -> tuple[tuple[str, str], ...]: ...  # (requirement, "file:line")


class FoundIn(Protocol):
    """A worker's registry as the lock sees it (`openlambda.registry.Registry`): the lambdas
    found in it, and the JSON the lock records of it."""

    @property
    def found(self) -> Sequence[Found]: ...
    def to_json(self) -> dict[str, Any]: ...


ALLOWLIST = "allowlist"
_HASH_OPTION = re.compile(r"\s--hash[=\s]\S+")


@dataclass(frozen=True)
class RequirementSet:
    """One set resolved on its own; `sources[i]` says where `requirements[i]` was written."""

    name: str
    origin: str
    requirements: tuple[str, ...]
    sources: tuple[str, ...] = ()
    # Found on a host, not written in the spec: a set that cannot be resolved is reported
    # on its lambda instead of stopping the plan.
    discovered: bool = False

    def source_of(self, requirement: str) -> str:
        """Where `requirement` (one of this set's lines) was written, else the set's origin."""
        for line, source in zip(self.requirements, self.sources, strict=False):
            if line == requirement:
                return source
        return self.origin


WORKER_PREFIX = "worker:"
LAMBDA_PREFIX = "lambda:"


def worker_set_name(worker: str) -> str:
    return f"{WORKER_PREFIX}{worker}"


def lambda_set_name(worker: str, name: str) -> str:
    return f"{LAMBDA_PREFIX}{worker}/{name}"


def requirement_name(line: str) -> str:
    """The project a requirement line names, as written."""
    return Requirement(line).name


def describe_set(name: str) -> str:
    """A set's name as a person reads it: "worker 'w'", "lambda 'l' of worker 'w'"."""
    if name.startswith(WORKER_PREFIX):
        return f"worker {name.removeprefix(WORKER_PREFIX)!r}"
    if name.startswith(LAMBDA_PREFIX):
        worker, _, lambda_name = name.removeprefix(LAMBDA_PREFIX).partition("/")
        return f"lambda {lambda_name!r} of worker {worker!r}"
    return f"the {name}"


_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s*=\s*|\s+|(?=[^\s-]))(\S.*)$")


@dataclass(frozen=True)
class ParsedRequirements:
    """A requirements file's requirements, `-r` includes and faults, each with "file:line"."""

    requirements: tuple[tuple[str, str], ...]
    includes: tuple[tuple[str, str], ...]
    problems: tuple[tuple[str, str], ...]


def parse_requirements(text: str, where: str) -> ParsedRequirements:
    """Read pip requirements text; `where` names the file in every "file:line"."""
    requirements, includes, problems = [], [], []
    for number, raw in _logical_lines(text):
        line = _HASH_OPTION.sub("", raw.split(" #")[0]).strip()
        source = f"{where}:{number}"
        if not line or line.startswith("#"):
            continue
        if include := _INCLUDE.match(line):
            includes.append((include[1].strip(), source))
        elif line.startswith("-"):
            problems.append(
                (
                    source,
                    f"option {line.split()[0]!r} is not supported here; the mirror decides the "
                    "index, so list only requirements",
                )
            )
        else:
            try:
                requirement = Requirement(line)
            except InvalidRequirement as exc:
                first = str(exc).splitlines()[0]
                problems.append((source, f"{line!r} is not a PEP 508 requirement ({first})"))
                continue
            if requirement.url:
                problems.append((source, f"{line!r} names a URL; give a name and version"))
            else:
                requirements.append((line, source))
    return ParsedRequirements(tuple(requirements), tuple(includes), tuple(problems))


def read_requirements_file(
    path: Path, seen: frozenset[Path] = frozenset()
) -> list[tuple[str, str]]:
    """(requirement, "file:line") of a pip requirements file, following `-r` includes."""
    if path in seen:
        raise SpecError(f"{path}: includes itself through -r; remove the loop")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise SpecError(
            f"{path}: cannot read this requirements file ({reason}); check the path in the spec"
        ) from None
    parsed = parse_requirements(text, str(path))
    if parsed.problems:
        source, problem = parsed.problems[0]
        raise SpecError(f"{source}: {problem}")
    found = list(parsed.requirements)
    for include, _ in parsed.includes:
        found += read_requirements_file(path.parent / include, seen | {path})
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


def requirement_sets(loaded: LoadedSpec, registries: Mapping[str, FoundIn]) -> list[RequirementSet]:
    """Every set: the allowlist, each worker's, each declared lambda's, and, with
    `allowlist.from_registry`, each lambda found in a worker's registry (`registries`)."""
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
        sets.append(_set(ALLOWLIST, f"the allowlist ({name}: {sources})", allowlist))
    for i, worker in enumerate(spec.workers):
        where = f"{name}: workers[{i}]"
        lines = [(line, f"{where}.requirements[{j}]") for j, line in enumerate(worker.requirements)]
        if lines:
            origin = f"worker {worker.name!r} ({where}.requirements)"
            sets.append(_set(worker_set_name(worker.name), origin, lines))
        for lambda_name, item in sorted(worker.lambdas.items()):
            set_name = lambda_set_name(worker.name, lambda_name)
            if item.source is not None:
                lines = read_requirements_file(Path(item.source) / "requirements.in")
                origin = f"{item.source}/requirements.in"
            else:
                origin = f"{where}.lambdas.{lambda_name}.requirements"  # names the spec
                lines = [(line, f"{origin}[{j}]") for j, line in enumerate(item.requirements)]
            if lines:
                sets.append(_set(set_name, f"{describe_set(set_name)} ({origin})", lines))
        registry = registries.get(worker.name)
        for found in registry.found if registry and spec.allowlist.from_registry else ():
            set_name = lambda_set_name(worker.name, found.name)
            origin = f"{describe_set(set_name)} ({worker.host}:{found.file})"
            if found.requirements and found.name not in worker.lambdas:
                sets.append(_set(set_name, origin, list(found.requirements), discovered=True))
    return sets


def _set(
    name: str, origin: str, lines: list[tuple[str, str]], *, discovered: bool = False
) -> RequirementSet:
    requirements = tuple(line for line, _ in lines)
    return RequirementSet(name, origin, requirements, tuple(s for _, s in lines), discovered)
