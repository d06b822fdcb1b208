"""Which engine fills the mirror: bandersnatch where the upstream allows it, else olmirror's own.

bandersnatch needs the JSON API with `X-PyPI-Last-Serial` headers; behind many
proxies and in front of Artifactory, Nexus or devpi that is missing and
bandersnatch rejects every package. The `simple` engine only needs the simple API.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from olmirror.lockfile import Lock

SERIAL_HEADER = "X-PyPI-Last-Serial"
TIMEOUT = 30


def _probe(upstream: str, project: str, ca_file: str | None) -> str | None:
    """None when bandersnatch can sync from `upstream`, else the reason it cannot."""
    url = f"{upstream}/pypi/{project}/json"
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as reply:
            if reply.headers.get(SERIAL_HEADER) is None:
                return f"its JSON API sends no {SERIAL_HEADER} header"
    except urllib.error.HTTPError as exc:
        return f"it has no JSON API ({url} answered HTTP {exc.code})"
    except (urllib.error.URLError, OSError) as exc:
        return f"its JSON API did not answer ({getattr(exc, 'reason', exc)})"
    return None


def choose_engine(setting: str, lock: Lock, ca_file: str | None) -> tuple[str, str]:
    """(engine, why) for the `engine` setting of the spec; `auto` probes the upstream once."""
    if setting != "auto":
        return setting, f"engine {setting} is set in the spec"
    pins = sorted(pin for t in lock.targets.values() for pin in t.files)
    if not pins:
        return "simple", "nothing to mirror"
    reason = _probe(lock.upstream, pins[0].partition("==")[0], ca_file)
    if reason is None:
        return "bandersnatch", "the upstream serves the JSON API with serials"
    return "simple", f"engine auto chose simple because {reason}, which bandersnatch needs"
