"""The lambda store, as the main branch opens it: a gocloud blob bucket (a288ce1e).

go/worker/lambda/handlerPuller.go:36-64: a registry without a recognized scheme is a
folder (`file://` added, :40-45), a file:// folder is made (:47-52), then
blob.OpenBucket (:54) opens it: gocloud's fileblob, or s3blob for `s3://bucket?...`
(go/go.mod: gocloud.dev v0.42.0, AWS SDK v2), whose URL parameters are read here as
gocloud reads them: `endpoint` (with or without a scheme), `region`, `use_path_style`
(`s3ForcePathStyle` before the SDK v2), `disable_https` (`disableSSL`), and blob's own
`prefix`, put before every key as it is (blob.PrefixedBucket). Credentials come from the
AWS environment chain (AWS_ACCESS_KEY_ID..., AWS_PROFILE), as the SDK's default config.
gs:// is not copied.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

TRUE = ("1", "true", "yes")


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


class S3Store:
    """s3blob: `prefix` + key in the URL's bucket (the host; the path is not read)."""

    def __init__(self, url: str) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}

        def flag(*names: str) -> bool:
            return any(query.get(name, "").lower() in TRUE for name in names)

        endpoint = query.get("endpoint")
        if endpoint and "://" not in endpoint:
            endpoint = ("http://" if flag("disable_https", "disableSSL") else "https://") + endpoint
        path_style = flag("use_path_style", "s3ForcePathStyle")
        self.bucket, self.prefix = parts.hostname or "", query.get("prefix", "")
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=query.get("region") or os.environ.get("AWS_REGION"),
            config=Config(s3={"addressing_style": "path" if path_style else "auto"}),
        )

    def _missing(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code in ("404", "NoSuchKey", "NotFound")

    def mod_time(self, key: str) -> float | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception:  # Attributes failed: handlerPuller.go:76-82 pulls anyway
            return None
        return head["LastModified"].timestamp()

    def read(self, key: str) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
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
