"""A flaky network: one apply converges anyway, and what cannot be had is named honestly.

The test upstream fails at random from a seed (tests/upstream.py `Faults`): 10% of
requests answered 503, 10% of bodies cut at half with the connection dropped, 5% of
files sent with one wrong byte. Each engine must converge in one apply, to the same
lock and mirror as a clean run; a resolve under the same faults must succeed.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import CliResult, write_spec
from upstream import Faults, Upstream

from olmirror.cli import main
from olmirror.lock import upstream_index as index
from olmirror.mirror.fetch import FETCH_SOURCE
from olmirror.remote.upstream_http import Client, Final, Retries

ALLOWLIST = ["alpha[fast]", "omega==1.1", "theta==1.0", "delta==1.0", "modernlib"]
SEEDS = range(1, 6)


def _faults(seed: int) -> Faults:
    return Faults(seed, unavailable=0.10, cut=0.10, corrupt=0.05)


def _spec(folder: Path, upstream: Upstream, engine: str) -> Path:
    path = write_spec(folder, upstream, [], allowlist={"packages": ALLOWLIST})
    data = yaml.safe_load(path.read_text())
    data["mirror"]["engine"] = engine
    del data["mirror"]["retries"]  # the defaults, as a user gets them
    path.write_text(yaml.safe_dump(data))
    return path


def _mirror(folder: Path) -> dict[str, object]:
    """What pip sees of a mirror: every file's bytes, and each page's links with their
    hashes (the <title> of a page bandersnatch rewrote by project name is left out)."""
    web = folder / "mirror" / "web"
    seen: dict[str, object] = {
        str(p.relative_to(web)): p.read_bytes()
        for p in (web / "packages").rglob("*")
        if p.is_file()
    }
    for page in (web / "simple").rglob("index.html"):
        seen[str(page.relative_to(web))] = sorted(re.findall(r'href="([^"]+)"', page.read_text()))
    return seen


@pytest.fixture(scope="module")
def clean_runs(
    tmp_path_factory: pytest.TempPathFactory, upstream_index: Upstream
) -> dict[str, tuple[dict, dict]]:
    """Per engine, the lock and the mirror of a run on a healthy upstream."""
    upstream_index.reset()
    found = {}
    for engine in ("simple", "bandersnatch"):
        folder = tmp_path_factory.mktemp(f"clean-{engine}")
        folder.chmod(0o755)
        spec = _spec(folder, upstream_index, engine)
        assert main(["apply", "-f", str(spec), "--yes", "--no-color"]) == 0
        found[engine] = (json.loads(spec.with_suffix(".lock").read_text()), _mirror(folder))
    return found


def _apply(cli, spec: Path) -> CliResult:
    return cli("apply", "-f", str(spec), "--yes", "--no-color")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("engine", ["simple", "bandersnatch"])
def test_one_apply_converges_on_a_flaky_upstream(
    cli, tmp_path: Path, clean_upstream: Upstream, clean_runs: dict, engine: str, seed: int
) -> None:
    spec = _spec(tmp_path, clean_upstream, engine)
    assert cli("lock", "-f", str(spec)).code == 0  # resolved cleanly first, as in the issue
    lock, mirror = clean_runs[engine]
    assert json.loads(spec.with_suffix(".lock").read_text()) == lock

    clean_upstream.flaky(_faults(seed))
    result = _apply(cli, spec)
    faults = clean_upstream.counts.faults()
    assert result.code == 0, f"{faults}\n{result.out}{result.err}"
    assert sum(faults.values()) > 0, "the upstream met no request with a fault"
    # apply verifies: every locked file is served, and each page lists it with its sha256
    assert "Verified: the mirror serves every locked requirement" in result.out
    assert "retried=" in result.out, "the recap counts the retries"

    clean_upstream.reset()
    assert json.loads(spec.with_suffix(".lock").read_text()) == lock
    assert _mirror(tmp_path) == mirror
    plan = cli("plan", "-f", str(spec), "--detailed-exitcode", "--no-color")
    assert plan.code == 0, plan.out + plan.err


@pytest.mark.parametrize("seed", SEEDS)
def test_a_resolve_on_a_flaky_upstream_gives_the_clean_lock(
    cli,
    tmp_path: Path,
    clean_upstream: Upstream,
    clean_runs: dict,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))  # every page read anew
    spec = _spec(tmp_path, clean_upstream, "simple")
    clean_upstream.flaky(_faults(seed))
    result = cli("lock", "-f", str(spec))
    assert result.code == 0, f"{clean_upstream.counts.faults()}\n{result.out}{result.err}"
    assert json.loads(spec.with_suffix(".lock").read_text()) == clean_runs["simple"][0]


@pytest.mark.parametrize("engine", ["simple", "bandersnatch"])
def test_every_kind_of_fault_from_resolve_to_a_served_mirror(
    cli,
    tmp_path: Path,
    clean_upstream: Upstream,
    clean_runs: dict,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
) -> None:
    """Resets and answers that start late too, from the first resolve on; a late answer
    outlasts mirror.index_timeout, so the index reader and uv meet timeouts."""
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    spec = _spec(tmp_path, clean_upstream, engine)
    data = yaml.safe_load(spec.read_text())
    data["mirror"]["index_timeout"] = 1
    spec.write_text(yaml.safe_dump(data))
    # seed 4: a late answer and a reset come among its first five draws, so both fire
    every = Faults(4, unavailable=0.05, cut=0.05, corrupt=0.05, reset=0.05, slow=0.05)
    clean_upstream.flaky(every)
    result = _apply(cli, spec)
    faults = clean_upstream.counts.faults()
    assert result.code == 0, f"{faults}\n{result.out}{result.err}"
    assert {"reset", "slow"} <= set(faults), faults
    clean_upstream.reset()
    lock, mirror = clean_runs[engine]
    assert json.loads(spec.with_suffix(".lock").read_text()) == lock
    assert _mirror(tmp_path) == mirror


def test_a_damaged_file_that_stays_damaged_is_named_as_a_network_fault(
    cli, tmp_path: Path, clean_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    spec = _spec(tmp_path, clean_upstream, "simple")
    data = yaml.safe_load(spec.read_text())
    data["mirror"]["retries"] = {"attempts": 2, "backoff": 0.1}
    spec.write_text(yaml.safe_dump(data))
    clean_upstream.tamper("theta-1.0-py3-none-any.whl.metadata")
    result = cli("lock", "-f", str(spec))
    assert result.code == 1
    assert "the upstream sent a damaged or cut file for https://" in result.err
    assert "theta-1.0-py3-none-any.whl.metadata (2 tries), a network or proxy fault" in result.err
    assert "invalid package format" not in result.err


def test_a_plan_whose_first_dns_lookup_fails_still_succeeds(
    cli, tmp_path: Path, clean_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index client's first lookup of the upstream's host name fails, as a flaky
    resolver's does (EAI_AGAIN); uv, in its own process, resolves untouched."""
    spec = _spec(tmp_path, clean_upstream, "simple")
    data = yaml.safe_load(spec.read_text())
    data["mirror"]["upstream"] = clean_upstream.url.replace("127.0.0.1", "localhost")
    data["mirror"]["file_origins"] = [clean_upstream.url]  # its pages name 127.0.0.1
    spec.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(index, "FETCHERS", 2)  # fewer threads than pages: connections serve many
    lookups = []
    real = socket.getaddrinfo

    def flaky_lookup(host: object, *args: object, **kwargs: object) -> object:
        lookups.append(host)
        if host == "localhost" and lookups.count("localhost") == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", flaky_lookup)
    result = cli("--debug", "plan", "-f", str(spec), "--no-color")  # before the command too
    assert result.code == 0, result.out + result.err
    assert "cannot look up host 'localhost' (Temporary failure in name resolution)" in result.err
    pattern = r"(\d+) pages .*: (\d+) requests, (\d+) connections .* (\d+) retries"
    stats = re.search(pattern, result.err)
    assert stats, result.err
    pages, requests, connections, retries = map(int, stats.groups())
    assert retries == 1 and requests == pages + retries
    assert connections <= 2 + retries < pages, "pages share kept-alive connections"
    assert lookups.count("localhost") == connections, "one lookup a connection, not a page"


