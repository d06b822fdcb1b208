"""Which engine fills the mirror: bandersnatch where the upstream allows it, else olmirror's own.

bandersnatch needs the JSON API with `X-PyPI-Last-Serial` headers; behind many
proxies and in front of Artifactory, Nexus or devpi that is missing and
bandersnatch rejects every package. The `simple` engine only needs the simple API.
"""

from __future__ import annotations

import ssl

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
    setting: str, lock: Lock, ca_file: str | None, retries: Retries | None = None
) -> tuple[str, str]:
    """(engine, why) for the `engine` setting of the spec; `auto` probes the upstream once."""
    if setting != "auto":
        return setting, f"engine {setting} is set in the spec"
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
