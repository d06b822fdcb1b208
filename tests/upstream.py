"""A PyPI-compatible upstream index on 127.0.0.1 over HTTPS, built and served by the tests.

Mirror tests must never reach the public index, yet bandersnatch, pip and uv must meet
the same protocol they meet there: the JSON API with `X-PyPI-Last-Serial`, the simple
API in PEP 503 HTML and PEP 691 JSON, and files under `/packages/` with their digests.
This module builds a small catalogue of real wheels and sdists (deterministic bytes, so
hashes are stable), serves them from a background thread with PEP 658 metadata files as
PyPI does, counts what was fetched, and can fail on demand (down, HTTP 500 after N files,
no serial header and no JSON API, HTML-only simple pages, a tampered file, HTTP basic auth
required on every request as a private index does), or at random at set rates from a seed,
as a flaky network does (`Faults`).

Use it from a conftest with `from upstream import upstream_index` (session-scoped); call
`upstream_index.reset()` in tests that switch failure modes, or use `clean_upstream`.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import html
import io
import json
import os
import random
import re
import socket
import ssl
import struct
import tarfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import parse_tag
from packaging.utils import canonicalize_name
from packaging.version import Version

# --------------------------------------------------------------------------------------
# The catalogue: a plain data description tests read to compute their expectations.
# --------------------------------------------------------------------------------------

ANY = "py3-none-any"
MANYLINUX_X86_64 = "manylinux_2_17_x86_64.manylinux2014_x86_64"
MANYLINUX_AARCH64 = "manylinux_2_17_aarch64.manylinux2014_aarch64"
MUSLLINUX_X86_64 = "musllinux_1_1_x86_64"
WIN_AMD64 = "win_amd64"
MACOSX_ARM64 = "macosx_11_0_arm64"
YANKED_REASON = 'broken <build> & "bad" metadata'


@dataclass(frozen=True)
class Release:
    """One version of a project: its dependencies and which files it ships."""

    version: str
    requires: tuple[str, ...] = ()  # Requires-Dist lines (PEP 508), extras as markers
    requires_python: str | None = None
    wheels: tuple[str, ...] = (ANY,)  # wheel tags, e.g. "cp310-abi3-win_amd64"
    sdist: bool = True
    yanked: bool = False
    yanked_reason: str = ""
    # Files served as they are, (filename, bytes), beside those made from the fields above
    # (tests/sdists.py: real sdists to build, and a real build backend's wheel).
    given: tuple[tuple[str, bytes], ...] = ()

    @property
    def extras(self) -> tuple[str, ...]:
        """Extras named by `extra == "..."` markers, for Provides-Extra."""
        found = {m for line in self.requires for m in re.findall(r'extra == "([^"]+)"', line)}
        return tuple(sorted(found))


@dataclass(frozen=True)
class Project:
    """A project as a maintainer would register it (display name, not normalised)."""

    name: str
    releases: tuple[Release, ...]
    summary: str = ""

    @property
    def normalized(self) -> str:
        return canonicalize_name(self.name)

    def release(self, version: str) -> Release:
        return next(r for r in self.releases if r.version == version)


_DELTA_WHEELS = (
    f"cp310-abi3-{MANYLINUX_X86_64}",
    f"cp311-cp311-{MANYLINUX_X86_64}",
    f"cp310-abi3-{MANYLINUX_AARCH64}",
    f"cp310-abi3-{MUSLLINUX_X86_64}",
    f"cp310-abi3-{WIN_AMD64}",
    f"cp310-abi3-{MACOSX_ARM64}",
)

#: Every project the upstream serves, in upload order (serials follow this order).
#: alpha -> beta -> gamma -> delta is the chain; gamma and beta share theta (a diamond);
#: alpha needs compat310 only below 3.11 and winonly only on win32; alpha[fast] pulls
#: speedups -> Zeta_Utils; delta ships platform wheels beside an sdist; alpha 2.1 (its
#: newest) is yanked; modernlib 2.0 requires Python >= 3.12; omega has a pre-release.
PROJECTS: tuple[Project, ...] = (
    Project("delta", (Release("0.9"), Release("1.0", wheels=_DELTA_WHEELS)), "native leaf"),
    Project("theta", (Release("1.0"), Release("1.5")), "shared by beta and gamma"),
    Project(
        "modernlib",
        (
            Release("1.0", requires_python=">=3.8"),
            Release("2.0", requires_python=">=3.12"),
        ),
        "newest release needs Python 3.12",
    ),
    Project(
        "gamma",
        (
            Release("1.0", ("delta>=0.9",)),
            Release("2.0", ("delta>=1.0", "theta>=1.0", "modernlib>=1.0")),
        ),
        "third in the chain",
    ),
    Project(
        "beta",
        (Release("1.0", ("gamma>=1.0",)), Release("1.1", ("gamma>=2.0", "theta"))),
        "second in the chain",
    ),
    Project("compat310", (Release("1.0"), Release("1.1")), "backport for Python < 3.11"),
    Project("winonly", (Release("1.0"),), "needed on Windows only"),
    Project("Zeta_Utils", (Release("0.5"), Release("1.0")), "a non-normalised name"),
    Project(
        "speedups",
        (Release("1.0", ("Zeta_Utils>=0.5",)), Release("1.2", ("zeta-utils>=1.0",))),
        "pulled by alpha[fast]",
    ),
    Project(
        "alpha",
        (
            Release("1.0", ("beta>=1.0",)),
            Release(
                "2.0",
                (
                    "beta>=1.1",
                    'compat310>=1.0; python_version < "3.11"',
                    'winonly; sys_platform == "win32"',
                    'speedups>=1.0; extra == "fast"',
                ),
                requires_python=">=3.9",
            ),
            Release(
                "2.1",
                (
                    "beta>=1.1",
                    'compat310>=1.0; python_version < "3.11"',
                    'winonly; sys_platform == "win32"',
                    'speedups>=1.0; extra == "fast"',
                ),
                requires_python=">=3.9",
                yanked=True,
                yanked_reason=YANKED_REASON,
            ),
        ),
        "head of the chain",
    ),
    Project("omega", tuple(Release(v) for v in ("1.0", "1.1", "1.2", "2.0b1")), "standalone"),
)


def dist_name(name: str) -> str:
    """The file-name form of a project name (PEP 427 / PEP 625): normalised, underscores."""
    return canonicalize_name(name).replace("-", "_")


@dataclass(frozen=True)
class BuiltFile:
    """A file as the index describes it; `url_path` is where it lives under the server."""

    project: str  # normalised
    version: str
    filename: str
    path: Path
    packagetype: str  # bdist_wheel | sdist
    python_version: str  # "py3", "cp311", ... or "source"
    tag: str | None  # the wheel's compressed tag set; None for an sdist
    sha256: str
    md5: str
    blake2b_256: str
    size: int
    serial: int
    upload_time: datetime
    requires_python: str | None
    yanked: bool
    yanked_reason: str
    metadata_sha256: str | None  # PEP 658 core metadata served beside a wheel; None: sdist

    @property
    def url_path(self) -> str:
        """PyPI's layout: /packages/<b2[:2]>/<b2[2:4]>/<b2[4:]>/<filename>."""
        b = self.blake2b_256
        return f"/packages/{b[:2]}/{b[2:4]}/{b[4:]}/{self.filename}"

    @property
    def upload_time_iso(self) -> str:
        return self.upload_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Catalogue:
    """The built catalogue: project data plus every file's bytes on disk and digests."""

    projects: dict[str, Project]  # normalised name -> project
    files: dict[str, dict[str, list[BuiltFile]]]  # normalised name -> version -> files

    @property
    def serial(self) -> int:
        """The index-wide last serial (the newest upload)."""
        return max(self.project_serial(name) for name in self.projects)

    def project_serial(self, name: str) -> int:
        return max(f.serial for fs in self.files[canonicalize_name(name)].values() for f in fs)

    def release_files(self, name: str, version: str | None = None) -> list[BuiltFile]:
        """Files of one release, or of every release of the project."""
        per_version = self.files[canonicalize_name(name)]
        if version is not None:
            return list(per_version[version])
        return [f for fs in per_version.values() for f in fs]

    def file(self, filename: str) -> BuiltFile:
        return next(f for f in self.all_files() if f.filename == filename)

    def all_files(self) -> list[BuiltFile]:
        return [f for fs in self.files.values() for vs in fs.values() for f in vs]

    def closure(
        self, roots: list[str], python: str = "3.11", sys_platform: str = "linux"
    ) -> dict[str, str]:
        """Expected pins (normalised name -> version) for `roots` on a target.

        A greedy walk is enough for this catalogue (no conflicts need backtracking): the
        newest release that matches every specifier seen, is not yanked unless pinned
        with ==, and whose requires-python admits `python`.
        """
        env = {
            "python_version": python,
            "python_full_version": f"{python}.0",
            "sys_platform": sys_platform,
            "platform_system": {"linux": "Linux", "win32": "Windows", "darwin": "Darwin"}[
                sys_platform
            ],
            "os_name": "nt" if sys_platform == "win32" else "posix",
        }
        specs: dict[str, SpecifierSet] = {}
        extras: dict[str, set[str]] = {}
        pinned: set[str] = set()
        todo = [Requirement(r) for r in roots]
        seen: set[str] = set()
        while todo:
            req = todo.pop()
            name = canonicalize_name(req.name)
            specs[name] = specs.get(name, SpecifierSet()) & req.specifier
            extras.setdefault(name, set()).update(req.extras)
            if any(s.operator in ("==", "===") for s in req.specifier):
                pinned.add(name)
            chosen = self._choose(name, specs[name], python, name in pinned)
            key = f"{name} {chosen.version} {sorted(extras[name])}"
            if key in seen:
                continue
            seen.add(key)
            for line in chosen.requires:
                dep = Requirement(line)
                for extra in ("", *sorted(extras[name])):
                    if dep.marker is None or dep.marker.evaluate({**env, "extra": extra}):
                        todo.append(Requirement(str(dep).split(";")[0]))
                        break
        return {
            name: self._choose(name, spec, python, name in pinned).version
            for name, spec in sorted(specs.items())
        }

    def _choose(self, name: str, spec: SpecifierSet, python: str, pinned: bool) -> Release:
        candidates = [
            r
            for r in self.projects[name].releases
            if spec.contains(r.version, prereleases=pinned)
            and (pinned or not r.yanked)
            and (r.requires_python is None or SpecifierSet(r.requires_python).contains(python))
        ]
        if not candidates:
            raise LookupError(f"no release of {name} matches {spec} on Python {python}")
        return max(candidates, key=lambda r: Version(r.version))


