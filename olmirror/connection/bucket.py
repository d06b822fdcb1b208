"""A bucket of an S3-compatible store as a host: its objects are the host's files.

The bucket is named as OpenLambda names a blob store (a gocloud URL,
`s3://bucket/prefix?endpoint=...&region=...`), so the plan shows it as a host and a
saved plan reaches it again without an inventory entry. Credentials come from the
standard AWS chain (environment, profile, instance role), never from the spec.
boto3 keeps its connections alive and retries throttling, 5xx and cut connections
with backoff ("standard" mode); what is left after that is told with its cause.

Each object olmirror writes carries its sha256 in its metadata. Reading the metadata
costs a HEAD per object, so olmirror also keeps, at `<prefix>/.olmirror/objects.json`,
each object's sha256 with the ETag the store gave it: a listing's ETag that matches
vouches for the sha256 without a HEAD, and any other writer changes the ETag, which
sends olmirror back to the metadata. A no-op plan of the mirror's bucket is then a
listing and one GET, whatever its size.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import posixpath
import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

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
from olmirror.errors import OlmirrorError, Unreachable

SCHEME = "s3://"
SHA256 = "sha256"  # the object metadata key (x-amz-meta-sha256) olmirror compares
MANIFEST = ".olmirror/objects.json"  # key -> [sha256, size, ETag] of what olmirror wrote
AT_ONCE = 16  # requests in flight, and boto3's connection pool
ATTEMPTS = 5  # boto3's tries of one request, the first included
DELETE_BATCH = 1000  # DeleteObjects' limit
CONTENT_TYPES = {
    ".v1_json": "application/vnd.pypi.simple.v1+json",
    ".html": "text/html",
    "/": "text/html",  # a page at a key ending in '/', as pip asks for it
    ".tar.gz": "application/gzip",
}
TRUE = ("1", "true", "yes")


def is_bucket(name: str) -> bool:
    return name.startswith(SCHEME)


def content_type(key: str) -> str:
    for suffix, kind in CONTENT_TYPES.items():
        if key.endswith(suffix):
            return kind
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


@dataclass(frozen=True)
class BucketLocation:
    """Where a bucket is: its name, the key prefix olmirror owns, and the store's endpoint."""

    bucket: str
    prefix: str = ""  # without '/' at either end
    endpoint_url: str | None = None
    region: str | None = None

    @property
    def name(self) -> str:
        query = {"endpoint": self.endpoint_url, "region": self.region}
        shown = urlencode({k: v for k, v in query.items() if v}, safe=":/")
        path = f"/{self.prefix}" if self.prefix else ""
        return f"{SCHEME}{self.bucket}{path}{'?' + shown if shown else ''}"

    @classmethod
    def from_name(cls, name: str) -> BucketLocation:
        """A location from its name, or from a gocloud URL as OpenLambda's config holds it
        (`endpoint` with or without scheme, `disableSSL`/`disable_https`, `prefix`)."""
        parts = urlsplit(name)
        if parts.scheme != "s3" or not parts.netloc:
            raise OlmirrorError(f"{name!r} is not an s3:// URL; write it like s3://bucket/prefix")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        prefix = "/".join(p for p in (parts.path + "/" + query.get("prefix", "")).split("/") if p)
        endpoint = query.get("endpoint")
        if endpoint and "://" not in endpoint:
            plain = any(query.get(k, "").lower() in TRUE for k in ("disableSSL", "disable_https"))
            endpoint = ("http://" if plain else "https://") + endpoint
        return cls(parts.netloc, prefix, endpoint, query.get("region"))

    def key(self, relative: str) -> str:
        return posixpath.join(self.prefix, relative) if self.prefix else relative


