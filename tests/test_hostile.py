"""Hostile input: each case asserts the safe outcome (a sentinel never made, a secret never
printed, a generated file that gains no line), not just that something failed."""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from conftest import IMAGE, STANDIN_OL, write_spec
from packaging.requirements import Requirement
from sshd import SshFarm, SshHost
from upstream import Upstream

from olmirror.cli import main
from olmirror.connection import Connection, FactRequest, LocalConnection
from olmirror.connection.ssh import SSHConnection
from olmirror.errors import OlmirrorError, Unreachable
from olmirror.lock import upstream_index as index
from olmirror.lock.lockfile import Lock, LockedFile, TargetLock
from olmirror.lock.requirements_txt import parse_requirements
from olmirror.lock.simple_api import IndexFile
from olmirror.lock.targets import Target
from olmirror.lock.upstream_index import Index, allowed_origins
from olmirror.mirror.bandersnatch_config import render
from olmirror.mirror.fetch import FETCH_SOURCE
from olmirror.mirror.prune import PruneMirror
from olmirror.openlambda.packages_dir import stale_entries
from olmirror.openlambda.registry import recorded_registries, registry_from_probe
from olmirror.openlambda.worker import requirements_in
from olmirror.remote import probe
from olmirror.remote.upstream_http import Retries
from olmirror.resources import File, ResourceError
from olmirror.spec import Host, Worker, load_spec

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


# --- 6. tracebacks dressed as errors --------------------------------------------------


def _connect(farm: SshFarm, host: SshHost, known_hosts: Path) -> None:
    connection = SSHConnection.connect(host.name, Host.model_validate(host.spec(known_hosts)))
    connection.close()


def test_known_hosts_with_a_certificate_authority_and_a_damaged_line_still_connects(
    farm: SshFarm,
) -> None:
    node = farm.host("ca")
    known = farm.known_hosts(node)
    ca = node.host_key.with_name(node.host_key.name + ".pub").read_text().split()[:2]
    known.write_text(
        f"@cert-authority *.example {' '.join(ca)}\n"
        "[127.0.0.1]:1 ssh-ed25519 not-base64!!\n" + known.read_text()
    )
    _connect(farm, node, known)  # no "did not expect": the CA and the bad line are skipped


def test_a_key_marked_revoked_in_known_hosts_is_refused(farm: SshFarm) -> None:
    node = farm.host("revoked")
    known = farm.known_hosts(node)
    kind, blob = node.host_key.with_name(node.host_key.name + ".pub").read_text().split()[:2]
    known.write_text(known.read_text() + f"@revoked * {kind} {blob}\n")
    with pytest.raises(Unreachable, match="is marked @revoked in known_hosts"):
        _connect(farm, node, known)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[]", "olmirror.lock:1:1: the top level: Input should be an object"),
        ('{"format": 1}', "olmirror.lock:1:1: inputs: Field required"),
        (
            '{"format": 1, "inputs": "x", "upstream": "u",\n "targets": {"t": {"python": "3.12", '
            '"platform": "any",\n "sets": "oops", "files": {}}}}',
            "olmirror.lock:3:10: targets.t.sets: Input should be an object",
        ),
    ],
)
def test_a_lock_of_the_wrong_shape_names_its_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    spec = tmp_path / "olmirror.yaml"
    spec.write_text(HEAD)
    (tmp_path / "olmirror.lock").write_text(text)
    capsys.readouterr()
    code = main(["verify", "-f", str(spec)])
    out = capsys.readouterr()
    message = out.out + out.err
    assert code == 1 and f"{where}; the lock file is damaged; run `olmirror lock`" in message
    assert "did not expect" not in message and "Traceback" not in out.err


def test_a_recorded_registry_of_the_wrong_shape_is_taken_as_not_recorded(tmp_path: Path) -> None:
    spec = tmp_path / "olmirror.yaml"
    spec.write_text(HEAD + "workers: [{name: w, path: w}]\n")
    loaded = load_spec(str(spec))
    lock = Lock(inputs="x", upstream="u", targets={})
    lock.registries = {"w": {"folder": None, "elsewhere": None, "found": []}}
    assert recorded_registries(loaded, lock)["w"].folder == str(tmp_path / "w" / "registry")