_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def _metadata(project: Project, release: Release) -> str:
    """Core metadata (PEP 566 / 2.1) shared by the wheels' METADATA and the sdist's PKG-INFO."""
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project.name}",
        f"Version: {release.version}",
        f"Summary: {project.summary or project.name}",
    ]
    if release.requires_python:
        lines.append(f"Requires-Python: {release.requires_python}")
    lines += [f"Provides-Extra: {extra}" for extra in release.extras]
    lines += [f"Requires-Dist: {line}" for line in release.requires]
    return "\n".join(lines) + "\n\n"


def _module(project: Project, release: Release, tag: str) -> str:
    """The importable code: it says which file it came from, so installs can be checked."""
    return f'"""{project.name} test package."""\n__version__ = "{release.version}"\nTAG = "{tag}"\n'


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def _wheel_bytes(project: Project, release: Release, tag: str) -> bytes:
    """A real wheel (PEP 427): module, METADATA, WHEEL with every expanded tag, RECORD."""
    pkg = dist_name(project.name)
    info = f"{pkg}-{release.version}.dist-info"
    purelib = tag == ANY
    tags = sorted(str(t) for t in parse_tag(tag))
    members = {
        f"{pkg}/__init__.py": _module(project, release, tag).encode(),
        f"{info}/METADATA": _metadata(project, release).encode(),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: olmirror-tests\n"
            f"Root-Is-Purelib: {str(purelib).lower()}\n" + "".join(f"Tag: {t}\n" for t in tags)
        ).encode(),
        f"{info}/top_level.txt": f"{pkg}\n".encode(),
    }
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in members.items())
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zi = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return buf.getvalue()


