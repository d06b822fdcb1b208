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
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

LOCAL = "local"

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# A lambda's folder or <name>.tar.gz in the registry: no dots, so never requirements.txt.
LAMBDA_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
PYTHON_PATTERN = r"^3\.[0-9]{1,2}$"
PLATFORM_PATTERN = r"^(manylinux|musllinux|linux|macosx|win)_?[a-z0-9_]*$|^win32$|^any$"
IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"

# What to write instead, for a value that does not match one of the patterns above:
# the loader puts these in its messages rather than the bare regular expression.
PATTERN_HINTS = {
    NAME_PATTERN: (
        "a name uses only letters, digits, '.', '_' and '-', starts with a letter or digit "
        "and is at most 63 characters, for example 'worker-a'"
    ),
    PYTHON_PATTERN: 'write the Python version as MAJOR.MINOR in quotes, for example "3.12"',
    PLATFORM_PATTERN: (
        "write a wheel platform tag, for example manylinux_2_28_x86_64, manylinux_2_17_aarch64, "
        "musllinux_1_2_x86_64, macosx_11_0_arm64, win_amd64, or 'any'"
    ),
    LAMBDA_NAME_PATTERN: (
        "a lambda's name uses only letters, digits, '_' and '-', starts with a letter or "
        "digit and is at most 63 characters, for example 'scraper'"
    ),
    IMAGE_PATTERN: (
        "an image name uses letters, digits and . _ : / -, starting with a letter or digit, "
        "for example 'ol-min'"
    ),
}

Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(description="Letters, digits, '.', '_' and '-', starting with a letter or digit."),
]
LambdaName = Annotated[
    str,
    StringConstraints(pattern=LAMBDA_NAME_PATTERN),
    Field(description="Letters, digits, '_' and '-', starting with a letter or digit."),
]

_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")

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


def _config_path(value: str) -> str:
    """A path that is written into configuration files (bandersnatch.conf, nginx.conf,
    pip.conf): one line, so that it can never add a line of its own."""
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError(
            f"{value!r} holds a line break or control character; this path is written into "
            "configuration files (bandersnatch.conf, nginx.conf), so choose one without them"
        )
    return value


