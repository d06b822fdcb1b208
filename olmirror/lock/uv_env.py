"""The environment every uv that olmirror runs gets: the upstream's CA and credentials, uv's
own timeouts and retries from the spec, and none of this machine's settings that would send
uv to another index or fetch a Python.

uv takes an index's credentials from the variables `UV_INDEX_<NAME>_USERNAME` and
`UV_INDEX_<NAME>_PASSWORD` of a named index (`--default-index <name>=<url>`; uv's
`Index::credentials` in crates/uv-distribution-types/src/index.rs, its `EnvVars::
index_username`): so they stay out of uv's argv and off disk.
"""

from __future__ import annotations

import os
import re
from math import ceil

from olmirror.lock.upstream_auth import Credentials, client_auth
from olmirror.lock.upstream_index import CA_VARIABLES
from olmirror.remote.upstream_http import Retries, refused

# Settings of this machine that would make uv consult another index than the upstream;
# every UV_INDEX_* variable goes too (credentials of the machine's own indexes among them).
UV_INDEX_VARIABLES = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_INDEX_STRATEGY",
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_BUILD_CONSTRAINT",
)
INDEX_NAME = "olmirror"  # the upstream's name for uv, whose credentials' variables it names
# uv's words for an index that refused it: "... (401 Unauthorized)".
_REFUSED = re.compile(r"\b(40[13]) (Unauthorized|Forbidden)\b")


def index_args(upstream: str) -> list[str]:
    """uv's arguments for the upstream as its only index, named for its credentials."""
    return ["--default-index", f"{INDEX_NAME}={upstream}/simple/"]


def tls_env(ca_file: str | None) -> dict[str, str]:
    """The environment for a subprocess that must trust `ca_file` (and only it) for HTTPS."""
    env = dict(os.environ)
    if ca_file:
        env.update(dict.fromkeys(CA_VARIABLES, ca_file))
    return env


def uv_env(
    ca_file: str | None,
    index_timeout: float,
    retries: Retries,
    credentials: Credentials | None = None,
) -> dict[str, str]:
    """Never fetch a Python build (a target's version is only used for markers and tags, a
    build uses this machine's); a silent upstream costs one request timeout, not minutes."""
    env = {
        k: v
        for k, v in tls_env(ca_file).items()
        if k not in UV_INDEX_VARIABLES and not k.startswith("UV_INDEX_")
    }
    if credentials is not None:
        prefix = f"UV_INDEX_{INDEX_NAME.upper()}"
        env[f"{prefix}_USERNAME"] = credentials.username
        env[f"{prefix}_PASSWORD"] = credentials.password
    return env | {
        "UV_NO_PROGRESS": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_HTTP_TIMEOUT": str(ceil(index_timeout)),
        "UV_HTTP_RETRIES": str(retries.attempts - 1),
    }


def uv_refused(output: str, upstream: str, credentials: Credentials | None) -> str | None:
    """Why uv could not read the upstream, when it refused uv (401, 403): with which
    credentials, or that it wants some; None when uv failed otherwise."""
    found = _REFUSED.search(output)
    if found is None:
        return None
    auth = client_auth(credentials, upstream)
    return refused(f"{upstream}/simple/", int(found[1]), found[2], auth)
