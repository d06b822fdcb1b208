"""A mirror read as its workers read it: the files of its web folder, through its HTTP URL.

`olmirror verify` of a mirror served from a bucket reads it this way, so what it proves
is what pip sees: a page at `<url>/simple/<project>/` (a key ending in '/'), each file at
its URL, its bytes hashed as they arrive. Read only; requests go through the retrying,
kept-alive client olmirror reads its upstream with.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from olmirror.connection.base import (
    CommandResult,
    Connection,
    FactRequest,
    Facts,
    FileChange,
    PathFact,
    Run,
)
from olmirror.errors import OlmirrorError
from olmirror.remote.upstream_http import Client, Final, chunks

AT_ONCE = 8
PAGE = "index.html"  # mirror.layout.PAGE, which this lower layer cannot import


class WebView(Connection):
    """The folder `web` as served at `url` (`url` + its path below `web`)."""

    def __init__(self, name: str, web: str, url: str) -> None:
        self.name, self.web, self.url = name, web.rstrip("/"), url.rstrip("/")
        self.client = Client()

    def url_of(self, path: str) -> str:
        """The URL pip reads `path` at: a page at its folder's URL, with the closing '/'."""
        relative = posixpath.relpath(path, self.web)
        if relative.startswith("../"):
            raise OlmirrorError(f"{path} is not in the served folder {self.web}")
        if posixpath.basename(relative) == PAGE:
            relative = posixpath.dirname(relative) + "/"
        return f"{self.url}/{quote(relative.lstrip('/'))}"

    def _read(self, path: str, how: str) -> PathFact:
        """`how`: 'size' (one byte asked for, the size from Content-Range), 'hash' or
        'content'. A 404 is an absent file; any other failure stops the whole read."""
        url = self.url_of(path)

        def read(reply: Any, _url: str) -> PathFact:
            if how == "size":
                total = (reply.getheader("Content-Range") or "").rpartition("/")[2]
                length = int(total) if total.isdigit() else reply.getheader("Content-Length")
                return PathFact("file", size=int(length) if length is not None else None)
            digest, body, size = hashlib.sha256(), bytearray(), 0
            for chunk in chunks(reply):
                digest.update(chunk)
                size += len(chunk)
                if how == "content":
                    body += chunk
            content = bytes(body) if how == "content" else None
            return PathFact("file", size=size, sha256=digest.hexdigest(), content=content)

        headers = {"Range": "bytes=0-0"} if how == "size" else {}
        try:
            return self.client.get(url, read, headers)
        except Final as exc:
            if exc.status == 404:
                return PathFact(None)
            if exc.status in (401, 403):
                raise OlmirrorError(
                    f"GET {url} was refused (HTTP {exc.status}): the mirror's URL must answer "
                    "workers without credentials; for a bucket, give it a policy that lets "
                    "anyone read its objects, or put a CDN in front of it"
                ) from None
            raise OlmirrorError(f"GET {url} failed: {exc}") from None

    def gather(self, request: FactRequest) -> Facts:
        reads = [(p, "content") for p in sorted(request.content)]
        reads += [(p, "hash") for p in sorted(request.hashes - request.content)]
        reads += [(p, "size") for p in sorted(request.paths - request.hashes - request.content)]
        with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
            facts = list(pool.map(lambda item: self._read(*item), reads))
        return Facts(paths={path: fact for (path, _), fact in zip(reads, facts, strict=True)})

    def read_file(self, path: str) -> bytes:
        fact = self._read(path, "content")
        if fact.content is None:
            raise FileNotFoundError(2, "Not found", self.url_of(path))
        return fact.content

    def stat(self, path: str) -> PathFact:
        return self._read(path, "size")

    def _refuse(self, what: str) -> OlmirrorError:
        return OlmirrorError(f"{self.name} is read over HTTP: it cannot {what}")

    def _run(self, argv: tuple[str, ...], how: Run) -> CommandResult:
        raise self._refuse(f"run {argv[0]!r}")

    def change_files(self, changes: Sequence[FileChange]) -> None:
        raise self._refuse("be written")

    def hold_lock(self, state_dir: str | None) -> None:
        raise self._refuse("be locked")

    def close(self) -> None:
        self.client.close()
