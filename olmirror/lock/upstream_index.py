"""Read a package index's simple API (PEP 691 JSON, or PEP 503 HTML) for the files of a project.

Used on the machine running olmirror, to choose each target's file and record its hash.
"""

from __future__ import annotations

import configparser
import importlib.resources
import json
import logging
import re
import ssl
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from packaging.utils import canonicalize_name

from olmirror.errors import OlmirrorError
from olmirror.lock.page_cache import Page, PageCache
from olmirror.lock.simple_api import PEP691, IndexFile, parse_simple_html, parse_simple_json
from olmirror.remote.fetch_files import check_url
from olmirror.remote.upstream_http import (
    AUTH_STATUSES,
    Auth,
    Client,
    Final,
    Retries,
    chunks,
    origin,
)
from olmirror.spec import LoadedSpec
from olmirror.spec.models import Retries as RetriesSetting

log = logging.getLogger(__name__)

# The variables through which pip, uv, aiohttp (bandersnatch) and curl find their CA bundle;
# set together for every child that must trust the upstream's CA, since the machine may set
# them globally and pip lets REQUESTS_CA_BUNDLE override --cert.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT")
ACCEPT = f"{PEP691}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
TIMEOUT = 30  # seconds without a byte
PAGE_SECONDS = 120  # for a whole page, so that one that drips or never ends fails
MAX_PAGE = 64 << 20  # bytes: a project page is far smaller
FETCHERS = 16
SHA256 = re.compile(r"[0-9a-f]{64}")


def allowed_origins(upstream: str | None, file_origins: list[str]) -> list[str] | None:
    """Where an upstream's pages may send olmirror for files: its own origin and those the
    spec lists; None (any) for bandersnatch's default upstream, which serves its files from
    another host."""
    if upstream is None:
        return None
    return sorted({origin(upstream), *(origin(url) for url in file_origins)})


def retries_of(setting: RetriesSetting) -> Retries:
    """The clients' retry policy for the spec's `mirror.retries`."""
    return Retries(**setting.model_dump())


def default_upstream() -> str:
    """bandersnatch's own default upstream, so olmirror never hard-codes a public index."""
    config = configparser.ConfigParser()
    config.read_string((importlib.resources.files("bandersnatch") / "defaults.conf").read_text())
    return config["mirror"]["master"].rstrip("/")


def not_a_file_name(name: str) -> bool:
    """Whether `name` is more than one line without a path: a file name from elsewhere (an
    index page, a lock) reaches folders, configuration files and URL paths."""
    return bool(re.search(r"[\x00-\x1f\x7f/\\]", name)) or name in ("", ".", "..")


def _checked(files: list[IndexFile], page: str, origins: list[str] | None) -> list[IndexFile]:
    """Upstream data is not trusted: every file is fetched over http(s), from an allowed
    origin, never over http from an https page, its name is one line without a path (it
    reaches configuration files and folders), and its sha256 is 64 hex digits."""
    for file in files:
        try:
            check_url(file.url, origins)
        except ValueError as exc:
            raise ValueError(f"it lists {file.filename!r} at {file.url!r}: {exc}") from None
        if file.url.lower().startswith("http:") and page.startswith("https:"):
            raise ValueError(f"it lists {file.filename!r} over plain http: {file.url!r}")
        if not_a_file_name(file.filename):
            raise ValueError(f"it lists a file named {file.filename!r}, not a file name")
        if file.sha256 is not None and not SHA256.fullmatch(file.sha256):
            # it names folders and URL paths of wheels olmirror builds (`wheel_build.py`)
            raise ValueError(f"it gives {file.filename!r} the sha256 {file.sha256!r}, not one")
    return files


