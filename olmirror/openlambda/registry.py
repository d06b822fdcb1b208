"""A worker as found on its host: which OpenLambda wrote its config.json, where its
registry, sandbox and packages are, and the lambdas in its registry.

OpenLambda's main branch keeps each lambda as `<registry>/<lambda>.tar.gz` (a gocloud
blob store: go/worker/lambda/handlerPuller.go), the older generation also as a folder
`<registry>/<lambda>/`; either holds the lambda's code, the `requirements.in` its author
wrote and the `requirements.txt` compiled from it. The registry is wherever config.json's
`registry` says (before `ol worker init`, `<worker>/registry`); the sandbox every lambda
and every pip install runs in is chrooted at `sock_base_path` (`<worker>/lambda`), and
packages go to `Pkgs_dir` (`<worker>/lambda/packages`). With `allowlist.from_registry`,
the lambdas found in the registry are mirrored too, each as its own requirement set.

On the main branch the registry may also be an S3 bucket (`s3://...`, see `blob_store`):
olmirror writes the declared lambdas there and reads the others from this machine.

What was found is recorded in the lock, so the next plan can assume it and still
read each host once; only when a worker changed does a plan look at every host twice.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from olmirror.lock.lockfile import Lock
from olmirror.lock.requirements_txt import parse_requirements
from olmirror.openlambda.blob_store import is_store, object_url, store_id, store_url
from olmirror.remote.probe import registry_folder
from olmirror.spec import LoadedSpec, Worker
from olmirror.spec.values import LAMBDA_NAME_PATTERN

REQUIREMENTS_IN = "requirements.in"
REQUIREMENTS_TXT = "requirements.txt"


@dataclass(frozen=True)
class FoundLambda:
    """A lambda already in a registry: the file its requirements come from, and its lines."""

    name: str
    file: str
    requirements: tuple[tuple[str, str], ...]  # (requirement, "file:line")


Generation = Literal["main", "legacy"]


@dataclass(frozen=True)
class Registry:
    folder: str | None  # the folder olmirror writes to; None when the registry is not one
    found: tuple[FoundLambda, ...] = ()
    # config.json's `registry` (without secrets) when olmirror neither writes nor reads it:
    # another store (gs://...), or a folder elsewhere on the host
    elsewhere: str | None = None
    generation: Generation = "main"
    sandbox: str | None = None  # sock_base_path, when in the worker's folder
    packages: str | None = None  # Pkgs_dir
    bucket: str | None = None  # an s3:// registry's URL (`blob_store.store_url`)

    def lambda_file(self, name: str, kind: str, file: str) -> str:
        """How a plan names a file of one of this registry's lambdas."""
        if self.bucket is not None:
            return f"{object_url(self.bucket, name)}:{file}"
        return lambda_file(self.folder or "", name, kind, file)

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            **({"bucket": self.bucket} if self.bucket is not None else {}),
            "elsewhere": self.elsewhere,
            "generation": self.generation,
            "sandbox": self.sandbox,
            "packages": self.packages,
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
        return cls(
            raw["folder"],
            found,
            raw["elsewhere"],
            raw.get("generation", "main"),
            raw.get("sandbox"),
            raw.get("packages"),
            _recorded_bucket(raw.get("bucket")),
        )


def _recorded_bucket(url: Any) -> str | None:
    """A lock's s3:// registry URL, as `store_url` writes it; ValueError for another."""
    if url is not None and (not isinstance(url, str) or store_url(url) != url):
        raise ValueError(f"not an s3:// registry URL: {url!r}")
    return url


def worker_dir(worker: Worker) -> str:
    """The worker's folder as olmirror names it on its host: `path`, normalised as
    OpenLambda writes it into config.json (no `.`, `..` or trailing slash)."""
    return posixpath.normpath(worker.path)


def _inside(path: str | None, home: str) -> bool:
    return path is not None and (path == home or path.startswith(home.rstrip("/") + "/"))


def default_registry(worker: Worker) -> Registry:
    """The worker `ol worker init` makes, with nothing in it: a plan's first assumption."""
    home = worker_dir(worker)
    generation: Generation = "legacy" if worker.openlambda == "legacy" else "main"
    return Registry(
        registry_folder(None, home),
        generation=generation,
        sandbox=posixpath.join(home, "lambda"),
        packages=posixpath.join(home, "lambda", "packages"),
    )


def requirements_source(files: dict[str, dict[str, str]]) -> str | None:
    """The file a found lambda's requirements come from: requirements.in, else requirements.txt."""
    return next((name for name in (REQUIREMENTS_IN, REQUIREMENTS_TXT) if name in files), None)


def is_lambda_name(name: str) -> bool:
    return re.fullmatch(LAMBDA_NAME_PATTERN, name) is not None


