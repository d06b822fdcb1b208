"""Read a package index's simple API (PEP 691 JSON, or PEP 503 HTML) for the files of a project.

Used on the machine running olmirror, to choose each target's file and record its hash.
"""

from __future__ import annotations

import configparser
import http.client
import importlib.resources
import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin

from packaging.utils import canonicalize_name

from olmirror.errors import OlmirrorError
from olmirror.fetch_files import check_url, origin

# The variables through which pip, uv, aiohttp (bandersnatch) and curl find their CA bundle;
# set together for every child that must trust the upstream's CA, since the machine may set
# them globally and pip lets REQUESTS_CA_BUNDLE override --cert.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT")
PEP691 = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{PEP691}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
TIMEOUT = 30  # seconds without a byte
PAGE_SECONDS = 120  # for a whole page, so that one that drips or never ends fails
MAX_PAGE = 64 << 20  # bytes: a project page is far smaller
FETCHERS = 16


def allowed_origins(upstream: str | None, file_origins: list[str]) -> list[str] | None:
    """Where an upstream's pages may send olmirror for files: its own origin and those the
    spec lists; None (any) for bandersnatch's default upstream, which serves its files from
    another host."""
    if upstream is None:
        return None
    return sorted({origin(upstream), *(origin(url) for url in file_origins)})


def default_upstream() -> str:
    """bandersnatch's own default upstream, so olmirror never hard-codes a public index."""
    config = configparser.ConfigParser()
    config.read_string((importlib.resources.files("bandersnatch") / "defaults.conf").read_text())
    return config["mirror"]["master"].rstrip("/")


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str | None
    requires_python: str | None
    yanked: bool
    size: int | None = None


class _LinkParser(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.files: list[IndexFile] = []
        self._attrs: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs, self._text = dict(attrs), ""

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag != "a" or self._attrs is None:
            return
        url, fragment = urldefrag(urljoin(self.base, self._attrs.get("href") or ""))
        algo, _, digest = fragment.partition("=")
        self.files.append(
            IndexFile(
                filename=self._text.strip() or url.rsplit("/", 1)[-1],
                url=url,
                sha256=digest if algo == "sha256" else None,
                requires_python=self._attrs.get("data-requires-python"),
                yanked="data-yanked" in self._attrs,
            )
        )
        self._attrs = None


def parse_simple_html(text: str, base: str) -> list[IndexFile]:
    """The files a PEP 503 project page links to."""
    parser = _LinkParser(base)
    parser.feed(text)
    return parser.files


def _parse_json(page: object, base: str) -> list[IndexFile]:
    """The files of a PEP 691 page; ValueError when the page is not of that shape."""
    files = page.get("files", []) if isinstance(page, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise ValueError("it is not a PEP 691 project page (no list of files)")
    found = []
    for f in files:
        hashes, size = f.get("hashes", {}), f.get("size")
        if not isinstance(f.get("filename"), str) or not isinstance(f.get("url"), str):
            raise ValueError("a file without a filename or url string")
        if not isinstance(hashes, dict) or (size is not None and not isinstance(size, int)):
            raise ValueError(f"file {f['filename']!r} has hashes or a size of the wrong type")
        requires = f.get("requires-python")
        found.append(
            IndexFile(
                filename=f["filename"],
                url=urljoin(base, f["url"]),
                sha256=hashes.get("sha256") if isinstance(hashes.get("sha256"), str) else None,
                requires_python=requires if isinstance(requires, str) else None,
                yanked=bool(f.get("yanked")),
                size=size,
            )
        )
    return found


def _checked(files: list[IndexFile], page: str, origins: list[str] | None) -> list[IndexFile]:
    """Upstream data is not trusted: every file is fetched over http(s), from an allowed
    origin, never over http from an https page, and its name is one line without a path
    (it reaches configuration files and folders)."""
    for file in files:
        try:
            check_url(file.url, origins)
        except ValueError as exc:
            raise ValueError(f"it lists {file.filename!r} at {file.url!r}: {exc}") from None
        if file.url.lower().startswith("http:") and page.startswith("https:"):
            raise ValueError(f"it lists {file.filename!r} over plain http: {file.url!r}")
        if re.search(r"[\x00-\x1f\x7f/\\]", file.filename) or file.filename in ("", ".", ".."):
            raise ValueError(f"it lists a file named {file.filename!r}, not a file name")
    return files


def _read_page(reply: object) -> bytes:
    """The whole body, within PAGE_SECONDS and MAX_PAGE bytes."""
    deadline = time.monotonic() + PAGE_SECONDS
    chunks, size = [], 0
    while chunk := reply.read1(1 << 16):  # type: ignore[attr-defined]
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_PAGE:
            raise ValueError(f"the page is larger than {MAX_PAGE} bytes")
        if time.monotonic() > deadline:
            raise ValueError(f"the page took more than {PAGE_SECONDS} s to arrive")
    return b"".join(chunks)


class Index:
    """A simple-API index at `url` (the base URL, without /simple), verified with `ca_file`."""

    def __init__(
        self,
        url: str,
        ca_file: str | None,
        origins: list[str] | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout  # seconds without a byte (mirror.index_timeout)
        self.context = ssl.create_default_context(cafile=ca_file)
        self.origins = origins  # where files may be (see `allowed_origins`); None: anywhere

    def project_url(self, name: str) -> str:
        return f"{self.url}/simple/{canonicalize_name(name)}/"

    def files(self, name: str) -> list[IndexFile]:
        url = self.project_url(name)
        request = urllib.request.Request(url, headers={"Accept": ACCEPT})
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self.context
            ) as reply:
                body = _read_page(reply)
                kind = reply.headers.get_content_type()
                base = reply.geturl()
        except urllib.error.HTTPError as exc:
            raise OlmirrorError(f"{url}: the index answered HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OlmirrorError(f"{url}: cannot reach the index ({reason})") from None
        except http.client.HTTPException as exc:
            raise OlmirrorError(f"{url}: the upstream does not answer HTTP ({exc!r})") from None
        except ValueError as exc:
            raise OlmirrorError(f"{url}: {exc}") from None
        try:
            if kind == PEP691:
                files = _parse_json(json.loads(body), base)
            else:
                files = parse_simple_html(body.decode("utf-8", errors="replace"), base)
            return _checked(files, base, self.origins)
        except ValueError as exc:  # JSONDecodeError too
            raise OlmirrorError(f"{url}: the index's page cannot be used: {exc}") from None

    def many(self, names: Iterable[str]) -> dict[str, list[IndexFile]]:
        """Files of every project in `names`, fetched in parallel."""
        wanted = sorted({canonicalize_name(n) for n in names})
        with ThreadPoolExecutor(FETCHERS) as pool:
            return dict(zip(wanted, pool.map(self.files, wanted), strict=True))
