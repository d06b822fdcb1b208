"""Download files by URL, check each one's sha256, and move it into place atomically.

Plain standard library on purpose: like `probe.py`, its source is sent
to the mirror host's python3 and run there, so the files travel from the upstream
to the mirror directly; `upstream_http.py`'s source goes before it, for the client.
Reads a JSON request on stdin, prints a JSON report.
"""

import contextlib
import hashlib
import json
import os
import ssl
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

if __name__ != "__main__":  # on the mirror host, upstream_http's source comes first
    from olmirror.remote.upstream_http import (
        Auth,
        Client,
        Final,
        Retries,
        Transient,
        chunks,
        origin,
    )

CHUNK = 1 << 20
TIMEOUT = 60  # seconds without a byte
# A whole file may take this long at the least, and longer at no less than MIN_RATE.
MIN_SECONDS = 300
MIN_RATE = 50_000  # bytes a second
WORKERS = 8


def check_url(url, origins):
    """Upstream data is not trusted: only http(s) is fetched (never file:// or ftp://), and
    only from the origins allowed (None: any). The index client checks a page's files with
    it too, so a lock never holds a URL the fetch would refuse."""
    scheme = url.partition(":")[0].lower()
    if scheme not in ("http", "https") or any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("not an http(s) URL; the upstream's index named it, olmirror refuses it")
    if origins is not None and origin(url) not in origins:
        raise ValueError(
            "not on an origin the spec allows (the upstream's); if that host is yours, add it "
            "to mirror.file_origins"
        )


def _fetch(item, client, min_seconds=MIN_SECONDS, origins=None):
    """Fetch one file, tried again while it fails for a transient reason (a cut or changed
    body among them); returns (bytes written, None) or (0, reason)."""
    path, url, sha256, expected = item["path"], item["url"], item["sha256"], item.get("size")
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".olmirror-tmp", dir=folder)
    try:
        check_url(url, origins)
        # unbuffered: a write that fails leaves nothing behind for close() to fail on again
        with os.fdopen(fd, "wb", buffering=0) as out:

            def write(data, start=False):
                """A full disk is this host's fault, not the network's: no try repairs it."""
                try:
                    if start:
                        out.seek(0)
                        out.truncate()
                    view = memoryview(data)
                    while view:
                        view = view[out.write(view) :]
                except OSError as exc:
                    raise Final(f"cannot write {path}: {exc.strerror or exc}") from None

            def read(reply, final_url):
                write(b"", start=True)
                digest, size = hashlib.sha256(), 0
                deadline = time.monotonic() + max(min_seconds, (expected or 0) / MIN_RATE)
                for chunk in chunks(reply, CHUNK):
                    digest.update(chunk)
                    write(chunk)
                    size += len(chunk)
                    if expected is not None and size > expected:
                        raise Transient(f"the upstream sent more than the lock's {expected} bytes")
                    if time.monotonic() > deadline:
                        raise Transient("the download is too slow (or never ends)")
                if digest.hexdigest() != sha256:
                    raise Transient(
                        f"its sha256 {digest.hexdigest()} is not the lock's {sha256} (a damaged "
                        "download, or the upstream changed the file)"
                    )
                return size

            size = client.get(url, read)
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return size, None
    except Exception as exc:  # every failure is reported, per file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        return 0, f"{url}: {exc}"


def fetch(request):
    """Fetch every file of the request in parallel over kept-alive connections; on stderr,
    a progress line after each file and a retry line before each new try."""
    context = ssl.create_default_context(cafile=request.get("ca_file"))
    retries = Retries(**request["retries"]) if request.get("retries") else Retries()

    def on_retry(url, reason):
        sys.stderr.write(f"retry {reason}\n")
        sys.stderr.flush()

    # the upstream's credentials come on stdin alone, for its own origin (see Client)
    auth = Auth(**request["auth"]) if request.get("auth") else None
    client = Client(context, TIMEOUT, retries, on_retry, auth)
    total = len(request["files"])
    results = []
    with ThreadPoolExecutor(WORKERS) as pool:
        min_seconds = request.get("min_seconds", MIN_SECONDS)
        origins = request.get("origins")

        def one(item):
            return _fetch(item, client, min_seconds, origins)

        for result in pool.map(one, request["files"]):
            results.append(result)
            sys.stderr.write(f"progress {len(results)} {total}\n")
            sys.stderr.flush()
    client.close()
    return {
        "fetched": sum(1 for size, error in results if error is None),
        "bytes": sum(size for size, _ in results),
        "errors": [error for _, error in results if error],
        "stats": client.stats,
    }


if __name__ == "__main__":
    json.dump(fetch(json.load(sys.stdin)), sys.stdout)
