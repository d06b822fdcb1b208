"""The per-host apply lock: an `flock` on <state dir>/apply.lock, holding its owner's name.

Plain standard library on purpose, like `probe.py`: locally it is imported; over SSH
its source is part of the host program (`host_program.py`), which holds the lock until
the connection closes.
"""

import fcntl
import os


def take(folder, holder):
    """(fd, path, None) with the lock held, or (None, path, who holds it)."""
    folder = os.path.expanduser(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "apply.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return None, path, who
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode(), 0)
    return fd, path, None


def busy(host, path, who):
    """The one message for an apply lock another apply holds, wherever it is."""
    return (
        f"host {host!r}: another olmirror apply is running here ({who}, lock {path}); "
        "wait for it to finish, then run apply again"
    )


def holder_name(pid, machine):
    return f"pid {pid} on {machine}"


_held = []  # the host program's lock, open until that program ends


def answer_lock(request, _stdin):
    """The host program's "lock" request: hold the lock until this program ends (when the
    connection closes, sshd closes its stdin), so the lock dies with the connection."""
    fd, path, who = take(request["folder"], request["holder"])
    if fd is None:
        return {"busy": path, "who": who}, b""
    _held.append(fd)
    return {"locked": path}, b""