def test_a_marker_packaging_cannot_evaluate_is_a_clear_error() -> None:
    line = Requirement('omega==1.2; python_version ~= "3"')
    with pytest.raises(ValueError, match="its marker cannot be evaluated"):
        Target("3.11", "manylinux_2_17_x86_64").installs(line)


def test_what_a_host_sends_is_printed_escaped_on_any_stdout(
    tmp_path: Path, clean_upstream: Upstream
) -> None:
    """A file name that is not UTF-8 and holds a terminal escape, left in the mirror, is
    listed by the plan's prune, on a stdout that refuses what it cannot encode."""
    spec = write_spec(tmp_path, clean_upstream, [], allowlist={"packages": ["omega==1.0"]})
    env = {**clean_upstream.env(), "PYTHONIOENCODING": "utf-8:strict"}
    run = [sys.executable, "-m", "olmirror"]
    applied = subprocess.run(
        [*run, "apply", "-f", str(spec), "--yes"], env=env, capture_output=True
    )
    assert applied.returncode == 0, applied.stderr
    stray = tmp_path / "mirror" / "web" / "packages" / "ab"
    stray.mkdir(parents=True)
    name = b"x\xff\x1b]0;owned\x07.whl".decode("utf-8", "surrogateescape")
    (stray / name).write_bytes(b"")
    plan = subprocess.run([*run, "plan", "-f", str(spec)], env=env, capture_output=True)
    out = plan.stdout.decode() + plan.stderr.decode()
    assert plan.returncode == 0, out
    assert "did not expect" not in out and b"\x1b]0" not in plan.stdout
    assert "x\\xff\\x1b]0;owned\\x07.whl" in out


def test_a_malformed_registry_url_with_a_secret_is_reported_without_it(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    worker = tmp_path / "w"
    subprocess.run([str(STANDIN_OL), "worker", "init", "-p", str(worker), "-i", IMAGE], check=True,
                   capture_output=True)  # fmt: skip
    config = json.loads((worker / "config.json").read_text())
    config["registry"] = f"s3://[key:{SECRET}@bucket/registry"
    (worker / "config.json").write_text(json.dumps(config))
    spec = write_spec(tmp_path, clean_upstream, [{"name": "w", "path": str(worker)}])
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert "did not expect" not in plan.out + plan.err and SECRET not in plan.out + plan.err
    assert "registry 's3://(a malformed URL)' is not a local folder" in plan.out


# --- 2. links out of the folders the spec names ---------------------------------------


@pytest.fixture(params=["local", "ssh"])
def conn(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """This machine, or the same files reached over a real loopback sshd."""
    if request.param == "local":
        yield LocalConnection()
        return
    farm: SshFarm = request.getfixturevalue("farm")
    node = farm.host("files")
    ssh = SSHConnection.connect(node.name, Host.model_validate(node.spec(farm.known_hosts(node))))
    yield ssh
    ssh.close()


@pytest.mark.parametrize("link", ["packages", "web"])
def test_the_prune_removes_nothing_through_a_link(
    tmp_path: Path, link: str, conn: Connection
) -> None:
    outside = tmp_path / "outside"
    (outside / "packages").mkdir(parents=True)
    victim = outside / "packages" / "victim.whl"
    victim.write_text("not the mirror's\n")
    web = tmp_path / "mirror" / "web"
    if link == "web":
        web.parent.mkdir()
        web.symlink_to(outside)
    else:
        web.mkdir(parents=True)
        (web / "packages").symlink_to(outside / "packages")
    prune = PruneMirror(str(web), projects=(), keep=())
    with pytest.raises(ResourceError, match="is a symbolic link; olmirror removes nothing"):
        prune.plan(conn.gather(prune.request()), frozenset())
    with pytest.raises(ResourceError):
        prune.apply(conn)
    assert victim.exists()


def _worker_with_registry(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "w"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"registry": f"file://{home}/registry"}))
    return home, home / "registry"


