"""A declared lambda in an s3:// registry: the object `<prefix><name>.tar.gz` in its bucket.

The object holds the same deterministic tarball as a folder registry's `<name>.tar.gz`
(`tarball.build`), and carries its sha256 in its metadata (x-amz-meta-sha256, written
with every PUT of `BucketConnection`). A plan asks only for that metadata (a HEAD); the
object is uploaded when the sha256 differs, so an apply with nothing to change makes no
PUT, and the worker, which re-pulls a lambda when the blob's ModTime changes
(go/worker/lambda/handlerPuller.go:76-81 at a288ce1e), sees no change either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.connection.bucket import BucketLocation
from olmirror.openlambda.lambda_tarball import members_diff, wanted_members
from olmirror.openlambda.tarball import build
from olmirror.resources.base import Change, Resource


@dataclass(frozen=True)
class LambdaObject(Resource):
    kind = "lambda_object"
    bucket: str  # the bucket host's name (`blob_store.host_name`)
    key: str
    members: tuple[tuple[str, str, int], ...]  # (name, text, mode)

    @property
    def id(self) -> str:
        return f"lambda s3://{BucketLocation.from_name(self.bucket).bucket}/{self.key}"

    @cached_property
    def _data(self) -> bytes:
        return build(wanted_members(self.members))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self._data).hexdigest()

    def request(self) -> FactRequest:
        return FactRequest(hashes=frozenset({self.key}))

    def observe(self, facts: Facts) -> str:
        fact = facts.path(self.key)
        return f"{fact.kind}:{fact.sha256}"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        fact = facts.path(self.key)
        where = self.id.removeprefix("lambda ")
        if fact.kind is None:
            diff = members_diff(where, [], wanted_members(self.members))
            return Change(self, "create", f"create lambda {where}", diff)
        if fact.sha256 == self.sha256:
            return self.unchanged(f"lambda {where}")
        had = f"sha256 {fact.sha256[:12]}" if fact.sha256 else "no sha256 in its metadata"
        diff = (f"~ {self.key}: {had} -> sha256 {self.sha256[:12]}",)
        return Change(self, "update", f"update lambda {where}", diff)

    def apply(self, conn: Connection) -> None:
        conn.write_file(self.key, self._data)
