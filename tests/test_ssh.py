"""Remote hosts over SSH, against real OpenSSH sshd daemons on 127.0.0.1 (see sshd.py)."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import secrets
import shlex
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from sshd import STANDIN_OL, SshFarm, SshHost, descendants, free_port, keygen

from olmirror.cli import main
from olmirror.connection import FactRequest
from olmirror.connection.hosts import Unreachable
from olmirror.connection.ssh import SSHConnection
from olmirror.errors import OlmirrorError
from olmirror.spec import Host

TARGET = {"python": "3.11", "platform": "manylinux_2_17_x86_64"}
NASTY = "sp ace 'single' \"double\" $(touch {mark}) `touch {mark}` ; & | \\ *\nnext line"


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """~/.ssh (config, known_hosts, default keys) is the test's own; no agent unless started."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`olmirror ARGS` in this process: exit code and everything it printed."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def write_spec(
    folder: Path, hosts: dict[str, dict[str, Any]], workers: list[dict[str, Any]], name: str = ""
) -> Path:
    """A spec whose mirror on this machine is served over http: a worker's sandbox sees the
    host's network, not its files. Each worker gets a port of its own."""
    port = free_port()
    serve = {"backend": "http", "listen": f"127.0.0.1:{port}", "url": f"http://127.0.0.1:{port}"}
    spec = {
        "version": 1,
        "hosts": hosts,
        "mirror": {"directory": str(folder / "mirror"), "serve": serve, "targets": [TARGET]},
        "workers": [{"port": free_port(), **w} for w in workers],
    }
    path = folder / (name or "olmirror.yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def worker(host: SshHost, name: str, path: str = "") -> dict[str, Any]:
    """A worker without requirements: nothing to resolve, so no index is needed.

    Stopped: OpenLambda's worker listens on <path>/worker/ol.sock, a longer path than a
    UNIX socket may have below pytest's folders; these tests are about SSH."""
    return {
        "name": name,
        "host": host.name,
        "path": path or str(host.root / "opt" / "ol" / name),
        "requirements": [],
        "state": "stopped",
    }


def connect(host: SshHost, known_hosts: Path, **extra: Any) -> SSHConnection:
    return SSHConnection.connect(host.name, Host.model_validate(host.spec(known_hosts, **extra)))


def recap(out: str) -> dict[str, str]:
    """Host -> outcome, from the recap that `apply` prints last."""
    lines = out[out.index("Recap") :].splitlines()[1:]
    return {
        line.split()[0]: line.split()[1]
        for line in lines
        if line.startswith("  ") and not line.startswith("   ") and "changed=" in line
    }


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".olmirror-tmp")]


