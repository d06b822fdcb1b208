"""A private upstream's credentials: where they come from, and their values when olmirror
talks to the upstream.

Resources are saved in plan files as JSON, so a resource holds only the `AuthSource`, the
names of the variables (or netrc), never a secret; the values are read at run time and
travel only in an `Authorization` header to the upstream's own origin, in uv's environment
and on the fetcher's stdin (never in argv, a file, the lock, a plan or a message: what uv
and a build print passes through `redact` first).
Without `mirror.upstream_auth`, `~/.netrc` (or the file `$NETRC` names) is read for the
upstream's host, as pip, uv and curl do, but only its entry for that very host: a
`default` entry would send its password to any upstream, the public index included.
"""

from __future__ import annotations

import base64
import logging
import netrc
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from olmirror.errors import OlmirrorError
from olmirror.remote.upstream_http import Auth, origin
from olmirror.spec.models import UpstreamAuth

log = logging.getLogger(__name__)


class AuthSource(NamedTuple):
    """Where a private upstream's credentials are: the variables `mirror.upstream_auth`
    names (`env`: a user name and a password; `token`: a token) or netrc. Names, never
    values; a tuple, so that a resource holding it is saved in a plan and read back as it is.
    """

    kind: Literal["netrc", "env", "token"]
    username_env: str = ""
    password_env: str = ""
    token_env: str = ""


NETRC = AuthSource("netrc")
TOKEN_USER = "__token__"  # the user name a token is sent with, as PyPI and devpi take it
FIELD = "mirror.upstream_auth"


def auth_source(auth: UpstreamAuth | None) -> AuthSource:
    """Where the spec's `mirror.upstream_auth` says the credentials are."""
    if auth is None:
        return NETRC
    if auth.token_env:
        return AuthSource("token", token_env=auth.token_env)
    return AuthSource("env", auth.username_env or "", auth.password_env or "")


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


def _netrc_path() -> Path:
    return Path(os.environ.get("NETRC") or Path("~/.netrc").expanduser())


def describe(source: AuthSource) -> str:
    """Where credentials come from, for messages: variable names and paths, never values."""
    if source.kind == "token":
        return f"{FIELD}.token_env (${source.token_env})"
    if source.kind == "env":
        return f"{FIELD} (${source.username_env}, ${source.password_env})"
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


def _read_netrc() -> tuple[dict[str, tuple[str, str]], str | None]:
    """(login, password) by lower-case host name of each `machine` of the netrc file, and
    what kept it from being read, if anything: a file that cannot be read gives none, as
    pip and curl carry on without it. Neither the reason nor the --debug log quotes the
    file (the parser's message names the token it stumbled on: a password, maybe)."""
    path = _netrc_path()
    if not path.is_file():
        return {}, None
    try:
        parsed = netrc.netrc(str(path))
    except netrc.NetrcParseError as exc:
        problem = f"olmirror cannot parse it (line {exc.lineno})"
    except OSError as exc:
        problem = f"olmirror cannot read it ({exc.strerror or exc.__class__.__name__})"
    else:
        # `default` (stored under that name) is no entry of a host: `authenticators` falls
        # back to it for any host, and so would send its password anywhere
        return {
            name.lower(): (login or "", password or "")
            for name, (login, _, password) in parsed.hosts.items()
            if name != "default"
        }, None
    log.debug("%s: %s, so no credentials come from it", path, problem)
    return {}, problem


def _from_netrc(host: str) -> tuple[str, str] | None:
    """(login, password) of the netrc entry for exactly `host`, if there is one."""
    return _read_netrc()[0].get(host.lower()) if host else None


def credentials(source: AuthSource, upstream: str) -> Credentials | None:
    """The credentials for `upstream` now: from the variables the spec names (an unset one
    is an error naming the field), else from netrc for its host; None without any."""
    where = describe(source)
    if source.kind == "token":
        return Credentials(TOKEN_USER, _variable(source.token_env, "token_env", "the token"), where)
    if source.kind == "env":
        user = _variable(source.username_env, "username_env", "the user name")
        password = _variable(source.password_env, "password_env", "the password")
        return Credentials(user, password, where)
    found = _from_netrc(_host(upstream))
    return Credentials(*found, f"{where} (machine {_host(upstream)})") if found else None


def credentials_from(source: AuthSource, upstream: str) -> str | None:
    """Where the upstream's credentials come from, None when it is read without any; their
    values are not read (a plan that changes nothing needs none)."""
    if source.kind == "netrc" and _from_netrc(_host(upstream)) is None:
        return None
    return describe(source)


def _none_found(host: str) -> str:
    """What to do when the upstream at `host` asks for credentials and has none (netrc, as
    `credentials` raises for the spec's variables): set some, or mend the netrc file."""
    where = describe(NETRC)
    problem = _read_netrc()[1]
    if problem:
        return (
            f"set {FIELD}, or mend {where}: {problem}, so no credentials came from it; "
            f"give the machine {host} an entry there"
        )
    return f"set {FIELD} or add the host {host} to {where}"


def client_auth(found: Credentials | None, upstream: str) -> Auth:
    """What olmirror's HTTP client sends with `found`, and to which origin only: the
    upstream's; without credentials, what to do should the upstream ask for some."""
    if found is None:
        return Auth(origin(upstream), None, _none_found(_host(upstream)))
    return Auth(origin(upstream), found.header(), found.source)


def redact(text: str, found: Credentials | None) -> str:
    """`text` (what uv, or a build it runs, printed) with each form of the secret in
    `found` as `***`: the `Authorization` header, its base64 `user:password`, the password
    as it is and as a URL holds it. Applied to uv's output before any of it reaches a
    message, an error, the --debug log or the lock: a build backend sees uv's environment
    and may print it."""
    if found is None or not text:
        return text
    header = found.header()
    pair = header.removeprefix("Basic ")
    forms = {
        header,
        pair,
        pair.rstrip("="),
        found.password,
        urllib.parse.quote(found.password, safe=""),
        urllib.parse.quote_plus(found.password),
    }
    for form in sorted((f for f in forms if f), key=len, reverse=True):
        text = text.replace(form, "***")
    return text