def _sdist_bytes(project: Project, release: Release) -> bytes:
    """A real sdist (PEP 625 name, PKG-INFO at the top); gzip and tar headers pinned."""
    pkg = dist_name(project.name)
    top = f"{pkg}-{release.version}"
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{project.name}"\nversion = "{release.version}"\n'
        + (f'requires-python = "{release.requires_python}"\n' if release.requires_python else "")
        + f"dependencies = {json.dumps([r for r in release.requires if 'extra ==' not in r])}\n"
    )
    members = {
        f"{top}/PKG-INFO": _metadata(project, release).encode(),
        f"{top}/pyproject.toml": pyproject.encode(),
        f"{top}/{pkg}/__init__.py": _module(project, release, "sdist").encode(),
    }
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
            tar.addfile(ti, io.BytesIO(data))
    return raw.getvalue()


def build_catalogue(folder: Path, projects: tuple[Project, ...] = PROJECTS) -> Catalogue:
    """Write every file of `projects` into `folder` and describe them with digests."""
    folder.mkdir(parents=True, exist_ok=True)
    serial = 0
    files: dict[str, dict[str, list[BuiltFile]]] = {}
    for project in projects:
        per_version = files.setdefault(project.normalized, {})
        for release in project.releases:
            stem = f"{dist_name(project.name)}-{release.version}"
            built: list[tuple[str, str | None, bytes]] = [
                (f"{stem}-{tag}.whl", tag, _wheel_bytes(project, release, tag))
                for tag in release.wheels
            ]
            if release.sdist:
                built.append((f"{stem}.tar.gz", None, _sdist_bytes(project, release)))
            for filename, data in release.given:
                wheel = filename.endswith(".whl")
                built.append((filename, filename[:-4].split("-", 2)[2] if wheel else None, data))
            given = {filename for filename, _ in release.given}
            for filename, tag, data in built:
                serial += 1
                path = folder / filename
                path.write_bytes(data)
                metadata_sha256 = None
                if tag and filename not in given:  # PEP 658: the METADATA at <url>.metadata
                    metadata = _metadata(project, release).encode()
                    path.with_name(filename + ".metadata").write_bytes(metadata)
                    metadata_sha256 = hashlib.sha256(metadata).hexdigest()
                per_version.setdefault(release.version, []).append(
                    BuiltFile(
                        project=project.normalized,
                        version=release.version,
                        filename=filename,
                        path=path,
                        packagetype="bdist_wheel" if tag else "sdist",
                        python_version=tag.split("-")[0] if tag else "source",
                        tag=tag,
                        sha256=hashlib.sha256(data).hexdigest(),
                        md5=hashlib.md5(data).hexdigest(),
                        blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
                        size=len(data),
                        serial=serial,
                        upload_time=_EPOCH + timedelta(hours=serial),
                        requires_python=release.requires_python,
                        yanked=release.yanked,
                        yanked_reason=release.yanked_reason,
                        metadata_sha256=metadata_sha256,
                    )
                )
    return Catalogue({p.normalized: p for p in projects}, files)