def test_a_registry_linked_out_of_the_worker_is_never_written(
    tmp_path: Path, conn: Connection
) -> None:
    home, registry = _worker_with_registry(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    registry.symlink_to(elsewhere)
    raw = conn.gather(FactRequest(registries=frozenset({str(home)}))).registries[str(home)]
    found = registry_from_probe(Worker(name="w", path=str(home)), raw, discover=True)
    assert found.folder is None and found.elsewhere is not None


def test_a_sandbox_etc_linked_out_of_the_worker_gets_no_pip_conf(
    tmp_path: Path, conn: Connection
) -> None:
    home, _ = _worker_with_registry(tmp_path)
    (home / "lambda").mkdir()
    (tmp_path / "etc").mkdir()
    (home / "lambda" / "etc").symlink_to(tmp_path / "etc")
    raw = conn.gather(FactRequest(registries=frozenset({str(home)}))).registries[str(home)]
    assert registry_from_probe(Worker(name="w", path=str(home)), raw, False).sandbox is None


def test_a_linked_file_in_a_registry_is_never_read_into_a_plan(
    tmp_path: Path, conn: Connection
) -> None:
    home, registry = _worker_with_registry(tmp_path)
    secret = tmp_path / "id_ed25519"
    secret.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}\n")
    (registry / "stolen").mkdir(parents=True)
    (registry / "stolen" / "f.py").write_text("def f(e):\n    return e\n")
    (registry / "stolen" / "requirements.txt").symlink_to(secret)
    (registry / "requirements.txt").symlink_to(secret)
    facts = conn.gather(
        FactRequest(
            registries=frozenset({str(home)}),
            content=frozenset({str(registry / "requirements.txt")}),
            paths=frozenset({str(registry)}),
        )
    )
    lambdas = facts.registries[str(home)]["lambdas"]
    assert "error" in lambdas["stolen"]["files"]["requirements.txt"]
    assert SECRET not in json.dumps(facts.registries[str(home)])
    wanted = File(str(registry / "requirements.txt"), "six==1.16.0\n")
    with pytest.raises(ResourceError, match="not a regular file") as raised:
        wanted.plan(facts, frozenset())
    assert SECRET not in str(raised.value)


# --- 3. upstream data taken as data, 5. hangs that end ------------------------------------


class _Hostile(BaseHTTPRequestHandler):
    """An upstream that sends too much, forever, or a byte at a time."""

    def log_message(self, *args: object) -> None:
        pass

    PAGES: ClassVar[dict[str, tuple[str, bytes]]] = {
        "shape": ("application/vnd.pypi.simple.v1+json", b'{"files": "not a list"}'),
        "types": ("application/vnd.pypi.simple.v1+json", b'{"files": [{"filename": 5}]}'),
        "fileurl": (
            "application/vnd.pypi.simple.v1+json",
            b'{"files": [{"filename": "x-1.whl", "url": "file:///etc/passwd"}]}',
        ),
        "nul": ("text/html", b'<a href="http://h/x\x00-1.whl#sha256=00">x-1.whl</a>'),
        "slash": ("text/html", b'<a href="http://h/x-1.whl">../../etc/x-1.whl</a>'),
        # the sha256 names the folder of a wheel olmirror builds: a path here would be read
        "hashpath": (
            "text/html",
            b'<a href="http://h/x-1.tar.gz#sha256=/tmp/private">x-1.tar.gz</a>',
        ),
        "boolsize": (
            "application/vnd.pypi.simple.v1+json",
            b'{"files": [{"filename": "x-1.whl", "url": "http://h/x-1.whl", "hashes": {}, '
            b'"size": true}]}',
        ),
        "notjson": ("application/vnd.pypi.simple.v1+json", b"{not json"),
        "elsewhere": (
            "application/vnd.pypi.simple.v1+json",
            b'{"files": [{"filename": "x-1.whl", "url": "http://10.9.9.9:80/x-1.whl"}]}',
        ),
    }

    def do_GET(self) -> None:
        name = self.path.strip("/").rpartition("/")[2]
        if name == "silent":  # accepts, then says nothing
            time.sleep(30)
            return
        if name in self.PAGES:
            kind, body = self.PAGES[name]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)
            return
        self.path = "/" + name
        self.send_response(200)
        self.end_headers()
        with contextlib.suppress(OSError):
            if self.path == "/big":
                self.wfile.write(b"x" * 10_000)
            elif self.path == "/endless":
                while True:
                    self.wfile.write(b"x" * 65536)
            elif self.path == "/drip":
                for _ in range(600):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)


