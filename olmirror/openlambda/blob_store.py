"""A worker's registry in an S3 bucket, as OpenLambda's main branch reads it.

config.json's `registry` may be a gocloud URL, `s3://bucket?region=...&endpoint=...`
(go/worker/lambda/handlerPuller.go:41-54 at a288ce1e opens it with blob.OpenBucket,
gocloud.dev v0.42.0). gocloud takes the bucket from the URL's host and ignores its path;
its `prefix` parameter is put before every key as it is (blob.PrefixedBucket), so a
lambda is the object `<prefix><name>.tar.gz` (handlerPuller.go:74, common.LambdaFileExtension).
olmirror reaches the bucket from this machine as a host of the plan, named as
`BucketLocation.name` names it, with the AWS chain's credentials.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlencode, urlsplit

from olmirror.connection.bucket import SCHEME, BucketLocation

EXTENSION = ".tar.gz"  # common.LambdaFileExtension, go/common/consts.go:12
# The parameters a plan and the lock keep: where the bucket is and how it is reached.
KEPT = ("endpoint", "region", "prefix", "use_path_style", "s3ForcePathStyle", "disable_https",
        "disableSSL")  # fmt: skip


def is_store(setting: str | None) -> bool:
    return bool(setting) and str(setting).startswith(SCHEME)


def store_url(setting: str) -> str | None:
    """The registry's URL fit for a lock and a plan: bucket and path, and only the
    parameters that say where the bucket is (no user, password or other parameter, and no
    user in the endpoint); None when it names no bucket."""
    try:
        parts = urlsplit(setting)
        bucket = parts.hostname or ""
        query = {k: v[-1] for k, v in parse_qs(parts.query).items() if k in KEPT}
        if "endpoint" in query:
            endpoint = urlsplit(query["endpoint"] if "//" in query["endpoint"]
                                else "//" + query["endpoint"])  # fmt: skip
            host = endpoint.hostname or ""
            port = f":{endpoint.port}" if endpoint.port else ""
            scheme = f"{endpoint.scheme}://" if endpoint.scheme else ""
            query["endpoint"] = f"{scheme}{host}{port}{endpoint.path}"
    except ValueError:
        return None
    if parts.scheme != "s3" or not bucket:
        return None
    shown = urlencode(sorted(query.items()), safe=":/")
    return f"{SCHEME}{bucket}{parts.path}{'?' + shown if shown else ''}"


def key_prefix(url: str) -> str:
    """What gocloud puts before every key: the `prefix` parameter, verbatim."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}.get("prefix", "")


def lambda_key(url: str, name: str) -> str:
    return f"{key_prefix(url)}{name}{EXTENSION}"


def object_url(url: str, name: str) -> str:
    """How a plan names a lambda's object: s3://<bucket>/<key>."""
    return f"{SCHEME}{urlsplit(url).hostname}/{lambda_key(url, name)}"


def location(url: str) -> BucketLocation:
    """The bucket as olmirror reaches it; its key prefix is gocloud's, not the URL's path."""
    return replace(BucketLocation.from_name(url), prefix=key_prefix(url).strip("/"))


def host_name(url: str) -> str:
    """The plan's host for the registry's bucket (`Connections.get` opens it)."""
    return location(url).name


def store_id(url: str) -> str:
    """What two registry URLs share when they hold the same objects: bucket and prefix."""
    return f"{host_name(url)} {key_prefix(url)}"
