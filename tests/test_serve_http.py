"""serve.backend http: olmirror's own nginx serves the mirror, and real pip installs from it.

Everything is real: uv resolves, bandersnatch syncs from the local upstream, nginx from
Debian's package serves <directory>/web on a free loopback port, and pip installs each
locked requirement with `--no-deps --index-url http://127.0.0.1:PORT/simple/
--trusted-host 127.0.0.1`, exactly as an OpenLambda worker does. Each test stops its
nginx by the pid in the instance's pid file.

The mirror lives in a folder of its own under the system temp folder, not in pytest's
tmp_path: run as root, nginx serves through `nobody`, and pytest's folders are private.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult, venv, worker_install, write_spec
from sshd import free_port
from upstream import Upstream

from olmirror.connection import CommandResult, LocalConnection
from olmirror.plan import plan_resources
from olmirror.resources import ResourceError
from olmirror.serve.desired import nginx_folder, serve_resources
from olmirror.serve.nginx import Nginx
from olmirror.spec import Spec

Cli = Callable[..., CliResult]
TARGET_KEY = "py3.11-manylinux_2_17_x86_64"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def edit(spec: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(spec.read_text())
    change(data)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))


def serve_on(port: int) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        data["mirror"]["serve"] = {
            "backend": "http",
            "listen": f"127.0.0.1:{port}",
            "url": f"http://127.0.0.1:{port}",
        }

    return change


def apply_ok(cli: Cli, spec: Path) -> CliResult:
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 0, result.out + result.err
    return result


def get(url: str, accept: str = "text/html") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with DIRECT.open(request, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read()


def wait_for_exit(pid: int) -> None:
    """Block until process `pid` (not our child) has exited: a pidfd turns readable then."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


@dataclass
class Mirror:
    folder: Path
    spec: Path
    port: int
    applied: CliResult

    @property
    def nginx(self) -> Path:
        return self.folder / "mirror" / ".olmirror" / "nginx"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int:
        return int((self.nginx / "nginx.pid").read_text())

    def reloads(self) -> int:
        """How often nginx re-read its config: it logs each SIGHUP at notice level."""
        return (self.nginx / "error.log").read_text().count("signal 1 (SIGHUP) received")

    def stop(self) -> None:
        """Stop this mirror's nginx by the pid in its pid file, if that pid is its master."""
        pid_file = self.nginx / "nginx.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            return
        if title.startswith("nginx: master process") and str(self.nginx / "nginx.conf") in title:
            os.kill(pid, signal.SIGTERM)
            wait_for_exit(pid)


@pytest.fixture
def mirror(cli: Cli, clean_upstream: Upstream) -> Iterator[Mirror]:
    """alpha==2.0 and its closure mirrored by bandersnatch and served by nginx on a free port."""
    folder = Path(tempfile.mkdtemp(prefix="olmirror-serve-"))
    folder.chmod(0o755)
    port = free_port()
    spec = write_spec(folder, clean_upstream, [], allowlist={"packages": ["alpha==2.0"]})
    edit(spec, serve_on(port))
    edit(spec, lambda d: d["mirror"].update(engine="bandersnatch"))
    served = Mirror(folder, spec, port, CliResult(1, "", ""))
    try:
        served.applied = apply_ok(cli, spec)
        yield served
    finally:
        served.stop()
        shutil.rmtree(folder)