@pytest.fixture
def hostile_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _fetch_one(
    conn: Connection, tmp_path: Path, url: str, size: int | None = 100, min_seconds: float = 300
) -> dict:
    """The fetch script on `conn`'s host, as FetchFiles runs it there, for one file."""
    item = {"path": str(tmp_path / "m" / "f.whl"), "url": url, "sha256": "0" * 64, "size": size}
    request = {"ca_file": None, "min_seconds": min_seconds, "files": [item]}
    done = conn.run(("python3", "-c", FETCH_SOURCE), stdin=json.dumps(request).encode())
    assert done.ok, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/f.whl", "http://x/\x00"])
def test_only_http_urls_from_an_index_are_fetched(
    tmp_path: Path, url: str, conn: Connection
) -> None:
    report = _fetch_one(conn, tmp_path, url)
    assert report["fetched"] == 0 and "not an http(s) URL" in report["errors"][0]
    assert not (tmp_path / "m" / "f.whl").exists()


def test_a_download_never_exceeds_the_locked_size(
    tmp_path: Path, hostile_upstream: str, conn: Connection
) -> None:
    report = _fetch_one(conn, tmp_path, f"{hostile_upstream}/big", size=100)
    assert report["fetched"] == 0 and "more than the lock's 100 bytes" in report["errors"][0]
    assert not list((tmp_path / "m").iterdir()), "no partial file is left"


@pytest.mark.parametrize("path", ["/endless", "/drip"])
def test_an_endless_or_dripping_download_ends_in_the_download_timeout(
    tmp_path: Path, hostile_upstream: str, conn: Connection, path: str
) -> None:
    started = time.monotonic()
    report = _fetch_one(conn, tmp_path, f"{hostile_upstream}{path}", size=None, min_seconds=1)
    assert report["fetched"] == 0 and "too slow (or never ends)" in report["errors"][0]
    assert time.monotonic() - started < 15


def test_a_stalled_remote_python_ends_in_the_hosts_facts_timeout(farm: SshFarm) -> None:
    node = farm.host("stalled", extra_config=["ForceCommand sleep 60"])
    host = Host.model_validate(node.spec(farm.known_hosts(node), facts_timeout=1))
    ssh = SSHConnection.connect(node.name, host)
    started = time.monotonic()
    try:
        with pytest.raises(OlmirrorError, match="gave no answer within 1 s while reading facts"):
            ssh.gather(FactRequest(paths=frozenset({"/"})))
    finally:
        ssh.close()
    assert time.monotonic() - started < 15


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for info in members:
            archive.addfile(info, io.BytesIO(data.get(info.name, b"")) if info.isfile() else None)