# --- the client itself -----------------------------------------------------------------


class _Script(BaseHTTPRequestHandler):
    """Answers each request with the next of `server.answers`: a status, or "cut"."""

    protocol_version = "HTTP/1.1"
    timeout = 0.3  # an idle kept-alive connection is closed after this, as servers do
    server: _ScriptServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        time.sleep(self.server.delay)
        answer = self.server.answers.pop(0) if self.server.answers else 200
        self.server.seen.append((self.path, self.client_address[1]))
        body = b"x" * 100
        self.send_response(200 if answer == "cut" else answer)
        if answer == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:50] if answer == "cut" else body)
        if answer == "cut":
            self.close_connection = True


class _ScriptServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple) -> None:
        """A client that went away is expected here; nothing to print."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Script)
        self.answers: list[object] = []
        self.seen: list[tuple[str, int]] = []
        self.delay = 0.0


@pytest.fixture
def scripted() -> Iterator[_ScriptServer]:
    server = _ScriptServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _client() -> Client:
    return Client(ssl.create_default_context(), 5, Retries(attempts=3, backoff=0.01))


def _body(reply: object, url: str) -> bytes:
    return reply.read()  # type: ignore[attr-defined]


def test_requests_share_one_kept_alive_connection(scripted: _ScriptServer) -> None:
    client = _client()
    url = f"http://127.0.0.1:{scripted.server_address[1]}"
    assert [client.get(f"{url}/{i}", _body) for i in range(5)] == [b"x" * 100] * 5
    assert client.stats == {"requests": 5, "connections": 1, "retries": 0}
    assert len({port for _, port in scripted.seen}) == 1


@pytest.mark.parametrize("status", [404, 401, 403])
def test_a_final_answer_is_never_retried(scripted: _ScriptServer, status: int) -> None:
    scripted.answers = [status]
    client = _client()
    with pytest.raises(Final, match=f"HTTP {status}") as raised:
        client.get(f"http://127.0.0.1:{scripted.server_address[1]}/p", _body)
    assert raised.value.status == status and len(scripted.seen) == 1


def test_a_503_and_a_cut_body_are_retried_then_given_up_with_the_cause(
    scripted: _ScriptServer,
) -> None:
    url = f"http://127.0.0.1:{scripted.server_address[1]}/p"
    scripted.answers = [503, "cut"]
    client = _client()
    assert client.get(url, _body) == b"x" * 100
    assert client.stats["retries"] == 2 and len(scripted.seen) == 3

    scripted.answers = [503, 503, 503]
    with pytest.raises(Final) as raised:
        _client().get(url, _body)
    assert str(raised.value).startswith("HTTP 503 Service Unavailable (gave up after 3 tries")


class _Tunnel(BaseHTTPRequestHandler):
    """An HTTP proxy's CONNECT, as squid answers it: a tunnel to the asked host."""

    server: _TunnelProxy

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_CONNECT(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Proxy-Authorization")))
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True).start()
        _pipe(self.connection, upstream)  # until the client closes its end
        upstream.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


