"""The spec file's shape, as pydantic models.

Field-level rules live here; rules that relate one part of the spec to another
(a worker's host must exist, names are unique) live in `checks.py`, so that each
error can point at the exact field that is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

LOCAL = "local"

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"),
    Field(description="Letters, digits, '.', '_' and '-', starting with a letter or digit."),
]

_PROJECT_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$", re.I)


def _requirement(value: str) -> str:
    """A PEP 508 requirement from an index: no URLs, nothing a shell could read twice."""
    try:
        req = Requirement(value)
    except InvalidRequirement as exc:
        raise ValueError(
            f"{value!r} is not a PEP 508 requirement ({str(exc).splitlines()[0]}); "
            "write it as NAME[extras]SPECIFIER, "
            "for example 'requests>=2.31'"
        ) from None
    if req.url:
        raise ValueError(
            f"{value!r} names a URL; a mirror can only hold packages from its index, "
            "so give a name and version instead"
        )
    return value


def _project_name(value: str) -> str:
    if not _PROJECT_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid package name (PEP 508: letters, digits, . _ -)")
    return value


def _path(value: str) -> str:
    if not value or "\0" in value:
        raise ValueError("a path must be non-empty and must not contain NUL bytes")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL; write it like 'http://10.0.0.5:8080'")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r} must not carry a query or fragment")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT; write it like '0.0.0.0:8080' or '[::]:8080'")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
            raise ValueError(f"{value!r}: {host!r} is not an IP address or host name") from None
    return value


RequirementStr = Annotated[str, AfterValidator(_requirement)]
ProjectName = Annotated[str, AfterValidator(_project_name)]
PathStr = Annotated[str, AfterValidator(_path)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Listen = Annotated[str, AfterValidator(_listen)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Host(_Model):
    """How to reach one machine. `local` needs no entry; every other host is reached over SSH."""

    address: str | None = Field(None, description="Host name or IP address to connect to.")
    port: int = Field(22, ge=1, le=65535)
    user: str | None = None
    identity_file: PathStr | None = Field(None, description="Private key file (on this machine).")
    ssh_alias: str | None = Field(
        None, description="A Host entry of ~/.ssh/config to take HostName, User, Port... from."
    )
    known_hosts: PathStr | None = Field(
        None, description="known_hosts file to verify host keys against (default: the user's)."
    )
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict", description="'accept-new' records the key of a host seen for the first time."
    )
    become: bool = Field(False, description="Run privileged steps through sudo.")
    become_password_env: str | None = Field(
        None, description="Environment variable holding the sudo password (never the password)."
    )
    ol: PathStr = Field("ol", description="The OpenLambda `ol` program on this host.")
    state_dir: PathStr | None = Field(
        None,
        description="Folder for olmirror's lock on this host (default ~/.local/state/olmirror).",
    )


class Target(_Model):
    """A Python environment that installs from the mirror."""

    python: Annotated[str, StringConstraints(pattern=r"^3\.[0-9]{1,2}$")] = Field(
        description="Python version as MAJOR.MINOR, e.g. '3.12'."
    )
    platform: Annotated[
        str,
        StringConstraints(
            pattern=r"^(manylinux|musllinux|linux|macosx|win)_?[a-z0-9_]*$|^win32$|^any$"
        ),
    ] = Field(description="Wheel platform tag, e.g. manylinux_2_28_x86_64.")


class Serve(_Model):
    """How workers reach the mirror's web directory."""

    backend: Literal["filesystem", "http"] = "filesystem"
    listen: Listen | None = Field(None, description="HOST:PORT the web server listens on (http).")
    url: HttpUrl | None = Field(None, description="Base URL workers use, without /simple (http).")


class Mirror(_Model):
    host: Name = LOCAL
    engine: Literal["bandersnatch"] = "bandersnatch"
    directory: PathStr = Field(
        description="bandersnatch's [mirror] directory; the web root is <directory>/web."
    )
    upstream: HttpUrl | None = Field(
        None, description="Index to mirror; null keeps bandersnatch's default."
    )
    serve: Serve = Serve()
    targets: list[Target] = Field(min_length=1)


class Allowlist(_Model):
    packages: list[RequirementStr] = []
    requirements: list[PathStr] = Field([], description="requirements files, relative to the spec.")
    block: list[ProjectName] = []


class Worker(_Model):
    name: Name
    host: Name = LOCAL
    path: PathStr = Field(description="The worker directory, as in `ol worker init -p PATH`.")
    image: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")] = "ol-min"
    requirements: list[RequirementStr] = []
    state: Literal["running", "stopped"] = "running"


class Spec(_Model):
    """An olmirror spec: the mirror, what it allows, and the workers it serves."""

    model_config = ConfigDict(title="olmirror spec")

    version: Literal[1]
    hosts: dict[Name, Host] = {}
    mirror: Mirror
    allowlist: Allowlist = Allowlist()
    workers: list[Worker] = []
