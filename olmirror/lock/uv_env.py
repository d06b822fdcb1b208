"""The environment every uv that olmirror runs gets: the upstream's CA and credentials, uv's
own timeouts and retries from the spec, and none of this machine's settings that would send
uv to another index or fetch a Python, nor its netrc (olmirror alone decides which
credentials go where). `build_env` trims it further to what a build needs: uv pip compile
builds an sdist to read its metadata, uv build builds its wheel, and either build runs the
sdist's own code with uv's environment.

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
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the oldest time a zip can hold
# What a build (and the uv that runs it) keeps of this machine's environment, beside uv's
# own settings, the locale and the proxies (`build_env`).
BUILD_VARIABLES = frozenset({
    "PATH", "HOME", "TMPDIR", "LANG", "TERM", "XDG_CACHE_HOME", "CC", "CXX", "CFLAGS",
    "LDFLAGS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "PIP_CERT", "NETRC", "no_proxy", "NO_PROXY",
})  # fmt: skip
# uv's own lines for a URL that refused it, never a line of a build's log (which uv prints
# after "[stdout]" or "[stderr]"): an index's page (uv's hint) and a file (its HTTP client).
_REFUSED = (
    re.compile(
        r"An index URL \((?P<url>[^\s()]+)\) could not be queried due to a lack of valid "
        r"authentication credentials \((?P<status>40[13]) (?P<reason>Unauthorized|Forbidden)\)"
    ),
    re.compile(
        r"HTTP status client error \((?P<status>40[13]) (?P<reason>Unauthorized|Forbidden)\) "
        r"for url \((?P<url>[^\s()]+)\)"
    ),
)
# uv's decoration and the word that starts each of its lines
_UV_PREFIX = re.compile(
    r"^[\s\u00d7\u2570\u2500\u25b6\u2502\u251c]*(?:(?:error|cause|hint|Caused by):\s*)?"
)
_BUILD_LOG = ("[stdout]", "[stderr]")


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
        if k not in UV_INDEX_VARIABLES and not k.startswith(("UV_INDEX_", "UV_PUBLISH_"))
    }
    # uv would read the netrc itself, and send its `default` entry to any host
    env["NETRC"] = os.devnull
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


def build_env(env: dict[str, str]) -> dict[str, str]:
    """What a uv that may build an sdist sees of `env` (`uv_env`'s), and the build with it:
    the sdist's backend is the upstream's code, so it gets the variables a build needs (the
    tools' PATH, the caches, the proxies, the CA, uv's own settings) and none of the rest,
    where secrets live (a `become` password's variable, tokens). uv's settings hold the
    upstream's own credentials when it has some (`uv_env`): uv needs them for the index and
    the build requirements, and the backend inherits them, so what uv prints passes through
    `upstream_auth.redact`."""
    kept = {
        k: v for k, v in env.items()
        if k in BUILD_VARIABLES or k.startswith(("UV_", "LC_")) or k.lower().endswith("_proxy")
    }  # fmt: skip
    return kept | {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONHASHSEED": "0"}


def uv_refused(output: str, upstream: str, credentials: Credentials | None) -> str | None:
    """Why uv could not read the upstream, when a URL refused uv (401, 403): uv's own line
    says which; the words name the credentials sent, or say how to send some. None when uv
    failed otherwise (a build's log that prints "401 Unauthorized" is no refusal of uv's)."""
    for line in output.splitlines():
        if line.strip() in _BUILD_LOG:
            break
        said = _UV_PREFIX.sub("", line, count=1)
        for pattern in _REFUSED:
            found = pattern.match(said)
            if found:
                auth = client_auth(credentials, upstream)
                return refused(found["url"], int(found["status"]), found["reason"], auth)
    return None