class _TunnelProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.seen: list[tuple[str, str | None]] = []


def test_https_goes_through_the_environments_proxy_with_its_credentials(
    clean_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = _TunnelProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", f"http://ops:p%40ss@127.0.0.1:{proxy.server_address[1]}")
    client = Client(clean_upstream.ssl_context(), 5, Retries(attempts=2, backoff=0.01))
    pages = [client.get(f"{clean_upstream.simple_url}{p}/", _body) for p in ("theta", "omega")]
    assert b"theta" in pages[0] and b"omega" in pages[1]
    assert proxy.seen == [(f"127.0.0.1:{clean_upstream.port}", "Basic b3BzOnBAc3M=")], (
        "one tunnel for both pages, with the proxy's credentials (ops:p@ss)"
    )
    client.close()
    proxy.shutdown()


def test_idle_connections_the_server_closed_are_dropped_not_retried(
    scripted: _ScriptServer,
) -> None:
    url = f"http://127.0.0.1:{scripted.server_address[1]}"
    client = _client()
    scripted.delay = 0.1  # three requests at once: three connections, all kept
    with ThreadPoolExecutor(3) as pool:
        assert len(list(pool.map(lambda i: client.get(f"{url}/{i}", _body), range(3)))) == 3
    assert client.stats["connections"] == 3
    scripted.delay = 0.0
    time.sleep(0.6)  # the server closes all three
    assert client.get(f"{url}/again", _body) == b"x" * 100
    assert client.stats["connections"] == 4 and client.stats["retries"] == 0


def test_a_file_the_mirror_host_cannot_write_is_not_a_network_fault(
    tmp_path: Path, clean_upstream: Upstream
) -> None:
    wheel = clean_upstream.catalogue.file("omega-1.0-py3-none-any.whl")
    folder = tmp_path / "m"
    folder.mkdir()
    item = {"path": str(folder / "f.whl"), "url": clean_upstream.file_url(wheel.filename),
            "sha256": wheel.sha256, "size": wheel.size}  # fmt: skip
    request = {"ca_file": str(clean_upstream.ca_file), "files": [item]}
    done = subprocess.run(
        ["prlimit", "--fsize=10", sys.executable, "-c", FETCH_SOURCE],
        input=json.dumps(request), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    (error,) = json.loads(done.stdout)["errors"]
    assert "cannot write" in error and "gave up" not in error
    assert len(clean_upstream.counts.hits("/packages/")) == 1, "not fetched again"
