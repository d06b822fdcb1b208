"""Download files by URL, check each one's sha256, and move it into place atomically.

Plain standard library on purpose: like `connection/probe.py`, its source is sent
to the mirror host's python3 and run there, so the files travel from the upstream
to the mirror directly. Reads a JSON request on stdin, prints a JSON report.
"""

import contextlib
import hashlib
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 20
TIMEOUT = 60
WORKERS = 8


def _fetch(item, context):
    """Fetch one file; returns (bytes written, None) or (0, reason)."""
    path, url, sha256 = item["path"], item["url"], item["sha256"]
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".olmirror-tmp", dir=folder)
    request = urllib.request.Request(url, headers={"User-Agent": "olmirror"})
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:  # nested, not parenthesised: old host Pythons
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as reply:
                for chunk in iter(lambda: reply.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ValueError(f"sha256 {digest.hexdigest()} does not match the lock's {sha256}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return size, None
    except Exception as exc:  # every failure is reported, per file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, urllib.error.HTTPError):
            return 0, f"{url}: HTTP {exc.code} {exc.reason}"
        return 0, f"{url}: {getattr(exc, 'reason', None) or exc}"


def fetch(request):
    """Fetch every file of the request in parallel; a progress line on stderr after each."""
    context = ssl.create_default_context(cafile=request.get("ca_file"))
    total = len(request["files"])
    results = []
    with ThreadPoolExecutor(WORKERS) as pool:
        for result in pool.map(lambda item: _fetch(item, context), request["files"]):
            results.append(result)
            sys.stderr.write(f"progress {len(results)} {total}\n")
            sys.stderr.flush()
    return {
        "fetched": sum(1 for size, error in results if error is None),
        "bytes": sum(size for size, _ in results),
        "errors": [error for _, error in results if error],
    }


if __name__ == "__main__":
    json.dump(fetch(json.load(sys.stdin)), sys.stdout)