@pytest.mark.parametrize(
    "case", ["link-member", "dotdot-member", "linked-folder", "linked-package"]
)
def test_a_registry_and_packages_are_read_without_leaving_them(
    tmp_path: Path, conn: Connection, case: str
) -> None:
    """Tarballs and folders a host's users put in a registry, and Pkgs_dir entries, are
    listed and read only as what they are inside the worker's folder."""
    home, registry = _worker_with_registry(tmp_path)
    registry.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    if case == "link-member":
        link = tarfile.TarInfo("requirements.txt")
        link.type, link.linkname = tarfile.SYMTYPE, str(secret)
        _tar(registry / "evil.tar.gz", [link], {})
    elif case == "dotdot-member":
        info = tarfile.TarInfo("../requirements.txt")
        info.size = len(SECRET)
        _tar(registry / "evil.tar.gz", [info], {"../requirements.txt": SECRET.encode()})
    elif case == "linked-folder":
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "requirements.txt").write_text(SECRET)
        (registry / "evil").symlink_to(tmp_path / "other")
    else:
        packages = home / "lambda" / "packages"
        packages.mkdir(parents=True)
        (tmp_path / "pkg" / "files" / "x-1.dist-info").mkdir(parents=True)
        (packages / "x==1").symlink_to(tmp_path / "pkg")
    raw = conn.gather(FactRequest(registries=frozenset({str(home)}))).registries[str(home)]
    assert SECRET not in json.dumps(raw)
    if case == "link-member":
        assert "error" in raw["lambdas"]["evil"]["files"]["requirements.txt"]
    elif case == "linked-package":
        assert raw["installed"] == {}
    else:
        assert "evil" not in raw["lambdas"]


def _remote_worker_spec(farm: SshFarm, node: SshHost, folder: Path, worker: dict) -> Path:
    """A spec with one worker `w` on `node` and an http mirror (never started here)."""
    spec = folder / "olmirror.yaml"
    hosts = {node.name: node.spec(farm.known_hosts(node))}
    spec.write_text(
        HEAD.replace("/srv/m", str(folder / "m"))
        + "  serve: {backend: http, listen: '127.0.0.1:9', url: 'http://127.0.0.1:9'}\n"
        + yaml.safe_dump({"hosts": hosts, "workers": [{"name": "w", "host": node.name, **worker}]})
    )
    return spec


@pytest.mark.parametrize(
    "said",
    [r"\033]0;owned\007", r"\033[2J\033[H", r"nul\000byte", r"\377\376 not utf-8"],
)
def test_what_a_remote_host_says_reaches_the_terminal_escaped(
    farm: SshFarm, tmp_path: Path, said: str
) -> None:
    node = farm.host("chatty", extra_config=[f"ForceCommand printf '{said}' >&2; exit 3"])
    spec = _remote_worker_spec(farm, node, tmp_path, {"path": "/opt/ol/w"})
    env = {"PYTHONIOENCODING": "utf-8:strict", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "olmirror", "plan", "-f", str(spec), "--limit", node.name],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert b"\x1b" not in out and b"\x00" not in out and b"did not expect" not in out
    assert node.name.encode() in out
    assert b"reading facts failed (exit 3): " in out, "what the host said is shown, escaped"


def test_shell_characters_in_a_remote_workers_path_reach_no_shell(
    cli, farm: SshFarm, tmp_path: Path
) -> None:
    node = farm.host("quoting")
    sentinel = tmp_path / "sentinel"
    path = str(node.root / f"w $(touch {sentinel}) `touch {sentinel}`; touch {sentinel} |x")
    spec = _remote_worker_spec(farm, node, tmp_path, {"path": path, "state": "stopped"})
    plan = cli("plan", "-f", str(spec), "--limit", node.name, "--no-color")
    assert plan.code == 0, plan.out + plan.err
    assert "ol worker init -p" in plan.out
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("project", "says"),
    [
        ("shape", "not a PEP 691 project page"),
        ("types", "without a filename or url string"),
        ("fileurl", "not an http(s) URL"),
        ("nul", "not an http(s) URL"),
        ("slash", "not a file name"),
        ("hashpath", "the sha256 '/tmp/private', not one"),
        ("boolsize", "hashes or a size of the wrong type"),
        ("notjson", "cannot be used"),
        ("endless", "the page is larger than"),
        ("drip", "took more than 1 s"),
    ],
)
def test_an_index_page_that_cannot_be_trusted_is_one_line_naming_its_url(
    hostile_upstream: str, monkeypatch: pytest.MonkeyPatch, project: str, says: str
) -> None:
    monkeypatch.setattr(index, "PAGE_SECONDS", 1)
    started = time.monotonic()
    with pytest.raises(OlmirrorError) as raised:
        Index(hostile_upstream, None).files(project)
    message = str(raised.value)
    assert message.startswith(f"{hostile_upstream}/simple/{project}/: ") and says in message
    assert "\n" not in message and time.monotonic() - started < 10


