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
makes no PUT; files go before the pages that list them, and what the lock no
longer holds is deleted only once every host converged, as on disk.
"""

from __future__ import annotations

import hashlib
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from olmirror import progress
from olmirror.connection.base import Connection, FactRequest, Facts, PathFact
from olmirror.connection.bucket import AT_ONCE, BucketLocation, bucket_of
from olmirror.lock import simple_api
from olmirror.lock.lockfile import Lock
from olmirror.mirror.layout import PAGE, simple_dir, stored_path, web_dir
from olmirror.resources import Change, Resource
from olmirror.spec import Spec

# (key, the file under the web folder that it holds, sha256, size)
BucketObject = tuple[str, str, str, int]
SERVED = ("simple", "packages")  # the folders of the web folder a bucket holds


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def location_of(spec: Spec) -> BucketLocation | None:
    """The bucket the mirror is published to, or None when it is not served from one."""
    serve = spec.mirror.serve
    if serve.backend != "s3" or serve.bucket is None:
        return None
    return BucketLocation(serve.bucket, serve.prefix, serve.endpoint_url, serve.region)


def _outdated(fact: PathFact, sha256: str, size: int) -> bool:
    return fact.kind != "file" or fact.size != size or fact.sha256 != sha256


@dataclass(frozen=True)
class BucketObjects(Resource):
    kind = "bucket_objects"
    bucket: str  # the bucket host's name (`BucketLocation.name`)
    objects: tuple[BucketObject, ...]  # files first, then pages, the root index last

    @property
    def id(self) -> str:
        return f"bucket objects {self.bucket}"

    def request(self) -> FactRequest:
        location = BucketLocation.from_name(self.bucket)
        roots = frozenset(location.key(folder) for folder in SERVED)
        return FactRequest(trees=roots, hashes=frozenset(o[0] for o in self.objects))

    def _stale(self, facts: Facts) -> list[BucketObject]:
        return [o for o in self.objects if _outdated(facts.path(o[0]), o[2], o[3])]

    def observe(self, facts: Facts) -> str:
        return ",".join(o[0] for o in self._stale(facts))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        stale = self._stale(facts)
        if not stale:
            return self.unchanged(f"the bucket holds all {len(self.objects)} objects")
        diff = tuple(f"{'~' if facts.path(o[0]).kind else '+'} {o[0]}" for o in stale)
        count = f"{len(stale)} object{'' if len(stale) == 1 else 's'}"
        total = _size(sum(o[3] for o in stale))
        return Change(self, "run", f"upload {count} ({total}) to {self.bucket}", diff)

    def apply(self, conn: Connection) -> None:
        bucket = bucket_of(conn)
        stale = self._stale(bucket.gather(self.request()))
        files = [o for o in stale if not _is_page(o[0])]
        pages = [o for o in stale if _is_page(o[0])]
        done = 0
        try:
            for batch in (files, pages):  # a page never lists a file not yet there
                with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
                    for _ in pool.map(lambda o: bucket.upload(o[0], o[1], o[2]), batch):
                        done += 1
                        progress.report(f"uploading to the bucket: {done} of {len(stale)}")
        finally:
            bucket.save_manifest()  # what was uploaded stays known, even if the rest failed
        progress.report(f"uploaded {len(stale)} objects to {self.bucket}", final=True)


def _is_page(key: str) -> bool:
    return key.endswith(("/", f"/{PAGE}", "/index.v1_json"))


@dataclass(frozen=True)
class PruneBucket(Resource):
    kind = "prune_bucket"
    after_all_hosts = True  # workers still pinning a dropped release keep it until then
    bucket: str
    keep: tuple[str, ...]  # every key the mirror holds

    @property
    def id(self) -> str:
        return f"bucket prune {self.bucket}"

    @property
    def _roots(self) -> tuple[str, ...]:
        location = BucketLocation.from_name(self.bucket)
        return tuple(location.key(folder) for folder in SERVED)

    def request(self) -> FactRequest:
        return FactRequest(trees=frozenset(self._roots))

    def _stale(self, facts: Facts) -> list[str]:
        keep = set(self.keep)
        listed = [posixpath.join(root, rel) for root in self._roots for rel in facts.trees[root]]
        # posixpath.join drops nothing: a key ending in '/' keeps it ('simple/' + 'p/')
        return sorted(key for key in listed if key not in keep)

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
        try:
            bucket.delete(self._stale(bucket.gather(self.request())))
        finally:
            bucket.save_manifest()


def bucket_objects(directory: str, lock: Lock, location: BucketLocation) -> list[BucketObject]:
    """Every object of the published mirror: the locked files, then the index pages (each
    project's page also at the key ending in '/'), the root index last."""
    web = web_dir(directory)
    objects: list[BucketObject] = []
    for file in sorted(lock.files().values(), key=lambda f: f.url):
        path = stored_path(directory, file.url)
        key = location.key(posixpath.relpath(path, web))
        objects.append((key, path, file.sha256, file.size or 0))
    pages = simple_api.pages(lock)
    for relative in sorted(pages, key=lambda rel: (posixpath.dirname(rel) == "", rel)):
        data = pages[relative].encode()
        path = posixpath.join(simple_dir(directory), relative)
        key = location.key(posixpath.join("simple", relative))
        sha, size = hashlib.sha256(data).hexdigest(), len(data)
        objects.append((key, path, sha, size))
        if posixpath.basename(relative) == PAGE:
            objects.append((posixpath.dirname(key) + "/", path, sha, size))
    return objects


def bucket_resources(spec: Spec, lock: Lock) -> tuple[str, list[Resource]]:
    """(the bucket host's name, its resources) for a mirror served from a bucket."""
    location = location_of(spec)
    if location is None:  # the spec checks refuse this first
        raise ValueError("serve.backend s3 needs serve.bucket")
    objects = tuple(bucket_objects(spec.mirror.directory, lock, location))
    keep = tuple(sorted(o[0] for o in objects))
    return location.name, [BucketObjects(location.name, objects), PruneBucket(location.name, keep)]
