"""What a plan tells about each worker's lambdas, before a worker meets it.

Per worker and lambda: the requirements the mirror does not hold yet (this apply
adds them), and, for lambdas found in a registry, every requirements.txt line a
worker would install wrongly: unpinned or loosely pinned lines, pins the mirror
does not hold, and dependencies the file leaves out although OpenLambda installs
with `--no-deps`. Each names the file and line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from olmirror.lockfile import Lock
from olmirror.registry import REQUIREMENTS_IN, REQUIREMENTS_TXT, Registry, worker_dir
from olmirror.requirement_sets import lambda_set_name, parse_requirements, worker_set_name
from olmirror.spec import LoadedSpec, Worker
from olmirror.worker_state import worker_target

Level = Literal["info", "warning"]


@dataclass(frozen=True)
class Finding:
    host: str
    worker: str
    lambda_name: str | None  # None: the worker itself (its registry, its registry-level file)
    where: str | None  # "file:line", or the file
    message: str
    level: Level = "warning"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Finding:
        return cls(**raw)


def _exact(requirement: Requirement) -> bool:
    specs = list(requirement.specifier)
    return len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version


def _line(where: str) -> int:
    return int(where.rpartition(":")[2])


class _Worker:
    """The findings of one worker, with what they all need at hand."""

    def __init__(self, loaded: LoadedSpec, lock: Lock, previous: Lock | None, worker: Worker):
        self.worker = worker
        self.target = worker_target(loaded.spec, worker).key
        self.locked = lock.targets[self.target]
        old = previous.targets.get(self.target) if previous else None
        self.mirrored = set(old.files) if old else set()
        self.found: list[Finding] = []

    def add(self, lambda_name: str | None, where: str | None, message: str, level: Level) -> None:
        self.found.append(
            Finding(self.worker.host, self.worker.name, lambda_name, where, message, level)
        )

    def not_yet_mirrored(self, lambda_name: str | None, set_name: str) -> None:
        new = [pin for pin in self.locked.sets.get(set_name, []) if pin not in self.mirrored]
        if new:
            self.add(
                lambda_name,
                None,
                f"not in the mirror yet for target {self.target}: {', '.join(new)} "
                "(this apply adds them)",
                "info",
            )

    def registry(self, registry: Registry) -> None:
        if registry.error:
            self.add(None, None, f"cannot read the registry: {registry.error}", "warning")
        elif registry.elsewhere is not None:
            scheme, sep, _ = registry.elsewhere.partition("://")
            kind = f"{scheme}:// registries are" if sep else "relative registry paths are"
            self.add(
                None,
                f"{worker_dir(self.worker)}/config.json",
                f"registry {registry.elsewhere!r} is not a local folder, and {kind} not yet "
                "supported: olmirror neither writes this worker's requirements and lambdas "
                "there nor discovers lambdas in it; the worker's config.json and run state are "
                "still converged. Use a file:// registry to have olmirror manage them",
                "warning",
            )

    def discovered(self, name: str, files: dict[str, dict[str, str]], folder: str) -> None:
        """A lambda found in the registry: its own files are checked line by line."""
        for file, content in sorted(files.items()):
            if "error" in content:
                self.add(name, f"{folder}/{file}", f"cannot read it: {content['error']}", "warning")
        source = REQUIREMENTS_IN if "text" in files.get(REQUIREMENTS_IN, {}) else REQUIREMENTS_TXT
        if "text" in files.get(source, {}):
            parsed = parse_requirements(files[source]["text"], f"{folder}/{source}")
            skipped = [
                *parsed.problems,
                *(
                    (where, f"-r {include} is not followed on a worker's host; list its "
                     "requirements in this file")
                    for include, where in parsed.includes
                ),
            ]  # fmt: skip
            for where, problem in sorted(skipped, key=lambda item: _line(item[0])):
                self.add(name, where, f"skipped: {problem}", "warning")
        txt = files.get(REQUIREMENTS_TXT, {})
        if "text" in txt:
            self._installed_lines(name, txt["text"], f"{folder}/{REQUIREMENTS_TXT}")
        elif not txt:
            self.add(
                name,
                f"{folder}/{REQUIREMENTS_TXT}",
                "missing: OpenLambda installs a lambda's packages from its requirements.txt; "
                "compile it from requirements.in with pip-compile",
                "warning",
            )

    def _installed_lines(self, name: str, text: str, path: str) -> None:
        """The requirements.txt a worker installs line by line, with `--no-deps`."""
        listed = set()
        for line, where in parse_requirements(text, path).requirements:
            requirement = Requirement(line)
            listed.add(canonicalize_name(requirement.name))
            if not _exact(requirement):
                kind = "loosely pinned" if requirement.specifier else "unpinned"
                self.add(
                    name,
                    where,
                    f"{line!r} is {kind}: OpenLambda installs each line as it stands, so the "
                    "version a worker gets is whatever the index offers that day; pin it with "
                    "== (pip-compile requirements.in writes exact pins)",
                    "warning",
                )
                continue
            (exact,) = requirement.specifier
            pin = f"{canonicalize_name(requirement.name)}=={exact.version}"
            if pin not in self.locked.files:
                self.add(
                    name,
                    where,
                    f"{line!r} is not in the mirror for target {self.target}, so the worker "
                    "cannot install it; recompile requirements.txt from requirements.in, or add "
                    "the pin to requirements.in",
                    "warning",
                )
        pins = self.locked.sets.get(lambda_set_name(self.worker.name, name), [])
        left_out = [pin for pin in pins if pin.partition("==")[0] not in listed]
        if left_out:
            self.add(
                name,
                path,
                f"lists no version of {', '.join(left_out)}, which its requirements need; "
                "OpenLambda installs with --no-deps, so add them (pip-compile lists the whole "
                "closure)",
                "warning",
            )


def registry_findings(
    loaded: LoadedSpec,
    lock: Lock,
    previous: Lock | None,
    registries: dict[str, Registry],
    surveys: dict[str, dict[str, Any]],
    planned: set[str],
) -> list[Finding]:
    """Findings for the workers on `planned` hosts. `surveys`: the probe's raw answer per
    worker seen in this plan; `previous`: the lock before this plan (what the mirror holds)."""
    spec = loaded.spec
    found: list[Finding] = []
    for worker in (w for w in spec.workers if w.host in planned):
        report = _Worker(loaded, lock, previous, worker)
        registry = registries[worker.name]
        report.registry(registry)
        report.not_yet_mirrored(None, worker_set_name(worker.name))
        raw = surveys.get(worker.name, {}).get("lambdas", {})
        discovered = set(raw) - set(worker.lambdas) if spec.allowlist.from_registry else set()
        for name in sorted({*worker.lambdas, *discovered}):
            report.not_yet_mirrored(name, lambda_set_name(worker.name, name))
            if name in discovered and registry.folder:
                report.discovered(name, raw[name], f"{registry.folder}/{name}")
        found += report.found
    return found
