"""Programs that run on a host, not on the machine running olmirror.

Each module here is plain standard library and imports nothing of olmirror, because its
source is sent to the host's python3 and run there: `host_program.py` with `probe.py`
and `apply_lock.py` (a host's facts and changes, over one SSH session), `fetch_files.py`
with `upstream_http.py` (the `simple` engine's fetcher, on the mirror host), and the
small checks `http_fetch.py`, `nginx_master.py`, `sandbox_facts.py`, `call_script.py`.
Locally, olmirror imports some of them too (the probe, the HTTP client). `source` is the
one way their text is loaded.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def source(*names: str) -> str:
    """The text of the modules `names` of this package, in order, as one program."""
    return "\n\n".join((_HERE / f"{name}.py").read_text() for name in names)
