"""The simple repository API (PEP 503 HTML, PEP 691 JSON, PEP 700), read and written here.

Read: an upstream's project pages, for the files a release has (`upstream_index.py`), and
the mirror's own pages, to verify them (`mirror/verify.py`). Written: the pages of a
mirror whose files olmirror fetched itself (engine `simple`). Those pages list exactly the
locked files, link them relative to the page with their
sha256, and carry `data-requires-python`, as bandersnatch's pages do, so pip and
OpenLambda workers see no difference between the engines. The JSON pages follow PEP 700
(API 1.1: the project's `versions`, each file's `size`) when the lock knows every size.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

from packaging.utils import canonicalize_name

from olmirror.lock.lockfile import Lock, LockedFile
from olmirror.lock.targets import release_of

API_VERSION = "1.1"
PEP691 = "application/vnd.pypi.simple.v1+json"


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


def parse_simple_json(page: object, base: str) -> list[IndexFile]:
    """The files of a PEP 691 page; ValueError when the page is not of that shape."""
    files = page.get("files", []) if isinstance(page, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise ValueError("it is not a PEP 691 project page (no list of files)")
    found = []
    for f in files:
        hashes, size = f.get("hashes", {}), f.get("size")
        if not isinstance(f.get("filename"), str) or not isinstance(f.get("url"), str):
            raise ValueError("a file without a filename or url string")
        wrong_size = size is not None and (not isinstance(size, int) or isinstance(size, bool))
        if not isinstance(hashes, dict) or wrong_size:
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


def _href(file: LockedFile) -> str:
    return "../.." + urlsplit(file.url).path + f"#sha256={file.sha256}"


def _html(title: str, links: list[str]) -> str:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    )


def _project_html(name: str, files: list[LockedFile]) -> str:
    links = []
    for f in files:
        attrs = f'href="{html.escape(_href(f))}"'
        if f.requires_python:
            attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
        links.append(f"<a {attrs}>{html.escape(f.filename)}</a>")
    return _html(f"Links for {name}", links)


def _project_json(name: str, files: list[LockedFile]) -> str:
    """A PEP 691 page; API 1.1 (PEP 700: `versions`, and every file's `size`) when every
    file's size is known, else 1.0 (an upstream's HTML pages give no sizes)."""
    entries = []
    for f in files:
        entry: dict[str, object] = {
            "filename": f.filename,
            "url": _href(f).partition("#")[0],
            "hashes": {"sha256": f.sha256},
        }
        if f.requires_python:
            entry["requires-python"] = f.requires_python
        if f.size is not None:
            entry["size"] = f.size
        entries.append(entry)
    page: dict[str, object] = {"meta": {"api-version": "1.0"}, "name": name, "files": entries}
    if all(f.size is not None for f in files):
        releases = {release_of(f.filename) for f in files} - {None}
        versions = sorted({release[1] for release in releases if release})
        page |= {"meta": {"api-version": API_VERSION}, "versions": [str(v) for v in versions]}
    return json.dumps(page, indent=1, sort_keys=True) + "\n"


def pages(lock: Lock) -> dict[str, str]:
    """Every page of the mirror's simple index: its path under the index's folder (`simple/`
    on the mirror, `mirror/layout.py`) -> content."""
    by_project: dict[str, dict[str, LockedFile]] = {}
    for target in lock.targets.values():
        for pin, file in target.files.items():
            by_project.setdefault(canonicalize_name(pin.partition("==")[0]), {})[file.url] = file
    out: dict[str, str] = {}
    for name, files in sorted(by_project.items()):
        ordered = sorted(files.values(), key=lambda f: f.filename)
        out[f"{name}/index.html"] = _project_html(name, ordered)
        out[f"{name}/index.v1_json"] = _project_json(name, ordered)
    names = sorted(by_project)
    out["index.html"] = _html("Simple index", [f'<a href="{n}/">{n}</a>' for n in names])
    listing = {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in names]}
    out["index.v1_json"] = json.dumps(listing, indent=1) + "\n"
    return out
