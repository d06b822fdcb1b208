"""The pip configuration of a worker's sandbox, which alone decides where it installs from.

OpenLambda's installer lambda runs `pip3 install --no-deps PKG --cache-dir /tmp/.cache
-t /host/files` (go/worker/embedded/packagePullerInstaller.py:72) with no index option,
chrooted in the sandbox (sock_base_path) with an empty environment (go/worker/sandbox/
sock.go:70,92). That pip reads, in order, /etc/xdg/pip/pip.conf and /etc/pip.conf
(global), ~/.pip/pip.conf and ~/.config/pip/pip.conf of root (user), and
<sys.prefix>/pip.conf (site, /usr on Ubuntu's python3); a later file overrides an
earlier one, and an [install] section overrides [global]. olmirror writes the index into
/etc/pip.conf's [global] and removes every other way to an index from it.
"""

from __future__ import annotations

import posixpath
import re

PIP_CONF = "etc/pip.conf"
# The sandbox's other pip configuration files, relative to its root.
OTHER_CONFIGS = (
    "etc/xdg/pip/pip.conf",
    "root/.pip/pip.conf",
    "root/.config/pip/pip.conf",
    "usr/pip.conf",
)
# Options that add or replace an index: olmirror's own, and those it removes.
INDEX_OPTIONS = ("index-url", "trusted-host", "extra-index-url", "find-links", "no-index")
SECTIONS = ("global", "install", "download")

_SECTION = re.compile(r"^\s*\[([^\]]*)\]")
_KEY = re.compile(r"^([^\s=:#;][^=:]*?)\s*[=:]")


def option_name(key: str) -> str:
    """pip's spelling of an option in a config file: index_url and --index-url are index-url."""
    return key.strip().lower().replace("_", "-").removeprefix("--")


def index_options(text: str) -> list[str]:
    """`section.option` of every index option in a pip configuration text."""
    found, section = [], None
    for line in text.splitlines():
        if match := _SECTION.match(line):
            section = match[1].strip().lower()
        elif (
            (match := _KEY.match(line))
            and section in SECTIONS
            and (name := option_name(match[1])) in INDEX_OPTIONS
        ):
            found.append(f"{section}.{name}")
    return found


def converge(text: str, values: dict[str, str]) -> str:
    """`text` with [global] holding exactly `values` among the index options, and no index
    option in [install] or [download]; every other line kept as it is."""
    out: list[str] = []
    section: str | None = None
    dropping = False

    def close_global() -> None:
        if section == "global":
            out.extend(f"{name} = {value}\n" for name, value in values.items())

    for line in text.splitlines(keepends=True):
        if dropping and line[:1] in (" ", "\t") and line.strip():
            continue  # the continuation of a value being removed
        dropping = False
        if match := _SECTION.match(line):
            close_global()
            section = match[1].strip().lower()
        elif (
            (match := _KEY.match(line))
            and section in SECTIONS
            and option_name(match[1]) in INDEX_OPTIONS
        ):
            dropping = True
            continue
        if line and not line.endswith("\n") and section is not None:
            line += "\n"
        out.append(line)
    if "global" not in _sections(text):
        if out and out[-1].strip():
            out.append("\n")
        out.append("[global]\n")
        section = "global"
    close_global()
    return "".join(out)


def _sections(text: str) -> set[str]:
    return {m[1].strip().lower() for line in text.splitlines() if (m := _SECTION.match(line))}


def config_paths(sandbox: str) -> tuple[str, tuple[str, ...]]:
    """The sandbox's /etc/pip.conf, and its other pip configuration files, on the host."""
    return posixpath.join(sandbox, PIP_CONF), tuple(
        posixpath.join(sandbox, other) for other in OTHER_CONFIGS
    )
