"""A lambda as OpenLambda's main branch stores it: `<registry>/<name>.tar.gz`.

The worker untars it with `tar -xzf` (go/worker/lambda/handlerPuller.go:130) and
caches it by the blob's modification time (:76-81), so the tarball is rewritten only
when a member changes. Like `ol admin install` (go/admin/commands.go:194-314) it holds
regular files named relative to the lambda's folder; olmirror also fixes their order,
owner and time, so that one lambda always gives the same members.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass

MAX_MEMBERS_BYTES = 64 << 20


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes
    mode: int


def build(members: list[Member]) -> bytes:
    """The tarball of `members`: sorted by name, owned by 0:0, dated 0, gzip without a name
    or date."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in sorted(members, key=lambda m: m.name):
            info = tarfile.TarInfo(member.name)
            info.size, info.mode, info.mtime = len(member.data), member.mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(member.data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def read(data: bytes) -> list[Member]:
    """The regular files of a tarball; ValueError when it is not one olmirror could write."""
    found: list[Member] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for info in archive:
                if not info.isfile():
                    raise ValueError(f"{info.name!r} is not a regular file")
                total += info.size
                if total > MAX_MEMBERS_BYTES:
                    raise ValueError(f"its files hold more than {MAX_MEMBERS_BYTES} bytes")
                handle = archive.extractfile(info)
                assert handle is not None
                name = info.name[2:] if info.name.startswith("./") else info.name
                found.append(Member(name, handle.read(), info.mode & 0o7777))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"not a readable tar.gz ({exc})") from None
    return sorted(found, key=lambda m: m.name)