# --------------------------------------------------------------------------------------
# Request accounting
# --------------------------------------------------------------------------------------


@dataclass
class PathCount:
    requests: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Hit:
    """One answered request (query string dropped)."""

    method: str
    path: str
    status: int
    bytes: int
    accept: str  # what the client asked for
    content_type: str  # what it got
    fault: str = ""  # the fault injected into this answer (see `Faults`), if any
    agent: str = ""  # the client's User-Agent


@dataclass
class Counts:
    """What the server answered, per path; thread-safe, so a running sync can be counted."""

    _hits: list[Hit] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def hits(self, prefix: str = "") -> list[Hit]:
        with self._lock:
            return [h for h in self._hits if h.path.startswith(prefix)]

    def by_path(self, prefix: str = "") -> dict[str, PathCount]:
        out: dict[str, PathCount] = {}
        for h in self.hits(prefix):
            c = out.setdefault(h.path, PathCount())
            c.requests += 1
            c.bytes += h.bytes
        return out

    def __getitem__(self, path: str) -> PathCount:
        return self.by_path().get(path, PathCount())

    def requests(self, prefix: str = "") -> int:
        return len(self.hits(prefix))

    def bytes(self, prefix: str = "") -> int:
        return sum(h.bytes for h in self.hits(prefix))

    def files(self) -> list[str]:
        """Distribution files successfully downloaded (GET 200 under /packages/), in order.

        PEP 658 `.metadata` fetches are left out: resolvers read those, mirrors do not.
        """
        return [name for name in self._downloads() if not name.endswith(".metadata")]

    def metadata_files(self) -> list[str]:
        """PEP 658 metadata files downloaded (`<wheel>.metadata`), in order."""
        return [name for name in self._downloads() if name.endswith(".metadata")]

    def _downloads(self) -> list[str]:
        return [
            h.path.rsplit("/", 1)[1]
            for h in self.hits("/packages/")
            if h.method == "GET" and h.status == 200 and not h.fault
        ]

    def faults(self) -> Counter[str]:
        """How many times each fault fired."""
        return Counter(h.fault for h in self.hits() if h.fault)


# --------------------------------------------------------------------------------------
# Faults at random, as a flaky network or proxy causes them
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Rates (0 to 1) at which each request meets a fault, drawn from a generator seeded
    with `seed`: the same seed gives the same sequence of faults (which request meets
    which one depends on the order the requests arrive in)."""

    seed: int
    unavailable: float = 0.0  # HTTP 503, on any request
    cut: float = 0.0  # the body cut at half its Content-Length, the connection dropped
    corrupt: float = 0.0  # a file under /packages/ sent with one byte changed, same size
    reset: float = 0.0  # the connection reset (TCP RST) before any answer
    slow: float = 0.0  # the answer starts only after `slow_seconds`
    slow_seconds: float = 2.0

    def kinds(self) -> tuple[tuple[str, float], ...]:
        return (
            ("unavailable", self.unavailable),
            ("cut", self.cut),
            ("corrupt", self.corrupt),
            ("reset", self.reset),
            ("slow", self.slow),
        )


class _FaultDraw:
    """The seeded draw of one fault (or none) per request; thread-safe."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)
        self._lock = threading.Lock()

    def next(self, path: str) -> str:
        with self._lock:
            roll = self._random.random()
        for kind, rate in self.faults.kinds():
            if roll < rate:
                # a changed byte is only a fault where a hash can catch it: in a file
                return "" if kind == "corrupt" and not path.startswith("/packages/") else kind
            roll -= rate
        return ""


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
_OFFERS = {
    SIMPLE_JSON: SIMPLE_JSON,
    "application/vnd.pypi.simple.latest+json": SIMPLE_JSON,
    SIMPLE_HTML: SIMPLE_HTML,
    "application/vnd.pypi.simple.latest+html": SIMPLE_HTML,
    "text/html": "text/html",
    "text/*": "text/html",
    "*/*": "text/html",
}
_API_VERSION = "1.1"


