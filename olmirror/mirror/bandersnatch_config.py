"""bandersnatch.conf for a lock: exactly the locked releases, and of them exactly the locked files.

`allowlist_project` and `allowlist_release` keep the pinned releases; the
`regex_release_file_metadata` filter keeps only the files some target installs,
which is finer than bandersnatch's platform filters (they cannot tell one
manylinux glibc or CPython ABI from another). A private upstream's credentials never go
here: with them, engine `simple` fills the mirror (`lock/engine_choice.py` says why).
"""

from __future__ import annotations

import re

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock

WORKERS = 3
TIMEOUT = 30


def _value(text: str, what: str) -> str:
    """`text` as a value of bandersnatch's ConfigParser: one line, `%` doubled (it
    interpolates `%(name)s`). Upstream data (a file name) must not add keys or sections."""
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise OlmirrorError(
            f"{what} {text!r} holds a line break or control character and cannot be written "
            "into bandersnatch.conf, where it would add lines of its own"
        )
    return text.replace("%", "%%")


def render(directory: str, lock: Lock) -> str:
    pins = sorted({pin for t in lock.targets.values() for pin in t.files})
    filenames = sorted({f.filename for f in lock.files().values()})
    lines = [
        "; Written by olmirror from the lock; edits are overwritten.",
        "[mirror]",
        f"directory = {_value(directory, 'mirror.directory')}",
        f"master = {_value(lock.upstream, 'the upstream')}",
        "api-method = simple",
        "json = false",
        "release-files = true",
        "hash-index = false",
        "simple-format = ALL",
        "compare-method = hash",
        # One package's failure must not stop the others: each synced package is kept.
        "stop-on-error = false",
        f"workers = {WORKERS}",
        f"timeout = {TIMEOUT}",
        "global-timeout = 3600",
        "",
        "[plugins]",
        "enabled =",
        "    allowlist_project",
        "    allowlist_release",
        "    regex_release_file_metadata",
        "",
        "[allowlist]",
        "packages =",
        *(f"    {_value(pin, 'the pin')}" for pin in pins),
        "",
        "[regex_release_file_metadata]",
        "release_file.filename =",
        *(f"    ^{_value(re.escape(name), 'the file name')}$" for name in filenames),
    ]
    return "\n".join(lines) + "\n"
