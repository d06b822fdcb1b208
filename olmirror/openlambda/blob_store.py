"""A worker's registry in an S3 bucket, as OpenLambda's main branch reads it.

config.json's `registry` may be a gocloud URL, `s3://bucket?region=...&endpoint=...`
(go/worker/lambda/handlerPuller.go:41-54 at a288ce1e opens it with blob.OpenBucket,
gocloud.dev v0.42.0). gocloud parses it with Go's net/url and reads each parameter with
`Query().Get`, the first of its values; the bucket is `u.Host` as written (s3blob.go:212)
and the path is not read. blob's `prefix` is put before every key as it is
(blob.go:1496-1520 applyPrefixParam, driver.go:387 NewPrefixedBucket), so a lambda is
the object `<prefix><name>.tar.gz` (handlerPuller.go:74, common.LambdaFileExtension) once
s3blob's escapeKey (s3blob.go:705-719) has escaped in it each character below 0x20 and
the '/' of each "../". A prefix s3blob would escape, or one with an empty folder, is
refused (`refusal`), as is a URL blob.OpenBucket cannot open: olmirror never writes where
OpenLambda would not read. olmirror reaches the bucket from this machine as a host of the
plan, named as `BucketLocation.name` names it, with the AWS chain's credentials.
"""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import urlencode, urlsplit

from olmirror.connection.bucket import SCHEME, BucketLocation
from olmirror.connection.bucket_location import BOOLS, go_query

EXTENSION = ".tar.gz"  # common.LambdaFileExtension, go/common/consts.go:12
# The parameters a plan and the lock keep: where the bucket is and how it is reached.
KEPT = ("endpoint", "region", "profile", "prefix", "use_path_style", "s3ForcePathStyle",
        "disable_https")  # fmt: skip
# Every other parameter gocloud v0.42 opens an s3:// URL with: blob's `key`, s3blob's
# (s3blob.go:131-204) and aws.V2ConfigFromURLParams's (aws/aws.go:206-261), which fails
# on any parameter it does not know.
OTHERS = ("key", "ssetype", "kmskeyid", "accelerate", "hostname_immutable", "dualstack", "fips",
          "rate_limiter_capacity", "anonymous", "awssdk")  # fmt: skip
FLAGS = ("use_path_style", "s3ForcePathStyle", "disable_https", "accelerate",
         "hostname_immutable", "dualstack", "fips", "anonymous")  # fmt: skip
FIX = "write it like s3://BUCKET?region=REGION&prefix=lambdas/"


def registry_url(setting: str) -> str | None:
    """The registry's URL fit for a lock and a plan: bucket and path, and only the
    parameters that say where the bucket is (no user, password or other parameter, no
    user in the endpoint, a flag as true or false); None when it names no bucket."""
    try:
        parts = urlsplit(setting)
        bucket = parts.netloc.rpartition("@")[2]  # u.Host: as written, without the user
        query = {k: v for k, v in go_query(parts.query).items() if k in KEPT}
        if "endpoint" in query:
            endpoint = urlsplit(query["endpoint"] if "//" in query["endpoint"]
                                else "//" + query["endpoint"])  # fmt: skip
            port = f":{endpoint.port}" if endpoint.port else ""
            scheme = f"{endpoint.scheme}://" if endpoint.scheme else ""
            query["endpoint"] = f"{scheme}{endpoint.hostname or ''}{port}{endpoint.path}"
    except ValueError:
        return None
    if parts.scheme != "s3" or not bucket:
        return None
    for flag in set(FLAGS) & query.keys():
        query[flag] = BOOLS.get(query[flag], query[flag])
    shown = urlencode(sorted(query.items()), safe=":/", errors="surrogateescape")
    return f"{SCHEME}{bucket}{parts.path}{'?' + shown if shown else ''}"


def refusal(setting: str) -> str | None:
    """Why olmirror neither writes nor reads the s3:// registry `setting`, with the fix;
    None when it writes and reads it where OpenLambda does."""
    query = go_query(urlsplit(setting).query)
    prefix = query.get("prefix", "")
    unknown = sorted(k for k in query if k not in KEPT + OTHERS)
    wrong = sorted(k for k in FLAGS if k in query and query[k] not in BOOLS)
    if re.search(r"[\x00-\x1f\x7f]", setting):
        return f"Go's net/url refuses a URL with a control character, so OpenLambda does; {FIX}"
    if unknown or wrong:
        what = f"unknown parameter {unknown[0]!r}" if unknown else f"{wrong[0]} not true or false"
        return f"gocloud.dev v0.42 cannot open it ({what}), so OpenLambda runs no lambda; {FIX}"
    if "key" in query:
        return f"its `key` parameter makes every lambda the one object {query['key']!r}; {FIX}"
    if re.search(r"[\ud800-\udfff]", prefix):
        return f"its prefix is not UTF-8, which gocloud refuses in a key; {FIX}"
    if re.search(r"[\x00-\x1f]", prefix) or "../" in prefix:
        return (
            f"its prefix {prefix!r} holds a control character or '../', which gocloud's s3blob "
            "writes escaped (__0x2f__ for the '/'), so OpenLambda reads other keys than the "
            f"prefix names; {FIX}"
        )
    if "//" in prefix or prefix.startswith("/"):
        return (
            f"its prefix {prefix!r} holds an empty folder ('//' or a leading '/'), which "
            f"stores other than AWS refuse or fold in a key; {FIX}"
        )
    return None


def store_url(setting: str) -> str | None:
    """`registry_url`, or None when it names no bucket or one olmirror refuses (`refusal`)."""
    url = registry_url(setting)
    return url if url is not None and refusal(setting) is None else None


def key_prefix(url: str) -> str:
    """What gocloud puts before every key: the `prefix` parameter, verbatim."""
    return go_query(urlsplit(url).query).get("prefix", "")


def lambda_key(url: str, name: str) -> str:
    """The key a lambda is, as s3blob sends it (a refused prefix is never used)."""
    return f"{key_prefix(url)}{name}{EXTENSION}"


def object_url(url: str, name: str) -> str:
    """How a plan names a lambda's object: s3://<bucket>/<key>."""
    return f"{SCHEME}{location(url).bucket}/{lambda_key(url, name)}"


def location(url: str) -> BucketLocation:
    """The bucket as olmirror reaches it; its key prefix is gocloud's, not the URL's path."""
    return replace(BucketLocation.from_name(url), prefix=key_prefix(url).strip("/"))


def host_name(url: str) -> str:
    """The plan's host for the registry's bucket (`Connections.get` opens it)."""
    return location(url).name


def store_id(url: str) -> str:
    """What two registry URLs share when they hold the same objects: bucket, prefix,
    endpoint, region and profile (the URL's path and its flags do not count)."""
    return f"{host_name(url)} {key_prefix(url)}"
