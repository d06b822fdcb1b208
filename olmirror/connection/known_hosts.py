"""Reading known_hosts as OpenSSH does, where paramiko stops at the first line it cannot read.

OpenSSH skips a line it cannot parse, honours `@revoked` (that key is refused for every
host) and `@cert-authority` (host certificates, which olmirror's SSH library does not
check). paramiko raises on any of them, so they are read here: a revoked key is kept to
be refused, a CA line is skipped, and so is a damaged line.
"""

from __future__ import annotations

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey


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