def test_pip_installs_every_locked_requirement_from_nginx(
    mirror: Mirror, clean_upstream: Upstream
) -> None:
    up = clean_upstream
    out = mirror.applied.out
    assert f"start nginx on 127.0.0.1:{mirror.port}" in out
    assert f"check that {mirror.url}/simple/ answers" in out
    lock = json.loads(mirror.spec.with_suffix(".lock").read_text())["targets"][TARGET_KEY]
    pins = sorted(lock["files"])
    assert "alpha==2.0" in pins and len(pins) > 3, pins

    python = venv(mirror.folder / "venv")
    up.counts.reset()
    for pin in pins:
        installed = worker_install(up, python, mirror.url, pin, mirror.folder / "report.json")
        assert installed["metadata"]["version"] == pin.partition("==")[2]
        url = installed["download_info"]["url"]
        assert url.startswith(f"{mirror.url}/packages/"), url
        assert url.rsplit("/", 1)[1] == lock["files"][pin]["filename"]
    assert up.counts.requests() == 0, up.counts.by_path()

    status, kind, body = get(f"{mirror.url}/simple/alpha/")
    assert (status, kind) == (200, "text/html; charset=utf-8")
    assert lock["files"]["alpha==2.0"]["filename"] in body.decode()
    status, kind, body = get(f"{mirror.url}/simple/alpha/", "application/vnd.pypi.simple.v1+json")
    assert (status, kind) == (200, "application/vnd.pypi.simple.v1+json")
    assert json.loads(body)["name"] == "alpha"
    access = (mirror.nginx / "access.log").read_text()
    assert '"GET /simple/alpha/ HTTP/1.1" 200' in access


def test_second_apply_changes_nothing_and_does_not_reload(cli: Cli, mirror: Mirror) -> None:
    pid, reloads = mirror.pid(), mirror.reloads()
    again = apply_ok(cli, mirror.spec)
    assert "Plan: 0 to change" in again.out, again.out
    assert mirror.pid() == pid
    assert mirror.reloads() == reloads
    assert get(f"{mirror.url}/simple/")[0] == 200


def test_new_listen_port_reloads_nginx_once(cli: Cli, mirror: Mirror) -> None:
    pid, reloads = mirror.pid(), mirror.reloads()
    mirror.port = free_port()
    edit(mirror.spec, serve_on(mirror.port))
    applied = apply_ok(cli, mirror.spec)
    assert applied.out.count("reload nginx") == 1, applied.out
    assert f"check that {mirror.url}/simple/ answers" in applied.out
    assert mirror.pid() == pid, "a reload keeps the master process"
    assert mirror.reloads() == reloads + 1
    assert get(f"{mirror.url}/simple/")[0] == 200
    assert "Plan: 0 to change" in apply_ok(cli, mirror.spec).out


def test_nginx_stopped_by_hand_is_started_again(cli: Cli, mirror: Mirror) -> None:
    old = mirror.pid()
    mirror.stop()
    with pytest.raises(urllib.error.URLError):
        get(f"{mirror.url}/simple/")
    plan = cli("plan", "-f", str(mirror.spec), "--no-color")
    assert f"start nginx on 127.0.0.1:{mirror.port} (now: no pid file)" in plan.out, plan.out
    assert f"{mirror.url}/simple/ answers from host 'local' (after the changes above)" in plan.out
    applied = apply_ok(cli, mirror.spec)
    assert "start nginx" in applied.out
    assert mirror.pid() != old
    assert get(f"{mirror.url}/simple/")[0] == 200
    assert "Plan: 0 to change" in apply_ok(cli, mirror.spec).out


def test_serving_from_the_filesystem_again_stops_nginx(cli: Cli, mirror: Mirror) -> None:
    """Moving the mirror from http back to the filesystem leaves no server exposing it."""
    edit(mirror.spec, lambda d: d["mirror"].update(serve={"backend": "filesystem"}))
    plan = cli("plan", "-f", str(mirror.spec), "--no-color")
    assert "stop olmirror's nginx" in plan.out, plan.out
    applied = apply_ok(cli, mirror.spec)
    assert "stop olmirror's nginx" in applied.out
    assert not (mirror.nginx / "nginx.pid").exists()
    with pytest.raises(urllib.error.URLError):
        get(f"{mirror.url}/simple/")
    assert "Plan: 0 to change" in apply_ok(cli, mirror.spec).out


def test_a_pid_file_naming_another_process_is_not_trusted(cli: Cli, mirror: Mirror) -> None:
    """After a reboot or a SIGKILL the pid file stays, and its pid may be anyone's."""
    mirror.stop()
    (mirror.nginx / "nginx.pid").write_text(f"{os.getpid()}\n")
    plan = cli("plan", "-f", str(mirror.spec), "--no-color")
    assert f"(now: pid {os.getpid()} of the pid file is another program now)" in plan.out
    apply_ok(cli, mirror.spec)
    assert mirror.pid() != os.getpid()
    assert get(f"{mirror.url}/simple/")[0] == 200


