"""The lambdas of a registry in an S3 bucket, read from this machine.

The same answer as the host probe's for a registry folder (`remote.probe._lambdas`):
each top-level `<prefix><name>.tar.gz` with the requirements files inside it. One
listing, then one GET a tarball, AT_ONCE at a time. A tarball is anyone's data: the
object is read only up to MAX_TARBALL, its members are counted and their sizes summed
while listed, and only a member named requirements.in or requirements.txt that is a
regular file of at most MAX_REQUIREMENTS is read (a link, a folder, a device or an
oversized member is an error told on that lambda, never followed).
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from olmirror.connection.bucket import AT_ONCE, SCHEME, BucketConnection, bucket_of, failure
from olmirror.connection.hosts import Connections, in_parallel
from olmirror.errors import OlmirrorError
from olmirror.openlambda.blob_store import EXTENSION, host_name, key_prefix, store_id
from olmirror.remote.probe import MAX_REQUIREMENTS, MAX_TARBALL, REQUIREMENTS_FILES

MAX_MEMBERS = 10000
MAX_UNPACKED = 1 << 30  # a tarball's members together: a gzip bomb stops here

Files = dict[str, dict[str, str]]


def _listing(conn: BucketConnection, prefix: str) -> dict[str, int]:
    """{key: size} of the objects right under `prefix` (S3's '/' delimiter: no deeper)."""
    found: dict[str, int] = {}
    token: dict[str, str] = {}
    while True:
        try:
            page = conn.client.list_objects_v2(
                Bucket=conn.location.bucket, Prefix=prefix, Delimiter="/", **token
            )
        except Exception as exc:
            where = f"list {SCHEME}{conn.location.bucket}/{prefix}"
            raise failure(exc, conn.location, where) from None
        found |= {item["Key"]: item["Size"] for item in page.get("Contents", [])}
        if not page.get("IsTruncated"):
            return found
        token = {"ContinuationToken": page["NextContinuationToken"]}


def _get(conn: BucketConnection, key: str) -> bytes | None:
    """The object's first MAX_TARBALL + 1 bytes; None when it is gone since the listing."""
    from botocore.exceptions import ClientError

    try:
        answer = conn.client.get_object(
            Bucket=conn.location.bucket, Key=key, Range=f"bytes=0-{MAX_TARBALL}"
        )
        return answer["Body"].read(MAX_TARBALL + 1)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise failure(exc, conn.location, f"read {SCHEME}{conn.location.bucket}/{key}") from None
    except Exception as exc:
        raise failure(exc, conn.location, f"read {SCHEME}{conn.location.bucket}/{key}") from None


def tarball_requirements(data: bytes) -> Files:
    """{file name: {"text"} or {"error"}} of a lambda tarball's requirements files."""
    found: Files = {}
    if len(data) > MAX_TARBALL:
        return {REQUIREMENTS_FILES[1]: {"error": f"larger than {MAX_TARBALL} bytes"}}
    members = unpacked = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                members += 1
                unpacked += max(member.size, 0)
                if members > MAX_MEMBERS or unpacked > MAX_UNPACKED:
                    why = f"more than {MAX_MEMBERS} members or {MAX_UNPACKED} bytes unpacked"
                    return {REQUIREMENTS_FILES[1]: {"error": why}}
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name not in REQUIREMENTS_FILES:
                    continue
                if not member.isfile() or member.size > MAX_REQUIREMENTS:
                    found[name] = {"error": "not a regular file of at most 1 MiB"}
                    continue
                handle = archive.extractfile(member)
                text = handle.read(MAX_REQUIREMENTS) if handle else b""
                found[name] = {"text": text.decode("utf-8", errors="replace")}
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as exc:
        return {REQUIREMENTS_FILES[1]: {"error": f"not a readable tar.gz ({exc})"}}
    return found


def survey(
    conn: BucketConnection, url: str, declared: Collection[str] = frozenset()
) -> dict[str, Any]:
    """{"lambdas": {name: {"kind": "tarball", "files"}}} of the registry `url` in the
    bucket `conn`, or {"error"} when the bucket cannot be listed or read. The `declared`
    lambdas, which olmirror writes, are not read."""
    prefix = key_prefix(url)
    try:
        listed = _listing(conn, prefix)
        tarballs: dict[str, tuple[str, int]] = {}
        for key, size in sorted(listed.items()):
            name = key.removeprefix(prefix).removesuffix(EXTENSION)
            if key.endswith(EXTENSION) and name and "/" not in name and name not in declared:
                tarballs[name] = (key, size)

        def read(item: tuple[str, int]) -> Files | None:
            key, size = item
            if size > MAX_TARBALL:
                return {REQUIREMENTS_FILES[1]: {"error": f"larger than {MAX_TARBALL} bytes"}}
            data = _get(conn, key) if size else b""  # a Range of nothing is refused
            return None if data is None else tarball_requirements(data)

        with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
            files = dict(zip(tarballs, pool.map(read, tarballs.values()), strict=True))
    except OlmirrorError as exc:
        return {"error": str(exc)}
    return {
        "lambdas": {
            name: {"kind": "tarball", "files": found} for name, found in files.items() if found
        }
    }


def survey_buckets(
    urls: Collection[str],
    connections: Connections,
    forks: int,
    declared: Mapping[str, Collection[str]],
) -> dict[str, dict]:
    """`survey` of each registry URL, buckets in parallel, but for the lambdas `declared`
    there (by `store_id`); one that cannot be reached is an {"error"} (the planner keeps
    what the lock recorded of its lambdas)."""

    def one(url: str) -> dict[str, Any]:
        try:
            bucket = bucket_of(connections.get(host_name(url)))
            return survey(bucket, url, declared.get(store_id(url), frozenset()))
        except OlmirrorError as exc:
            return {"error": str(exc)}

    return in_parallel(sorted(urls), one, forks)
