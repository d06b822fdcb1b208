"""A worker's registry as found on its host: where config.json puts it, and its lambdas.

OpenLambda keeps each lambda in a folder of the registry (`<registry>/<lambda>/f.py`),
with the `requirements.in` its author wrote and the `requirements.txt` compiled from
it. The registry is wherever config.json's `registry` says (a `file://` URL; before
`ol worker init`, `<worker>/registry`). With `allowlist.from_registry`, the lambdas
found there are mirrored too, each as its own requirement set.

What was found is recorded in the lock, so the next plan can assume it and still
read each host once; only when a registry changed does a plan look at every host twice.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from olmirror.connection.probe import registry_folder
from olmirror.requirement_sets import parse_requirements
from olmirror.spec import Worker
from olmirror.spec.models import LAMBDA_NAME_PATTERN

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
    folder: str | None  # the folder olmirror writes to; None when the registry is elsewhere
    found: tuple[FoundLambda, ...] = ()
    # config.json's `registry` (without secrets) when it is not a folder in the worker's
    # own folder: another store (s3://...), or a folder elsewhere on the host
    elsewhere: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "elsewhere": self.elsewhere,
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
        return cls(raw["folder"], found, raw["elsewhere"])


def worker_dir(worker: Worker) -> str:
    """The worker's folder as olmirror names it on its host: `path`, normalised as
    OpenLambda writes it into config.json (no `.`, `..` or trailing slash)."""
    return posixpath.normpath(worker.path)


def default_registry(worker: Worker) -> Registry:
    """The registry `ol worker init` makes, with nothing in it: a plan's first assumption."""
    return Registry(registry_folder(None, worker_dir(worker)))


def requirements_source(files: dict[str, dict[str, str]]) -> str | None:
    """The file a found lambda's requirements come from: requirements.in, else requirements.txt."""
    return next((name for name in (REQUIREMENTS_IN, REQUIREMENTS_TXT) if name in files), None)


def is_lambda_name(name: str) -> bool:
    return re.fullmatch(LAMBDA_NAME_PATTERN, name) is not None


def _without_secrets(setting: str) -> str:
    """A registry URL without user, password, query or fragment: fit for a lock and a plan."""
    parts = urlsplit(setting)
    if not parts.scheme:
        return setting
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}"


def registry_from_probe(worker: Worker, raw: dict[str, Any], discover: bool) -> Registry:
    """What the probe found for `worker`: where its registry is and, with `discover`, the
    lambdas in it that the spec does not declare.

    olmirror writes only inside the worker's own folder, so a registry elsewhere on the
    host is treated like one in another store: reported, never written to. `raw` is an
    answer that could be read (the planner keeps the recorded registry otherwise).
    """
    folder, home = raw["folder"], worker_dir(worker)
    if folder is None or not (folder == home or folder.startswith(home.rstrip("/") + "/")):
        return Registry(None, elsewhere=_without_secrets(raw["setting"]))
    found = []
    for name, files in sorted(raw.get("lambdas", {}).items()) if discover else ():
        source = requirements_source(files)
        if name in worker.lambdas or not is_lambda_name(name) or source is None:
            continue
        if "text" in files[source]:
            path = posixpath.join(folder, name, source)
            parsed = parse_requirements(files[source]["text"], path)
            found.append(FoundLambda(name, path, parsed.requirements))
    return Registry(folder, tuple(found))
