"""A private upstream's credentials: where they come from, and their values when olmirror
talks to the upstream.

Resources are saved in plan files as JSON, so a resource holds only the `AuthSource`, the
names of the variables (or netrc), never a secret; the values are read at run time and
travel only in an `Authorization` header to the upstream's own origin, in uv's environment
and on the fetcher's stdin (never in argv, a file, the lock, a plan or a message).
Without `mirror.upstream_auth`, `~/.netrc` (or the file `$NETRC` names) is read for the
upstream's host, as pip, uv and curl do.
"""

from __future__ import annotations

import base64
import logging
import netrc
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from olmirror.errors import OlmirrorError
from olmirror.remote.upstream_http import Auth, origin
from olmirror.spec.models import UpstreamAuth

log = logging.getLogger(__name__)

# ("env", user variable, password variable) | ("token", variable) | ("netrc",): a tuple, so
# that a resource holding it is saved in a plan and read back as it is.
AuthSource = tuple[str, ...]
NETRC: AuthSource = ("netrc",)
TOKEN_USER = "__token__"  # the user name a token is sent with, as PyPI and devpi take it
FIELD = "mirror.upstream_auth"


def auth_source(auth: UpstreamAuth | None) -> AuthSource:
    """Where the spec's `mirror.upstream_auth` says the credentials are."""
    if auth is None:
        return NETRC
    if auth.token_env:
        return ("token", auth.token_env)
    return ("env", auth.username_env or "", auth.password_env or "")


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


def _netrc_path() -> Path:
    return Path(os.environ.get("NETRC") or Path("~/.netrc").expanduser())


def describe(source: AuthSource) -> str:
    """Where credentials come from, for messages: variable names and paths, never values."""
    if source[0] == "token":
        return f"{FIELD}.token_env (${source[1]})"
    if source[0] == "env":
        return f"{FIELD} (${source[1]}, ${source[2]})"
    return f"$NETRC ({_netrc_path()})" if os.environ.get("NETRC") else "~/.netrc"


@dataclass(frozen=True)
class Credentials:
    """A user name and password for HTTP basic auth, and where they came from."""

    username: str
    password: str  # never shown: see __repr__
    source: str  # `describe`'s words

    def header(self) -> str:
        """The value of the `Authorization` header that carries them."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***, source={self.source!r})"


def _variable(name: str, key: str, holds: str) -> str:
    """The value of the variable `name` that the spec's `mirror.upstream_auth.<key>` names."""
    value = os.environ.get(name, "")
    if not value:
        raise OlmirrorError(
            f"{FIELD}.{key} names the environment variable {name}, but it is not set (or is "
            f"empty) where olmirror runs; export {name} with {holds} before running olmirror, "
            f"or name another variable in {FIELD}.{key}"
        )
    return value


def _from_netrc(host: str) -> tuple[str, str] | None:
    """(login, password) of the netrc entry for `host` (or its `default`), if any. A file
    that cannot be read gives none, as pip and curl carry on without it, said in --debug."""
    path = _netrc_path()
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError) as exc:
        log.debug("%s cannot be read, so no credentials come from it: %s", path, exc)
        return None
    if entry is None:
        return None
    login, _, password = entry
    return login or "", password or ""


def credentials(source: AuthSource, upstream: str) -> Credentials | None:
    """The credentials for `upstream` now: from the variables the spec names (an unset one
    is an error naming the field), else from netrc for its host; None without any."""
    where = describe(source)
    if source[0] == "token":
        return Credentials(TOKEN_USER, _variable(source[1], "token_env", "the token"), where)
    if source[0] == "env":
        user = _variable(source[1], "username_env", "the user name")
        return Credentials(user, _variable(source[2], "password_env", "the password"), where)
    found = _from_netrc(_host(upstream))
    return Credentials(*found, f"{where} (machine {_host(upstream)})") if found else None


def credentials_from(source: AuthSource, upstream: str) -> str | None:
    """Where the upstream's credentials come from, None when it is read without any; their
    values are not read (a plan that changes nothing needs none)."""
    if source[0] == NETRC[0] and _from_netrc(_host(upstream)) is None:
        return None
    return describe(source)


def client_auth(found: Credentials | None, upstream: str) -> Auth:
    """What olmirror's HTTP client sends with `found`, and to which origin only: the
    upstream's."""
    if found is None:
        return Auth(origin(upstream), None, None)
    return Auth(origin(upstream), found.header(), found.source)
