"""The environment every uv that olmirror runs gets: the upstream's CA, uv's own timeouts and
retries from the spec, and none of this machine's settings that would send uv to another
index or fetch a Python."""

from __future__ import annotations

import os
from math import ceil

from olmirror.lock.upstream_index import CA_VARIABLES
from olmirror.remote.upstream_http import Retries

# Settings of this machine that would make uv consult another index than the upstream.
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


def tls_env(ca_file: str | None) -> dict[str, str]:
    """The environment for a subprocess that must trust `ca_file` (and only it) for HTTPS."""
    env = dict(os.environ)
    if ca_file:
        env.update(dict.fromkeys(CA_VARIABLES, ca_file))
    return env


def uv_env(ca_file: str | None, index_timeout: float, retries: Retries) -> dict[str, str]:
    """Never fetch a Python build (a target's version is only used for markers and tags, a
    build uses this machine's); a silent upstream costs one request timeout, not minutes."""
    return {k: v for k, v in tls_env(ca_file).items() if k not in UV_INDEX_VARIABLES} | {
        "UV_NO_PROGRESS": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_HTTP_TIMEOUT": str(ceil(index_timeout)),
        "UV_HTTP_RETRIES": str(retries.attempts - 1),
    }
