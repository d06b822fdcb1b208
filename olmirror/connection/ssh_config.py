"""~/.ssh/config as OpenSSH reads it, for paramiko's parser: with `Include` expanded.

paramiko's SSHConfig skips `Include`, which most real configs use (`Include config.d/*`).
As OpenSSH does (ssh_config(5)): a path that is not absolute and does not start with `~`
is relative to ~/.ssh; globs expand in sorted order; a file that does not exist is no
error; one line may name several paths; includes nest up to 16 deep. An `Include` inside a
Host or Match block applies under that block: the included lines are put in its place,
and the enclosing block's line (`Host *` at the top level) is repeated after them, so what
follows keeps its condition even when the included file opened blocks of its own.
"""

from __future__ import annotations

import glob
import os
import re
import shlex

import paramiko

from olmirror.errors import OlmirrorError

MAX_DEPTH = 16  # as OpenSSH's READCONF_MAX_DEPTH
_INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(\S.*?)\s*$", re.IGNORECASE)
_BLOCK = re.compile(r"^\s*(?:host|match)(?:\s*=\s*|\s+)\S", re.IGNORECASE)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise OlmirrorError(f"{path}: cannot read this SSH config ({exc})") from None


def expand_includes(text: str, folder: str, depth: int = 0) -> str:
    """`text` with each `Include` replaced by the files it names (relative to `folder`)."""
    out: list[str] = []
    block: str | None = None
    for line in text.splitlines():
        if _BLOCK.match(line):
            block = line.strip()
        include = _INCLUDE.match(line)
        if not include:
            out.append(line)
            continue
        if depth >= MAX_DEPTH:
            raise OlmirrorError(
                f"~/.ssh/config: Include nests more than {MAX_DEPTH} deep; look for a file "
                "that includes itself"
            )
        for pattern in shlex.split(include[1]):
            path = os.path.join(folder, os.path.expanduser(pattern))
            for file in sorted(glob.glob(path)):
                out.append(expand_includes(_read(file), folder, depth + 1))
                # back to the enclosing block, or to every host after a top-level Include
                # (OpenSSH restores the state it had before the file: readconf.c)
                out.append(block or "Host *")
    return "\n".join(out) + "\n"


def load_ssh_config() -> paramiko.SSHConfig:
    """The user's ~/.ssh/config (none: an empty one)."""
    path = os.path.expanduser("~/.ssh/config")
    if not os.path.exists(path):
        return paramiko.SSHConfig()
    text = expand_includes(_read(path), os.path.dirname(path))
    try:
        return paramiko.SSHConfig.from_text(text)
    except (ValueError, paramiko.SSHException) as exc:
        raise OlmirrorError(f"{path}: cannot read this SSH config ({exc})") from None
