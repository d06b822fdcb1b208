"""Read the state of many paths and programs at once.

This module is plain standard library on purpose: over SSH its source is part of the
host program (`host_program.py`) that runs on the remote host, so that a whole host's
facts cost one round trip. Locally it is simply called.

A request names paths to stat, paths to hash (whole file, streamed) and paths
whose content is wanted (small files, hashed too), programs to find on PATH, folders
whose files to list, and OpenLambda workers whose registry to survey (where
config.json puts it, and the requirements files of the lambdas in it).
"""

import binascii
import hashlib
import json
import os
import stat
import sys

if __name__ != "__main__":  # over SSH, url_check's source comes first (connection/ssh.py)
    from olmirror.remote.url_check import url_problem

# Imported where needed instead (subprocess, shutil, http.client): a host pays for every
# import at every start, and most requests need few of them.

MAX_CONTENT = 4 << 20
MAX_REQUIREMENTS = 1 << 20
MAX_TARBALL = 16 << 20  # a lambda's tar.gz holds its code
MAX_UNPACKED = 256 << 20  # a tar.gz's bytes once unpacked: a gzip bomb stops here
MAX_HEADER = 64 << 10  # one member's headers (pax, GNU long names) as tarfile reads them
MAX_MEMBERS = 10000
MAX_GLOBAL = 64  # records of a tar.gz's global pax headers, copied into every member
MAX_ENTRIES = 10000
CHUNK = 1 << 20
REQUIREMENTS_FILES = ("requirements.in", "requirements.txt")
AT_ONCE = 4  # commands and URL checks run together on one host


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
        fact["content"] = binascii.b2a_base64(data, newline=False).decode("ascii")
    return fact


def _command(argv):
    import subprocess

    if argv and argv[0] == "python3":  # olmirror's own scripts: this interpreter, no shim
        argv = [sys.executable, *argv[1:]]
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


def _which(name):
    import shutil

    return shutil.which(name)


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
            if not stat.S_ISREG(os.lstat(path).st_mode):  # a link is not read: it points out
                found[name] = {"error": "not a regular file (a link is not followed)"}
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


class _Gunzip:
    """A tar.gz's tar bytes as tarfile asks for them, unpacked as they come, forward only:
    at most MAX_TARBALL bytes of gzip read, MAX_UNPACKED unpacked, and `budget` handed
    over (tarfile reads a pax header or a GNU long name whole, whatever size it claims)."""

    def __init__(self, raw, zlib):
        self.raw, self.inflate = raw, zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.packed = self.position = 0
        self.budget = MAX_HEADER

    def _inflated(self, most):
        """At most `most` more bytes of tar; b"" at the end of the gzip stream."""
        out = b""
        while not out and not self.inflate.eof:
            data = self.inflate.unconsumed_tail or self.raw.read(CHUNK)
            self.packed += 0 if self.inflate.unconsumed_tail else len(data)
            if not data:
                break
            if self.packed > MAX_TARBALL:
                raise ValueError(f"larger than {MAX_TARBALL} bytes")
            out = self.inflate.decompress(data, most)
            self.position += len(out)
        if self.position > MAX_UNPACKED:
            raise ValueError(f"more than {MAX_UNPACKED} bytes unpacked")
        return out

    def read(self, size=-1):
        if size is None or not 0 <= size <= self.budget:
            raise ValueError(f"a member's headers larger than {MAX_HEADER} bytes")
        self.budget -= size
        data, part = bytearray(), b"..."
        while len(data) < size and part:
            part = self._inflated(min(size - len(data), CHUNK))
            data += part
        return bytes(data)

    def seek(self, offset, whence=0):
        if whence or offset < self.position:
            raise ValueError("a tar.gz is read forward only")
        while self.position < offset and self._inflated(min(offset - self.position, CHUNK)):
            pass
        return self.position

    def tell(self):
        return self.position


