"""The spec's values, each checked on its own: names, Python versions and platform tags,
requirements, paths, URLs, listen addresses, users and SSH aliases. `models.py` builds the
spec's shape from these types.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import AfterValidator, Field, StringConstraints

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


def _whole(pattern: str, problem: Callable[[str], str]) -> AfterValidator:
    """A value that `pattern` must match whole; `problem(value)` says why not and the fix."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(problem(value))
        return value

    return AfterValidator(check)


RequirementStr = Annotated[str, AfterValidator(_requirement)]
ProjectName = Annotated[str, AfterValidator(_project_name)]
PathStr = Annotated[str, AfterValidator(_path)]
ConfigPath = Annotated[str, AfterValidator(_path), AfterValidator(_config_path)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Listen = Annotated[str, AfterValidator(_listen)]
Address = Annotated[str, AfterValidator(_address)]
User = Annotated[
    str,
    _whole(
        r"[A-Za-z_][A-Za-z0-9._-]{0,31}",
        lambda v: (
            f"{v!r} is not a login name; use letters, digits, '.', '_' and '-', starting "
            "with a letter or '_', for example 'ol'"
        ),
    ),
]
SshAlias = Annotated[str, AfterValidator(_ssh_alias)]
# S3's rules for a bucket name (no dots: a dotted name breaks virtual-host TLS).
BucketName = Annotated[
    str,
    _whole(
        r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]",
        lambda v: (
            f"{v!r} is not an S3 bucket name; use 3 to 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, like 'ol-mirror'"
        ),
    ),
]
# Key prefix segments that a URL path carries unquoted: no empty segment, none starting
# with '.' (so no '.' or '..'), nothing a shell or the store would read otherwise.
KeyPrefix = Annotated[
    str,
    _whole(
        r"|[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*",
        lambda v: (
            f"{v!r} is not a key prefix; give folder names of letters, digits, '.', '_' and "
            "'-' joined by '/', without a '/' at either end, like 'pypi' or 'ol/mirror'"
        ),
    ),
]
Region = Annotated[
    str,
    _whole(
        r"[a-z0-9][a-z0-9-]{0,31}",
        lambda v: f"{v!r} is not a region name; write it like 'us-east-1'",
    ),
]
EnvName = Annotated[
    str,
    _whole(
        r"[A-Za-z_][A-Za-z0-9_]*",
        lambda v: (
            f"{v!r} is not an environment variable name; give the name of the variable "
            "that holds the password, like 'OLMIRROR_SUDO_PASSWORD', never the password"
        ),
    ),
]
