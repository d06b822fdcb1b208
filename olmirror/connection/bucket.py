"""A bucket of an S3-compatible store as a host: its objects are the host's files.

The bucket is named as OpenLambda names a blob store (a gocloud URL,
`s3://bucket/prefix?endpoint=...&region=...`, `bucket_location.py`), so the plan shows
it as a host and a saved plan reaches it again without an inventory entry. Credentials
come from the standard AWS chain (environment, profile, instance role), never from the
spec. boto3 keeps its connections alive and retries throttling, 5xx and cut connections
with backoff ("standard" mode); a body cut after its headers is read again here; what
is left is told with its cause (`bucket_errors.py`).

Each object olmirror writes carries its sha256 in its metadata. Reading the metadata
costs a HEAD per object, so olmirror also keeps, at `<prefix>/.olmirror/objects.json`,
each object's sha256 with the ETag the store gave it: a listing's ETag that matches
vouches for the sha256 without a HEAD, and any other writer changes the ETag, which
sends olmirror back to the metadata. A no-op plan of the mirror's bucket is then its
listings and one GET, whatever its size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from functools import cached_property
from typing import Any, BinaryIO

from olmirror.connection.base import (
    CommandResult,
    Connection,
    FactRequest,
    Facts,
    FileChange,
    PartlyDone,
    PathFact,
    Run,
    WriteFile,
)
from olmirror.connection.bucket_errors import ATTEMPTS, NOT_FOUND, failure
from olmirror.connection.bucket_location import SCHEME, BucketLocation, content_type, is_bucket
from olmirror.errors import OlmirrorError

__all__ = ["AT_ONCE", "MANIFEST", "SCHEME", "BucketConnection", "BucketLocation", "bucket_of"]
__all__ += ["failure", "is_bucket", "saving_manifest"]

SHA256 = "sha256"  # the object metadata key (x-amz-meta-sha256) olmirror compares
MANIFEST = ".olmirror/objects.json"  # key -> [sha256, size, ETag] of what olmirror wrote
AT_ONCE = 16  # requests in flight, and boto3's connection pool
DELETE_BATCH = 1000  # DeleteObjects' limit
MAX_READ = 64 << 20  # the most of one object read into memory (olmirror's manifest)
Entry = list[object]  # a manifest entry: [sha256, size, ETag]


class BucketConnection(Connection):
    """One bucket, reached with one boto3 client shared by threads (it keeps connections)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.location = BucketLocation.from_name(name)
        self._written: dict[str, Entry | None] = {}  # since the manifest was last saved
        self._lock = threading.Lock()

    @cached_property
    def client(self) -> Any:
        # Imported here: runs without a bucket never load boto3.
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"max_attempts": ATTEMPTS, "mode": "standard"},
            max_pool_connections=AT_ONCE,
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path" if self.location.endpoint_url else "auto"},
            # Only the checksums S3 requires, and olmirror's own sha256: stores other than
            # AWS (older MinIO, Ceph) refuse the CRC trailers boto3 sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.session.Session(profile_name=self.location.profile).client(
            "s3",
            endpoint_url=self.location.endpoint_url,
            region_name=self.location.region,
            config=config,
        )

    @property
    def manifest_key(self) -> str:
        return self.location.key(MANIFEST)

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.location.bucket, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise failure(exc, self.location, what) from None

    def listing(self, prefix: str, *, deeper: bool = True) -> dict[str, tuple[int, str]]:
        """Every key under the folder `prefix` ('' for the whole bucket): (size, ETag);
        without `deeper`, only the keys directly in it (the store leaves out the rest)."""
        found: dict[str, tuple[int, str]] = {}
        start = prefix.rstrip("/") + "/" if prefix else ""
        token: dict[str, str] = {} if deeper else {"Delimiter": "/"}
        while True:
            page = self._call(f"list {start or '/'}", "list_objects_v2", Prefix=start, **token)
            found |= {i["Key"]: (i["Size"], i.get("ETag", "")) for i in page.get("Contents", [])}
            if not page.get("IsTruncated"):
                return found
            token = {**token, "ContinuationToken": page["NextContinuationToken"]}

    def read_object(self, key: str, limit: int) -> bytes | None:
        """The bytes of `key`, None when it is absent; an object over `limit` bytes is an
        error before any of it is read (it may have grown since a listing)."""
        return self._object(key, content=True, limit=limit).content

    def _object(self, key: str, content: bool, limit: int = 0) -> PathFact:
        """A HEAD of `key` (size, the sha256 in its metadata), or a GET of it (its bytes,
        hashed, at most `limit` or MAX_READ of them): a body cut once its headers came is
        read again, as boto3 does not."""
        from botocore import exceptions as boto

        limit = limit or MAX_READ

        method = "get_object" if content else "head_object"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                answer = getattr(self.client, method)(Bucket=self.location.bucket, Key=key)
                if content and answer["ContentLength"] > limit:
                    answer["Body"].close()
                    raise OlmirrorError(
                        f"{key} holds {answer['ContentLength']} bytes, more than olmirror reads "
                        f"of it ({limit}); remove it, or replace it with a smaller one"
                    )
                body = answer["Body"].read() if content else None
                break
            except boto.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
                    return PathFact(None)
                raise failure(exc, self.location, f"read {key}") from None
            except (boto.HTTPClientError, boto.IncompleteReadError) as exc:
                if attempt == ATTEMPTS:
                    raise failure(exc, self.location, f"read {key}") from None
            except boto.BotoCoreError as exc:
                raise failure(exc, self.location, f"read {key}") from None
        meta = answer.get("Metadata", {})
        sha = hashlib.sha256(body).hexdigest() if body is not None else meta.get(SHA256)
        return PathFact("file", 0o644, answer["ContentLength"], sha, body)

    @staticmethod
    def entries(manifest: bytes | None) -> dict[str, Entry]:
        """The entries of a manifest's bytes; none when it is absent or damaged."""
        try:
            entries = json.loads(manifest or b"{}")
        except ValueError:
            return {}
        return entries if isinstance(entries, dict) else {}

    def _manifest(self) -> dict[str, Entry]:
        """What olmirror recorded of the objects it wrote."""
        return self.entries(self._object(self.manifest_key, content=True).content)

    def gather(self, request: FactRequest) -> Facts:
        """Listings of `trees` (key prefixes), then each key of `paths` and `hashes`: from
        the listing when the manifest vouches for its sha256 (the same non-empty ETag and
        size), else a HEAD (its metadata); a GET of each in `content`; at most AT_ONCE
        requests at once. A key that a listing shows absent costs no request."""
        unsupported = request.programs | request.commands | request.urls | request.registries
        if unsupported:
            raise OlmirrorError(f"{self.name} is a bucket: it runs nothing ({sorted(unsupported)})")
        trees = {prefix: self.listing(prefix) for prefix in sorted(request.trees)}
        listed = {key: entry for keys in trees.values() for key, entry in keys.items()}
        keys = request.paths | request.hashes | request.content
        paths: dict[str, PathFact] = {}
        if request.hashes & listed.keys() or self.manifest_key in request.content:
            paths[self.manifest_key] = self._object(self.manifest_key, content=True)
            manifest = self.entries(paths[self.manifest_key].content)
            for key in (request.hashes - request.content) & listed.keys():
                recorded = manifest.get(key)
                size, etag = listed[key]
                if isinstance(recorded, list) and recorded[1:] == [size, etag] and etag:
                    paths[key] = PathFact("file", 0o644, size, str(recorded[0]))

        def known_absent(key: str) -> bool:
            return key not in listed and any(key.startswith(p + "/") or not p for p in trees)

        wanted = sorted(k for k in keys - paths.keys() if not known_absent(k))
        with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
            found = pool.map(lambda k: self._object(k, k in request.content), wanted)
            paths |= dict(zip(wanted, found, strict=True))
        relative = {
            prefix: [k.removeprefix(prefix.rstrip("/") + "/" if prefix else "") for k in listing]
            for prefix, listing in trees.items()
        }
        return Facts(paths={key: paths.get(key, PathFact(None)) for key in keys}, trees=relative)

    def _record(self, key: str, entry: Entry | None) -> None:
        with self._lock:
            self._written[key] = entry

    def save_manifest(self) -> None:
        """Write down what this connection wrote and deleted (one GET and one PUT; none
        when nothing was written)."""
        with self._lock:
            written, self._written = self._written, {}
        if not written:
            return
        manifest = self._manifest()
        for key, entry in written.items():
            if entry is None:
                manifest.pop(key, None)
            else:
                manifest[key] = entry
        self._put(self.manifest_key, json.dumps(manifest, sort_keys=True).encode())

    def upload(self, key: str, path: str, sha256: str) -> int:
        """PUT the local file `path` at `key`, once its bytes are checked against `sha256`,
        with that sha256 in the metadata and as the request's checksum (a store that checks
        it, as AWS does, refuses bytes that changed since); its size."""
        digest, size = hashlib.sha256(), 0
        try:
            stream = open(path, "rb")  # noqa: SIM115 - one handle: hashed, then sent
        except FileNotFoundError:
            raise OlmirrorError(
                f"{path} is not in the mirror folder, so it cannot be uploaded; the mirror "
                "host's apply did not place it: run `olmirror apply` again"
            ) from None
        with stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            if digest.hexdigest() != sha256:
                raise OlmirrorError(
                    f"{path} does not have the sha256 the lock records ({sha256}); it changed "
                    "since it was fetched: run `olmirror apply` again to fetch it anew"
                )
            stream.seek(0)
            etag = self._put(key, stream, digest, f"upload {key}")
        self._record(key, [sha256, size, etag])
        return size

    def delete(self, keys: Iterable[str]) -> None:
        ordered = sorted(keys)
        for start in range(0, len(ordered), DELETE_BATCH):
            batch = [{"Key": k} for k in ordered[start : start + DELETE_BATCH]]
            done = self._call(
                f"delete {len(batch)} objects",
                "delete_objects",
                Delete={"Objects": batch, "Quiet": True},
            )
            failed = {e.get("Key"): e for e in done.get("Errors", [])}
            for item in batch:
                if item["Key"] not in failed:
                    self._record(item["Key"], None)
            if failed:
                first = next(iter(failed.values()))
                raise OlmirrorError(
                    f"{len(failed)} objects were not deleted, the first {first.get('Key')} "
                    f"({first.get('Code')}: {first.get('Message')}); let the AWS credentials "
                    f"delete objects under {self.location.key('') or 'the bucket'}, and apply "
                    "again"
                )

    def _put(self, key: str, body: bytes | BinaryIO, digest: Any = None, what: str = "") -> str:
        """PUT `body` at `key`, its sha256 (`digest`, of bytes computed here) in the
        metadata and as the request's checksum; the object's ETag."""
        digest = digest or hashlib.sha256(body)  # type: ignore[arg-type]
        answer = self._call(
            what or f"write {key}",
            "put_object",
            Key=key,
            Body=body,
            ContentType=content_type(key),
            Metadata={SHA256: digest.hexdigest()},
            ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
        )
        return str(answer.get("ETag", ""))

    def change_files(self, changes: Sequence[FileChange]) -> None:
        """Writes become PUTs (atomic in S3: a reader sees the old object or the new one),
        with their sha256 in the metadata but kept out of the manifest: a lambda in a
        worker's registry is compared by a HEAD, and its bucket is OpenLambda's. Folders
        do not exist in a bucket, so making one does nothing."""
        for done, change in enumerate(changes):
            try:
                if isinstance(change, WriteFile):
                    self._put(change.path, change.data)
            except OlmirrorError as exc:
                raise PartlyDone(done, exc) from None

    def read_file(self, path: str) -> bytes:
        fact = self._object(path, content=True)
        if fact.content is None:
            raise FileNotFoundError(2, "No such object", f"{self.name}: {path}")
        return fact.content

    def stat(self, path: str) -> PathFact:
        return self._object(path, content=False)

    def _run(self, argv: tuple[str, ...], how: Run) -> CommandResult:
        raise OlmirrorError(f"{self.name} is a bucket: it cannot run {argv[0]!r}")

    def hold_lock(self, state_dir: str | None) -> None:
        """Nothing to hold: a bucket has no lock. A plan that writes the mirror's bucket
        always covers the mirror's own host (`--limit` refuses to leave it out), whose
        apply lock is held for the whole run."""


@contextmanager
def saving_manifest(bucket: BucketConnection) -> Iterator[None]:
    """Save the manifest once the block is done; after a failure too, so that what was
    written stays known, without letting a failed save hide the block's own failure."""
    try:
        yield
    except BaseException:
        # the block's failure is the one to tell; the next apply looks again
        with suppress(OlmirrorError):
            bucket.save_manifest()
        raise
    bucket.save_manifest()


def bucket_of(conn: Connection) -> BucketConnection:
    """The bucket behind `conn` (an apply hands resources a batching wrapper of it)."""
    inner = getattr(conn, "conn", conn)
    if not isinstance(inner, BucketConnection):
        raise OlmirrorError(f"{conn.name} is not a bucket; this resource belongs to one")
    return inner