def test_an_upstream_that_does_not_speak_http_is_a_clear_error() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer() -> None:
        connection, _ = listener.accept()
        connection.recv(4096)
        connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        connection.close()

    threading.Thread(target=answer, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(OlmirrorError, match="the upstream does not answer HTTP"):
        Index(url, None).files("six")
    listener.close()


# --- 7. saved plans are code ---------------------------------------------------------------


@pytest.fixture(params=["local", "ssh"])
def saved(
    request: pytest.FixtureRequest, cli, tmp_path: Path, clean_upstream: Upstream
) -> tuple[Path, dict, str]:
    """A saved plan for a worker on this machine, or on a host behind a real sshd."""
    worker: dict[str, object] = {"name": "w", "path": str(tmp_path / "w")}
    spec = write_spec(tmp_path, clean_upstream, [worker])
    host = "local"
    if request.param == "ssh":
        farm: SshFarm = request.getfixturevalue("farm")
        node = farm.host("planned")
        host = node.name
        data = yaml.safe_load(spec.read_text())
        data["hosts"][host] = node.spec(farm.known_hosts(node))
        data["workers"][0]["host"] = host
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(spec), "--out", str(plan), "--limit", host).code == 0
    return plan, json.loads(plan.read_text()), host


def _command(raw: dict) -> dict:
    return next(
        c["resource"]
        for h in raw["hosts"]
        for c in h["changes"]
        if c["resource"]["kind"] == "command"
    )


@pytest.mark.parametrize("edit", ["argv", "added", "inventory", "creates", "shape", "kind"])
def test_an_edited_saved_plan_runs_nothing(
    cli, tmp_path: Path, saved: tuple[Path, dict, str], edit: str
) -> None:
    plan, raw, host = saved
    sentinel = tmp_path / "sentinel"
    evil = ["sh", "-c", f"touch {sentinel}"]
    if edit == "argv":
        _command(raw)["argv"] = evil
    elif edit == "added":
        changes = raw["hosts"][0]["changes"]
        changes.insert(0, {**changes[0], "resource": {**_command(raw), "argv": evil}})
    elif edit == "inventory":
        raw["inventory"][host]["ol"] = "/bin/sh"
    elif edit == "creates":
        _command(raw)["creates"] = str(tmp_path / "never")
    elif edit == "shape":
        raw["inventory"] = ["not", "a", "mapping"]
    else:
        _command(raw)["kind"] = "no_such_kind"
    plan.write_text(json.dumps(raw))
    applied = cli("apply", str(plan), "--no-color")
    assert applied.code == 1
    assert "did not expect" not in applied.err
    refused = "refusing the saved plan" if edit not in ("shape", "kind") else "plan file is damaged"
    assert refused in applied.err
    if edit in ("shape", "kind"):  # the line and the field, as a bad spec's error gives them
        field = "inventory" if edit == "shape" else r"hosts\.0\.changes\.\d+\.resource\.kind"
        assert re.search(rf"plan\.json:1:\d+: {field}: ", applied.err), applied.err
    assert not sentinel.exists() and not (tmp_path / "w").exists()


@pytest.mark.parametrize("conn", ["ssh"], indirect=True)
def test_a_huge_tarball_in_a_remote_registry_is_not_read(tmp_path: Path, conn: Connection) -> None:
    home, registry = _worker_with_registry(tmp_path)
    registry.mkdir()
    with open(registry / "huge.tar.gz", "wb") as huge:
        huge.truncate(65 << 20)  # sparse: a size, no bytes on disk
    raw = conn.gather(FactRequest(registries=frozenset({str(home)}))).registries[str(home)]
    assert "larger than" in raw["lambdas"]["huge"]["files"]["requirements.txt"]["error"]


