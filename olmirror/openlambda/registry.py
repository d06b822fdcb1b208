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
olmirror writes the declared lambdas there and reads the others from this machine; the
lock keeps each found lambda's ETag and size, so that an unchanged one is not read again.

What was found is recorded in the lock, so the next plan can assume it and still
read each host once; only when a worker changed does a plan look at every host twice.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from olmirror.connection.bucket import is_bucket
from olmirror.lock.lockfile import Lock
from olmirror.lock.requirements_txt import parse_requirements
from olmirror.openlambda.blob_store import object_url, refusal, registry_url, store_id, store_url
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
    etag: str | None = None  # in an s3:// registry: the tarball's, as listed when it was read
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        tarball = {"etag": self.etag, "size": self.size} if self.etag is not None else {}
        return {"file": self.file, "requirements": [list(r) for r in self.requirements]} | tarball

    @classmethod
    def from_json(cls, name: str, item: dict[str, Any]) -> FoundLambda:
        """A lock's entry; one written before ETags were recorded has none."""
        etag, size = item.get("etag"), item.get("size")
        tarball = (etag, size) if isinstance(etag, str) and isinstance(size, int) else (None, None)
        return cls(name, item["file"], tuple((r, s) for r, s in item["requirements"]), *tarball)


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
    s3_url: str | None = None  # an s3:// registry's URL (`blob_store.store_url`)
    refused: str | None = None  # why olmirror does not use the s3:// registry `elsewhere`

    def lambda_file(self, name: str, kind: str, file: str) -> str:
        """How a plan names a file of one of this registry's lambdas."""
        if self.s3_url is not None:
            return f"{object_url(self.s3_url, name)}:{file}"
        return _in_folder(self.folder or "", name, kind, file)

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            **({"bucket": self.s3_url} if self.s3_url is not None else {}),
            "elsewhere": self.elsewhere,
            **({"refused": self.refused} if self.refused is not None else {}),
            "generation": self.generation,
            "sandbox": self.sandbox,
            "packages": self.packages,
            "found": {lam.name: lam.to_json() for lam in self.found},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Registry:
        found = tuple(FoundLambda.from_json(n, item) for n, item in sorted(raw["found"].items()))
        refused = raw.get("refused")
        return cls(
            raw["folder"],
            found,
            raw["elsewhere"],
            raw.get("generation", "main"),
            raw.get("sandbox"),
            raw.get("packages"),
            _recorded_url(raw.get("bucket")),
            refused if isinstance(refused, str) else None,
        )


def _recorded_url(url: Any) -> str | None:
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
    worker: Worker,
    raw: dict[str, Any],
    discover: bool,
    shared: frozenset[str] = frozenset(),
    known: Mapping[str, FoundLambda] | None = None,
) -> Registry:
    """What the probe found for `worker`: which OpenLambda it is, where its registry and
    sandbox are and, with `discover`, the lambdas in the registry that the spec does not
    declare (`shared`: those other workers of an s3:// registry's bucket declare; `known`:
    the lambdas the lock recorded there, which a survey did not read again).

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
    setting = raw["setting"] if isinstance(raw["setting"], str) else ""
    url = registry_url(setting) if is_bucket(setting) and generation == "main" else None
    refused = refusal(setting) if url is not None else None
    if folder is not None or (url is not None and refused is None):
        registry = Registry(folder, s3_url=None if folder else url, **place)
    elif refused is not None:
        return Registry(None, elsewhere=url, refused=refused, **place)
    else:
        shown = raw["setting"] or raw["folder"] or ""
        return Registry(None, elsewhere=_without_secrets(shown), **place)
    found = []
    for name, entry in sorted(raw.get("lambdas", {}).items()) if discover else ():
        declared = name in worker.lambdas or name in shared
        if declared or not is_lambda_name(name):
            continue
        if "files" not in entry:  # listed as the lock recorded it: not read again
            found += [known[name]] if known and name in known else []
            continue
        files = entry["files"]
        source = requirements_source(files)
        if source is not None and "text" in files[source]:
            path = registry.lambda_file(name, entry["kind"], source)
            parsed = parse_requirements(files[source]["text"], path)
            tarball = (entry["etag"], entry["size"]) if "etag" in entry else (None, None)
            found.append(FoundLambda(name, path, parsed.requirements, *tarball))
    return replace(registry, found=tuple(found))


def _in_folder(folder: str, name: str, kind: str, file: str) -> str:
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


def registry_urls(
    registries: Mapping[str, Registry], answers: Mapping[str, dict[str, Any]]
) -> dict[str, str | None]:
    """Each worker's s3:// registry URL, or None: as its host's answer names it when that
    could be read (`answers`, by worker), else as `registries` (the lock's) recorded it."""
    urls = {name: registry.s3_url for name, registry in registries.items()}
    for name, answer in answers.items():
        setting = answer.get("setting")
        if not answer.get("error"):
            urls[name] = store_url(setting) if isinstance(setting, str) else None
    return urls


def declared_in(workers: list[Worker], urls: Mapping[str, str | None]) -> dict[str, set[str]]:
    """The lambdas declared in each s3:// registry (by `store_id`); `urls`: each worker's
    registry URL, or None (`registry_urls`)."""
    by_store: dict[str, set[str]] = {}
    for worker in workers:
        if url := urls.get(worker.name):
            by_store.setdefault(store_id(url), set()).update(worker.lambdas)
    return by_store


def declared_alongside(
    workers: list[Worker], urls: Mapping[str, str | None]
) -> dict[str, frozenset[str]]:
    """Per worker, the lambdas other workers declare in the same s3:// registry: every
    worker reading a bucket runs them, so none is a lambda found there."""
    by_store = declared_in(workers, urls)
    return {
        w.name: frozenset(by_store[store_id(url)] - set(w.lambdas))
        for w in workers
        if (url := urls.get(w.name))
    }


def recorded_lambdas(registries: Mapping[str, Registry]) -> dict[str, dict[str, FoundLambda]]:
    """The lambdas the lock recorded in each s3:// registry (by `store_id`), with the ETag
    they were read at: a survey does not read them again while it is the same."""
    by_store: dict[str, dict[str, FoundLambda]] = {}
    for registry in registries.values():
        if registry.s3_url is not None:
            known = by_store.setdefault(store_id(registry.s3_url), {})
            known |= {lam.name: lam for lam in registry.found if lam.etag is not None}
    return by_store
