"""The per-host apply lock: an `flock` on <state dir>/apply.lock, holding its owner's name.

Plain standard library on purpose, like `probe.py`: locally it is imported; over SSH
its source runs on the host (`python3 -c SOURCE FOLDER HOLDER`), holds the lock until
its standard input closes, so the lock dies with the connection, and answers with one
line that starts with ANSWER (a chatty login shell may print before it).
"""

import fcntl
import os
import sys

ANSWER = "olmirror-apply-lock:"
BUSY_EXIT = 75


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


if __name__ == "__main__":
    fd, path, who = take(sys.argv[1], sys.argv[2])
    if fd is None:
        sys.stdout.write(f"{ANSWER} busy {path}\t{who}\n")
        sys.exit(BUSY_EXIT)
    sys.stdout.write(f"{ANSWER} locked\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()
