"""Where a bucket is, named as OpenLambda names a blob store, and what its keys are served as."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from olmirror.errors import OlmirrorError

SCHEME = "s3://"
TRUE = ("1", "t", "true")  # Go's strconv.ParseBool, lowercased
PAGE_TYPES = {  # the mirror's index pages; a key ending in '/' is a page as pip asks for it
    "/": "text/html",
    "/index.html": "text/html",
    "/index.v1_json": "application/vnd.pypi.simple.v1+json",
    ".tar.gz": "application/gzip",  # a lambda
}


def is_bucket(name: str) -> bool:
    return name.startswith(SCHEME)


def content_type(key: str) -> str:
    """A fixed type by the key's end, never guessed: a file the upstream names `x.html`
    stays a download and is never served as a page from the mirror's origin."""
    return next(
        (t for end, t in PAGE_TYPES.items() if key.endswith(end)), "application/octet-stream"
    )


@dataclass(frozen=True)
class BucketLocation:
    """Where a bucket is: its name, the key prefix olmirror owns, and the store's endpoint."""

    bucket: str
    prefix: str = ""  # without '/' at either end
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None  # the AWS profile a worker's registry URL names

    @property
    def name(self) -> str:
        """`s3://bucket/prefix?endpoint=...&region=...`: the bucket's host name in a plan."""
        query = {"endpoint": self.endpoint_url, "region": self.region, "profile": self.profile}
        shown = urlencode({k: v for k, v in query.items() if v}, safe=":/")
        path = f"/{self.prefix}" if self.prefix else ""
        return f"{SCHEME}{self.bucket}{path}{'?' + shown if shown else ''}"

    @classmethod
    def from_name(cls, name: str) -> BucketLocation:
        """A location from its name, or from a gocloud URL as OpenLambda's config holds it
        (`endpoint` with or without scheme, `disableSSL`/`disable_https`, `prefix`,
        `profile`; a parameter given twice counts once, the first, as Go's Query().Get)."""
        parts = urlsplit(name)
        if parts.scheme != "s3" or not parts.netloc:
            raise OlmirrorError(f"{name!r} is not an s3:// URL; write it like s3://bucket/prefix")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        prefix = "/".join(p for p in (parts.path + "/" + query.get("prefix", "")).split("/") if p)
        endpoint = query.get("endpoint")
        if endpoint and "://" not in endpoint:
            plain = any(query.get(k, "").lower() in TRUE for k in ("disableSSL", "disable_https"))
            endpoint = ("http://" if plain else "https://") + endpoint
        return cls(parts.netloc, prefix, endpoint, query.get("region"), query.get("profile"))

    def key(self, relative: str) -> str:
        return posixpath.join(self.prefix, relative) if self.prefix else relative
