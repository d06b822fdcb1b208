"""Serving the mirror from an S3-compatible bucket, for `serve.backend: s3`.

The mirror folder on this machine is filled as for any backend (engine simple:
the locked files, olmirror's built wheels, the index pages) and is the staging
copy: what it already holds is never fetched again. The bucket is then made to
hold the same web folder under `serve.prefix`, and workers read it at `serve.url`.

S3 has no directory index, and pip asks for `<url>/simple/<project>/`. Each page is
therefore stored twice: at the key ending in '/' that pip asks for (a plain S3 HTTP
endpoint answers it as it answers any key), and at `index.html` below it, for a
website endpoint or a CDN that maps a folder to its index document. Both are HTML
(PEP 503), which every pip reads; the PEP 691 JSON page is at `index.v1_json`.

An object is uploaded only when its size or the sha256 in its metadata
(x-amz-meta-sha256) differs from the lock's, so an apply with nothing to change
makes no PUT; files go before the pages that list them, the root index last, and
what the lock no longer holds is deleted only once every host converged, as on disk.
"""

from __future__ import annotations

import hashlib
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from olmirror import progress
from olmirror.connection.base import Connection, FactRequest, Facts, PathFact
from olmirror.connection.bucket import (
    AT_ONCE,
    MANIFEST,
    BucketConnection,
    BucketLocation,
    bucket_of,
    saving_manifest,
)
from olmirror.connection.bucket_location import is_page
from olmirror.errors import OlmirrorError
from olmirror.lock import simple_api
from olmirror.lock.lockfile import Lock
from olmirror.mirror.fetch import size_text
from olmirror.mirror.layout import PAGE, simple_dir, stored_path, web_dir
from olmirror.resources import Change, Resource
from olmirror.spec import Spec

PRUNED = ("simple/", "packages/")  # folders whose every key the lock does not hold goes
OWN = posixpath.dirname(MANIFEST) + "/"  # olmirror's own folder: never a mirror file


class BucketObject(NamedTuple):
    key: str
    path: str  # the file of the mirror folder on this machine that it holds
    sha256: str
    size: int | None  # None: the upstream gave none, and the lock has none


def location_of(spec: Spec) -> BucketLocation | None:
    """The bucket the mirror is published to, or None when it is not served from one."""
    serve = spec.mirror.serve
    if serve.backend != "s3" or serve.bucket is None:
        return None
    return BucketLocation(serve.bucket, serve.prefix, serve.endpoint_url, serve.region)


def _outdated(fact: PathFact, wanted: BucketObject) -> bool:
    sized = wanted.size is None or fact.size == wanted.size
    return fact.kind != "file" or not sized or fact.sha256 != wanted.sha256


def _root_pages(location: BucketLocation) -> set[str]:
    """The keys of the index's root page, which lists every project's page."""
    return {location.key(f"simple/{name}") for name in ("", PAGE, "index.v1_json")}


@dataclass(frozen=True)
class BucketObjects(Resource):
    kind = "bucket_objects"
    bucket: str  # the bucket host's name (`BucketLocation.name`)
    objects: tuple[BucketObject, ...]

    @property
    def id(self) -> str:
        return f"bucket objects {self.bucket}"

    def request(self) -> FactRequest:
        location = BucketLocation.from_name(self.bucket)
        return FactRequest(
            trees=frozenset({location.prefix}), hashes=frozenset(o.key for o in self.objects)
        )

    def _stale(self, facts: Facts) -> list[BucketObject]:
        return [o for o in self.objects if _outdated(facts.path(o.key), o)]

    def observe(self, facts: Facts) -> str:
        return ",".join(o.key for o in self._stale(facts))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        stale = self._stale(facts)
        if not stale:
            return self.unchanged(f"the bucket holds all {len(self.objects)} objects")
        diff = tuple(f"{'~' if facts.path(o.key).kind else '+'} {o.key}" for o in stale)
        count = f"{len(stale)} object{'' if len(stale) == 1 else 's'}"
        total = size_text(sum(o.size or 0 for o in stale))
        return Change(self, "run", f"upload {count} ({total}) to {self.bucket}", diff)

    def apply(self, conn: Connection) -> None:
        bucket = bucket_of(conn)
        stale = self._stale(bucket.gather(self.request()))
        pages = [o for o in stale if is_page(o.key)]
        root_pages = _root_pages(bucket.location)
        roots = [o for o in pages if o.key in root_pages]
        batches = (  # a page never lists a file not yet there; the root index lists pages
            [o for o in stale if not is_page(o.key)],
            [o for o in pages if o not in roots],
            roots,
        )
        done = 0
        with saving_manifest(bucket):
            for batch in batches:
                with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
                    for _ in pool.map(lambda o: bucket.upload(o.key, o.path, o.sha256), batch):
                        done += 1
                        progress.report(f"uploading to the bucket: {done} of {len(stale)}")
        progress.report(f"uploaded {len(stale)} objects to {self.bucket}", final=True)