def _is_host(text: str) -> bool:
    """An IP address (v6 without brackets) or a DNS host name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return bool(_HOSTNAME.fullmatch(text)) and len(text) <= 253
    return True


def redacted(value: str) -> str:
    """`value` with any user name and password of a URL in it replaced by ***."""
    if "//" in value:
        return re.sub(r"(?<=//)[^/?#@]*@", "***@", value)
    return re.sub(r"^[^/?#@:\s]*:[^/?#@\s]*@", "***@", value)


def _http_url(value: str) -> str:
    shown = redacted(value)  # whatever else is wrong, a password is never echoed
    if shown != value:
        raise ValueError(
            f"the URL {shown!r} carries a user name or password; a spec is kept in version "
            "control, so give the URL without them"
        )
    if re.search(r"[\s\x00-\x1f\x7f]", value):
        raise ValueError(
            f"{value!r} holds a space or a control character, which no URL may hold and which "
            "would reach generated files (pip.conf, nginx.conf); remove it"
        )
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL; write it like 'http://10.0.0.5:8080'")
    if parts.query or parts.fragment:
        raise ValueError(
            f"{value!r} must not carry a query or fragment; remove everything from '?' or '#'"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(
            f"{value!r} has an invalid port; write the port as a number from 1 to 65535"
        ) from None
    if not _is_host(parts.hostname):
        raise ValueError(
            f"{value!r}: {parts.hostname!r} is not an IP address or host name; "
            "write it like 'http://10.0.0.5:8080'"
        )
    return value


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT; write it like '0.0.0.0:8080' or '[::]:8080'")
    if not 0 < int(port) < 65536:
        raise ValueError(
            f"{value!r}: port {int(port)} is out of range; use a port from 1 to 65535, "
            "like '0.0.0.0:8080'"
        )
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    if not _is_host(bare):
        raise ValueError(
            f"{value!r}: {bare!r} is not an IP address or host name; "
            "write it like '0.0.0.0:8080' or '[::]:8080'"
        )
    if ":" in bare and not bracketed:
        raise ValueError(f"{value!r}: put an IPv6 address in brackets, like '[{bare}]:{port}'")
    return value


def _address(value: str) -> str:
    if not _is_host(value):
        raise ValueError(
            f"{value!r} is not an IP address or host name; write it like '10.0.0.5' or "
            "'worker-a.example.org' (a port goes in 'port', a user in 'user')"
        )
    return value


def _user(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9._-]{0,31}", value):
        raise ValueError(
            f"{value!r} is not a login name; use letters, digits, '.', '_' and '-', "
            "starting with a letter or '_', for example 'ol'"
        )
    return value


def _ssh_alias(value: str) -> str:
    """OpenSSH's own rule for a host name (ssh.c valid_hostname, since 9.6, CVE-2023-51385):
    ~/.ssh/config may hand it to a shell (`Match exec`, `%n`), so no shell metacharacter."""
    if not value or value.startswith("-") or re.search(r"[\s\x00-\x1f\x7f'`\"$\\;&<>|(){}]", value):
        raise ValueError(
            f"{value!r} is not a Host entry name of ~/.ssh/config that OpenSSH accepts; write "
            "the name as it follows 'Host', without spaces, quotes or shell characters "
            "('`\"$\\;&<>|(){}) and not starting with '-'"
        )
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(
            f"{value!r} is not an environment variable name; give the name of the variable "
            "that holds the password, like 'OLMIRROR_SUDO_PASSWORD', never the password"
        )
    return value


RequirementStr = Annotated[str, AfterValidator(_requirement)]
ProjectName = Annotated[str, AfterValidator(_project_name)]
PathStr = Annotated[str, AfterValidator(_path)]
ConfigPath = Annotated[str, AfterValidator(_path), AfterValidator(_config_path)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Listen = Annotated[str, AfterValidator(_listen)]
Address = Annotated[str, AfterValidator(_address)]
User = Annotated[str, AfterValidator(_user)]
SshAlias = Annotated[str, AfterValidator(_ssh_alias)]
EnvName = Annotated[str, AfterValidator(_env_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Host(_Model):
    """How to reach one machine. `local` needs no entry; every other host is reached over SSH."""

    address: Address | None = Field(None, description="Host name or IP address to connect to.")
    port: int = Field(22, ge=1, le=65535)
    user: User | None = None
    identity_file: PathStr | None = Field(None, description="Private key file (on this machine).")
    ssh_alias: SshAlias | None = Field(
        None, description="A Host entry of ~/.ssh/config to take HostName, User, Port... from."
    )
    known_hosts: PathStr | None = Field(
        None, description="known_hosts file to verify host keys against (default: the user's)."
    )
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict", description="'accept-new' records the key of a host seen for the first time."
    )
    become: bool = Field(False, description="Run privileged steps through sudo.")
    become_password_env: EnvName | None = Field(
        None, description="Environment variable holding the sudo password (never the password)."
    )
    ol: PathStr = Field("ol", description="The OpenLambda `ol` program on this host.")
    python: PathStr | None = Field(
        None,
        description="The Python that runs olmirror's own programs on this host (its fact "
        "probe, lock and fetcher; standard library only, any Python 3.7+), as Ansible's "
        "ansible_python_interpreter. By default python3 from PATH, unless that is a script "
        "(a version manager's shim: pyenv, asdf), which can cost more than the probe itself: "
        "then /usr/bin/python3 or /usr/local/bin/python3 if there is one.",
    )
    state_dir: PathStr | None = Field(
        None,
        description="Folder for olmirror's lock on this host (default ~/.local/state/olmirror).",
    )
    facts_timeout: float = Field(
        600,
        gt=0,
        le=86400,
        description="Seconds the host may take to answer olmirror's one fact-reading command "
        "before it is reported as stalled.",
    )


class Target(_Model):
    """A Python environment that installs from the mirror."""

    python: Annotated[str, StringConstraints(pattern=PYTHON_PATTERN)] = Field(
        description="Python version as MAJOR.MINOR, e.g. '3.12'."
    )
    platform: Annotated[str, StringConstraints(pattern=PLATFORM_PATTERN)] = Field(
        description="Wheel platform tag, e.g. manylinux_2_28_x86_64."
    )


class Serve(_Model):
    """How workers reach the mirror's web directory."""

    backend: Literal["filesystem", "http"] = "filesystem"
    listen: Listen | None = Field(None, description="HOST:PORT the web server listens on (http).")
    url: HttpUrl | None = Field(None, description="Base URL workers use, without /simple (http).")


class Retries(_Model):
    """How hard olmirror, uv and the mirror's fetcher try one request to the upstream."""

    attempts: int = Field(
        5,
        ge=1,
        le=50,
        description="Tries of one request, the first included. A 429, a 5xx, a reset, cut or "
        "timed-out connection, a failed DNS lookup, or a file whose sha256 is wrong is tried "
        "again; a 404, 401 or 403 never is.",
    )
    backoff: float = Field(
        0.5,
        ge=0,
        le=60,
        description="Seconds before the second try; each later wait doubles (at most 30 s), "
        "half of it drawn at random. A Retry-After from the upstream is honoured instead.",
    )
    within: float = Field(
        120,
        gt=0,
        le=3600,
        description="Seconds one request may go on trying after its first failure (its "
        "waits and later tries): no new try starts past it.",
    )


