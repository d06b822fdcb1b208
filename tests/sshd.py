"""Real OpenSSH `sshd` daemons on 127.0.0.1 for tests, one per simulated host.

Each host has its own host key, port, sshd files and directory tree for the paths it
manages. sshd runs as the test user (no privilege change), accepts only a generated client
key, and is stopped by its own pid. `SetEnv SHLVL=1` makes bash skip ~/.bashrc for the
commands sshd starts (bash reads it only when its shell level is below 2), so a developer's
slow or PATH-changing bashrc (pyenv here) is not part of every remote command.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
STANDIN_OL = Path(__file__).resolve().parent / "standin" / "ol"
READY_WAIT = 20.0


def keygen(path: Path, comment: str = "olmirror-test") -> Path:
    """A new passphrase-less ed25519 key pair at `path` and `path`.pub."""
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


def fingerprint(public_key: Path) -> str:
    """The SHA256 fingerprint that `ssh-keygen -lf` prints for a public key."""
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(public_key)], check=True, capture_output=True, text=True
    )
    return out.stdout.split()[1]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pids: list[int], what: str) -> None:
    """Wait until every pid has exited (an event, not a timing assumption)."""
    deadline = time.monotonic() + READY_WAIT
    while not all(_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: processes {pids} did not exit")
        time.sleep(0.02)


@dataclass
class SshHost:
    """One simulated remote host: an sshd on its own port with its own key and tree."""

    name: str
    home: Path
    client_key: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    extra_config: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The directory tree this host's spec paths live in."""
        return self.home / "tree"

    @property
    def host_key(self) -> Path:
        return self.home / "ssh_host_ed25519_key"

    @property
    def log(self) -> Path:
        return self.home / "sshd.log"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host_key.with_name(self.host_key.name + ".pub"))

    def known_hosts_line(self, port: int | None = None) -> str:
        """This host's key for known_hosts, under its port or another that leads to it
        (a relay's, say)."""
        kind, blob = self.host_key.with_name(self.host_key.name + ".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{port or self.port} {kind} {blob}\n"

    def spec(self, known_hosts: Path, **extra: Any) -> dict[str, Any]:
        """This host's entry under `hosts:` in a spec."""
        return {
            "address": "127.0.0.1",
            "port": self.port,
            "user": getpass.getuser(),
            "identity_file": str(self.client_key),
            "known_hosts": str(known_hosts),
            "ol": str(STANDIN_OL),
            "state_dir": str(self.root / "state"),
            **extra,
        }

    def _config(self) -> Path:
        authorized = self.home / "authorized_keys"
        authorized.write_text(self.client_key.with_name(self.client_key.name + ".pub").read_text())
        # sshd keeps the first value a keyword gets, so extra lines go first and override
        # the defaults; a Match block (to its end) must come last
        match = next(
            (i for i, line in enumerate(self.extra_config) if line.startswith("Match ")),
            len(self.extra_config),
        )
        lines = [
            *self.extra_config[:match],
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {authorized}",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
            "SetEnv SHLVL=1",
            "MaxStartups 100",
            "LogLevel VERBOSE",
            *self.extra_config[match:],
        ]
        config = self.home / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> SshHost:
        """Start sshd and wait until it listens; a taken port is retried with another."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, f"host-key-{self.name}")
        # sshd started by root insists on its privilege-separation directory.
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        for _ in range(5):
            self.port = self.port or free_port()
            self.log.write_text("")
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-f", str(self._config()), "-E", str(self.log)],
                stdin=subprocess.DEVNULL,
            )
            if self._wait_listening():
                return self
            self.port = 0
        raise RuntimeError(f"sshd for {self.name} did not start:\n{self.log.read_text()}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + READY_WAIT
        assert self.proc is not None
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if f"Server listening on 127.0.0.1 port {self.port}." in text:
                return True
            if self.proc.poll() is not None:
                if "Address already in use" in text:
                    return False
                raise RuntimeError(f"sshd for {self.name} exited:\n{text}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sshd for {self.name} did not listen:\n{self.log.read_text()}")

    def drop_connections(self) -> None:
        """Kill every SSH session of this host, as a crash or a network cut would end them.

        Only the sshd session processes are killed; the commands they started (an apply
        lock holder, say) see their stdin close and end by themselves, and this waits
        until they have.
        """
        assert self.proc is not None
        below = descendants(self.proc.pid)
        for pid in below:
            if _command(pid).startswith("sshd"):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        wait_gone(below, f"sessions of {self.name}")

    def stop(self) -> None:
        """Stop sshd and anything its sessions left running, by pid."""
        if self.proc is None:
            return
        below = descendants(self.proc.pid)
        for pid in below:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def rekey(self) -> None:
        """Give the host a new host key on the same port, as a reinstalled machine has."""
        self.stop()
        keygen(self.host_key, f"new-host-key-{self.name}")
        self.start()


class SshFarm:
    """The simulated hosts of one test, each a real sshd; stopped together at the end."""

    def __init__(self, base: Path, client_key: Path) -> None:
        self.base = base
        self.client_key = client_key
        self.hosts: dict[str, SshHost] = {}

    def host(self, name: str, extra_config: list[str] | None = None) -> SshHost:
        home = self.base / name
        home.mkdir(parents=True)
        host = SshHost(name, home, self.client_key, extra_config=extra_config or [])
        self.hosts[name] = host
        return host.start()

    def many(self, count: int, prefix: str = "node") -> list[SshHost]:
        return [self.host(f"{prefix}{i}") for i in range(1, count + 1)]

    def known_hosts(self, *hosts: SshHost, name: str = "known_hosts") -> Path:
        """A known_hosts file that knows exactly `hosts`."""
        path = self.base / name
        path.write_text("".join(h.known_hosts_line() for h in hosts))
        return path

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()
