"""Hostile input: each case asserts the safe outcome (a sentinel never made, a secret never
printed, a generated file that gains no line), not just that something failed."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

from olmirror.bandersnatch_config import render
from olmirror.cli import main
from olmirror.errors import OlmirrorError
from olmirror.lockfile import Lock, LockedFile, TargetLock
from olmirror.openlambda.worker import requirements_in
from olmirror.requirement_sets import parse_requirements

HEAD = "version: 1\nmirror:\n  directory: /srv/m\n  targets: [{python: '3.12', platform: any}]\n"
SECRET = "s3cr3t-Pa55"


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *args: str) -> str:
    spec = tmp_path / "olmirror.yaml"
    spec.write_text(text)
    capsys.readouterr()
    code = main([*args, "-f", str(spec)]) if args else main(["validate", "-f", str(spec)])
    out = capsys.readouterr()
    assert code == 1
    assert "did not expect" not in out.out + out.err and "Traceback" not in out.err
    return out.out + out.err


# --- 1. injection through configuration another program reads --------------------------


@pytest.mark.parametrize("char", [*"'`\"$\\;&<>|(){}", " ", "\t"])
def test_an_ssh_alias_with_a_shell_character_never_reaches_ssh_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, char: str
) -> None:
    """~/.ssh/config's `Match exec` hands %n to a shell; OpenSSH refuses such names (9.6)."""
    sentinel = tmp_path / "sentinel"
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(f'Match exec "touch {sentinel}-%n"\n  User x\n')
    monkeypatch.setenv("HOME", str(home))
    alias = f"w{char}touch {sentinel}"
    hosts = {"w": {"ssh_alias": alias}}
    workers = [{"name": "a", "host": "w", "path": "/o"}]
    spec = HEAD + yaml.safe_dump({"hosts": hosts, "workers": workers})
    out = _run(tmp_path, capsys, spec, "plan")
    assert "is not a Host entry name of ~/.ssh/config that OpenSSH accepts" in out
    assert not list(tmp_path.glob("sentinel*")), "a shell ran"


def test_a_line_break_in_the_mirror_folder_adds_no_key_to_any_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = HEAD.replace("/srv/m", '"/srv/m\\nstop-on-error = false"')
    out = _run(tmp_path, capsys, spec)
    assert "mirror.directory: '/srv/m\\nstop-on-error = false' holds a line break" in out


def _lock(filename: str) -> Lock:
    target = TargetLock(
        python="3.12",
        platform="any",
        sets={"allowlist": ["six==1.16.0"]},
        files={
            "six==1.16.0": LockedFile(filename, "https://u/packages/x/" + filename, "0" * 64, 1)
        },
    )
    return Lock(inputs="x", upstream="https://u.example/%(here)s", targets={"py3.12-any": target})


def test_bandersnatch_conf_keeps_a_percent_literal_and_refuses_an_upstream_line_break() -> None:
    text = render("/srv/100%/m", _lock("six-1.16.0-py2.py3-none-any.whl"))
    parser = configparser.ConfigParser(delimiters="=")  # bandersnatch's: it interpolates %
    parser.read_string(text)
    assert parser.get("mirror", "directory") == "/srv/100%/m"
    assert parser.get("mirror", "master") == "https://u.example/%(here)s"
    hostile = "six-1.16.0-py3-none-any.whl\n[mirror]\ndirectory = /etc"
    with pytest.raises(OlmirrorError, match=r"cannot be written into bandersnatch\.conf"):
        render("/srv/m", _lock(hostile))


def test_a_spec_file_name_with_a_line_break_adds_no_requirement() -> None:
    name = "olmirror\n-r /etc/passwd\n.yaml"
    text = requirements_in(name, ["six==1.16.0"], "worker w")
    assert [line for line, _ in parse_requirements(text, "r.in").requirements] == ["six==1.16.0"]
    assert not parse_requirements(text, "r.in").includes
    assert len(text.splitlines()) == 2


# --- 4. secrets in output ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("upstream", f"ftp://user:{SECRET}@pypi.example/simple"),
        ("upstream", f"https://user:{SECRET}@pypi.example/simple?token=x"),
        ("upstream", f"https://user:{SECRET}@pypi.example:99999/"),
        ("upstream", f"https://user:{SECRET}@bad_host/"),
        ("upstream", f"user:{SECRET}@pypi.example/simple"),
        ("upstream", f"https://user:{SECRET}@pypi.example/simple#frag with space"),
    ],
)
def test_a_password_in_a_url_is_never_printed_whatever_else_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, url: str
) -> None:
    spec = HEAD + f"  {field}: {url!r}\n"
    for command in ((), ("plan",)):
        out = _run(tmp_path, capsys, spec, *command)
        assert SECRET not in out
        assert "carries a user name or password" in out
