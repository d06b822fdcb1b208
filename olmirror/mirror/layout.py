"""Every path of a mirror folder, in one place.

<directory>/
  web/                    what is served (`serve.backend`): pip's index URL is <url>/simple/
    simple/<project>/     index.html (PEP 503) and index.v1_json (PEP 691)
    packages/...          the files, at their upstream URL's path, as bandersnatch stores them
    packages/built/...    the wheels olmirror built from sdists (`lock/wheel_build.py`)
  bandersnatch.conf       engine bandersnatch's config
  .olmirror/              olmirror's own: bandersnatch's venv, nginx, the upstream's CA
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name

from olmirror.errors import OlmirrorError

PAGE = "index.html"
JSON_PAGE = "index.v1_json"


def web_dir(directory: str) -> str:
    return posixpath.join(directory, "web")


def stored_path(directory: str, url: str) -> str:
    """Where bandersnatch stores the file at `url`: its unquoted URL path under the web
    folder, normalised as the filesystem resolves it (`//`, `.` and `..` are refused
    when they would leave the web folder)."""
    web = web_dir(directory)
    path = posixpath.normpath(posixpath.join(web, unquote(urlsplit(url).path).lstrip("/")))
    if not path.startswith(web.rstrip("/") + "/"):
        raise OlmirrorError(
            f"the upstream gives the file URL {url!r}, whose path leaves the mirror's web "
            "folder; olmirror stores no file outside it, so fix the upstream or pin another "
            "release"
        )
    return path


def simple_dir(directory: str) -> str:
    return posixpath.join(web_dir(directory), "simple")


def project_page(directory: str, project: str, page: str = PAGE) -> str:
    """A project's page in the simple index (`page`: PAGE or JSON_PAGE)."""
    return posixpath.join(simple_dir(directory), canonicalize_name(project), page)


def own_dir(directory: str, *parts: str) -> str:
    """olmirror's own folder in the mirror (`.olmirror`), or a path in it."""
    return posixpath.join(directory, ".olmirror", *parts)


def config_path(directory: str) -> str:
    return posixpath.join(directory, "bandersnatch.conf")