class Mirror(_Model):
    host: Name = LOCAL
    engine: Literal["auto", "bandersnatch", "simple"] = Field(
        "auto",
        description="bandersnatch syncs from an upstream with the JSON API and serial headers; "
        "simple fetches the locked files over the simple API alone (any index, any proxy); "
        "auto probes the upstream once and picks.",
    )
    directory: ConfigPath = Field(
        description="bandersnatch's [mirror] directory; the web root is <directory>/web."
    )
    upstream: HttpUrl | None = Field(
        None, description="Index to mirror; null keeps bandersnatch's default."
    )
    file_origins: list[HttpUrl] = Field(
        [],
        description="Origins (scheme://host[:port]) other than the upstream's from which "
        "its pages may have files fetched. With an upstream set, a file elsewhere is refused "
        "unless its origin is listed here; bandersnatch's default upstream keeps any https "
        "origin.",
    )
    ca_file: PathStr | None = Field(
        None,
        description="CA bundle (on this machine) that signs the upstream's certificate; "
        "olmirror uses it to resolve and copies it to the mirror host for bandersnatch.",
    )
    serve: Serve = Serve()
    targets: list[Target] = Field(min_length=1)
    index_timeout: float = Field(
        30,
        gt=0,
        le=3600,
        description="Seconds the upstream may stay silent on one request while olmirror (and "
        "uv) read its pages; a silent upstream then fails in this time, not minutes.",
    )
    download_timeout: float = Field(
        300,
        gt=0,
        le=86400,
        description="Seconds one file's download may take before olmirror gives up on it "
        "(engine simple); a larger file may take longer, at 50 kB/s, so that a body that "
        "drips or never ends fails, not the apply.",
    )
    retries: Retries = Retries()


class Allowlist(_Model):
    packages: list[RequirementStr] = []
    requirements: list[PathStr] = Field([], description="requirements files, relative to the spec.")
    from_registry: bool = Field(
        False,
        description="Also mirror the lambdas already in each worker's registry: every "
        "<registry>/<lambda>/requirements.in (or requirements.txt without one) found there.",
    )
    block: list[ProjectName] = []


class Lambda(_Model):
    """One lambda in a worker's registry: <registry>/<name>/, as OpenLambda lays it out."""

    requirements: list[RequirementStr] = Field(
        [], description="The lambda's requirements.in lines; olmirror compiles requirements.txt."
    )
    source: PathStr | None = Field(
        None,
        description="A lambda folder (relative to the spec) whose files (f.py, "
        "requirements.in...) are copied into the registry; its requirements.in is compiled.",
    )


class Worker(_Model):
    name: Name
    host: Name = LOCAL
    path: PathStr = Field(description="The worker directory, as in `ol worker init -p PATH`.")
    image: Annotated[str, StringConstraints(pattern=IMAGE_PATTERN)] = "ol-min"
    requirements: list[RequirementStr] = Field(
        [], description="The registry-level requirements.in (<registry>/requirements.in)."
    )
    lambdas: dict[LambdaName, Lambda] = Field(
        {}, description="Lambdas olmirror writes into the worker's registry, by name."
    )
    state: Literal["running", "stopped"] = "running"
    target: Target | Literal["detect"] | None = Field(
        None,
        description="The mirror target this worker's Python matches (optional with one target), "
        "or 'detect': the target that the Python of the worker's sandbox (its base image, "
        "<path>/lambda) can install.",
    )
    openlambda: Literal["auto", "main", "legacy"] = Field(
        "auto",
        description="Which OpenLambda runs the worker: 'main' keeps lambdas as <name>.tar.gz "
        "in the registry, 'legacy' (the branch of the pip-mirror procedure) as folders; "
        "'auto' tells them apart by the worker's config.json.",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="The worker's HTTP port (config.json worker_port; OpenLambda's default "
        "is 5000). Workers on one host need different ports.",
    )
    ol: PathStr | None = Field(
        None, description="This worker's `ol` program, when it is not its host's `ol`."
    )
    stale_packages: Literal["report", "remove"] = Field(
        "report",
        description="Folders of the worker's Pkgs_dir that OpenLambda would reuse but that do "
        "not hold the locked version: 'report' lists them in the plan, 'remove' also deletes "
        "them so the next call installs from the mirror.",
    )


class Spec(_Model):
    """An olmirror spec: the mirror, what it allows, and the workers it serves."""

    model_config = ConfigDict(title="olmirror spec")

    version: Literal[1]
    hosts: dict[Name, Host] = {}
    mirror: Mirror
    allowlist: Allowlist = Allowlist()
    workers: list[Worker] = []

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_an_int(cls, value: object) -> object:
        # Literal[1] alone would take `true` and `1.0`, which equal 1 in Python.
        if type(value) is not int:
            raise ValueError(
                f"version must be the number 1, got {type(value).__name__} {value!r}; "
                "write 'version: 1'"
            )
        return value


def host_config(spec: Spec, name: str) -> Host:
    """The settings of host `name`; `local` needs no entry in the spec."""
    return spec.hosts.get(name, Host()) if name == LOCAL else spec.hosts[name]