@pytest.mark.parametrize("conn", ["ssh"], indirect=True)
def test_a_remote_lambda_named_with_a_line_break_is_ignored(
    cli, tmp_path: Path, conn: Connection
) -> None:
    home, registry = _worker_with_registry(tmp_path)
    (registry / "a\nb").mkdir(parents=True)
    (registry / "a\nb" / "requirements.txt").write_text("six==1.16.0\n")
    raw = conn.gather(FactRequest(registries=frozenset({str(home)}))).registries[str(home)]
    found = registry_from_probe(Worker(name="w", path=str(home)), raw, discover=True)
    assert found.found == (), "not a lambda name: never mirrored, nor written into a file"


def test_files_only_come_from_the_upstreams_origin_or_those_the_spec_allows(
    hostile_upstream: str,
) -> None:
    own = allowed_origins(hostile_upstream, [])
    with pytest.raises(OlmirrorError, match=r"add it to mirror\.file_origins"):
        Index(hostile_upstream, None, own).files("elsewhere")
    listed = allowed_origins(hostile_upstream, ["http://10.9.9.9"])
    assert [f.filename for f in Index(hostile_upstream, None, listed).files("elsewhere")] == [
        "x-1.whl"
    ]
    assert allowed_origins(None, []) is None, "bandersnatch's default upstream: any https"
    plain = IndexFile("x-1.whl", "http://h/x-1.whl", None, None, False)
    with pytest.raises(ValueError, match="over plain http"):
        index._checked([plain], "https://u.example/simple/x/", None)


def test_a_file_off_the_allowed_origins_is_not_fetched(
    tmp_path: Path, hostile_upstream: str
) -> None:
    item = {"path": str(tmp_path / "f.whl"), "url": f"{hostile_upstream}/big", "sha256": "0" * 64}
    request = {"ca_file": None, "origins": ["https://u.example:443"], "files": [item]}
    done = LocalConnection().run(
        ("python3", "-c", FETCH_SOURCE), stdin=json.dumps(request).encode()
    )
    assert "not on an origin the spec allows" in json.loads(done.stdout)["errors"][0]
    assert not (tmp_path / "f.whl").exists()


def test_a_link_inside_the_worker_is_shown_and_written_as_its_real_path(
    tmp_path: Path, conn: Connection
) -> None:
    home, registry = _worker_with_registry(tmp_path)
    (home / "lambdas").mkdir()
    registry.symlink_to(home / "lambdas")
    raw = conn.gather(FactRequest(registries=frozenset({str(home)}))).registries[str(home)]
    assert registry_from_probe(Worker(name="w", path=str(home)), raw, False).folder == str(
        home / "lambdas"
    )


def test_a_silent_upstream_fails_in_the_index_timeout(hostile_upstream: str) -> None:
    started = time.monotonic()
    with pytest.raises(OlmirrorError, match="cannot reach the index") as raised:
        Index(hostile_upstream, None, None, 1, Retries(attempts=2, backoff=0.1)).files("silent")
    assert "timed out" in str(raised.value) and "gave up after 2 tries" in str(raised.value)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("conn", ["ssh"], indirect=True)
def test_a_remote_package_folder_left_empty_is_stale(tmp_path: Path, conn: Connection) -> None:
    """A folder someone made by hand in Pkgs_dir would be reused by OpenLambda as installed."""
    home, _ = _worker_with_registry(tmp_path)
    (home / "lambda" / "packages" / "six==1.16.0").mkdir(parents=True)
    raw = conn.gather(FactRequest(registries=frozenset({str(home)}))).registries[str(home)]
    (stale,) = stale_entries(raw["installed"], {"six==1.16.0"})
    assert (stale.entry, stale.why) == ("six==1.16.0", "holds no installed package, not six 1.16.0")


