"""`Include` in ~/.ssh/config, expanded as OpenSSH does before paramiko parses the config."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from olmirror.connection.ssh_config import expand_includes
from olmirror.errors import OlmirrorError


def _config(folder: Path, text: str) -> paramiko.SSHConfig:
    return paramiko.SSHConfig.from_text(expand_includes(text, str(folder)))


def test_relative_globbed_nested_and_missing_includes(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("Host b\n  Port 2202\n")
    (tmp_path / "conf.d" / "a.conf").write_text("Host a\n  Port 2201\nInclude more\n")
    (tmp_path / "more").write_text("Host c\n  Port 2203\n")
    config = _config(tmp_path, "Include conf.d/*.conf no-such-file\nHost *\n  User ops\n")
    assert [config.lookup(h)["port"] for h in "abc"] == ["2201", "2202", "2203"]
    assert config.lookup("a")["user"] == "ops"


def test_options_after_a_top_level_include_apply_to_every_host(tmp_path: Path) -> None:
    """OpenSSH is back at "every host" after an included file, whatever blocks it opened."""
    (tmp_path / "a.conf").write_text("Host a\n  Port 2201\n")
    config = _config(tmp_path, "Include a.conf\nUser deploy\nPort 2222\n")
    assert config.lookup("b")["user"] == "deploy" and config.lookup("b")["port"] == "2222"
    assert config.lookup("a")["port"] == "2201", "the first value found wins, as in OpenSSH"


def test_an_include_inside_a_host_block_keeps_that_block_after_it(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("  IdentityFile ~/.ssh/work\n")
    (tmp_path / "others").write_text("Host other\n  Port 2200\n")
    config = _config(
        tmp_path,
        f"Host work\n  Include keys\n  Include {tmp_path}/others\n  User deploy\n",
    )
    assert config.lookup("work")["identityfile"][0].endswith("/.ssh/work")
    assert config.lookup("work")["user"] == "deploy", "still the work block after the include"
    assert "user" not in config.lookup("other")


def test_an_include_loop_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "self").write_text("Include self\n")
    with pytest.raises(OlmirrorError, match="Include nests more than 16 deep"):
        expand_includes("Include self\n", str(tmp_path))