def test_a_url_that_does_not_answer_fails_apply_clearly(cli: Cli, mirror: Mirror) -> None:
    wrong = f"{mirror.url}/not-the-mirror"
    edit(mirror.spec, lambda d: d["mirror"]["serve"].update(url=wrong))
    plan = cli("plan", "-f", str(mirror.spec), "--no-color")
    assert f"check that {wrong}/simple/ answers from host 'local' (now: it answered HTTP 404" in (
        plan.out
    )
    result = cli("apply", "-f", str(mirror.spec), "--yes", "--no-color")
    assert result.code != 0
    assert f"{wrong}/simple/ does not answer from host 'local': it answered HTTP 404" in result.out
    assert "Traceback" not in result.err


def test_a_busy_port_is_a_clear_error_and_the_next_apply_starts_nginx(
    cli: Cli, mirror: Mirror
) -> None:
    mirror.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", mirror.port))
        squatter.listen()
        result = cli("apply", "-f", str(mirror.spec), "--yes", "--no-color")
    assert result.code != 0
    assert f"nginx did not start on 127.0.0.1:{mirror.port}" in result.out, result.out
    assert "Address already in use" in result.out
    apply_ok(cli, mirror.spec)
    assert get(f"{mirror.url}/simple/")[0] == 200


def test_missing_nginx_names_the_host_and_the_fix(tmp_path: Path) -> None:
    nginx = Nginx(
        host="mirror1",
        folder=str(tmp_path),
        listen="127.0.0.1:8080",
        program="olmirror-test-no-such-nginx",
        fallbacks=(str(tmp_path / "sbin" / "nginx"),),
    )
    facts = LocalConnection().gather(nginx.request())
    with pytest.raises(ResourceError) as raised:
        nginx.plan(facts, frozenset())
    message = str(raised.value)
    assert "nginx is not installed on host 'mirror1'" in message
    assert "`apt-get install nginx`" in message


class AsNobody(LocalConnection):
    """This machine, with every command run as `nobody` and a non-root PATH (no /usr/sbin).

    Facts are still read by this process; what must work unprivileged is what nginx
    does: read its config, write its pid file, logs and temp files, bind, serve.
    """

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:  # type: ignore[override]
        user = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--")
        path = ("env", "PATH=/usr/local/bin:/usr/bin:/bin")
        return super().run((*user, *path, *argv), **kwargs)


def test_nginx_runs_for_a_mirror_host_reached_as_an_ordinary_user() -> None:
    folder = Path(tempfile.mkdtemp(prefix="olmirror-serve-"))
    folder.chmod(0o755)
    directory = folder / "mirror"
    nginx = Path(nginx_folder(str(directory)))
    (directory / "web" / "simple").mkdir(parents=True)
    (directory / "web" / "simple" / "index.html").write_text("<a href='alpha/'>alpha</a>\n")
    (nginx / "temp").mkdir(parents=True)
    nobody = pwd.getpwnam("nobody")
    for owned in (nginx, nginx / "temp"):
        os.chown(owned, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    spec = Spec.model_validate(
        {
            "version": 1,
            "mirror": {
                "directory": str(directory),
                "targets": [{"python": "3.11", "platform": "manylinux_2_17_x86_64"}],
                "serve": {
                    "backend": "http",
                    "listen": f"127.0.0.1:{port}",
                    "url": f"http://127.0.0.1:{port}",
                },
            },
        }
    )
    served = Mirror(folder, folder / "none.yaml", port, CliResult(0, "", ""))
    try:
        conn = AsNobody()
        plan = plan_resources(conn, serve_resources(spec))
        assert plan.error is None, plan.error
        for change in plan.pending:
            change.resource.apply(conn)
        assert get(f"{served.url}/simple/")[0] == 200
        master = Path(f"/proc/{served.pid()}")
        assert master.stat().st_uid == nobody.pw_uid, "nginx runs as the connecting user"
        again = plan_resources(conn, serve_resources(spec))
        assert again.error is None and not again.pending, [c.summary for c in again.pending]
    finally:
        served.stop()
        shutil.rmtree(folder)