def test_plan_and_apply_across_five_hosts_then_a_noop_plan_of_one_command_per_host(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str], calls: dict[str, Counter]
) -> None:
    nodes = farm.many(5)
    known = farm.known_hosts(*nodes)
    spec = write_spec(
        tmp_path,
        {n.name: n.spec(known) for n in nodes},
        [worker(n, f"w-{n.name}") for n in nodes],
    )
    limit = ",".join(n.name for n in nodes)
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--limit", "local", "--yes")
    assert code == 0, out  # the mirror the workers check for

    code, out = run_cli(capsys, "plan", "-f", str(spec), "--limit", limit, "--detailed-exitcode")
    assert code == 2, out
    capsys.readouterr()
    assert main(["plan", "-f", str(spec), "--limit", limit, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    pending = {h["host"]: sum(c["action"] != "none" for c in h["changes"]) for h in plan["hosts"]}
    assert set(pending) == {n.name for n in nodes}, "every host planned"
    assert len(set(pending.values())) == 1 and 0 not in pending.values(), pending  # alike
    assert plan["summary"]["changes"] == sum(pending.values())

    for counter in calls.values():
        counter.clear()
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--limit", limit, "--yes")
    assert code == 0, out
    assert calls["connect"] == Counter({n.port: 1 for n in nodes}), "one login per host per run"
    assert calls["exec"] == Counter({n.port: 2 for n in nodes}), "the program, `ol worker init`"
    for node in nodes:
        path = node.root / "opt" / "ol" / f"w-{node.name}"
        config = json.loads((path / "config.json").read_text())
        assert config["pip_mirror"] == yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]
        assert config["registry"] == f"file://{path}/registry"
        assert f"worker w-{node.name} in" in (path / "registry" / "requirements.in").read_text()
    assert recap(out) == {n.name: "changed" for n in nodes}
    assert not any(temp_files(n.root) for n in nodes)

    for counter in calls.values():
        counter.clear()
    code, out = run_cli(capsys, "plan", "-f", str(spec), "--limit", limit, "--detailed-exitcode")
    assert code == 0, out
    assert "Plan: 0 to change on 5 hosts" in out
    assert calls["connect"] == Counter({n.port: 1 for n in nodes})
    assert calls["exec"] == Counter({n.port: 1 for n in nodes})
    assert calls["trips"] == Counter({n.name: 1 for n in nodes})

    # Drift on every worker: a key of config.json and a file. The apply mends both in one
    # program per host and two round trips: its facts under the lock, then one batch (the
    # merge starts from the config.json those facts hold).
    for node in nodes:
        path = node.root / "opt" / "ol" / f"w-{node.name}"
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, "pip_mirror": "http://x"}))
        (path / "registry" / "requirements.in").unlink()
    for counter in calls.values():
        counter.clear()
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--limit", limit, "--yes")
    assert code == 0, out
    assert "Recap" in out and recap(out) == {n.name: "changed" for n in nodes}
    assert calls["exec"] == Counter({n.port: 1 for n in nodes})
    assert calls["trips"] == Counter({n.name: 2 for n in nodes})
    for node in nodes:
        path = node.root / "opt" / "ol" / f"w-{node.name}"
        config = json.loads((path / "config.json").read_text())
        assert config["pip_mirror"] == yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]
        assert (path / "registry" / "requirements.in").exists()