def _without_secrets(setting: str) -> str:
    """A registry URL without user, password, query or fragment: fit for a lock and a plan."""
    try:
        parts = urlsplit(setting)
        host = parts.hostname or ""
    except ValueError:  # a malformed netloc ("s3://[bucket"): nothing of it is shown
        scheme = setting.partition("://")[0] if "://" in setting else "?"
        return f"{scheme}://(a malformed URL)"
    if not parts.scheme:
        return setting
    return f"{parts.scheme}://{host}{parts.path}"


def registry_from_probe(
    worker: Worker, raw: dict[str, Any], discover: bool, shared: frozenset[str] = frozenset()
) -> Registry:
    """What the probe found for `worker`: which OpenLambda it is, where its registry and
    sandbox are and, with `discover`, the lambdas in the registry that the spec does not
    declare (`shared`: those other workers of an s3:// registry's bucket declare).

    olmirror writes only inside the worker's own folder, so a registry elsewhere on the
    host is treated like one in another store: reported, never written to; so is a sandbox
    elsewhere. An s3:// registry of the main branch is a bucket olmirror writes declared
    lambdas to; its lambdas in `raw` come from the bucket (`blob_survey`), not the host.
    `raw` is an answer that could be read (the planner keeps the recorded registry otherwise).
    """
    home, default = worker_dir(worker), default_registry(worker)
    generation = default.generation
    if worker.openlambda == "auto" and raw.get("generation") in ("main", "legacy"):
        generation = raw["generation"]
    sandbox = posixpath.normpath(raw.get("sandbox") or default.sandbox or home)
    packages = posixpath.normpath(raw.get("packages") or default.packages or home)
    real = raw.get("real") or {}
    real_home = real.get("home") or home

    def resolved(path: str, real_path: str | None) -> str | None:
        """`path` with the links inside the worker's folder resolved, as the plan shows and
        writes it; None when it lies outside, by name or in fact."""
        real_path = real_path or path
        if not _inside(path, home) or not _inside(real_path, real_home):
            return None
        return posixpath.normpath(posixpath.join(home, posixpath.relpath(real_path, real_home)))

    real_etc = resolved(posixpath.join(sandbox, "etc"), real.get("sandbox"))
    place = {
        "generation": generation,
        "sandbox": posixpath.dirname(real_etc) if real_etc else None,
        "packages": packages,
    }
    folder = resolved(raw["folder"], real.get("folder")) if raw["folder"] else None
    bucket = store_url(raw["setting"]) if is_store(raw["setting"]) else None
    if folder is not None or (bucket is not None and generation == "main"):
        registry = Registry(folder, bucket=None if folder else bucket, **place)
    else:
        shown = raw["setting"] or raw["folder"] or ""
        return Registry(None, elsewhere=_without_secrets(shown), **place)
    found = []
    for name, entry in sorted(raw.get("lambdas", {}).items()) if discover else ():
        files = entry["files"]
        source = requirements_source(files)
        declared = name in worker.lambdas or name in shared
        if declared or not is_lambda_name(name) or source is None:
            continue
        if "text" in files[source]:
            path = registry.lambda_file(name, entry["kind"], source)
            parsed = parse_requirements(files[source]["text"], path)
            found.append(FoundLambda(name, path, parsed.requirements))
    return replace(registry, found=tuple(found))


def lambda_file(folder: str, name: str, kind: str, file: str) -> str:
    """How a plan names a file of a lambda: <registry>/<name>/<file>, or, inside a tarball,
    <registry>/<name>.tar.gz:<file>."""
    if kind == "tarball":
        return f"{posixpath.join(folder, name)}.tar.gz:{file}"
    return posixpath.join(folder, name, file)


def recorded_registries(loaded: LoadedSpec, lock: Lock | None) -> dict[str, Registry]:
    """Each worker's registry as the lock last recorded it, else as `ol worker init` makes it."""
    recorded = lock.registries if lock else {}

    def registry(worker: Worker) -> Registry:
        try:
            return Registry.from_json(recorded[worker.name])
        except (KeyError, TypeError, ValueError, AttributeError):  # not yet, or edited by hand
            return default_registry(worker)

    return {w.name: registry(w) for w in loaded.spec.workers}


def declared_in(workers: list[Worker], buckets: dict[str, str | None]) -> dict[str, set[str]]:
    """The lambdas declared in each s3:// registry (by `store_id`); `buckets`: each worker's
    registry URL, or None."""
    by_store: dict[str, set[str]] = {}
    for worker in workers:
        if url := buckets.get(worker.name):
            by_store.setdefault(store_id(url), set()).update(worker.lambdas)
    return by_store


def declared_alongside(
    workers: list[Worker], buckets: dict[str, str | None]
) -> dict[str, frozenset[str]]:
    """Per worker, the lambdas other workers declare in the same s3:// registry: every
    worker reading a bucket runs them, so none is a lambda found there."""
    by_store = declared_in(workers, buckets)
    return {
        w.name: frozenset(by_store[store_id(url)] - set(w.lambdas))
        for w in workers
        if (url := buckets.get(w.name))
    }