def tarball_requirements(raw, size):
    """{file name: {"text"} or {"error"}} of the tar.gz of `size` bytes in the binary file
    `raw`: members counted, and only a top-level requirements.in or requirements.txt that
    is a regular file of at most MAX_REQUIREMENTS read (a link or a larger member is an
    error told on it, never followed); an archive past a bound is one error, however built."""
    import tarfile  # only for registries that hold tarballs
    import zlib

    if size > MAX_TARBALL:
        return {REQUIREMENTS_FILES[1]: {"error": f"larger than {MAX_TARBALL} bytes"}}
    found, stream = {}, _Gunzip(raw, zlib)
    try:
        archive = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115 - nothing to close
        for _ in range(MAX_MEMBERS + 1):
            stream.budget = MAX_HEADER
            member, archive.members = archive.next(), []  # each looked at once: none kept
            if member is None:
                return found
            if len(archive.pax_headers) > MAX_GLOBAL:
                raise ValueError(f"more than {MAX_GLOBAL} global pax header records")
            name = member.name[2:] if member.name.startswith("./") else member.name
            if name not in REQUIREMENTS_FILES:
                continue
            if not member.isfile() or member.size > MAX_REQUIREMENTS:
                found[name] = {"error": "not a regular file of at most 1 MiB"}
                continue
            stream.budget = member.size
            found[name] = {"text": archive.extractfile(member).read().decode("utf-8", "replace")}
        raise ValueError(f"more than {MAX_MEMBERS} members")
    except (OSError, EOFError, ValueError, RecursionError, tarfile.TarError, zlib.error) as exc:
        return {REQUIREMENTS_FILES[1]: {"error": f"not a readable tar.gz ({exc})"}}


def _lambdas(folder):
    """Each lambda of a registry folder: <name>.tar.gz (read first by both generations of
    OpenLambda) or <name>/, with its requirements files and which of the two it is."""
    lambdas = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or os.path.islink(path):
            continue
        if name.endswith(".tar.gz") and os.path.isfile(path):
            try:
                with open(path, "rb") as handle:
                    files = tarball_requirements(handle, os.fstat(handle.fileno()).st_size)
            except OSError as exc:
                files = {REQUIREMENTS_FILES[1]: {"error": exc.strerror or str(exc)}}
            name = name[: -len(".tar.gz")]
            kind = "tarball"
        elif os.path.isdir(path):
            if name in lambdas:
                continue
            files = _requirements_files(path)
            kind = "folder"
        else:
            continue
        if files:
            lambdas[name] = {"kind": kind, "files": files}
    return lambdas


def _installed(packages):
    """{entry: [dist-info folder names]} of a worker's Pkgs_dir, where OpenLambda installs each
    requirement into <Pkgs_dir>/<requirement>/files (packagePuller.go:158)."""
    found = {}
    try:
        entries = sorted(os.scandir(packages), key=lambda entry: entry.name)
    except OSError:
        return found
    for entry in entries[:MAX_ENTRIES]:
        if entry.is_dir(follow_symlinks=False):
            try:
                names = os.listdir(os.path.join(entry.path, "files"))
            except OSError:
                names = []
            found[entry.name] = sorted(n for n in names if n.endswith(".dist-info"))
    return found


def _config_value(config, key):
    """A config.json key as Go's encoding/json finds it: case-insensitively."""
    for name, value in config.items():
        if name.lower() == key.lower():
            return value
    return None


