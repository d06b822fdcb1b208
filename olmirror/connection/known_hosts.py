"""Host keys: known_hosts read as OpenSSH reads it, a new host's key recorded (accept-new),
and the reasons a host is refused, with the command that fixes each.

paramiko stops at the first line of known_hosts it cannot read.

OpenSSH skips a line it cannot parse, honours `@revoked` (that key is refused for every
host) and `@cert-authority` (host certificates, which olmirror's SSH library does not
check). paramiko raises on any of them, so they are read here: a revoked key is kept to
be refused, a CA line is skipped, and so is a damaged line.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shlex
import threading

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

_RECORDING = threading.Lock()


def load(keys: paramiko.HostKeys, path: str) -> list[paramiko.PKey]:
    """Add `path`'s host keys to `keys`; return the keys it marks @revoked."""
    revoked: list[paramiko.PKey] = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            marker, _, rest = line.strip().partition(" ")
            if marker == "@cert-authority":
                continue
            try:
                entry = HostKeyEntry.from_line(rest if marker == "@revoked" else line)
            except (InvalidHostKey, paramiko.SSHException, ValueError, IndexError):
                continue
            if entry is None:
                continue
            if marker == "@revoked":
                revoked.append(entry.key)
            else:
                for name in entry.hostnames:
                    keys.add(name, entry.key.get_name(), entry.key)
    return revoked


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class UnknownHostKey(Exception):
    def __init__(self, key_name: str, key: paramiko.PKey) -> None:
        super().__init__(key_name)
        self.key_name, self.key = key_name, key


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Called only for a host with no key in known_hosts: refuse it, or record it in
    `path` (accept-new)."""

    def __init__(self, path: str, accept_new: bool) -> None:
        self.path, self.accept_new = path, accept_new

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if not self.accept_new:
            raise UnknownHostKey(hostname, key)
        record_host_key(self.path, hostname, key)


def record_host_key(path: str, key_name: str, key: paramiko.PKey) -> None:
    """Append `key_name`'s key to known_hosts, unless another run recorded one meanwhile."""
    with _RECORDING:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            known = paramiko.HostKeys(path).lookup(key_name)
            if known:
                if known.get(key.get_name()) == key:
                    return
                raise paramiko.BadHostKeyException(key_name, key, next(iter(known.values())))
            text = handle.read()
            if text and not text.endswith("\n"):
                handle.write("\n")
            handle.write(f"{key_name} {key.get_name()} {key.get_base64()}\n")
            handle.flush()
            os.fsync(handle.fileno())


def _keyscan_type(key: paramiko.PKey) -> str:
    kind = key.get_name()
    if kind.startswith("ecdsa"):
        return "ecdsa"
    return kind.removeprefix("ssh-")


def unknown_key_reason(hostname: str, port: int, path: str, exc: UnknownHostKey) -> str:
    """Why an unknown host is refused, and how to make it known (`path`: known_hosts)."""
    scan = ["ssh-keyscan", "-t", _keyscan_type(exc.key)]
    scan += ["-p", str(port)] if port != 22 else []
    scan.append(hostname)
    return (
        f"the host key of {exc.key_name} is not known ({exc.key.get_name()} "
        f"{fingerprint(exc.key)}, not in {path}); olmirror refuses unknown hosts. "
        "Check that fingerprint with the host's administrator (`ssh-keygen -lf` of its host key), "
        f"then either add it: `{shlex.join(scan)} >> {shlex.quote(path)}`, "
        "or set `host_key_policy: accept-new` on this host in the spec to record it on first "
        "contact"
    )


def changed_key_reason(key_name: str, path: str, exc: paramiko.BadHostKeyException) -> str:
    """Why a changed host key is refused, and how to accept a change one knows of."""
    remove = shlex.join(["ssh-keygen", "-R", key_name, "-f", path])
    return (
        f"the host key of {key_name} has CHANGED: known_hosts has "
        f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, the host now offers "
        f"{exc.key.get_name()} {fingerprint(exc.key)}. Someone may be intercepting the "
        "connection, or the host was reinstalled; olmirror always refuses a changed key. If you "
        f"know why it changed, remove the old key with `{remove}` and accept the new one"
    )
