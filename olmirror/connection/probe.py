"""Read the state of many paths and programs at once.

This module is plain standard library on purpose: the SSH connection sends its
source to the remote host's python3 and runs it there, so that a whole host's
facts cost one round trip. Locally it is simply called.
"""

import base64
import hashlib
import json
import os
import shutil
import stat
import sys

MAX_CONTENT = 4 << 20


def _path_fact(path, with_content):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"kind": None}
    except NotADirectoryError:
        return {"kind": None}
    except OSError as exc:
        return {"kind": "error", "error": exc.strerror or str(exc)}
    fact = {"mode": stat.S_IMODE(st.st_mode), "size": st.st_size}
    if stat.S_ISDIR(st.st_mode):
        fact["kind"] = "dir"
        return fact
    if not stat.S_ISREG(st.st_mode):
        fact["kind"] = "other"
        return fact
    fact["kind"] = "file"
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONTENT + 1)
    except OSError as exc:
        return {"kind": "error", "error": exc.strerror or str(exc)}
    fact["sha256"] = hashlib.sha256(data).hexdigest()
    if with_content and len(data) <= MAX_CONTENT:
        fact["content"] = base64.b64encode(data).decode("ascii")
    return fact


def probe(request):
    """Answer {"paths": [...], "content": [...], "programs": [...]} with what exists."""
    wanted = set(request.get("content", []))
    paths = {p: _path_fact(p, p in wanted) for p in [*request.get("paths", []), *wanted]}
    programs = {name: shutil.which(name) for name in request.get("programs", [])}
    return {"paths": paths, "programs": programs}


if __name__ == "__main__":
    json.dump(probe(json.load(sys.stdin)), sys.stdout)