def _registry(worker_path):
    """Where the worker's registry, sandbox and packages are, which OpenLambda wrote its
    config.json, the lambdas in the registry and what its Pkgs_dir holds."""
    config_path = os.path.join(worker_path, "config.json")
    try:
        with open(config_path, "rb") as handle:
            config = json.loads(handle.read())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (FileNotFoundError, NotADirectoryError):
        config = None
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read {config_path}: {exc}"}
    setting = (config or {}).get("registry")
    if setting is not None and not isinstance(setting, str):
        return {"error": f"{config_path}: 'registry' is not a string"}
    folder = registry_folder(setting, worker_path)
    answer = {"setting": setting, "folder": folder, "lambdas": {}, "config": config is not None}
    # Where the folders really are: a link inside the worker's folder may point anywhere.
    answer["real"] = {
        "home": os.path.realpath(worker_path),
        "folder": os.path.realpath(folder) if folder else None,
    }
    if config is not None:
        limits = config.get("limits")
        legacy = isinstance(limits, dict) and "installer_mem_mb" in limits
        answer["generation"] = (
            "main" if "installer_limits" in config else ("legacy" if legacy else None)
        )
        for key, name in (("sandbox", "sock_base_path"), ("packages", "Pkgs_dir")):
            value = _config_value(config, name)
            answer[key] = value if isinstance(value, str) and value else None
        port = config.get("worker_port")
        answer["port"] = port if isinstance(port, (str, int)) else None
    sandbox = answer.get("sandbox") or os.path.join(worker_path, "lambda")
    answer["real"]["sandbox"] = os.path.realpath(os.path.join(sandbox, "etc"))
    packages = answer.get("packages") or os.path.join(worker_path, "lambda", "packages")
    answer["installed"] = _installed(packages)
    try:
        answer["lambdas"] = _lambdas(folder) if folder else {}
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        answer["error"] = f"{folder}: {exc.strerror or exc}"
    return answer


def _tree(folder):
    """Every file below `folder`, as paths relative to it (symlinks not followed); None
    when `folder` or the folder above it is a symbolic link, whose files lie elsewhere."""
    if os.path.islink(folder) or os.path.islink(os.path.dirname(folder)):
        return None
    found = []
    for root, _, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        found += [name if rel == "." else os.path.join(rel, name) for name in files]
    return sorted(found)


def _at_once(*groups):
    """Each group's {key: function(argument)}, AT_ONCE calls at a time, each in a thread:
    commands and URL checks mostly wait (on a child, a server), and a host often has
    several; a host with many workers still starts only a few programs together."""
    calls = [call for group in groups for call in group]
    if len(calls) < 2:
        return [{key: do(arg) for key, do, arg in group} for group in groups]
    import threading

    found = [None] * len(calls)
    slots = threading.BoundedSemaphore(AT_ONCE)

    def run(index, do, arg):
        with slots:
            try:
                found[index] = (True, do(arg))
            except BaseException as exc:  # raised again below, in the caller's thread
                found[index] = (False, exc)

    threads = [
        threading.Thread(target=run, args=(i, do, arg)) for i, (_, do, arg) in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ok, value in found:
        if not ok:
            raise value
    values = iter(value for _, value in found)
    return [{key: next(values) for key, _, _ in group} for group in groups]


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
        if path in hashes and os.path.islink(path):
            # Never read through a link: it could show a private file in a plan's diff.
            fact = {"kind": "link", "error": "a symbolic link, which olmirror does not follow"}
        elif fact["kind"] == "file" and path in hashes:
            fact = _read(path, fact, path in content)
        paths[path] = fact
    programs = {name: _which(name) for name in request.get("programs", [])}
    commands, urls = _at_once(
        [(json.dumps(argv), _command, argv) for argv in request.get("commands", [])],
        [(url, url_problem, url) for url in request.get("urls", [])],
    )
    registries = {path: _registry(path) for path in request.get("registries", [])}
    trees = {folder: _tree(folder) for folder in request.get("trees", [])}
    return {"trees": trees, "paths": paths, "programs": programs, "commands": commands,
            "urls": urls, "registries": registries}  # fmt: skip


def answer_facts(request, _stdin):
    """The host program's "facts" request (host_program.py)."""
    return {"facts": probe(request["request"])}, b""


def answer_stat(request, _stdin):
    """The host program's "stat" request: one path's kind, mode and size."""
    return {"fact": _stat(request["path"])}, b""