def test_a_host_that_is_down_is_reported_unreachable_and_the_others_go_on(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = farm.many(3)
    known = farm.known_hosts(*nodes)
    spec = write_spec(
        tmp_path, {n.name: n.spec(known) for n in nodes}, [worker(n, f"w{n.name}") for n in nodes]
    )
    nodes[1].stop()

    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes", "--no-color")
    assert code == 1, out
    outcomes = recap(out)
    assert [outcomes[n.name] for n in nodes] == ["changed", "unreachable", "changed"]
    assert f"connection refused by 127.0.0.1:{nodes[1].port}" in out[out.index("Recap") :]
    assert (nodes[0].root / "opt" / "ol" / "wnode1" / "config.json").exists()
    assert (nodes[2].root / "opt" / "ol" / "wnode3" / "config.json").exists()


def test_a_changed_host_key_is_refused_even_with_accept_new(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = farm.host("moved")
    known = farm.known_hosts(node)
    recorded, old = known.read_text(), node.fingerprint
    node.rekey()
    for policy in ("strict", "accept-new"):
        spec = write_spec(
            tmp_path, {node.name: node.spec(known, host_key_policy=policy)}, [worker(node, "w")]
        )
        code, out = run_cli(capsys, "plan", "-f", str(spec))
        assert code == 1, out
        assert "unreachable" in out
        assert "has CHANGED" in out
        assert old in out and node.fingerprint in out
        assert f"ssh-keygen -R '[127.0.0.1]:{node.port}'" in out
    assert known.read_text() == recorded
    assert not (node.root / "opt").exists()


def test_an_unknown_host_is_refused_with_its_fingerprint_then_accepted_with_accept_new(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = farm.host("fresh")
    known = tmp_path / "home" / ".ssh" / "known_hosts"
    spec = write_spec(tmp_path, {node.name: node.spec(known)}, [worker(node, "w")])

    code, out = run_cli(capsys, "plan", "-f", str(spec))
    assert code == 1, out
    assert "is not known" in out and node.fingerprint in out
    assert "host_key_policy: accept-new" in out
    assert f"ssh-keyscan -t ed25519 -p {node.port} 127.0.0.1 >> {known}" in out
    assert not known.exists()

    accepting = write_spec(
        tmp_path,
        {node.name: node.spec(known, host_key_policy="accept-new")},
        [worker(node, "w")],
        name="accepting.yaml",
    )
    code, out = run_cli(capsys, "plan", "-f", str(accepting))
    assert code == 0, out
    assert known.read_text() == node.known_hosts_line()

    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes")
    assert code == 0, out


def test_hashed_known_hosts_entries_are_honoured(farm: SshFarm) -> None:
    """OpenSSH hashes known_hosts names (Debian does by default); both verdicts still hold."""
    node = farm.host("hashed")
    known = farm.known_hosts(node)
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert "127.0.0.1" not in known.read_text()
    conn = connect(node, known)
    assert conn.run(["true"]).ok
    conn.close()
    node.rekey()
    with pytest.raises(Unreachable, match="has CHANGED"):
        connect(node, known)


def test_the_keyscan_line_from_the_refusal_makes_the_host_known(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = farm.host("scanned")
    known = tmp_path / "known_hosts"
    spec = write_spec(tmp_path, {node.name: node.spec(known)}, [worker(node, "w")])
    code, out = run_cli(capsys, "plan", "-f", str(spec))
    assert code == 1
    suggested = out[out.index("`ssh-keyscan") + 1 :]
    suggested = suggested[: suggested.index("`")]
    subprocess.run(suggested, shell=True, check=True, capture_output=True)
    code, out = run_cli(capsys, "plan", "-f", str(spec))
    assert code == 0, out


def test_wrong_credentials_are_reported_as_refused(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node, other = farm.host("locked"), farm.host("fine")
    known = farm.known_hosts(node, other)
    stranger = keygen(tmp_path / "not-authorized")
    spec = write_spec(
        tmp_path,
        {
            node.name: node.spec(known, identity_file=str(stranger)),
            other.name: other.spec(known),
        },
        [worker(node, "w1"), worker(other, "w2")],
    )
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes", "--no-color")
    assert code == 1, out
    assert f"authentication as {getpass.getuser()!r} failed" in out
    assert f"identity file {stranger}" in out
    assert "unreachable" in out
    assert (other.root / "opt" / "ol" / "w2" / "config.json").exists()

    missing = write_spec(
        tmp_path,
        {node.name: node.spec(known, identity_file=str(tmp_path / "no-such-key"))},
        [worker(node, "w1")],
        name="missing.yaml",
    )
    code, out = run_cli(capsys, "plan", "-f", str(missing))
    assert code == 1
    assert "no-such-key does not exist on this machine" in out


def test_paths_and_contents_with_spaces_quotes_substitutions_and_newlines(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = farm.host("quoted")
    known = farm.known_hosts(node)
    mark = tmp_path / "substituted"
    nasty = NASTY.format(mark=mark)
    # The first worker is created by `ol worker init`; the second one's config.json exists
    # already (as after an earlier init), so olmirror alone handles its whole nasty path.
    plain = str(node.root / nasty / "w")
    full = str(node.root / nasty / "pre")
    Path(full).mkdir(parents=True)
    Path(full, "config.json").write_text(json.dumps({"pip_mirror": ""}, indent=2) + "\n")
    Path(full, "lambda", "etc").mkdir(parents=True)
    spec_name = "spec 'q' \"d\" $(id) `id` $HOME.yaml"
    workers = [worker(node, "w", path=plain), worker(node, "pre", path=full)]
    spec = write_spec(tmp_path, {node.name: node.spec(known)}, workers, name=spec_name)

    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes")
    assert code == 0, out
    assert json.loads(Path(plain, "config.json").read_text())["registry"] == (
        f"file://{plain}/registry"
    )
    for path in (plain, full):
        config = json.loads(Path(path, "config.json").read_text())
        url = yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]
        assert config["pip_mirror"] == url
        assert f"index-url = {url}/simple/" in Path(path, "lambda", "etc", "pip.conf").read_text()
        assert spec_name in Path(path, "registry", "requirements.in").read_text()
    code, out = run_cli(capsys, "plan", "-f", str(spec), "--detailed-exitcode")
    assert code == 0, out

    conn = connect(node, known)
    try:
        folder = f"{full}/more"
        name = "f 'q' \"d\" $(id) `id` \\ * ;\nnext"
        conn.make_dir(f"{folder}/deeper", 0o750)
        content = f"{nasty}\n$HOME ${{PATH}} %s %% \0 end\n".encode() + bytes(range(256))
        conn.write_file(f"{folder}/{name}", content)
        assert Path(folder, name).read_bytes() == content
        assert conn.read_file(f"{folder}/{name}") == content
        assert conn.stat(f"{folder}/deeper").kind == "dir"
        echoed = conn.run(["printf", "%s\\0", nasty, "$HOME", "*", name])
        assert echoed.stdout.split("\0")[:4] == [nasty, "$HOME", "*", name]
        assert conn.run(["test", "-f", f"{folder}/{name}"]).ok
        facts = conn.gather(FactRequest(content=frozenset({f"{folder}/{name}"})))
        assert facts.path(f"{folder}/{name}").content == content
    finally:
        conn.close()
    assert not mark.exists(), "a value reached a shell unquoted"
    assert not Path.home().joinpath("substituted").exists()


def test_files_keep_or_take_the_requested_mode_and_replace_atomically(
    farm: SshFarm, tmp_path: Path
) -> None:
    node = farm.host("modes")
    conn = connect(node, farm.known_hosts(node))
    try:
        new = node.root / "new.txt"
        conn.write_file(str(new), b"one")
        assert new.stat().st_mode & 0o7777 == 0o644
        conn.write_file(str(new), b"two", 0o600)
        assert new.stat().st_mode & 0o7777 == 0o600
        inode = new.stat().st_ino
        conn.write_file(str(new), b"three")
        assert new.stat().st_mode & 0o7777 == 0o600
        assert new.read_bytes() == b"three"
        assert new.stat().st_ino != inode, "the file was rewritten in place, not replaced"
        with pytest.raises(FileNotFoundError) as missing:
            conn.read_file(str(node.root / "absent"))
        assert missing.value.filename == str(node.root / "absent")
        with pytest.raises(FileNotFoundError):
            conn.write_file(str(node.root / "no-folder" / "file"), b"x")
        assert conn.stat(str(node.root / "absent")).kind is None
        assert not temp_files(node.root)
    finally:
        conn.close()


def test_commands_report_exit_codes_missing_programs_environment_and_timeouts(
    farm: SshFarm,
) -> None:
    node = farm.host("runner")
    conn = connect(node, farm.known_hosts(node))
    try:
        assert conn.run(["sh", "-c", "echo out; echo err >&2; exit 3"]).returncode == 3
        result = conn.run(["sh", "-c", "echo out; echo err >&2"])
        assert (result.stdout, result.stderr) == ("out\n", "err\n")
        assert conn.run(["no-such-program-here"]).returncode == 127
        assert conn.run(["cat"], stdin=b"x" * 3_000_000).stdout == "x" * 3_000_000
        env = conn.run(["sh", "-c", 'printf %s "$OLM_VALUE"'], env={"OLM_VALUE": "a b $(c)"})
        assert env.stdout == "a b $(c)"
        slow = conn.run(["sleep", "60"], timeout=0.5)
        assert slow.returncode == 124 and "timed out" in slow.stderr
        assert conn.run(["true"]).ok, "the connection is still usable after a timeout"
    finally:
        conn.close()


def test_the_connection_killed_in_the_middle_of_an_apply_then_apply_converges(
    farm: SshFarm,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node, other = farm.host("flaky"), farm.host("steady")
    known = farm.known_hosts(node, other)
    hosts = {h.name: h.spec(known) for h in (node, other)}
    workers = [worker(node, "w"), worker(other, "v")]
    spec = write_spec(tmp_path, hosts, workers)
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes")
    assert code == 0, out
    config = node.root / "opt" / "ol" / "w" / "config.json"
    before = config.read_text()

    # A new mirror port changes `pip_mirror` in every worker's config.json; the cut comes
    # halfway through sending the flaky host's batch of changes, which holds its config.json.
    old_port = yaml.safe_load(spec.read_text())["mirror"]["serve"]["listen"].rpartition(":")[2]
    moved = f"127.0.0.1:{free_port()}"
    spec.write_text(spec.read_text().replace(f"127.0.0.1:{old_port}", moved))
    sendall = paramiko.Channel.sendall
    cut: list[bytes] = []

    def send_half_then_cut(self: paramiko.Channel, data: bytes) -> None:
        mine = (
            f'"pip_mirror": "http://{moved}"'.encode() in data and str(node.root).encode() in data
        )
        if not mine or cut:
            return sendall(self, data)
        sendall(self, data[: len(data) // 2])
        cut.append(data)
        node.drop_connections()
        return sendall(self, data[len(data) // 2 :])

    monkeypatch.setattr(paramiko.Channel, "sendall", send_half_then_cut)
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes", "--no-color")
    monkeypatch.undo()
    assert cut, "the batch was never interrupted; the test proved nothing"
    assert code == 1, out
    assert "connection was lost" in out
    assert recap(out)[other.name] == "changed"
    assert config.read_text() == before, "the old config.json must stay whole"
    assert not temp_files(node.root), "a cut batch writes nothing"

    # What a crash in the middle of a write leaves, the next write of that file removes.
    leftover = config.with_name(".config.json.k3y.olmirror-tmp")
    leftover.write_text('{"pip_mirror": ')
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes")
    assert code == 0, out
    assert json.loads(config.read_text())["pip_mirror"] == f"http://{moved}"
    assert not temp_files(node.root)
    code, out = run_cli(capsys, "plan", "-f", str(spec), "--detailed-exitcode")
    assert code == 0, out


def test_the_apply_lock_fails_at_once_when_held_and_dies_with_its_connection(
    farm: SshFarm,
) -> None:
    node = farm.host("locked")
    known = farm.known_hosts(node)
    state = str(node.root / "state")
    nothing = FactRequest()
    holder = connect(node, known)
    holder.hold_lock(state)
    holder.gather(nothing)  # the lock's answer comes with the next request's
    second = connect(node, known)
    second.hold_lock(state)
    with pytest.raises(OlmirrorError, match="another olmirror apply is running here"):
        second.gather(nothing)
    second.close()
    node.drop_connections()
    holder.close()
    third = connect(node, known)
    try:
        third.hold_lock(state)
        third.gather(nothing)
    finally:
        third.close()


def test_ssh_alias_from_ssh_config_and_proxy_jump(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str], _own_home: Path
) -> None:
    """The aliases come from files the config includes, as most real configs are laid out."""
    jump, inner = farm.host("jump"), farm.host("inner")
    known = farm.known_hosts(jump, inner)
    config = _own_home / ".ssh" / "config"
    (config.parent / "config.d").mkdir(parents=True)
    config.parent.chmod(0o700)
    config.write_text(
        f"Include config.d/*.conf\nHost 127.0.0.1\n  IdentityFile {farm.client_key}\n"
    )
    (config.parent / "config.d" / "10-inner.conf").write_text(
        f"Host inner-alias\n  HostName 127.0.0.1\n  Port {inner.port}\n  User root\n"
        f"  IdentityFile {farm.client_key}\n  UserKnownHostsFile {known}\n"
    )
    (config.parent / "config.d" / "20-jump.conf").write_text(
        f"Host via-jump\n  HostName 127.0.0.1\n  Port {inner.port}\n  User root\n"
        f"  IdentityFile {farm.client_key}\n  UserKnownHostsFile {known}\n"
        f"  ProxyJump root@127.0.0.1:{jump.port}\n"
    )
    # Both routes lead to one machine: each gets its own lock folder so they can run at once.
    hosts = {
        route: {"ssh_alias": alias, "ol": str(STANDIN_OL), "state_dir": str(inner.root / route)}
        for route, alias in (("by-alias", "inner-alias"), ("by-jump", "via-jump"))
    }
    workers = [
        {"name": "a", "host": "by-alias", "path": str(inner.root / "a")},
        {"name": "j", "host": "by-jump", "path": str(inner.root / "j")},
    ]
    spec = write_spec(tmp_path, hosts, workers)
    accepted = jump.log.read_text().count("Accepted publickey")
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes")
    assert code == 0, out
    assert (inner.root / "a" / "config.json").exists()
    assert (inner.root / "j" / "config.json").exists()
    assert jump.log.read_text().count("Accepted publickey") == accepted + 1


def test_proxy_command_from_ssh_config(
    farm: SshFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str], _own_home: Path
) -> None:
    jump, inner = farm.host("gate"), farm.host("behind")
    known = farm.known_hosts(jump, inner)
    hop = [
        "ssh", "-F", "/dev/null", "-i", str(farm.client_key), "-p", str(jump.port),
        "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
        "-W", "%h:%p", "root@127.0.0.1",
    ]  # fmt: skip
    config = _own_home / ".ssh" / "config"
    config.parent.mkdir(mode=0o700)
    config.write_text(
        f"Host behind\n  HostName 127.0.0.1\n  Port {inner.port}\n  User root\n"
        f"  IdentityFile {farm.client_key}\n  ProxyCommand {shlex.join(hop)}\n"
    )
    spec = write_spec(
        tmp_path,
        {
            "behind": {
                "ssh_alias": "behind",
                "known_hosts": str(known),
                "ol": str(STANDIN_OL),
                "state_dir": str(inner.root / "state"),
            }
        },
        [{"name": "p", "host": "behind", "path": str(inner.root / "p")}],
    )
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes")
    assert code == 0, out
    assert (inner.root / "p" / "config.json").exists()
    assert "Accepted publickey" in jump.log.read_text()


def test_keys_from_ssh_agent(
    farm: SshFarm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = farm.host("agented")
    known = farm.known_hosts(node)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        while not sock.exists():
            if agent.poll() is not None:
                raise RuntimeError("ssh-agent exited")
            time.sleep(0.02)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(farm.client_key)], check=True)
        spec = node.spec(known)
        del spec["identity_file"]
        conn = SSHConnection.connect(node.name, Host.model_validate(spec))
        try:
            assert conn.run(["true"]).ok
        finally:
            conn.close()
    finally:
        agent.terminate()
        agent.wait()


def test_become_runs_every_step_through_sudo(
    farm: SshFarm,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = farm.host("privileged")
    known = farm.known_hosts(node)
    spec = write_spec(tmp_path, {node.name: node.spec(known, become=True)}, [worker(node, "w")])
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes")
    assert code == 0, out
    assert (node.root / "opt" / "ol" / "w" / "registry" / "requirements.in").exists()
    code, out = run_cli(capsys, "plan", "-f", str(spec), "--detailed-exitcode")
    assert code == 0, out

    needs = connect(node, known, become=True, become_password_env="OLM_TEST_SUDO_PASSWORD")
    try:
        monkeypatch.delenv("OLM_TEST_SUDO_PASSWORD", raising=False)
        with pytest.raises(OlmirrorError, match="OLM_TEST_SUDO_PASSWORD, but that"):
            needs.run(["true"])
        monkeypatch.setenv("OLM_TEST_SUDO_PASSWORD", "not-a-real-secret")
        piped = needs.run(["cat"], stdin=b"only this\n")
        assert piped.stdout == "only this\n", "the password must not reach the program's stdin"
        assert "not-a-real-secret" not in piped.stderr
        assert needs.run(["id", "-u"]).stdout.strip() == "0"
        needs.write_file(str(node.root / "as-root"), b"x")
        assert (node.root / "as-root").read_bytes() == b"x"
    finally:
        needs.close()


def test_connection_failures_raise_unreachable_with_the_reason(
    farm: SshFarm, tmp_path: Path
) -> None:
    node = farm.host("gone")
    known = farm.known_hosts(node)
    node.stop()
    with pytest.raises(Unreachable, match="connection refused"):
        connect(node, known)
    unknown = Host(address="no-such-host.invalid", known_hosts=str(known))
    with pytest.raises(Unreachable, match="cannot resolve host name"):
        SSHConnection.connect("nameless", unknown)


def test_a_dropped_connection_is_reported_lost_and_the_next_login_works(farm: SshFarm) -> None:
    node = farm.host("helper")
    known = farm.known_hosts(node)
    conn = connect(node, known)
    assert node.proc is not None
    assert descendants(node.proc.pid), "the login runs in session processes under this sshd"
    node.drop_connections()
    assert node.proc.poll() is None, "only the sessions were killed, not sshd"
    with pytest.raises(Unreachable, match="connection was lost"):
        conn.run(["true"])
    conn.close()
    again = connect(node, known)
    assert again.run(["true"]).ok
    again.close()


@pytest.fixture
def sudo_user(client_key: Path) -> Iterator[tuple[str, str]]:
    """An ordinary login whose sudo asks for its password: (name, password), removed after.

    The tests run as root (CI does), whose sudo never asks; this user's does. sshd reads
    a user's authorized keys as that user, so the test's key goes into its own home.
    """
    name, password = f"olm{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    rule = Path("/etc/sudoers.d") / name
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        rule.write_text(f"{name} ALL=(ALL) ALL\n")
        rule.chmod(0o440)
        ssh = Path("/home") / name / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
        subprocess.run(["chown", "-R", f"{name}:", str(ssh)], check=True)
        yield name, password
    finally:
        rule.unlink(missing_ok=True)
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)


def test_become_answers_sudos_password_prompt_from_the_named_variable(
    farm: SshFarm,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sudo_user: tuple[str, str],
) -> None:
    name, password = sudo_user
    node = farm.host(
        "sudoer",
        [f"Match User {name}", f"    AuthorizedKeysFile /home/{name}/.ssh/authorized_keys"],
    )
    known = farm.known_hosts(node)
    as_user = {"user": name, "become": True, "state_dir": f"/home/{name}/.olmirror"}

    without = connect(node, known, **as_user)
    try:
        with pytest.raises(OlmirrorError, match="sudo needs a password there"):
            without.run(["true"])
    finally:
        without.close()
    monkeypatch.setenv("OLM_TEST_SUDO_PASSWORD", "wrong-" + password)
    wrong = connect(node, known, **as_user, become_password_env="OLM_TEST_SUDO_PASSWORD")
    try:
        with pytest.raises(OlmirrorError, match=r"sudo refused the password from \$OLM_TEST"):
            wrong.run(["true"])
    finally:
        wrong.close()

    # With the right password, a whole apply runs as root in a folder only root may write.
    monkeypatch.setenv("OLM_TEST_SUDO_PASSWORD", password)
    (node.root / "opt").mkdir(mode=0o755, exist_ok=True)
    host = node.spec(known, **as_user, become_password_env="OLM_TEST_SUDO_PASSWORD")
    spec = write_spec(tmp_path, {node.name: host}, [worker(node, "w")])
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes", "--limit", "local")
    assert code == 0, out  # the mirror the worker checks for
    code, out = run_cli(capsys, "apply", "-f", str(spec), "--yes", "--limit", node.name)
    assert code == 0, out
    written = node.root / "opt" / "ol" / "w" / "registry" / "requirements.in"
    assert written.stat().st_uid == 0, "written through sudo, as root"
    assert password not in out
    code, out = run_cli(
        capsys, "plan", "-f", str(spec), "--limit", node.name, "--detailed-exitcode"
    )
    assert code == 0, out


class _DroppingForwarder:
    """A TCP forwarder to `port` that closes its first `drops` connections before any
    byte, as sshd does (MaxStartups) when many connections arrive at once."""

    def __init__(self, port: int, drops: int) -> None:
        self.target, self.drops, self.accepted = port, drops, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drops:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize(("drops", "logged_in"), [(2, True), (3, False)])
def test_a_connection_dropped_before_the_banner_is_tried_again(
    farm: SshFarm, tmp_path: Path, drops: int, logged_in: bool
) -> None:
    node = farm.host("busy")
    forwarder = _DroppingForwarder(node.port, drops)
    known = tmp_path / "known_hosts"
    known.write_text(node.known_hosts_line().replace(f":{node.port} ", f":{forwarder.port} "))
    host = Host.model_validate({**node.spec(known), "port": forwarder.port})
    if logged_in:
        conn = SSHConnection.connect(node.name, host)
        assert conn.run(["true"]).ok
        conn.close()
    else:
        with pytest.raises(Unreachable, match=r"SSH handshake .* failed: .* \(3 tries\)"):
            SSHConnection.connect(node.name, host)
    assert forwarder.accepted == 3, "3 tries in all (ConnectionAttempts' default here)"
    forwarder.listener.close()


def test_a_shim_on_path_is_passed_over_for_a_real_python_unless_named(
    farm: SshFarm, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """python3 on PATH that is a script (as pyenv's shim is) costs every start; olmirror runs
    /usr/bin/python3 instead, isolated (-I -S), and hosts.X.python still wins."""
    shims = tmp_path / "shims"
    shims.mkdir()
    marker = tmp_path / "shim-ran"
    shim = shims / "python3"
    shim.write_text(f'#!/bin/sh\ntouch {marker}\nexec /usr/bin/python3 "$@"\n')
    shim.chmod(0o755)
    node = farm.host("shimmed", extra_config=[f"SetEnv PATH={shims}:/usr/bin:/bin SHLVL=1"])
    known = farm.known_hosts(node)
    conn = connect(node, known)
    assert conn.run(["sh", "-c", "command -v python3"]).stdout.strip() == str(shim)
    with caplog.at_level(logging.DEBUG, logger="olmirror"):
        assert conn.gather(FactRequest(paths=frozenset({"/"}))).path("/").kind == "dir"
    conn.close()
    assert not marker.exists(), "the shim was not started"
    assert f"python3 on PATH is a script ({shim})" in caplog.text
    assert "run with /usr/bin/python3" in caplog.text

    named = connect(node, known, python=str(shim))
    assert named.script("pass") == (str(shim), "-I", "-S", "-c", "pass")
    assert named.gather(FactRequest(paths=frozenset({"/"}))).path("/").kind == "dir"
    named.close()
    assert marker.exists(), "the interpreter the spec names is the one started"

    missing = connect(node, known, python="/no/such/python3")
    with pytest.raises(OlmirrorError, match=r"/no/such/python3 is not found.*hosts\.shimmed"):
        missing.gather(FactRequest(paths=frozenset({"/"})))
    missing.close()