def _bomb(kind: str) -> bytes:
    """A small tar.gz whose first member's header claims 200 MiB: a pax header or a GNU long
    name that holds a path that long (both read whole by tarfile), a pax header that only
    says so, or a member of that many zeros (skipped, so unpacked to the bound)."""
    huge = 200 << 20
    gzip = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = []
    if kind in ("pax-path", "gnu-longname"):
        value = b"a" * huge
        if kind == "pax-path":
            body = b" path=" + value + b"\n"
            size = len(body) + len(str(len(body) + 10))
            data = str(size).encode() + body
        else:
            data = value + b"\0"
        header = tarfile.TarInfo("././@LongLink" if kind != "pax-path" else "././@PaxHeader")
        header.type = tarfile.GNUTYPE_LONGNAME if kind != "pax-path" else tarfile.XHDTYPE
        header.size = len(data)
        out += [gzip.compress(header.tobuf(tarfile.USTAR_FORMAT)), gzip.compress(data)]
        out.append(gzip.compress(b"\0" * (-len(data) % tarfile.BLOCKSIZE)))
    elif kind == "pax-declared":
        header = tarfile.TarInfo("././@PaxHeader")
        header.type, header.size = tarfile.XHDTYPE, huge
        out.append(gzip.compress(header.tobuf(tarfile.USTAR_FORMAT)))
    else:
        member = tarfile.TarInfo("zeros")
        member.size = 300 << 20
        out.append(gzip.compress(member.tobuf()))
        out += [gzip.compress(bytes(1 << 20)) for _ in range(member.size >> 20)]
    member = tarfile.TarInfo("requirements.txt")
    member.size = len(b"six==1.16.0\n")
    out += [gzip.compress(member.tobuf() + b"six==1.16.0\n".ljust(512, b"\0") + bytes(1024))]
    return b"".join([*out, gzip.flush()])


@pytest.mark.parametrize("kind", ["pax-path", "gnu-longname", "pax-declared", "zeros"])
def test_a_small_tarball_that_claims_a_huge_header_is_refused_in_bounded_memory(kind: str) -> None:
    """tarfile reads a pax header or a GNU long name whole before any count of members or
    bytes: the probe's reader hands it no more than a header's bound (MAX_HEADER), and
    unpacks no more than MAX_UNPACKED, however small the gzip."""
    data = _bomb(kind)
    assert len(data) < (2 << 20)
    tracemalloc.start()
    try:
        files = probe.tarball_requirements(io.BytesIO(data), len(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (error,) = (entry["error"] for entry in files.values())
    assert error.startswith("not a readable tar.gz (") and "\n" not in error, error
    why = "more than 268435456 bytes unpacked" if kind == "zeros" else "headers larger than 65536"
    assert why in error
    assert peak < 16 << 20, f"{peak} bytes held to refuse it"
    files = probe.tarball_requirements(io.BytesIO(_plain()), len(_plain()))
    assert files == {"requirements.txt": {"text": "six==1.16.0\n"}}, "a plain one is read"


def _plain() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("./requirements.txt")
        info.size = len(b"six==1.16.0\n")
        archive.addfile(info, io.BytesIO(b"six==1.16.0\n"))
    return raw.getvalue()


@pytest.mark.parametrize("conn", ["local", "ssh"], indirect=True)
def test_a_tarball_that_claims_a_huge_header_in_a_host_registry_is_one_error(
    tmp_path: Path, conn: Connection
) -> None:
    home, registry = _worker_with_registry(tmp_path)
    registry.mkdir()
    (registry / "bomb.tar.gz").write_bytes(_bomb("pax-path"))
    raw = conn.gather(FactRequest(registries=frozenset({str(home)}))).registries[str(home)]
    error = raw["lambdas"]["bomb"]["files"]["requirements.txt"]["error"]
    assert error == "not a readable tar.gz (a member's headers larger than 65536 bytes)"
