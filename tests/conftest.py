"""Shared fixtures and helpers: specs, the CLI run in-process, SSH farms, workers, pip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paramiko
import pytest
import yaml
from sshd import SshFarm, free_port, keygen
from upstream import Upstream, clean_upstream, upstream_index

from olmirror.cli import main
from olmirror.connection.ssh_program import ProgramChannel

__all__ = ["clean_upstream", "upstream_index"]  # fixtures for every test module

STANDIN_OL = Path(__file__).resolve().parent / "standin" / "ol"
STANDIN_OL_LEGACY = STANDIN_OL.with_name("ol-legacy")
TARGET = {"python": "3.11", "platform": "manylinux_2_17_x86_64"}
# The stand-in's image whose sandbox runs the tests' target, CPython 3.11 (ol-min is 3.10).
IMAGE = "python:3.11"


def stop_workers(root: Path) -> None:
    """Stop every stand-in worker process below `root`, by its worker.pid, as `ol worker
    down` would (SIGINT), and wait for it to go."""
    for pid_file in root.rglob("worker/worker.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError):
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


def stop_nginx(root: Path) -> None:
    """Stop every olmirror nginx instance whose config lies below `root`, by its pid file."""
    for pid_file in root.rglob(".olmirror/nginx/nginx.pid"):
        try:
            pid = int(pid_file.read_text())
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if title.startswith("nginx: master process") and str(pid_file.parent) in title:
            os.kill(pid, signal.SIGQUIT)


@pytest.fixture(autouse=True)
def _servers_end_with_their_test(tmp_path: Path) -> Iterator[None]:
    """tmp_path readable by others (olmirror's nginx serves as `nobody` when started as
    root), and no stand-in worker or nginx left running after the test."""
    for folder in (tmp_path, *tmp_path.parents[:2]):
        folder.chmod(0o755)
    yield
    stop_workers(tmp_path)
    stop_nginx(tmp_path)


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keygen(tmp_path_factory.mktemp("client") / "id_ed25519")


@pytest.fixture
def farm(tmp_path: Path, client_key: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshFarm]:
    """Real sshd daemons on 127.0.0.1, one per simulated host, stopped after the test."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # the test's key, not an agent's
    hosts = SshFarm(tmp_path / "hosts", client_key)
    yield hosts
    hosts.stop()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Counter[Any]]:
    """Logins and remote commands, counted per sshd port, and the round trips to each
    host's program (requests whose answer is waited for), counted per host name."""
    counts: dict[str, Counter[Any]] = {"connect": Counter(), "exec": Counter(), "trips": Counter()}
    connect, execute = paramiko.SSHClient.connect, paramiko.Channel.exec_command
    call = ProgramChannel.call

    def counted_call(self: ProgramChannel, *args: Any, **kwargs: Any) -> dict[str, Any]:
        counts["trips"][self.host] += 1
        return call(self, *args, **kwargs)

    def counted_connect(self: paramiko.SSHClient, *args: Any, **kwargs: Any) -> None:
        counts["connect"][kwargs["port"]] += 1
        connect(self, *args, **kwargs)

    def counted_exec(self: paramiko.Channel, command: str) -> None:
        counts["exec"][self.get_transport().getpeername()[1]] += 1
        execute(self, command)

    monkeypatch.setattr(paramiko.SSHClient, "connect", counted_connect)
    monkeypatch.setattr(paramiko.Channel, "exec_command", counted_exec)
    monkeypatch.setattr(ProgramChannel, "call", counted_call)
    return counts


def journal(worker: Path) -> list[str]:
    """Every init, up and down the `ol` stand-in performed for this worker, in order."""
    path = worker / "standin-journal"
    return path.read_text().split() if path.exists() else []


def pinned(requirements: Path) -> list[str]:
    """The lines pip installs from a requirements file: comments (`# via` too) dropped."""
    lines = (line.split("#")[0].strip() for line in requirements.read_text().splitlines())
    return [line for line in lines if line]


def venv(folder: Path) -> Path:
    """A fresh virtual environment of this interpreter (Python 3.11, x86_64 Linux)."""
    done = subprocess.run(
        [sys.executable, "-m", "venv", str(folder)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return folder / "bin" / "python"


def worker_install(up: Upstream, python: Path, pip_mirror: str, pin: str, report: Path) -> dict:
    """Install one requirement the way an OpenLambda worker does, from `pip_mirror` (a path,
    or an http URL whose host pip is told to trust); pip's install report."""
    index = pip_mirror if "://" in pip_mirror else f"file://{pip_mirror}"
    trust = ["--trusted-host", urlsplit(index).hostname] if index.startswith("http:") else []
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--quiet",
         "--index-url", f"{index}/simple/", *trust, "--report", str(report), pin],
        env=up.env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"pip install {pin}: {done.stderr}"
    (installed,) = json.loads(report.read_text())["install"]
    return installed


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `olmirror ARGS` in this process; stdin is not a terminal, as in CI."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def write_spec(folder: Path, upstream: Upstream, workers: list[dict], **extra: object) -> Path:
    """A spec whose every path lies inside `folder`, mirroring the test upstream; each worker
    gets a free port and the stand-in's CPython 3.11 image unless it names its own."""
    workers = [{"image": IMAGE, "port": free_port(), **worker} for worker in workers]
    port = free_port()
    # A worker's sandbox sees the host's network, not its files: workers need http.
    serve = {"backend": "http", "listen": f"127.0.0.1:{port}", "url": f"http://127.0.0.1:{port}"}
    spec = {
        "version": 1,
        "hosts": {"local": {"ol": str(STANDIN_OL), "state_dir": str(folder / "state")}},
        "mirror": {
            "directory": str(folder / "mirror"),
            "upstream": upstream.url,
            "ca_file": str(upstream.ca_file),
            **({"serve": serve} if workers else {}),
            "targets": [TARGET],
            # Tests of failures need not wait as long between tries as a real network does.
            "retries": {"backoff": 0.05},
        },
        "workers": workers,
        **extra,
    }
    path = folder / "olmirror.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def local_spec(tmp_path: Path, clean_upstream: Upstream) -> Path:
    """Two local workers with one requirement each, and the mirror they install from."""
    return write_spec(
        tmp_path,
        clean_upstream,
        [
            {"name": "alpha", "path": str(tmp_path / "alpha"), "requirements": ["omega==1.1"]},
            {"name": "beta", "path": str(tmp_path / "beta"), "requirements": ["theta==1.0"]},
        ],
    )
