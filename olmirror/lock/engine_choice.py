"""Which engine fills the mirror: bandersnatch where the upstream allows it, else olmirror's own.

bandersnatch needs the JSON API with `X-PyPI-Last-Serial` headers; behind many
proxies and in front of Artifactory, Nexus or devpi that is missing and
bandersnatch rejects every package. The `simple` engine only needs the simple API.

Nor can bandersnatch (6.8) take a private upstream's credentials but from disk or argv: its
`Master` opens its aiohttp session with no `auth` (bandersnatch/master.py:74-80) and
`trust_env` (aiohttp's netrc) only when a proxy is set (bandersnatch/config/proxy.py:82),
so they would have to be in the `master` URL of bandersnatch.conf (read at
bandersnatch/mirror.py:972; aiohttp takes a URL's user info as basic auth,
aiohttp/client.py:743-765, for the pages alone, not the files they link) or in a netrc
file on the mirror host. olmirror keeps them off disk, so the `simple` engine, whose
fetcher gets them on its stdin, serves a private upstream.
"""

from __future__ import annotations

import ssl

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock
from olmirror.remote.upstream_http import Client, Final, Retries

SERIAL_HEADER = "X-PyPI-Last-Serial"
TIMEOUT = 30


def _probe(upstream: str, project: str, ca_file: str | None, retries: Retries) -> str | None:
    """None when bandersnatch can sync from `upstream`, else the reason it cannot."""
    url = f"{upstream}/pypi/{project}/json"
    client = Client(ssl.create_default_context(cafile=ca_file), TIMEOUT, retries)
    try:
        serial = client.get(url, lambda reply, _: reply.getheader(SERIAL_HEADER))
    except Final as exc:
        if exc.status is not None:
            return f"it has no JSON API ({url} answered {exc})"
        return f"its JSON API did not answer ({exc})"
    finally:
        client.close()
    return None if serial is not None else f"its JSON API sends no {SERIAL_HEADER} header"


def choose_engine(
    setting: str,
    lock: Lock,
    ca_file: str | None,
    retries: Retries | None = None,
    credentials_from: str | None = None,
) -> tuple[str, str]:
    """(engine, why) for the `engine` setting of the spec; `auto` keeps the lock's choice,
    else probes the upstream once. `credentials_from`: where the upstream's credentials
    come from (`upstream_auth.credentials_from`), None when it is read without any."""
    if credentials_from is not None and setting == "bandersnatch":
        raise OlmirrorError(
            "mirror.engine: bandersnatch takes a private upstream's credentials only in "
            "bandersnatch.conf (its master URL) or a netrc file, on the mirror host's disk, "
            "where olmirror does not write them; the upstream is read with the credentials "
            f"from {credentials_from}. Set mirror.engine to simple (or auto), whose fetcher "
            "gets them on its stdin"
        )
    if credentials_from is not None and setting == "auto":
        return "simple", (
            "engine auto chose simple because the upstream is read with credentials, which "
            "bandersnatch takes only from a file on disk"
        )
    if setting != "auto":
        return setting, f"engine {setting} is set in the spec"
    if lock.auto_engine and lock.auto_engine_why:  # chosen when the lock was made
        return lock.auto_engine, lock.auto_engine_why
    pins = sorted(pin for t in lock.targets.values() for pin in t.files)
    if not pins:
        return "simple", "nothing to mirror"
    built = sorted({f.filename for t in lock.targets.values() for f in t.files.values() if f.built})
    if built:
        return "simple", (
            f"engine auto chose simple because the lock holds wheels olmirror built from "
            f"source distributions ({', '.join(built[:3])}), which bandersnatch cannot serve"
        )
    reason = _probe(lock.upstream, pins[0].partition("==")[0], ca_file, retries or Retries())
    if reason is None:
        return "bandersnatch", "the upstream serves the JSON API with serials"
    return "simple", f"engine auto chose simple because {reason}, which bandersnatch needs"
