"""The requirement sets a spec asks for: the allowlist as one set, each worker as another.

Sets are resolved separately, so two workers may pin different versions of one
package; the mirror holds the union of their closures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import Requirement

from olmirror.lock.requirements_txt import read_requirements_file
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