def negotiate(accept: str | None, json_ok: bool = True) -> str | None:
    """PEP 691 content negotiation: the best-q type we serve, HTML when unspecified."""
    if not accept:
        return "text/html"
    best: tuple[float, int, str] | None = None
    for order, item in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                with contextlib.suppress(ValueError):
                    q = float(p[2:])
        offered = _OFFERS.get(kind.lower())
        if offered and q > 0 and (json_ok or offered != SIMPLE_JSON):
            key = (q, -order, offered)
            best = key if best is None or key[:2] > best[:2] else best
    return best[2] if best else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "olmirror-test-upstream/1"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the counts are the record, and pytest output stays readable."""

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        owner = self.server.owner
        if owner.is_down:
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        path = parts.path
        accept = self.headers.get("Accept", "") or ""
        agent = self.headers.get("User-Agent", "") or ""
        if not owner.authorized(self.headers.get("Authorization")):
            status, headers, body = _text(HTTPStatus.UNAUTHORIZED, "401 Unauthorized\n")
            headers["WWW-Authenticate"] = 'Basic realm="upstream"'
            self._send(status, headers, body, head, accept, agent, path, "")
            return
        fault = owner.draw_fault(path)
        if fault == "reset":
            # SO_LINGER 0: closing sends a TCP RST, as a dropped connection does
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            owner.counts.add(Hit(self.command, path, 0, 0, accept, "", fault, agent))
            return
        if fault == "slow":
            time.sleep(owner.faults.slow_seconds if owner.faults else 0)
        if fault == "unavailable":
            status, headers, body = _text(HTTPStatus.SERVICE_UNAVAILABLE, "injected 503\n")
        else:
            status, headers, body = owner.respond(path, parse_qs(parts.query), self.headers)
        if status != 200 and fault in ("cut", "corrupt"):
            fault = ""  # only a whole answer can be cut or changed
        if fault == "corrupt" and body:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        self._send(status, headers, body, head, accept, agent, path, fault)

    def _send(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        head: bool,
        accept: str,
        agent: str,
        path: str,
        fault: str,
    ) -> None:
        owner = self.server.owner
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        if status >= 400 or fault == "cut":
            self.send_header("Connection", "close")
            self.close_connection = True
        sent = 0
        try:
            self.end_headers()
            if not head:
                if fault == "cut":
                    body = body[: len(body) // 2]
                self.wfile.write(body)
                sent = len(body)
        except OSError:
            # the client gave up first (a late answer outlasts its timeout): the fault
            # still fired, so it is counted, with nothing sent
            self.close_connection = True
        finally:
            kind = headers.get("Content-Type", "")
            owner.counts.add(Hit(self.command, path, status, sent, accept, kind, fault, agent))


class _Server(ThreadingHTTPServer):
    """TLS is wrapped per connection in its handler thread, so a slow handshake blocks none."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, owner: Upstream, context: ssl.SSLContext) -> None:
        self.owner = owner
        self.context = context
        self.live: set[socket.socket] = set()
        self.live_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with self.live_lock:
            self.live.add(tls)
        try:
            super().finish_request(tls, client_address)
        except (OSError, ssl.SSLError, AttributeError, ValueError):
            pass  # the client went away, or down() cut the connection
        finally:
            with self.live_lock:
                self.live.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: object, client_address: tuple) -> None:
        """Connection errors are expected in failure-mode tests; nothing to print."""

    def cut_connections(self) -> None:
        with self.live_lock:
            live = list(self.live)
        for sock in live:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Upstream:
    """The running index: `url`, `simple_url`, `ca_file`, `catalogue`, `counts`, `env()`.

    Failure modes, all undone by `reset()`: `down()`/`up()`, `fail_after(n)`,
    `simple_only()`, `html_only()`, `tamper(filename)`, `flaky(faults)`,
    `require_auth(user, password)`, and the attributes below.
    """

    def __init__(self, folder: Path, projects: tuple[Project, ...] = PROJECTS) -> None:
        self.folder = folder
        self.catalogue = build_catalogue(folder / "files", projects)
        self.counts = Counts()
        self._by_url_path = {f.url_path: f for f in self.catalogue.all_files()}
        ca = trustme.CA(organization_name="olmirror test upstream")
        self.ca_file = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._context)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.is_down = False
        self._fail_after: int | None = None
        self._served_files = 0
        self._tampered: set[str] = set()
        self._draw: _FaultDraw | None = None
        self.serial_header = True  # send X-PyPI-Last-Serial (a proxy may strip it)
        self.json_api = True  # answer /pypi/NAME/json (Artifactory, Nexus, devpi do not)
        self.simple_json = True  # offer PEP 691 JSON; False: PEP 503 HTML only, as old indexes
        self.core_metadata = True  # PEP 658/714 metadata files, as PyPI serves for wheels
        self.etags = True  # an ETag on each page, and 304 to an If-None-Match that matches
        # HTTP basic auth every request must carry, as a private index asks; None: none
        self.basic_auth: tuple[str, str] | None = None

    # lifecycle ----------------------------------------------------------------------

    def start(self) -> Upstream:
        self.up()
        return self

    def stop(self) -> None:
        self.down()

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def up(self) -> None:
        """Listen again on the same port (the first call picks a free one)."""
        with self._lock:
            self.is_down = False
            if self._server is not None:
                return
            self._server = _Server(self.port, self, self._context)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever, name=f"upstream:{self.port}", daemon=True
            )
            self._thread.start()

    def down(self) -> None:
        """Close the listening socket and cut open connections: clients get refused."""
        with self._lock:
            self.is_down = True
            server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.cut_connections()
        if thread is not None:
            thread.join(timeout=10)

    # failure modes ------------------------------------------------------------------

    def fail_after(self, n: int | None) -> None:
        """Answer HTTP 500 to file downloads once `n` more have succeeded; None: never."""
        with self._lock:
            self._fail_after = n
            self._served_files = 0

    def simple_only(self, on: bool = True) -> None:
        """Behave like a proxy or Artifactory/Nexus/devpi: no serial header, no JSON API."""
        self.serial_header = not on
        self.json_api = not on

    def html_only(self, on: bool = True) -> None:
        """Offer only PEP 503 HTML on the simple API, so clients must parse the HTML pages."""
        self.simple_json = not on

    def tamper(self, filename: str, on: bool = True) -> None:
        """Serve `filename` (a `<wheel>.metadata` too) with one byte flipped (same size), so
        hash checks must catch it."""
        with self._lock:
            (self._tampered.add if on else self._tampered.discard)(filename)

    def require_auth(self, username: str | None, password: str = "") -> None:
        """Answer 401 (`WWW-Authenticate: Basic`) to every request, pages and files alike,
        that does not carry these credentials, as a private index does; None: never."""
        self.basic_auth = None if username is None else (username, password)

    def authorized(self, header: str | None) -> bool:
        """Whether a request with this Authorization header may be answered."""
        if self.basic_auth is None:
            return True
        token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
        return header == f"Basic {token}"

    def flaky(self, faults: Faults | None) -> None:
        """Meet requests with faults at random, at the rates of `faults`; None: never."""
        self._draw = _FaultDraw(faults) if faults else None

    @property
    def faults(self) -> Faults | None:
        return self._draw.faults if self._draw else None

    def draw_fault(self, path: str) -> str:
        """The fault for the request of `path` now: "" for none."""
        draw = self._draw
        return draw.next(path) if draw else ""

    def reset(self) -> None:
        """Back to a healthy, full-API upstream with zero counts (for a shared session)."""
        self.flaky(None)
        self.fail_after(None)
        self.simple_only(False)
        self.html_only(False)
        self.core_metadata = True
        self.etags = True
        self.require_auth(None)
        with self._lock:
            self._tampered.clear()
        self.up()
        self.counts.reset()

    # addresses and client environment -----------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def simple_url(self) -> str:
        return f"{self.url}/simple/"

    def file_url(self, filename: str) -> str:
        return self.url + self.catalogue.file(filename).url_path

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for pip, uv and bandersnatch subprocesses that must trust our CA.

        pip lets REQUESTS_CA_BUNDLE override --cert, aiohttp and uv read SSL_CERT_FILE,
        so all are pointed at the CA. PIP_*/UV_* settings and pip config files of this
        machine (find-links, extra indexes, constraints) are dropped so nothing but this
        index is consulted, and proxies are dropped so loopback is reached directly.
        """
        env = {
            k: v
            for k, v in (os.environ if base is None else base).items()
            if not k.startswith(("PIP_", "UV_"))
            and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        }
        ca = str(self.ca_file)
        env.update(
            REQUESTS_CA_BUNDLE=ca,
            CURL_CA_BUNDLE=ca,
            SSL_CERT_FILE=ca,
            PIP_CERT=ca,
            PIP_CONFIG_FILE=os.devnull,
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_NO_INPUT="1",
            UV_NO_CONFIG="1",
            UV_PYTHON_DOWNLOADS="never",
            NO_PROXY="127.0.0.1,localhost",
        )
        return env

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this upstream's CA (for urllib in tests)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    # routing ------------------------------------------------------------------------

    def respond(
        self, path: str, query: dict[str, list[str]], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """Route one request; returns status, headers and body."""
        if path.startswith("/packages/"):
            return self._file(path)
        if path in ("/simple", "/simple/"):
            if path == "/simple":
                return _redirect("/simple/")
            return self._simple(None, query, headers)
        m = re.fullmatch(r"/simple/([^/]+)(/?)", path)
        if m:
            name, slash = m.groups()
            if canonicalize_name(name) not in self.catalogue.projects:
                return _not_found()
            if name != canonicalize_name(name) or not slash:
                return _redirect(f"/simple/{canonicalize_name(name)}/")
            return self._simple(name, query, headers)
        m = re.fullmatch(r"/pypi/([^/]+)(?:/([^/]+))?/json/?", path)
        if m and self.json_api:
            name, version = m.groups()
            normal = canonicalize_name(name)
            if normal not in self.catalogue.projects or (
                version is not None and version not in self.catalogue.files[normal]
            ):
                return _json_status(HTTPStatus.NOT_FOUND)
            if name != normal:
                return _redirect(
                    f"/pypi/{normal}/{version}/json" if version else f"/pypi/{normal}/json"
                )
            return self._json(normal, version)
        return _not_found()

    def _serial_headers(self, serial: int) -> dict[str, str]:
        return {"X-PyPI-Last-Serial": str(serial)} if self.serial_header else {}

    def _file(self, path: str) -> tuple[int, dict[str, str], bytes]:
        built = self._by_url_path.get(path)
        if built is None:
            wheel = self._by_url_path.get(path.removesuffix(".metadata"))
            if (
                path.endswith(".metadata")
                and wheel
                and wheel.metadata_sha256
                and self.core_metadata
            ):
                data = wheel.path.with_name(wheel.filename + ".metadata").read_bytes()
                if wheel.filename + ".metadata" in self._tampered:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                return 200, {"Content-Type": "application/octet-stream"}, data
            return _not_found()
        with self._lock:
            if self._fail_after is not None and self._served_files >= self._fail_after:
                return _text(HTTPStatus.INTERNAL_SERVER_ERROR, "injected failure\n")
            self._served_files += 1
            tampered = built.filename in self._tampered
        data = built.path.read_bytes()
        if tampered:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return 200, {"Content-Type": "application/octet-stream"}, data

    def _simple(
        self, name: str | None, query: dict[str, list[str]], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        accept = query.get("format", [None])[0] or headers.get("Accept")
        kind = negotiate(accept, json_ok=self.simple_json)
        if kind is None:
            return _text(HTTPStatus.NOT_ACCEPTABLE, "406 Not Acceptable\n")
        serial = self.catalogue.project_serial(name) if name else self.catalogue.serial
        body = (
            (self._project_json(name) if name else self._index_json())
            if kind == SIMPLE_JSON
            else (self._project_html(name) if name else self._index_html())
        )
        head = {"Content-Type": kind, "Vary": "Accept", **self._serial_headers(serial)}
        if kind == "text/html":
            head["Content-Type"] = "text/html; charset=utf-8"
        if self.etags:
            head["ETag"] = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            if head["ETag"] in headers.get("If-None-Match", ""):
                return 304, head, b""
        return 200, head, body

    def _index_json(self) -> bytes:
        projects = [
            {"name": p.name, "_last-serial": self.catalogue.project_serial(n)}
            for n, p in sorted(self.catalogue.projects.items())
        ]
        meta = {"api-version": _API_VERSION, "_last-serial": self.catalogue.serial}
        return json.dumps({"meta": meta, "projects": projects}).encode()

    def _index_html(self) -> bytes:
        links = "".join(
            f'    <a href="/simple/{n}/">{html.escape(p.name)}</a>\n'
            for n, p in sorted(self.catalogue.projects.items())
        )
        return (
            "<!DOCTYPE html>\n<html>\n  <head>\n"
            f'    <meta name="pypi:repository-version" content="{_API_VERSION}">\n'
            "    <title>Simple index</title>\n  </head>\n  <body>\n"
            f"{links}  </body>\n</html>\n"
        ).encode()

    def _project_files(self, name: str) -> list[BuiltFile]:
        return sorted(self.catalogue.release_files(name), key=lambda f: f.filename)

    def _project_json(self, name: str) -> bytes:
        files = [
            {
                "filename": f.filename,
                "url": self.url + f.url_path,
                "hashes": {"sha256": f.sha256},
                "requires-python": f.requires_python,
                "yanked": (f.yanked_reason or True) if f.yanked else False,
                "size": f.size,
                "upload-time": f.upload_time_iso,
                **self._metadata_keys(f),
            }
            for f in self._project_files(name)
        ]
        doc = {
            "meta": {
                "api-version": _API_VERSION,
                "_last-serial": self.catalogue.project_serial(name),
            },
            "name": name,
            "versions": sorted(self.catalogue.files[name], key=Version),
            "files": files,
        }
        return json.dumps(doc).encode()

    def _metadata_keys(self, f: BuiltFile) -> dict[str, object]:
        """PEP 714 `core-metadata` and its older PEP 658 spelling, as PyPI sends both."""
        if not (self.core_metadata and f.metadata_sha256):
            return {}
        digest = {"sha256": f.metadata_sha256}
        return {"core-metadata": digest, "dist-info-metadata": digest}

    def _project_html(self, name: str) -> bytes:
        links = []
        for f in self._project_files(name):
            attrs = ""
            if f.requires_python:
                attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
            if f.yanked:
                attrs += f' data-yanked="{html.escape(f.yanked_reason)}"'
            if self.core_metadata and f.metadata_sha256:
                attrs += f' data-core-metadata="sha256={f.metadata_sha256}"'
                attrs += f' data-dist-info-metadata="sha256={f.metadata_sha256}"'
            href = html.escape(f"{self.url}{f.url_path}#sha256={f.sha256}")
            links.append(f'    <a href="{href}"{attrs}>{html.escape(f.filename)}</a><br/>\n')
        return (
            "<!DOCTYPE html>\n<html>\n  <head>\n"
            f'    <meta name="pypi:repository-version" content="{_API_VERSION}">\n'
            f"    <title>Links for {name}</title>\n  </head>\n  <body>\n"
            f"    <h1>Links for {name}</h1>\n{''.join(links)}  </body>\n</html>\n"
        ).encode()

    def _file_json(self, f: BuiltFile) -> dict[str, object]:
        """One file as PyPI's JSON API lists it (the keys bandersnatch reads, and more)."""
        return {
            "comment_text": "",
            "digests": {"md5": f.md5, "sha256": f.sha256, "blake2b_256": f.blake2b_256},
            "downloads": -1,
            "filename": f.filename,
            "has_sig": False,
            "md5_digest": f.md5,
            "packagetype": f.packagetype,
            "python_version": f.python_version,
            "requires_python": f.requires_python,
            "size": f.size,
            "upload_time": f.upload_time.strftime("%Y-%m-%dT%H:%M:%S"),
            "upload_time_iso_8601": f.upload_time_iso,
            "url": self.url + f.url_path,
            "yanked": f.yanked,
            "yanked_reason": f.yanked_reason or None,
        }

    def _json(self, name: str, version: str | None) -> tuple[int, dict[str, str], bytes]:
        project = self.catalogue.projects[name]
        per_version = self.catalogue.files[name]
        stable = [
            r for r in project.releases if not r.yanked and not Version(r.version).is_prerelease
        ]
        latest = max(stable or project.releases, key=lambda r: Version(r.version)).version
        shown = version or latest
        release = project.release(shown)
        serial = self.catalogue.project_serial(name)
        info = {
            "author": "olmirror tests",
            "author_email": "",
            "bugtrack_url": None,
            "classifiers": [],
            "description": "",
            "description_content_type": "text/plain",
            "docs_url": None,
            "download_url": "",
            "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
            "dynamic": None,
            "home_page": "",
            "keywords": "",
            "license": "",
            "maintainer": "",
            "maintainer_email": "",
            "name": project.name,
            "package_url": f"{self.url}/project/{name}/",
            "platform": None,
            "project_url": f"{self.url}/project/{name}/",
            "project_urls": None,
            "provides_extra": list(release.extras) or None,
            "release_url": f"{self.url}/project/{name}/{shown}/",
            "requires_dist": list(release.requires) or None,
            "requires_python": release.requires_python or "",
            "summary": project.summary,
            "version": shown,
            "yanked": release.yanked,
            "yanked_reason": release.yanked_reason or None,
        }
        doc: dict[str, object] = {
            "info": info,
            "last_serial": serial,
            "urls": [self._file_json(f) for f in per_version[shown]],
            "vulnerabilities": [],
        }
        if version is None:  # version-specific answers carry no "releases", as on PyPI
            doc["releases"] = {
                v: [self._file_json(f) for f in fs]
                for v, fs in sorted(per_version.items(), key=lambda kv: Version(kv[0]))
            }
        head = {"Content-Type": "application/json", **self._serial_headers(serial)}
        return 200, head, json.dumps(doc).encode()


def _redirect(location: str) -> tuple[int, dict[str, str], bytes]:
    return HTTPStatus.MOVED_PERMANENTLY, {"Location": location}, b""


def _text(status: HTTPStatus, text: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode()


def _not_found() -> tuple[int, dict[str, str], bytes]:
    return _text(HTTPStatus.NOT_FOUND, "404 Not Found\n")


def _json_status(status: HTTPStatus) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"message": status.phrase}).encode()
    return status, {"Content-Type": "application/json"}, body


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_upstream(folder: Path, projects: tuple[Project, ...] = PROJECTS) -> Iterator[Upstream]:
    """Build and serve an upstream for the life of the block (outside pytest too)."""
    upstream = Upstream(folder, projects)
    with upstream:
        yield upstream


@pytest.fixture(scope="session")
def upstream_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """One upstream for the whole session: building and serving it once keeps tests fast."""
    with running_upstream(tmp_path_factory.mktemp("upstream")) as upstream:
        yield upstream


@pytest.fixture
def clean_upstream(upstream_index: Upstream) -> Iterator[Upstream]:
    """The session upstream, healthy and with zero counts, restored after the test too."""
    upstream_index.reset()
    yield upstream_index
    upstream_index.reset()