def _read_page(reply: object, url: str) -> Page:
    """The page that arrives whole within PAGE_SECONDS and MAX_PAGE bytes; one that does not
    is a Final answer (a page that drips or never ends is the upstream's doing, not the
    network's)."""
    deadline = time.monotonic() + PAGE_SECONDS
    parts, size = [], 0
    for chunk in chunks(reply):
        parts.append(chunk)
        size += len(chunk)
        if size > MAX_PAGE:
            raise Final(f"the page is larger than {MAX_PAGE} bytes")
        if time.monotonic() > deadline:
            raise Final(f"the page took more than {PAGE_SECONDS} s to arrive")
    headers = reply.headers  # type: ignore[attr-defined]
    return Page(
        b"".join(parts), headers.get_content_type(), url,
        headers.get("ETag"), headers.get("Last-Modified"),
    )  # fmt: skip


class Index:
    """A simple-API index at `url` (the base URL, without /simple), verified with `ca_file`,
    read over kept-alive connections and tried again on transient failures (`retries`), with
    its credentials (`auth`) sent to its own origin alone."""

    def __init__(
        self,
        url: str,
        ca_file: str | None,
        origins: list[str] | None = None,
        timeout: float = TIMEOUT,  # seconds without a byte (mirror.index_timeout)
        retries: Retries | None = None,
        pages: PageCache | None = None,
        auth: Auth | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.pages = pages or PageCache(None)  # kept from earlier runs, asked again
        self.origins = origins  # where files may be (see `allowed_origins`); None: anywhere
        context = ssl.create_default_context(cafile=ca_file)
        self.client = Client(context, timeout, retries, self._retrying, auth)

    @staticmethod
    def _retrying(url: str, reason: str) -> None:
        log.debug("retrying %s: %s", url, reason)

    def project_url(self, name: str) -> str:
        return f"{self.url}/simple/{canonicalize_name(name)}/"

    def files(self, name: str) -> list[IndexFile]:
        url = self.project_url(name)
        kept = self.pages.get(url)

        def read(reply: object, final_url: str) -> Page:
            if kept and reply.status == 304:  # type: ignore[attr-defined]
                self.pages.confirmed()
                return kept
            return _read_page(reply, final_url)

        headers = {"Accept": ACCEPT, **(kept.validators() if kept else {})}
        try:
            page = self.client.get(url, read, headers)
        except Final as exc:
            if exc.status in AUTH_STATUSES:  # the message names the credentials and the fix
                raise OlmirrorError(str(exc)) from None
            if exc.status is not None:
                raise OlmirrorError(f"{url}: the index answered {exc}") from None
            raise OlmirrorError(f"{url}: cannot reach the index ({exc})") from None
        if page is not kept:
            self.pages.put(url, page)
        try:
            if page.kind == PEP691:
                files = parse_simple_json(json.loads(page.body), page.url)
            else:
                files = parse_simple_html(page.body.decode("utf-8", errors="replace"), page.url)
            return _checked(files, page.url, self.origins)
        except ValueError as exc:  # JSONDecodeError too
            raise OlmirrorError(f"{url}: the index's page cannot be used: {exc}") from None

    def many(self, names: Iterable[str]) -> dict[str, list[IndexFile]]:
        """Files of every project in `names`, fetched in parallel."""
        wanted = sorted({canonicalize_name(n) for n in names})
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(FETCHERS) as pool:
                return dict(zip(wanted, pool.map(self.files, wanted), strict=True))
        finally:
            stats = self.client.stats
            log.debug(
                "upstream %s: %d pages in %.1f s (%d unchanged since an earlier run): %d "
                "requests, %d connections (each one DNS lookup and TLS handshake), %d retries",
                self.url, len(wanted), time.monotonic() - started, self.pages.unchanged,
                stats["requests"], stats["connections"], stats["retries"],
            )  # fmt: skip
            self.client.close()


def upstream_of(loaded: LoadedSpec) -> str:
    """The spec's upstream, or bandersnatch's default."""
    return (loaded.spec.mirror.upstream or default_upstream()).rstrip("/")
