"""What a plan tells about each worker's lambdas, before a worker meets it.

Per worker and lambda: the pins whose files the mirror does not hold yet (this apply
fetches them), and, for every lambda on a host that the spec does not declare, each
requirements.txt line a worker would install wrongly: unpinned or loosely pinned lines,
pins the mirror does not hold, and dependencies the file leaves out although OpenLambda
installs with `--no-deps`. Each names the file and line.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from olmirror.lock.lockfile import Lock
from olmirror.lock.requirement_sets import lambda_set_name, worker_set_name
from olmirror.lock.requirements_txt import ParsedRequirements, parse_requirements
from olmirror.lock.targets import Target
from olmirror.openlambda.packages_dir import stale_entries
from olmirror.openlambda.registry import (
    REQUIREMENTS_IN,
    REQUIREMENTS_TXT,
    Registry,
    is_lambda_name,
    requirements_source,
    worker_dir,
)
from olmirror.openlambda.worker import COMPILED, MANAGED, worker_pins, worker_target
from olmirror.remote.probe import registry_folder
from olmirror.spec import LoadedSpec, Worker

Level = Literal["info", "warning"]
# Whether the mirror holds a pin's locked file for a target; None when the mirror's host
# is not in this plan, so nothing can be said.
Held = Callable[[str, str], bool] | None


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


def _exact(requirement: Requirement) -> bool:
    specs = list(requirement.specifier)
    return len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version


def _line(where: str) -> int:
    return int(where.rpartition(":")[2])


class _Worker:
    """The findings of one worker, with what they all need at hand."""

    def __init__(self, loaded: LoadedSpec, lock: Lock, worker: Worker, held: Held):
        self.worker = worker
        self.discover = loaded.spec.allowlist.from_registry
        self.target: Target = worker_target(loaded.spec, worker)
        self.locked = lock.targets[self.target.key]
        self.failed = lock.failed
        self.held = held
        self.found: list[Finding] = []

    def add(self, lambda_name: str | None, where: str | None, message: str, level: Level) -> None:
        self.found.append(
            Finding(self.worker.host, self.worker.name, lambda_name, where, message, level)
        )

    def not_yet_mirrored(self, lambda_name: str | None, set_name: str) -> None:
        if self.held is None:
            return
        key = self.target.key
        new = [pin for pin in self.locked.sets.get(set_name, []) if not self.held(key, pin)]
        if new:
            self.add(
                lambda_name,
                None,
                f"not in the mirror yet for target {key}: {', '.join(new)} (this apply adds them)",
                "info",
            )

    def registry(self, registry: Registry) -> None:
        if registry.elsewhere is not None:
            scheme, sep, _ = registry.elsewhere.partition("://")
            if registry_folder(registry.elsewhere, worker_dir(self.worker)) is not None:
                why = f"is outside the worker's folder {worker_dir(self.worker)}, where alone "
                why += "olmirror writes"
            elif registry.refused is not None:
                why = f"is an s3:// registry olmirror does not use: {registry.refused}"
            elif scheme == "s3" and registry.generation == "legacy":
                why = "is an S3 bucket, which this older OpenLambda does not read (a folder or "
                why += "http(s) URL: src/worker/lambda/handlerPuller.go:105-145 at 63e30bc6)"
            elif scheme == "s3":
                why = "is not a local folder, nor an s3:// URL that names a bucket (write it "
                why += "as s3://BUCKET?region=REGION)"
            elif sep:
                why = f"is not a local folder, and {scheme}:// registries are not yet supported"
            else:
                why = "is not an absolute path or a file:// URL"
            self.add(
                None,
                f"{worker_dir(self.worker)}/config.json",
                f"registry {registry.elsewhere!r} {why}: olmirror neither writes this worker's "
                "requirements and lambdas there nor reads lambdas from it; the worker's "
                "config.json and run state are still converged. Use a file:// registry in the "
                "worker's folder, or an s3:// one, to have olmirror manage them",
                "warning",
            )

    def on_host(self, name: str, entry: dict[str, Any], registry: Registry) -> None:
        """A lambda on the host that the spec does not declare: its files, line by line
        (none for a tarball in a bucket whose ETag is the one the lock recorded: its lines
        were told when it was read)."""
        files: dict[str, dict[str, str]] = entry.get("files", {})
        folder = registry.folder or ""

        def where(file: str) -> str:
            return registry.lambda_file(name, entry["kind"], file)

        if entry["kind"] == "folder" and registry.generation == "main":
            self.add(
                name,
                posixpath.join(folder, name),
                "a lambda folder, which OpenLambda's main branch never runs: it reads only "
                "<name>.tar.gz from its registry (go/worker/lambda/handlerPuller.go); install "
                "it with `ol admin install`",
                "warning",
            )
        for file, content in sorted(files.items()):
            if "error" in content:
                self.add(name, where(file), f"cannot read it: {content['error']}", "warning")
        source = requirements_source(files)
        text = files.get(source or "", {}).get("text")
        written = [
            file
            for file, mark in ((REQUIREMENTS_IN, MANAGED), (REQUIREMENTS_TXT, COMPILED))
            if files.get(file, {}).get("text", "").startswith(mark)
        ]
        if written:
            self.add(
                name,
                where(written[0]),
                "olmirror wrote this lambda, but the spec no longer declares it; remove it, "
                "or declare the lambda again",
                "warning",
            )
        set_name = lambda_set_name(self.worker.name, name)
        if set_name in self.failed:
            self.add(
                name,
                None,
                f"not mirrored: {self.failed[set_name]} (when the upstream is what changes, "
                "`olmirror lock` resolves it again)",
                "warning",
            )
        if text is not None and self.discover:
            # A requirements.txt's own faults are told below, as lines a worker cannot install.
            parsed = parse_requirements(text, where(source or REQUIREMENTS_TXT))
            self._skipped(name, parsed, with_problems=source != REQUIREMENTS_TXT)
        txt = files.get(REQUIREMENTS_TXT, {})
        if "text" in txt:
            self._installed_lines(name, txt["text"], where(REQUIREMENTS_TXT))
        elif not txt and "files" in entry:
            self.add(
                name,
                where(REQUIREMENTS_TXT),
                "missing: OpenLambda installs a lambda's packages from its requirements.txt; "
                f"compile it from {REQUIREMENTS_IN} with pip-compile",
                "warning",
            )

    def _skipped(self, name: str, parsed: ParsedRequirements, *, with_problems: bool) -> None:
        skipped = [
            *(parsed.problems if with_problems else ()),
            *(
                (where, f"-r {include} is not followed on a worker's host; list its "
                 "requirements in this file")
                for include, where in parsed.includes
            ),
        ]  # fmt: skip
        for where, problem in sorted(skipped, key=lambda item: _line(item[0])):
            self.add(name, where, f"not mirrored: {problem}", "warning")

    def _installed_lines(self, name: str, text: str, path: str) -> None:
        """The requirements.txt a worker installs line by line, with `--no-deps`."""
        parsed = parse_requirements(text, path)
        for where, problem in parsed.problems:
            self.add(name, where, f"a worker cannot install this line: {problem}", "warning")
        hint = "" if self.discover else " (allowlist.from_registry: true mirrors this lambda)"
        listed = set()
        for line, where in parsed.requirements:
            requirement = Requirement(line)
            listed.add(canonicalize_name(requirement.name))
            try:
                if not self.target.installs(requirement):
                    continue
            except ValueError as exc:
                self.add(name, where, f"a worker cannot tell whether to install {line!r}: {exc}",
                         "warning")  # fmt: skip
                continue
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
                    f"{line!r} is not in the mirror for target {self.target.key}, so the worker "
                    "cannot install it; recompile requirements.txt from requirements.in, or add "
                    f"the pin to requirements.in{hint}",
                    "warning",
                )
        pins = self.locked.sets.get(lambda_set_name(self.worker.name, name), [])
        left_out = [pin for pin in pins if pin.partition("==")[0] not in listed]
        if left_out:
            self.add(
                name,
                path,
                f"lists no version of {', '.join(left_out)}, which its requirements need; "
                "OpenLambda installs each line with --no-deps and nothing else for a lambda, "
                "so the lambda cannot import them (a zygote of import_cache_tree would install "
                "them by name, unpinned: the newest in the mirror); add them (pip-compile "
                "lists the whole closure)",
                "warning",
            )

    def stale_packages(self, installed: dict[str, list[str]], pins: set[str], folder: str) -> None:
        """Pkgs_dir folders OpenLambda would reuse that do not hold the locked version."""
        for stale in stale_entries(installed, pins):
            self.add(
                None,
                posixpath.join(folder, stale.entry),
                f"{stale.why}; OpenLambda reuses an existing folder as installed, so lambdas "
                "get this instead of the mirror's file. Remove it (stale_packages: remove "
                "does, then restarts the worker)",
                "warning",
            )

    def sandbox(self, registry: Registry) -> None:
        if registry.sandbox is None:
            self.add(
                None,
                f"{worker_dir(self.worker)}/config.json",
                "sock_base_path is outside the worker's folder, where alone olmirror writes: "
                "its pip.conf is not pointed at the mirror, so this worker's packages come "
                "from whatever index its sandbox's pip is configured with",
                "warning",
            )


def registry_findings(
    loaded: LoadedSpec,
    lock: Lock,
    registries: dict[str, Registry],
    surveys: dict[str, dict[str, Any]],
    planned: set[str],
    held: Held,
    shared: dict[str, frozenset[str]],
) -> list[Finding]:
    """Findings for the workers on `planned` hosts. `surveys`: the probe's answer for each
    worker seen in this plan; `held`: what the mirror holds, when its host was planned;
    `shared`: the lambdas other workers declare in each worker's s3:// registry."""
    found: list[Finding] = []
    for worker in (w for w in loaded.spec.workers if w.host in planned):
        report = _Worker(loaded, lock, worker, held)
        registry = registries[worker.name]
        report.registry(registry)
        if error := surveys.get(worker.name, {}).get("error"):
            report.add(
                None,
                None,
                f"cannot read the registry ({error}); the lambdas found there before stay in "
                "the lock",
                "warning",
            )
        report.not_yet_mirrored(None, worker_set_name(worker.name))
        for name in sorted(worker.lambdas):
            report.not_yet_mirrored(name, lambda_set_name(worker.name, name))
        survey = surveys.get(worker.name, {})
        report.sandbox(registry)
        if registry.packages is not None:
            pins = worker_pins(lock, loaded.spec, worker, registry)
            report.stale_packages(survey.get("installed", {}), pins, registry.packages)
        readable = registry.folder or registry.s3_url
        on_host = survey.get("lambdas", {}) if readable else {}
        for name, entry in sorted(on_host.items()):
            if not is_lambda_name(name):
                why = f"ignored {name!r}: not a lambda name olmirror reads"
                report.add(None, readable, why, "warning")
            elif name not in worker.lambdas and name not in shared.get(worker.name, ()):
                report.not_yet_mirrored(name, lambda_set_name(worker.name, name))
                report.on_host(name, entry, registry)
        found += report.found
    return found
