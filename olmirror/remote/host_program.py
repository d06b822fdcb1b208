"""The one program olmirror keeps running on a remote host for a whole run.

Plain standard library on purpose, like `probe.py` and `apply_lock.py`: over SSH the three
sources run on the host as one program (`python3 -I -S -c SOURCE`), which answers requests
on its standard input for as long as that stays open. So a host costs one Python start
per run, and a request costs one round trip, with no new channel: facts, the apply lock
(held until the connection closes, so it dies with it), reads, and changes sent in
batches. Locally, only `atomic_write` and `make_dir` are used, imported.

Each request is one line of JSON, and each answer one line that starts with ANSWER (a
chatty login shell may print before the first); either may be followed by raw bytes,
as many as its "size" says. The first answer comes unasked: which Python runs here.
"""

import errno as errnos
import json
import os
import stat
import sys

ANSWER = "olmirror-host:"
TMP_SUFFIX = ".olmirror-tmp"


def atomic_write(path, data, mode):
    """Write `data` to a temp file beside `path`, fsync it, then rename it over `path`.

    A reader, or a crash at any moment, sees either the old file or the new one; temp files
    a crash left behind are removed by the next write of the same file. `mode` None keeps
    the old file's mode (0644 for a new one); as root, the old file's owner is kept too.
    """
    import glob  # here: a run that writes nothing need not pay for these imports
    import tempfile

    folder = os.path.dirname(path) or "."
    base = os.path.basename(path)
    pattern = os.path.join(glob.escape(folder), f".{glob.escape(base)}.*{TMP_SUFFIX}")
    for leftover in glob.glob(pattern):
        try:  # noqa: SIM105 - contextlib's import costs more than these lines
            os.unlink(leftover)
        except FileNotFoundError:
            pass
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    if mode is None:
        mode = stat.S_IMODE(old.st_mode) if old else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=TMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
            if old is not None and os.geteuid() == 0:
                os.fchown(handle.fileno(), old.st_uid, old.st_gid)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:  # noqa: SIM105
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def make_dir(path, mode):
    """`path` and its missing parents; an existing folder only gets `mode`."""
    os.makedirs(path, mode=mode, exist_ok=True)
    if not os.path.isdir(path):
        raise NotADirectoryError(errnos.ENOTDIR, os.strerror(errnos.ENOTDIR), path)
    os.chmod(path, mode)


def _exactly(stream, size):
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the request ended early")
    return data


def _failure(exc):
    if isinstance(exc, OSError) and exc.errno is not None:
        return {"errno": exc.errno, "strerror": exc.strerror or str(exc), "filename": exc.filename}
    return {"message": f"{type(exc).__name__}: {exc}"}


def answer_changes(request, stream):
    """Apply a batch in order, stopping at the first failure: (answer, b"")."""
    ops = request["ops"]
    datas = [_exactly(stream, op["size"]) if op["op"] == "write" else None for op in ops]
    for done, op in enumerate(ops):
        try:
            if op["op"] == "write":
                atomic_write(op["path"], datas[done], op["mode"])
            else:
                make_dir(op["path"], op["mode"])
        except Exception as exc:
            return {"done": done, "failed": _failure(exc)}, b""
    return {"done": len(ops)}, b""


def answer_read(request, _stream):
    with open(request["path"], "rb") as handle:
        data = handle.read()
    return {"size": len(data)}, data


def serve(handlers):
    """Answer requests until standard input closes; `handlers` maps a request's "op" to a
    function (request, stdin) -> (answer, bytes) beside the built-in ones."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    handlers = {"changes": answer_changes, "read": answer_read, **handlers}

    def answer(reply, data=b""):
        stdout.write(ANSWER.encode() + json.dumps(reply).encode() + b"\n" + data)
        stdout.flush()

    answer({"python": sys.executable, "shim": os.environ.get("OLMIRROR_SHIM")})
    for line in iter(stdin.readline, b""):
        request = json.loads(line)
        try:
            reply, data = handlers[request["op"]](request, stdin)
        except EOFError:
            return
        except Exception as exc:
            reply, data = {"error": _failure(exc)}, b""
        answer(reply, data)
