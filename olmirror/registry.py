"""A worker's registry as found on its host: where config.json puts it, and its lambdas.

OpenLambda keeps each lambda in a folder of the registry (`<registry>/<lambda>/f.py`),
with the `requirements.in` its author wrote and the `requirements.txt` compiled from
it. The registry is wherever config.json's `registry` says (a `file://` URL; before
`ol worker init`, `<worker>/registry`). With `allowlist.from_registry`, the lambdas
found there are mirrored too, each as its own requirement set.

What was found is recorded in the lock, so the next plan can assume it and still
read each host once: only when a host's registry changed does a plan look twice.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from olmirror.connection.probe import registry_folder
from olmirror.requirement_sets import parse_requirements
from olmirror.spec import Worker

REQUIREMENTS_IN = "requirements.in"
REQUIREMENTS_TXT = "requirements.txt"


@dataclass(frozen=True)
class FoundLambda:
    """A lambda already in a registry: the file its requirements come from, and its lines."""

    name: str
    file: str
    requirements: tuple[tuple[str, str], ...]  # (requirement, "file:line")


@dataclass(frozen=True)
class Registry:
    folder: str | None  # the local folder; None when the registry is not one, or unreadable
    found: tuple[FoundLambda, ...] = ()
    elsewhere: str | None = None  # config.json's `registry` when it is not a folder (s3://...)
    error: str | None = None  # why the registry could not be read

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "elsewhere": self.elsewhere,
            "error": self.error,
            "found": {
                lam.name: {"file": lam.file, "requirements": [list(r) for r in lam.requirements]}
                for lam in self.found
            },
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Registry:
        found = tuple(
            FoundLambda(name, item["file"], tuple((r, s) for r, s in item["requirements"]))
            for name, item in sorted(raw["found"].items())
        )
        return cls(raw["folder"], found, raw["elsewhere"], raw["error"])


def worker_dir(worker: Worker) -> str:
    """The worker's folder as olmirror names it on its host: `path` without a trailing slash."""
    return worker.path.rstrip("/") or "/"


def default_registry(worker: Worker) -> Registry:
    """The registry `ol worker init` makes, with nothing in it: a plan's first assumption."""
    return Registry(registry_folder(None, worker_dir(worker)))


def requirements_source(files: dict[str, dict[str, str]]) -> tuple[str, dict[str, str]] | None:
    """The file a found lambda's requirements come from: requirements.in, else requirements.txt."""
    for name in (REQUIREMENTS_IN, REQUIREMENTS_TXT):
        if name in files:
            return name, files[name]
    return None


def registry_from_probe(worker: Worker, raw: dict[str, Any], discover: bool) -> Registry:
    """What the probe found for `worker`; lambdas the spec declares are not `found`."""
    if "folder" not in raw:
        return Registry(None, error=raw["error"])
    if raw["folder"] is None:
        return Registry(None, elsewhere=raw["setting"])
    found = []
    for name, files in sorted(raw.get("lambdas", {}).items()) if discover else ():
        chosen = requirements_source(files)
        if name in worker.lambdas or chosen is None or "text" not in chosen[1]:
            continue
        path = posixpath.join(raw["folder"], name, chosen[0])
        parsed = parse_requirements(chosen[1]["text"], path)
        found.append(FoundLambda(name, path, parsed.requirements))
    return Registry(raw["folder"], tuple(found), error=raw.get("error"))
