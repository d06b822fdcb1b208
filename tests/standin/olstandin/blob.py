"""The lambda store, as the main branch opens it: a gocloud blob bucket (a288ce1e).

go/worker/lambda/handlerPuller.go:36-64: a registry without a recognized scheme is a
folder (`file://` added, :40-45), a file:// folder is made (:47-52), then
blob.OpenBucket (:54) opens it: gocloud's fileblob, or s3blob for `s3://bucket?...`
(go/go.mod: gocloud.dev v0.42.0, AWS SDK v2), whose URL parameters are read here as
gocloud reads them (`S3Store`): `endpoint` (with or without a scheme), `region`,
`profile`, `use_path_style` (`s3ForcePathStyle` before the SDK v2), `disable_https`, and
blob's own `prefix`, put before every key as it is, then escaped as s3blob escapes a key;
a parameter gocloud does not know fails the open. Credentials come from the AWS chain
(AWS_ACCESS_KEY_ID..., AWS_PROFILE, `profile`), as the SDK's default config.
gs:// is not copied.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit


class StoreError(Exception):
    pass


class FileStore:
    """fileblob: a key is a file under the folder; ModTime is the file's mtime."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def mod_time(self, key: str) -> float | None:
        """bucket.Attributes(key).ModTime; None when it fails (handlerPuller.go:76-77)."""
        try:
            return (self.folder / key).stat().st_mtime
        except OSError:
            return None

    def read(self, key: str) -> bytes | None:
        """bucket.NewReader(key); None for gcerrors.NotFound (handlerPuller.go:103-107)."""
        try:
            return (self.folder / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None


# The parameters gocloud.dev v0.42.0 opens an s3:// URL with: blob.go:1496-1520
# (applyPrefixParam), s3blob.go:131-204 (URLOpener.OpenBucketURL) and aws/aws.go:206-261
# (V2ConfigFromURLParams, which fails on any other).
KNOWN = (
    *("prefix", "key", "ssetype", "kmskeyid", "accelerate", "use_path_style"),
    *("s3ForcePathStyle", "disable_https", "hostname_immutable", "region", "endpoint"),
    *("profile", "dualstack", "fips", "rate_limiter_capacity", "anonymous", "awssdk"),
)
GO_BOOL = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
           **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}  # fmt: skip


def _unescape(text: str) -> str:
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8", "surrogateescape")


def go_query(query: str) -> dict[str, str]:
    """u.Query().Get of each parameter (net/url parseQuery): its first value; a pair with
    ';' or a bad %-escape is dropped, '+' is a space."""
    found: dict[str, str] = {}
    for pair in query.split("&"):
        if pair and ";" not in pair and not re.search(r"%(?![0-9A-Fa-f]{2})", pair):
            key, _, value = pair.partition("=")
            found.setdefault(_unescape(key), _unescape(value))
    return found


def escape_key(key: str) -> str:
    """s3blob.go:705-719 escapeKey, run on every key it sends: a character below 0x20, and
    the '/' of each "../", become __0x<hex>__ (internal/escape HexEscape)."""
    return "".join(
        f"__{ord(c):#x}__" if ord(c) < 32 or (i > 1 and c == "/" and key[i - 2 : i] == "..") else c
        for i, c in enumerate(key)
    )


class S3Store:
    """s3blob as gocloud v0.42.0 opens `url`: the bucket is `u.Host` as written
    (s3blob.go:212, the path is not read), `prefix` is put before every key as it is
    (driver.go:387 NewPrefixedBucket), then the key is escaped (`escape_key`)."""

    def __init__(self, url: str) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        query = go_query(parts.query)
        unknown = sorted(set(query) - set(KNOWN))
        if unknown:  # aws.go:258-259
            raise StoreError(f"open bucket {url}: unknown query parameter {unknown[0]!r}")

        def flag(name: str) -> bool:
            if name in query and query[name] not in GO_BOOL:  # s3blob.go:186-203
                raise StoreError(f"invalid value for {name!r}: {query[name]!r}")
            return GO_BOOL.get(query.get(name, ""), False)

        endpoint = query.get("endpoint")
        if endpoint and "://" not in endpoint:
            endpoint = ("http://" if flag("disable_https") else "https://") + endpoint
        path_style = flag("use_path_style") or flag("s3ForcePathStyle")
        self.bucket, self.prefix = parts.netloc.rpartition("@")[2], query.get("prefix", "")
        self.single = query.get("key")  # blob.go:1515-1517 SingleKeyBucket: every key is it
        self.client = boto3.session.Session(profile_name=query.get("profile")).client(
            "s3",
            endpoint_url=endpoint,
            region_name=query.get("region") or os.environ.get("AWS_REGION"),
            config=Config(s3={"addressing_style": "path" if path_style else "auto"}),
        )

    def _key(self, key: str) -> str:
        return escape_key(self.prefix + (self.single or key))

    def _missing(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code in ("404", "NoSuchKey", "NotFound")

    def mod_time(self, key: str) -> float | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception:  # Attributes failed: handlerPuller.go:76-82 pulls anyway
            return None
        return head["LastModified"].timestamp()

    def read(self, key: str) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if self._missing(exc):
                return None
            raise StoreError(str(exc)) from None
        return answer["Body"].read()


def open_store(setting: str) -> FileStore | S3Store:
    """NewHandlerPuller's bucket, handlerPuller.go:38-54."""
    if not setting.startswith(("file://", "s3://", "gs://")):  # :41-45
        setting = "file://" + setting
    if setting.startswith("file://"):  # :47-52
        folder = Path(setting[len("file://") :].partition("?")[0])
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        return FileStore(folder)
    if setting.startswith("s3://"):
        return S3Store(setting)
    raise StoreError(f"the stand-in reads no gs:// registry: {setting!r}")