def failure(exc: Exception, location: BucketLocation, what: str) -> OlmirrorError:
    """A boto3 failure said as what the operator can do about it (never a credential)."""
    from botocore import exceptions as boto

    where = what  # the plan and the recap name the bucket's host already
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return OlmirrorError(
            f"{where}: no AWS credentials were found; olmirror takes them from the standard "
            "AWS chain, never from the spec: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE with a profile in ~/.aws/credentials"
        )
    if isinstance(exc, boto.EndpointConnectionError | boto.ConnectionError):
        cause = str(getattr(exc, "kwargs", {}).get("error") or exc)
        errno = re.search(r"\[Errno -?\d+\][^'\"]*", cause)
        return Unreachable(
            f"{where}: the S3 endpoint {location.endpoint_url or '(AWS)'} cannot be reached "
            f"after {ATTEMPTS} tries: {errno.group(0).strip() if errno else cause}"
        )
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        if code == "NoSuchBucket":
            return OlmirrorError(
                f"{where}: the bucket {location.bucket!r} does not exist there; create it "
                "(olmirror leaves a bucket's creation, region and policy to you)"
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return OlmirrorError(
                f"{where}: the store refused the request ({code}: {message}); give the AWS "
                f"credentials a policy that lets them list, read, write and delete objects "
                f"under {location.key('') or 'the bucket'}"
            )
        return OlmirrorError(f"{where}: {code}: {message}")
    if isinstance(exc, boto.BotoCoreError):
        return OlmirrorError(f"{where}: {exc}")
    raise exc


class BucketConnection(Connection):
    """One bucket, reached with one boto3 client shared by threads (it keeps connections)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.location = BucketLocation.from_name(name)
        self._written: dict[str, list[object] | None] = {}  # since the manifest was saved
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
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.location.endpoint_url,
            region_name=self.location.region,
            config=config,
        )

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except Exception as exc:
            raise failure(exc, self.location, what) from None

    def listing(self, prefix: str) -> dict[str, tuple[int, str]]:
        """Every key under the folder `prefix` ('' for the whole bucket): (size, ETag)."""
        found: dict[str, tuple[int, str]] = {}
        start = prefix.rstrip("/") + "/" if prefix else ""
        token: dict[str, str] = {}
        while True:
            page = self._call(
                f"list {start or '/'}",
                "list_objects_v2",
                Bucket=self.location.bucket,
                Prefix=start,
                **token,
            )
            found |= {i["Key"]: (i["Size"], i.get("ETag", "")) for i in page.get("Contents", [])}
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _head(self, key: str, content: bool) -> PathFact:
        from botocore.exceptions import ClientError

        method = "get_object" if content else "head_object"
        try:
            answer = getattr(self.client, method)(Bucket=self.location.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return PathFact(None)
            raise failure(exc, self.location, f"read {key}") from None
        except Exception as exc:
            raise failure(exc, self.location, f"read {key}") from None
        body = answer["Body"].read() if content else None
        meta = answer.get("Metadata", {})
        sha = hashlib.sha256(body).hexdigest() if body is not None else meta.get(SHA256)
        return PathFact("file", 0o644, answer["ContentLength"], sha, body)

    def _manifest(self) -> dict[str, list[object]]:
        """What olmirror recorded of the objects it wrote; empty when absent or damaged."""
        fact = self._head(self.location.key(MANIFEST), content=True)
        try:
            entries = json.loads(fact.content or b"{}")
        except ValueError:
            return {}
        return entries if isinstance(entries, dict) else {}

    def gather(self, request: FactRequest) -> Facts:
        """Listings of `trees` (key prefixes), then each key of `paths` and `hashes`: from
        the listing when the manifest vouches for its sha256 (same ETag and size), else a
        HEAD (its metadata); a GET of each in `content`; at most AT_ONCE requests at once.
        A key that a listing shows absent costs no request."""
        unsupported = request.programs | request.commands | request.urls | request.registries
        if unsupported:
            raise OlmirrorError(f"{self.name} is a bucket: it runs nothing ({sorted(unsupported)})")
        trees = {prefix: self.listing(prefix) for prefix in sorted(request.trees)}
        listed = {key: entry for keys in trees.values() for key, entry in keys.items()}
        keys = request.paths | request.hashes | request.content
        manifest = self._manifest() if request.hashes & listed.keys() else {}
        paths: dict[str, PathFact] = {}
        for key in request.hashes - request.content:
            recorded = manifest.get(key)
            if key in listed and isinstance(recorded, list) and len(recorded) == 3:
                sha, size, etag = recorded
                if [size, etag] == list(listed[key]) and isinstance(sha, str):
                    paths[key] = PathFact("file", 0o644, listed[key][0], sha)

        def known_absent(key: str) -> bool:
            return key not in listed and any(key.startswith(p + "/") or not p for p in trees)

        wanted = sorted(k for k in keys - paths.keys() if not known_absent(k))
        with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
            found = pool.map(lambda k: self._head(k, k in request.content), wanted)
            paths |= dict(zip(wanted, found, strict=True))
        relative = {
            prefix: [k.removeprefix(prefix.rstrip("/") + "/" if prefix else "") for k in listing]
            for prefix, listing in trees.items()
        }
        return Facts(paths={key: paths.get(key, PathFact(None)) for key in keys}, trees=relative)

    def _record(self, key: str, entry: list[object] | None) -> None:
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
        data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        self._put(self.location.key(MANIFEST), data)

    def upload(self, key: str, path: str, sha256: str) -> int:
        """Put the local file `path` at `key` with its sha256 in the metadata, once its bytes
        are checked against `sha256` (the folder it comes from may have been edited)."""
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        if digest.hexdigest() != sha256:
            raise OlmirrorError(
                f"{path} does not have the sha256 the plan expects ({sha256}); it changed "
                "since it was fetched: run `olmirror apply` again to fetch it anew"
            )
        with open(path, "rb") as stream:
            answer = self._call(
                f"upload {key}",
                "put_object",
                Bucket=self.location.bucket,
                Key=key,
                Body=stream,
                ContentType=content_type(key),
                Metadata={SHA256: sha256},
            )
        self._record(key, [sha256, size, answer.get("ETag", "")])
        return size

    def delete(self, keys: Iterable[str]) -> None:
        ordered = sorted(keys)
        for start in range(0, len(ordered), DELETE_BATCH):
            batch = [{"Key": k} for k in ordered[start : start + DELETE_BATCH]]
            done = self._call(
                f"delete {len(batch)} objects",
                "delete_objects",
                Bucket=self.location.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            for item in batch:
                self._record(item["Key"], None)
            if done.get("Errors"):
                first = done["Errors"][0]
                raise OlmirrorError(
                    f"{self.name}: {len(done['Errors'])} objects were not deleted, the first "
                    f"{first.get('Key')}: {first.get('Code')}: {first.get('Message')}"
                )

    def _put(self, key: str, data: bytes) -> str:
        """PUT `data` at `key` with its sha256 in the metadata; the object's ETag."""
        answer = self._call(
            f"write {key}",
            "put_object",
            Bucket=self.location.bucket,
            Key=key,
            Body=data,
            ContentType=content_type(key),
            Metadata={SHA256: hashlib.sha256(data).hexdigest()},
        )
        return str(answer.get("ETag", ""))

    def put(self, key: str, data: bytes) -> None:
        etag = self._put(key, data)
        self._record(key, [hashlib.sha256(data).hexdigest(), len(data), etag])

    def change_files(self, changes: Sequence[FileChange]) -> None:
        """Writes become PUTs (atomic in S3: a reader sees the old object or the new one);
        folders do not exist in a bucket, so making one does nothing."""
        try:
            for done, change in enumerate(changes):
                try:
                    if isinstance(change, WriteFile):
                        self.put(change.path, change.data)
                except OlmirrorError as exc:
                    raise PartlyDone(done, exc) from None
        finally:
            self.save_manifest()

    def read_file(self, path: str) -> bytes:
        fact = self._head(path, content=True)
        if fact.content is None:
            raise FileNotFoundError(2, "No such object", f"{self.name}: {path}")
        return fact.content

    def stat(self, path: str) -> PathFact:
        return self._head(path, content=False)

    def _run(self, argv: tuple[str, ...], how: Run) -> CommandResult:
        raise OlmirrorError(f"{self.name} is a bucket: it cannot run {argv[0]!r}")

    def hold_lock(self, state_dir: str | None) -> None:
        """Nothing to hold: a bucket has no lock; the mirror's own host (this machine, where
        the published folder is) holds the apply lock of every run that writes here."""


def bucket_of(conn: Connection) -> BucketConnection:
    """The bucket behind `conn` (an apply hands resources a batching wrapper of it)."""
    inner = getattr(conn, "conn", conn)
    if not isinstance(inner, BucketConnection):
        raise OlmirrorError(f"{conn.name} is not a bucket; this resource belongs to one")
    return inner