@dataclass(frozen=True)
class PruneBucket(Resource):
    """What the lock no longer holds leaves the bucket: every key under `simple/` and
    `packages/`, and every other key olmirror's manifest says it wrote, that is not kept;
    never a key at the prefix's top level (OpenLambda keeps lambdas there), never
    olmirror's own folder, nothing outside the prefix."""

    kind = "prune_bucket"
    after_all_hosts = True  # workers still pinning a dropped release keep it until then
    bucket: str
    keep: tuple[str, ...]  # every key the mirror holds

    @property
    def id(self) -> str:
        return f"bucket prune {self.bucket}"

    @property
    def _location(self) -> BucketLocation:
        return BucketLocation.from_name(self.bucket)

    def request(self) -> FactRequest:
        location = self._location
        return FactRequest(
            trees=frozenset({location.prefix}), content=frozenset({location.key(MANIFEST)})
        )

    def _stale(self, facts: Facts) -> list[str]:
        location = self._location
        top = location.key("")
        manifest = facts.path(location.key(MANIFEST))
        recorded = BucketConnection.entries(manifest.content)
        keep = set(self.keep)
        stale = []
        for relative in facts.trees[location.prefix]:
            key = top + relative
            if "/" not in relative or relative.startswith(OWN) or key in keep:
                continue
            if relative.startswith(PRUNED) or key in recorded:
                stale.append(key)
        return sorted(stale)

    def observe(self, facts: Facts) -> str:
        return ",".join(self._stale(facts))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        stale = self._stale(facts)
        if not stale:
            return self.unchanged("the bucket holds nothing beyond the lock")
        count = f"{len(stale)} object{'' if len(stale) == 1 else 's'}"
        return Change(
            self,
            "run",
            f"delete {count} the lock no longer holds from {self.bucket}",
            tuple(f"- {key}" for key in stale),
        )

    def apply(self, conn: Connection) -> None:
        bucket = bucket_of(conn)
        with saving_manifest(bucket):
            bucket.delete(self._stale(bucket.gather(self.request())))


def bucket_objects(directory: str, lock: Lock, location: BucketLocation) -> list[BucketObject]:
    """Every object of the published mirror: the locked files, then the index pages (each
    project's page also at the key ending in '/')."""
    web = web_dir(directory)
    objects: list[BucketObject] = []
    for file in sorted(lock.files().values(), key=lambda f: f.url):
        path = stored_path(directory, file.url)
        relative = posixpath.relpath(path, web)
        if relative.startswith(OWN):
            raise OlmirrorError(
                f"the upstream gives the file URL {file.url!r}, whose path is olmirror's own "
                f"folder {OWN} in the bucket; pin another release or fix the upstream"
            )
        objects.append(BucketObject(location.key(relative), path, file.sha256, file.size))
    pages = simple_api.pages(lock)
    for relative in sorted(pages):
        data = pages[relative].encode()
        path = posixpath.join(simple_dir(directory), relative)
        key = location.key(posixpath.join("simple", relative))
        page = BucketObject(key, path, hashlib.sha256(data).hexdigest(), len(data))
        objects.append(page)
        if posixpath.basename(relative) == PAGE:
            objects.append(page._replace(key=posixpath.dirname(key) + "/"))
    return objects


def bucket_resources(spec: Spec, lock: Lock) -> tuple[str, list[Resource]]:
    """(the bucket host's name, its resources) for a mirror served from a bucket."""
    location = location_of(spec)
    if location is None:  # the spec checks refuse this first
        raise ValueError("serve.backend s3 needs serve.bucket")
    objects = tuple(bucket_objects(spec.mirror.directory, lock, location))
    keep = tuple(sorted(o.key for o in objects))
    return location.name, [BucketObjects(location.name, objects), PruneBucket(location.name, keep)]
