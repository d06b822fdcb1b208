"""Read the state of many paths and programs at once.

This module is plain standard library on purpose: the SSH connection sends its
source to the remote host's python3 and runs it there, so that a whole host's
facts cost one round trip. Locally it is simply called.

A request names paths to stat, paths to hash (whole file, streamed) and paths
whose content is wanted (small files, hashed too), programs to find on PATH, folders
whose files to list, and OpenLambda workers whose registry to survey (where
config.json puts it, and the requirements files of the lambdas in it).
"""

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys

MAX_CONTENT = 4 << 20
MAX_REQUIREMENTS = 1 << 20
CHUNK = 1 << 20
REQUIREMENTS_FILES = ("requirements.in", "requirements.txt")


def _stat(path):
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {"kind": None}
    except OSError as exc:
        return {"kind": "error", "error": exc.strerror or str(exc)}
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    return {"kind": kind, "mode": stat.S_IMODE(st.st_mode), "size": st.st_size}


def _read(path, fact, with_content):
    digest = hashlib.sha256()
    kept = []
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
                if with_content:
                    kept.append(chunk)
    except OSError as exc:
        return {"kind": "error", "error": exc.strerror or str(exc)}
    fact["sha256"] = digest.hexdigest()
    data = b"".join(kept)
    if with_content and len(data) <= MAX_CONTENT:
        fact["content"] = base64.b64encode(data).decode("ascii")
    return fact


def _command(argv):
    try:
        done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    except OSError as exc:
        return {"returncode": 127, "stdout": "", "stderr": exc.strerror or str(exc)}
    except subprocess.TimeoutExpired:
        return {"returncode": 124, "stdout": "", "stderr": "timed out after 60 s"}
    return {
        "returncode": done.returncode,
        "stdout": done.stdout.decode(errors="replace")[-4096:],
        "stderr": done.stderr.decode(errors="replace")[-4096:],
    }


def _get(url):
    """None when `url` answers 2xx, else one line saying why (the way pip would ask)."""
    import urllib.error  # only when a URL is asked about: the import costs a host's CPU
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read(1)
    except urllib.error.HTTPError as exc:
        return f"it answered HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}"
    return None


def registry_folder(setting, worker_path):
    """The local folder of a worker's `registry` setting; None when it is not one (s3://...).

    OpenLambda writes `file://` + the folder's path as it is, not URL-escaped, so the path
    is taken verbatim up to a query (gocloud's `?create_dir=true` is no part of it);
    without a setting the registry is <worker>/registry.
    """
    if not setting:
        return os.path.normpath(os.path.join(worker_path, "registry"))
    if "\0" in setting:
        return None
    if setting.startswith("file:"):
        path = setting[len("file:") :]
        if path.startswith("//"):
            host, slash, rest = path[2:].partition("/")
            if host not in ("", "localhost"):
                return None
            path = slash + rest
        setting = path.partition("?")[0]
    elif "://" in setting:
        return None
    return os.path.normpath(setting) if setting.startswith("/") else None


def _requirements_files(folder):
    """{file name: {"text"} or {"error"}} of one lambda folder's requirements files."""
    found = {}
    for name in REQUIREMENTS_FILES:
        path = os.path.join(folder, name)
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                found[name] = {"error": "not a regular file"}
                continue
            with open(path, "rb") as handle:
                data = handle.read(MAX_REQUIREMENTS + 1)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            found[name] = {"error": exc.strerror or str(exc)}
            continue
        if len(data) > MAX_REQUIREMENTS:
            found[name] = {"error": f"larger than {MAX_REQUIREMENTS} bytes"}
        else:
            found[name] = {"text": data.decode("utf-8", errors="replace")}
    return found


def _registry(worker_path):
    """Where the worker's registry is, and the requirements files of every lambda in it."""
    config = os.path.join(worker_path, "config.json")
    try:
        with open(config, "rb") as handle:
            setting = json.loads(handle.read()).get("registry")
    except (FileNotFoundError, NotADirectoryError):
        setting = None
    except (OSError, ValueError, AttributeError) as exc:
        return {"error": f"cannot read {config}: {exc}"}
    if setting is not None and not isinstance(setting, str):
        return {"error": f"{config}: 'registry' is not a string"}
    folder = registry_folder(setting, worker_path)
    lambdas = {}
    try:
        names = sorted(os.listdir(folder)) if folder else []
    except (FileNotFoundError, NotADirectoryError):
        names = []
    except OSError as exc:
        return {"setting": setting, "folder": folder, "error": f"{folder}: {exc.strerror or exc}"}
    for name in names:
        path = os.path.join(folder, name)
        if not name.startswith(".") and os.path.isdir(path):
            files = _requirements_files(path)
            if files:
                lambdas[name] = files
    return {"setting": setting, "folder": folder, "lambdas": lambdas}


def _tree(folder):
    """Every file below `folder`, as paths relative to it (symlinks not followed)."""
    found = []
    for root, _, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        found += [name if rel == "." else os.path.join(rel, name) for name in files]
    return sorted(found)


def probe(request):
    """Answer {"paths", "programs", "commands", "urls", "registries", "trees"} about this host.

    Commands are read-only checks (`ol worker status`, a GET of a URL), run without
    a shell; their results come back keyed by the JSON of their argv.
    """
    content = set(request.get("content", []))
    hashes = set(request.get("hashes", [])) | content
    paths = {}
    for path in [*request.get("paths", []), *hashes]:
        fact = _stat(path)
        if fact["kind"] == "file" and path in hashes:
            fact = _read(path, fact, path in content)
        paths[path] = fact
    programs = {name: shutil.which(name) for name in request.get("programs", [])}
    commands = {json.dumps(argv): _command(argv) for argv in request.get("commands", [])}
    urls = {url: _get(url) for url in request.get("urls", [])}
    registries = {path: _registry(path) for path in request.get("registries", [])}
    trees = {folder: _tree(folder) for folder in request.get("trees", [])}
    return {
        "trees": trees,
        "paths": paths,
        "programs": programs,
        "commands": commands,
        "urls": urls,
        "registries": registries,
    }


if __name__ == "__main__":
    json.dump(probe(json.load(sys.stdin)), sys.stdout)
