"""The lambdas of a registry in an S3 bucket, read from this machine.

The same answer as the host probe's for a registry folder (`remote.probe._lambdas`):
each top-level `<prefix><name>.tar.gz`, with the requirements files inside it, read by
the probe's own reader (`remote.probe.tarball_requirements`: a tar.gz is anyone's data,
read as a stream within bounds, only its requirements files kept). One listing, then
one GET a tarball, and only of a tarball that may hold a lambda to mirror: not one the
spec declares there (olmirror writes it), not one named as no lambda is, not one larger
than the probe reads, and not one the lock recorded with the ETag and size listed now
(its requirements are the lock's). At most AT_ONCE tarballs are in memory at once,
whatever the number of buckets read together.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from olmirror.connection.bucket import BucketConnection, bucket_of
from olmirror.connection.hosts import Connections, in_parallel
from olmirror.errors import OlmirrorError
from olmirror.openlambda.blob_store import EXTENSION, host_name, key_prefix, store_id
from olmirror.openlambda.registry import FoundLambda, is_lambda_name
from olmirror.remote import probe

AT_ONCE = 4  # tarballs read at once, each at most probe.MAX_TARBALL bytes
_reading = threading.BoundedSemaphore(AT_ONCE)

Files = dict[str, dict[str, str]]


def _tarballs(conn: BucketConnection, prefix: str) -> dict[str, tuple[str, int, str]]:
    """{name: (key, size, ETag)} of each `<prefix><name>.tar.gz` right under `prefix` (the
    listing is of the folder that holds it: gocloud's prefix need not end with '/')."""
    found = {}
    for key, (size, etag) in conn.listing(prefix.rpartition("/")[0], deeper=False).items():
        name = key[len(prefix) : -len(EXTENSION)]
        if key.startswith(prefix) and key.endswith(EXTENSION) and name and "/" not in name:
            found[name] = (key, size, etag)
    return found


def _read(conn: BucketConnection, key: str, size: int) -> Files | None:
    """The requirements files of the tarball `key`; None when it is gone since the listing."""
    if size > probe.MAX_TARBALL:  # never read: the probe's answer for it
        return probe.tarball_requirements(io.BytesIO(), size)
    with _reading:
        data = conn.read_object(key, probe.MAX_TARBALL) if size else b""
        return None if data is None else probe.tarball_requirements(io.BytesIO(data), len(data))


def survey(
    conn: BucketConnection,
    url: str,
    declared: Collection[str] = frozenset(),
    known: Mapping[str, FoundLambda] | None = None,
) -> dict[str, Any]:
    """{"lambdas": {name: {"kind": "tarball", "etag", "size", "files"?}}} of the registry
    `url` in the bucket `conn`, or {"error"} when the bucket cannot be listed or read. The
    `declared` lambdas are left out; a lambda the lock recorded (`known`) with the ETag and
    size listed, and one whose name no lambda has, is not read: it comes without "files"."""
    known = known or {}
    try:
        listed = {n: t for n, t in _tarballs(conn, key_prefix(url)).items() if n not in declared}
        unread = {
            name
            for name, (_, size, etag) in listed.items()
            if not is_lambda_name(name)
            or (etag and name in known and (known[name].etag, known[name].size) == (etag, size))
        }
        wanted = sorted(listed.keys() - unread)
        with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
            read = pool.map(lambda name: _read(conn, *listed[name][:2]), wanted)
            files = dict(zip(wanted, read, strict=True))
    except OlmirrorError as exc:
        return {"error": str(exc)}
    lambdas = {
        name: {"kind": "tarball", "etag": etag, "size": size}
        | ({} if name in unread else {"files": files[name]})
        for name, (_, size, etag) in listed.items()
        if name in unread or files[name]  # gone, or holding no requirements file: no lambda
    }
    return {"lambdas": lambdas}


def survey_buckets(
    urls: Collection[str],
    connections: Connections,
    forks: int,
    declared: Mapping[str, Collection[str]],
    known: Mapping[str, Mapping[str, FoundLambda]],
) -> dict[str, dict]:
    """`survey` of each registry URL, by `store_id` (two URLs of one store are read once),
    buckets in parallel, but for the lambdas `declared` there; `known`: the lambdas the
    lock recorded there. One that cannot be reached is an {"error"} (the planner keeps what
    the lock recorded of its lambdas)."""
    stores: dict[str, str] = {}
    for url in sorted(urls):
        stores.setdefault(store_id(url), url)

    def one(store: str) -> dict[str, Any]:
        url = stores[store]
        try:
            bucket = bucket_of(connections.get(host_name(url)))
            return survey(bucket, url, declared.get(store, frozenset()), known.get(store))
        except OlmirrorError as exc:
            return {"error": str(exc)}

    return in_parallel(sorted(stores), one, forks)
