"""Index pages kept between runs, so that reading an unchanged page again costs the upstream
a 304 and no body.

Each page is kept in the state folder (`state_folder.py`) with the validators its answer
carried (ETag, Last-Modified); the next read sends them back (If-None-Match,
If-Modified-Since), and a 304 means the kept body is the page. An upstream that sends
neither is read whole every time. A kept page is upstream data like any other: parsed and
checked again at every use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from olmirror.remote.host_program import atomic_write

FOLDER = "pages"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """A page as it was answered: its body, content type and URL after redirects, and the
    validators that can ask whether it changed."""

    body: bytes
    kind: str
    url: str
    etag: str | None = None
    last_modified: str | None = None

    def validators(self) -> dict[str, str]:
        """The request headers that ask the upstream whether this page changed."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class PageCache:
    """Pages by the URL they were asked at, one file each in the state folder `state` (None:
    keep nothing); counts the pages that a 304 confirmed in `unchanged`."""

    def __init__(self, state: Path | None) -> None:
        folder = state / FOLDER if state else None
        self.folder = None if folder is None or folder.is_symlink() else folder
        self.unchanged = 0
        self._lock = threading.Lock()

    def _path(self, url: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".page")

    def get(self, url: str) -> Page | None:
        """The page kept for `url`, if one is, whole and for that URL."""
        path = self._path(url)
        try:
            data = path.read_bytes() if path else None
        except OSError:
            return None
        if data is None:
            return None
        head, _, body = data.partition(b"\n")
        try:
            meta = json.loads(head)
            page = Page(body, meta["kind"], meta["url"], meta["etag"], meta["last_modified"])
        except (ValueError, KeyError, TypeError):
            log.debug("%s is damaged: read its page afresh", path)
            return None
        return page if meta.get("asked") == url and len(body) == meta.get("size") else None

    def put(self, url: str, page: Page) -> None:
        """Keep `page` for the next run when it can be validated; a failure to write only
        costs the next run a full read."""
        path = self._path(url)
        if path is None or not (page.etag or page.last_modified):
            return
        meta = {
            "asked": url,
            "url": page.url,
            "kind": page.kind,
            "etag": page.etag,
            "last_modified": page.last_modified,
            "size": len(page.body),
        }
        try:
            path.parent.mkdir(exist_ok=True)
            atomic_write(str(path), json.dumps(meta).encode() + b"\n" + page.body, None)
        except OSError as exc:
            log.debug("could not keep the page of %s: %s", url, exc)

    def confirmed(self) -> None:
        """A 304 said a kept page is still the page."""
        with self._lock:
            self.unchanged += 1
