"""Where a bucket is, named as OpenLambda names a blob store, and what its keys are served as."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlencode, urlsplit

from olmirror.errors import OlmirrorError

SCHEME = "s3://"
# strconv.ParseBool's words, as gocloud reads a flag
BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), "true"),
         **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), "false")}  # fmt: skip
# The mirror's index pages (a key ending in '/' is a page as pip asks for it), and what
# every key is served as.
PAGE_TYPES = {
    "/": "text/html",
    "/index.html": "text/html",
    "/index.v1_json": "application/vnd.pypi.simple.v1+json",
}
CONTENT_TYPES = {**PAGE_TYPES, ".tar.gz": "application/gzip"}  # .tar.gz: a lambda


def is_bucket(name: str) -> bool:
    return name.startswith(SCHEME)


def is_page(key: str) -> bool:
    return key.endswith(tuple(PAGE_TYPES))


def content_type(key: str) -> str:
    """A fixed type by the key's end, never guessed: a file the upstream names `x.html`
    stays a download and is never served as a page from the mirror's origin."""
    found = (kind for end, kind in CONTENT_TYPES.items() if key.endswith(end))
    return next(found, "application/octet-stream")


def go_query(query: str) -> dict[str, str]:
    """Each parameter's first value, as Go's url.Values parses `query` (net/url parseQuery),
    as gocloud reads a blob URL's parameters: a pair holding ';' or a bad %-escape is
    dropped, '+' is a space, and bytes that are not UTF-8 are kept (as surrogates)."""
    found: dict[str, str] = {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if not pair or ";" in pair or re.search(r"%(?![0-9A-Fa-f]{2})", pair):
            continue
        unescape = [unquote_to_bytes(p.replace("+", " ")).decode("utf-8", "surrogateescape")
                    for p in (key, value)]  # fmt: skip
        found.setdefault(unescape[0], unescape[1])
    return found


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
        (`endpoint` with or without scheme, `disable_https`, `prefix`, `profile`; each
        read as gocloud reads it, `go_query`)."""
        parts = urlsplit(name)
        if parts.scheme != "s3" or not parts.netloc:
            raise OlmirrorError(f"{name!r} is not an s3:// URL; write it like s3://bucket/prefix")
        query = go_query(parts.query)
        prefix = "/".join(p for p in (parts.path + "/" + query.get("prefix", "")).split("/") if p)
        endpoint = query.get("endpoint")
        if endpoint and "://" not in endpoint:
            plain = BOOLS.get(query.get("disable_https", "")) == "true"
            endpoint = ("http://" if plain else "https://") + endpoint
        return cls(parts.netloc, prefix, endpoint, query.get("region"), query.get("profile"))

    def key(self, relative: str) -> str:
        return posixpath.join(self.prefix, relative) if self.prefix else relative
