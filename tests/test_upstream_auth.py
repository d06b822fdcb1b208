"""A private upstream (Artifactory, Nexus, devpi) that asks every request for HTTP basic
auth: its credentials come from the variables the spec names, or from netrc, reach uv, the
index reader and the fetcher (on its stdin), and nothing else: no argv, file, plan, lock,
output or message holds them (tests/upstream.py's `require_auth`)."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_spec
from sdists import leaky_project, with_sdists
from sshd import SshFarm
from test_lambdas import init_worker, put_lambda
from test_workers import probe, served  # noqa: F401 - a fixture
from upstream import Upstream, running_upstream

from olmirror.connection.local import LocalConnection
from olmirror.errors import OlmirrorError
from olmirror.lock import uv_compile
from olmirror.lock.engine_choice import choose_engine
from olmirror.lock.lockfile import Lock, inputs_digest
from olmirror.lock.relock import resolved_path
from olmirror.lock.requirement_sets import RequirementSet
from olmirror.lock.targets import Target
from olmirror.lock.upstream_auth import (
    NETRC,
    Credentials,
    client_auth,
    credentials,
    credentials_from,
    redact,
)
from olmirror.lock.uv_env import uv_refused
from olmirror.mirror.fetch import fetch_missing
from olmirror.remote import upstream_http
from olmirror.remote.upstream_http import Auth, Client, Final, Retries, refused, sends_auth

USER = "olm-user"
ALLOWLIST = ["omega==1.1", "theta==1.0"]
AUTH = {"username_env": "OLM_TEST_USER", "password_env": "OLM_TEST_PASSWORD"}


@pytest.fixture
def secret() -> str:
    """A password found nowhere by chance."""
    return f"s3cr3t-{secrets.token_hex(8)}"


@pytest.fixture
def private(clean_upstream: Upstream, secret: str) -> Upstream:
    clean_upstream.require_auth(USER, secret)
    return clean_upstream


def _env(up: Upstream, folder: Path, **extra: str) -> dict[str, str]:
    """olmirror's environment: the upstream's CA, uv's cache in `folder` (so it is searched
    for the secret too), and no netrc of this machine."""
    return (
        up.env() | {"UV_CACHE_DIR": str(folder / "uv-cache"), "NETRC": str(folder / "none")} | extra
    )


def _olmirror(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "olmirror", *args, "--no-color"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def _spec(folder: Path, up: Upstream, engine: str = "simple", **mirror: Any) -> Path:
    spec = write_spec(folder, up, [], allowlist={"packages": ALLOWLIST})
    data = yaml.safe_load(spec.read_text())
    data["mirror"].update(engine=engine, **mirror)
    spec.write_text(yaml.safe_dump(data))
    return spec


def _pip_install(up: Upstream, folder: Path, pin: str) -> None:
    """pip installs `pin` from the mirror folder alone, as a worker does (`--no-deps`)."""
    index = (folder / "mirror" / "web").as_uri() + "/simple/"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--index-url",
         index, "--target", str(folder / "site" / pin), pin],
        env=up.env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _holding(secret: str, roots: list[Path]) -> list[str]:
    """Every file below `roots` that holds `secret`, or its basic-auth header form."""
    forms = [secret.encode(), base64.b64encode(f"{USER}:{secret}".encode())]
    return [
        str(path)
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and any(f in path.read_bytes() for f in forms)
    ]


# --------------------------------------------------------------------------------------
# End to end, with the credentials from the spec's variables
# --------------------------------------------------------------------------------------


def test_a_private_upstream_is_mirrored_a_worker_installs_from_it_and_no_secret_is_kept(
    served: Path,  # noqa: F811 - the fixture of test_workers
    tmp_path: Path,
    private: Upstream,
    secret: str,
) -> None:
    worker = tmp_path / "ol" / "w"
    spec = write_spec(
        served,
        private,
        [
            {
                "name": "w",
                "path": str(worker),
                "requirements": ["gamma==1.0"],
                "lambdas": {"probe": probe(served / "src", ["gamma==1.0"])},
            }
        ],
    )
    data = yaml.safe_load(spec.read_text())
    data["mirror"].update(engine="auto", upstream_auth=AUTH)
    spec.write_text(yaml.safe_dump(data))
    env = _env(private, served, OLM_TEST_USER=USER, OLM_TEST_PASSWORD=secret)
    plan_file = tmp_path / "plan.json"

    runs = [_olmirror(env, "plan", "-f", str(spec), "--debug", "--diff", "--out", str(plan_file))]
    assert runs[-1].returncode == 0, runs[-1].stdout + runs[-1].stderr
    assert "engine auto chose simple because the upstream is read with credentials" in (
        runs[-1].stdout
    )
    runs.append(_olmirror(env, "apply", str(plan_file), "--yes", "--json"))
    assert runs[-1].returncode == 0, runs[-1].stdout + runs[-1].stderr
    # a file lost from the mirror is fetched again, with --debug's account of each request
    (lost, *_) = (served / "mirror" / "web" / "packages").rglob("*.whl")
    lost.unlink()
    runs.append(_olmirror(env, "apply", "-f", str(spec), "--yes", "--debug"))
    assert runs[-1].returncode == 0, runs[-1].stdout + runs[-1].stderr
    assert "fetch 1 file" in runs[-1].stdout and lost.is_file()
    assert "Verified: the mirror serves every locked requirement" in runs[-1].stdout
    runs.append(_olmirror(env, "plan", "-f", str(spec), "--json", "--debug"))
    assert runs[-1].returncode == 0 and json.loads(runs[-1].stdout)["summary"]["changes"] == 0
    runs.append(_olmirror(env, "verify", "-f", str(spec), "--call", "--debug"))
    assert runs[-1].returncode == 0, runs[-1].stdout + runs[-1].stderr
    assert "Called 1 lambda, 0 failed" in runs[-1].stdout

    statuses = {hit.status for hit in private.counts.hits()}
    assert 200 in statuses and 401 not in statuses, "every request carried the credentials"
    files = json.loads(spec.with_suffix(".lock").read_text())["targets"]
    (target,) = files.values()
    assert set(target["files"]) == {"gamma==1.0", "delta==1.0"}
    for run in runs:
        assert secret not in run.stdout + run.stderr
    assert _holding(secret, [served, worker, plan_file.parent]) == []


# --------------------------------------------------------------------------------------
# Faults: each one paragraph naming the field or the source, and no secret
# --------------------------------------------------------------------------------------


def test_wrong_missing_or_unset_credentials_are_each_one_clear_error(
    tmp_path: Path, private: Upstream, secret: str
) -> None:
    spec = _spec(tmp_path, private, upstream_auth=AUTH)
    wrong = _env(private, tmp_path, OLM_TEST_USER=USER, OLM_TEST_PASSWORD="not-" + secret)
    done = _olmirror(wrong, "plan", "-f", str(spec))
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        f"the upstream {private.url}/simple/ refused the credentials from mirror.upstream_auth "
        "($OLM_TEST_USER, $OLM_TEST_PASSWORD)"
    ) in done.stderr
    assert "Traceback" not in done.stderr and secret not in done.stdout + done.stderr

    unset = _env(private, tmp_path, OLM_TEST_USER=USER)
    done = _olmirror(unset, "plan", "-f", str(spec))
    assert done.returncode == 1
    assert (
        "mirror.upstream_auth.password_env names the environment variable OLM_TEST_PASSWORD, "
        "but it is not set"
    ) in done.stderr
    assert "Traceback" not in done.stderr

    (tmp_path / "anonymous").mkdir()
    anonymous = _spec(tmp_path / "anonymous", private)
    done = _olmirror(_env(private, tmp_path), "plan", "-f", str(anonymous))
    assert done.returncode == 1
    assert (
        f"the upstream {private.url}/simple/ asks for credentials (HTTP 401 Unauthorized); set "
        f"mirror.upstream_auth or add the host 127.0.0.1 to $NETRC ({tmp_path / 'none'})"
    ) in done.stderr


def test_credentials_refused_at_apply_fail_the_fetch_with_the_reason(
    tmp_path: Path, private: Upstream, secret: str
) -> None:
    """A plan made with the right password, applied with another: the fetcher on the
    mirror host says which credentials the upstream refused."""
    spec = _spec(tmp_path, private, upstream_auth={"token_env": "OLM_TEST_TOKEN"})
    private.require_auth("__token__", secret)
    plan_file = tmp_path / "plan.json"
    right = _env(private, tmp_path, OLM_TEST_TOKEN=secret)
    assert _olmirror(right, "plan", "-f", str(spec), "--out", str(plan_file)).returncode == 0

    done = _olmirror(_env(private, tmp_path, OLM_TEST_TOKEN="expired"), "apply", str(plan_file))
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "refused the credentials from mirror.upstream_auth.token_env ($OLM_TEST_TOKEN)" in output
    assert "HTTP 401 Unauthorized" in output and "Traceback" not in output
    assert secret not in output and "expired" not in output


def test_explicit_bandersnatch_with_credentials_is_a_plan_error_naming_the_fix(
    tmp_path: Path, private: Upstream, secret: str
) -> None:
    spec = _spec(tmp_path, private, engine="bandersnatch", upstream_auth=AUTH)
    env = _env(private, tmp_path, OLM_TEST_USER=USER, OLM_TEST_PASSWORD=secret)
    done = _olmirror(env, "plan", "-f", str(spec))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "mirror.engine: bandersnatch takes a private upstream's credentials only" in done.stderr
    assert "Set mirror.engine to simple (or auto)" in done.stderr
    assert secret not in done.stdout + done.stderr


def test_an_sdist_is_downloaded_and_built_with_the_credentials_at_plan_and_at_apply(
    tmp_path: Path, secret: str
) -> None:
    """The sdist's download, uv's build requirements, and the rebuild at apply of a wheel
    this machine no longer keeps."""
    with running_upstream(tmp_path / "upstream", with_sdists()) as up:
        up.require_auth("__token__", secret)
        folder = tmp_path / "spec"
        folder.mkdir()
        spec = write_spec(folder, up, [], allowlist={"packages": ["docopt==0.6.2"]})
        data = yaml.safe_load(spec.read_text())
        data["mirror"].update(engine="simple", upstream_auth={"token_env": "OLM_TEST_TOKEN"})
        spec.write_text(yaml.safe_dump(data))
        env = _env(up, folder, OLM_TEST_TOKEN=secret)
        first = _olmirror(env, "apply", "-f", str(spec), "--yes", "--debug")
        assert first.returncode == 0, first.stdout + first.stderr
        (wheel,) = (folder / "mirror" / "web" / "packages" / "built").rglob("*.whl")
        for kept in (folder / ".olmirror" / "wheels").rglob("*.whl"):
            kept.unlink()
        wheel.unlink()
        again = _olmirror(env, "apply", "-f", str(spec), "--yes", "--debug")
        assert again.returncode == 0, again.stdout + again.stderr
        assert wheel.is_file()
        assert 401 not in {hit.status for hit in up.counts.hits()}
    for run in (first, again):
        assert secret not in run.stdout + run.stderr
    assert _holding(secret, [folder]) == []


# --------------------------------------------------------------------------------------
# netrc, without upstream_auth
# --------------------------------------------------------------------------------------


def test_netrc_credentials_serve_without_upstream_auth(
    tmp_path: Path, private: Upstream, secret: str
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login {USER}\n  password {secret}\n")
    netrc.chmod(0o600)
    spec = _spec(tmp_path, private, engine="auto")
    done = _olmirror(_env(private, tmp_path, NETRC=str(netrc)), "apply", "-f", str(spec), "-y")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "engine auto chose simple because the upstream is read with credentials" in done.stdout
    for pin in ALLOWLIST:
        _pip_install(private, tmp_path, pin)
    assert secret not in done.stdout + done.stderr
    assert _holding(secret, [tmp_path]) == [str(netrc)]


# --------------------------------------------------------------------------------------
# The mirror on another host, over SSH: the credentials travel on the fetcher's stdin
# --------------------------------------------------------------------------------------


def test_a_mirror_on_an_ssh_host_fetches_with_the_credentials(
    farm: SshFarm, tmp_path: Path, private: Upstream, secret: str
) -> None:
    node = farm.host("mirror")
    spec = _spec(tmp_path, private, upstream_auth=AUTH)
    data = yaml.safe_load(spec.read_text())
    data["hosts"][node.name] = node.spec(farm.known_hosts(node))
    data["mirror"].update(host=node.name, directory=str(node.root / "srv" / "pypi"))
    spec.write_text(yaml.safe_dump(data))
    env = _env(private, tmp_path, OLM_TEST_USER=USER, OLM_TEST_PASSWORD=secret)
    done = _olmirror(env, "apply", "-f", str(spec), "--yes", "--debug")
    assert done.returncode == 0, done.stdout + done.stderr
    stored = {p.name for p in (node.root / "srv" / "pypi" / "web" / "packages").rglob("*.whl")}
    assert stored == {"omega-1.1-py3-none-any.whl", "theta-1.0-py3-none-any.whl"}
    assert secret not in done.stdout + done.stderr
    assert _holding(secret, [tmp_path, node.root]) == []


# --------------------------------------------------------------------------------------
# Units: uv's argv, the fetcher's stdin, the client's origins, what a repr shows
# --------------------------------------------------------------------------------------


def test_uv_gets_the_credentials_in_its_environment_never_in_its_argv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, private: Upstream, secret: str
) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append((list(argv), kwargs["env"]))
        return real(argv, **kwargs)

    monkeypatch.setattr(uv_compile.subprocess, "run", run)
    for key, value in _env(private, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("UV_INDEX_ELSEWHERE_PASSWORD", "this machine's own")
    monkeypatch.setenv("OLM_TEST_CANARY", "no build needs it")
    found = Credentials(USER, secret, "mirror.upstream_auth ($A, $B)")
    requirements = RequirementSet("allowlist", "allowlist", ("omega==1.1",))
    target = Target("3.11", "manylinux_2_17_x86_64")
    resolution = uv_compile.compile_set(
        requirements, target, private.url, str(private.ca_file), credentials=found
    )
    assert resolution.pins == ["omega==1.1"]
    ((argv, env),) = seen
    assert not any(secret in arg for arg in argv)
    assert ["--default-index", f"olmirror={private.url}/simple/"] == argv[
        argv.index("--default-index") : argv.index("--default-index") + 2
    ]
    assert (env["UV_INDEX_OLMIRROR_USERNAME"], env["UV_INDEX_OLMIRROR_PASSWORD"]) == (USER, secret)
    assert "UV_INDEX_ELSEWHERE_PASSWORD" not in env
    # uv builds sdists for their metadata: it gets what a build gets (`build_env`), and no
    # netrc of its own (olmirror alone decides where credentials go)
    assert "OLM_TEST_CANARY" not in env and env["NETRC"] == os.devnull


def test_the_fetcher_gets_the_credentials_on_its_stdin_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, private: Upstream, secret: str
) -> None:
    conn = LocalConnection()
    sent: list[tuple[tuple[str, ...], bytes | None]] = []
    real = conn.run

    def run(argv: Any, **kwargs: Any) -> Any:
        sent.append((tuple(argv), kwargs.get("stdin")))
        return real(argv, **kwargs)

    monkeypatch.setattr(conn, "run", run)
    wheel = private.catalogue.file("omega-1.1-py3-none-any.whl")
    files = [(str(tmp_path / wheel.filename), private.file_url(wheel.filename), wheel.sha256, None)]
    auth = client_auth(Credentials(USER, secret, "netrc"), private.url)
    report = fetch_missing(conn, files, str(private.ca_file), 60, None, Retries(), auth)
    assert report["fetched"] == 1, report
    ((argv, stdin),) = sent
    assert not any(secret in arg for arg in argv)
    header = json.loads(stdin or b"{}")["auth"]["header"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == f"{USER}:{secret}"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request's Authorization header; /go/* redirects to `server.elsewhere`."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        if self.path.startswith("/go/"):
            self.send_response(302)
            self.send_header("Location", self.server.elsewhere + self.path[3:])  # type: ignore[attr-defined]
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def two_origins() -> Iterator[tuple[http.server.HTTPServer, http.server.HTTPServer]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder) for _ in range(2)]
    for server in servers:
        server.seen = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].elsewhere = f"http://127.0.0.1:{servers[1].server_address[1]}"  # type: ignore[attr-defined]
    yield servers[0], servers[1]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_client_sends_the_credentials_to_the_upstreams_origin_alone(
    two_origins: tuple[http.server.HTTPServer, http.server.HTTPServer], secret: str
) -> None:
    upstream, other = (f"http://127.0.0.1:{s.server_address[1]}" for s in two_origins)
    found = Credentials(USER, secret, "~/.netrc")
    client = Client(auth=client_auth(found, upstream))
    for url in (f"{upstream}/simple/a/", f"{upstream}/go/packages/a.whl", f"{other}/b.whl"):
        client.get(url, lambda reply, _: reply.read())
    client.close()
    header = found.header()
    assert two_origins[0].seen == [("/simple/a/", header), ("/go/packages/a.whl", header)]  # type: ignore[attr-defined]
    assert two_origins[1].seen == [("/packages/a.whl", None), ("/b.whl", None)]  # type: ignore[attr-defined]


def test_credentials_rule_out_bandersnatch_whatever_the_lock_chose() -> None:
    lock = Lock(inputs="x", upstream="https://u.example", targets={})
    lock.auto_engine, lock.auto_engine_why = "bandersnatch", "serials"
    assert choose_engine("auto", lock, None)[0] == "bandersnatch"
    engine, why = choose_engine("auto", lock, None, None, "~/.netrc")
    assert engine == "simple" and "read with credentials" in why
    with pytest.raises(OlmirrorError, match=r"from ~/\.netrc\. Set mirror\.engine to simple"):
        choose_engine("bandersnatch", lock, None, None, "~/.netrc")


def test_a_refusal_names_where_the_credentials_came_from(private: Upstream, secret: str) -> None:
    found = Credentials(USER, "wrong", "mirror.upstream_auth ($U, $P)")
    client = Client(private.ssl_context(), auth=client_auth(found, private.url))
    with pytest.raises(
        Final, match=r"refused the credentials from mirror.upstream_auth \(\$U, \$P\)"
    ):
        client.get(private.simple_url, lambda reply, _: reply.read())
    assert "wrong" not in repr(found) and secret not in repr(client.auth)
    assert repr(Auth("https://h:443", "Basic eA==", "x")) == (
        "Auth(origin='https://h:443', header=***, source='x')"
    )


# --------------------------------------------------------------------------------------
# What uv and the builds it runs print: the secret never reaches output, a message or the
# lock, and a build sees only what a build needs
# --------------------------------------------------------------------------------------


def test_a_build_that_prints_its_environment_leaks_no_secret(tmp_path: Path, secret: str) -> None:
    """Two sdists whose setup.py prints os.environ and fails: one as uv pip compile reads
    its metadata, one as olmirror builds its wheel. Both are needed by lambdas found on the
    worker, so their failures are kept in the lock, and shown by plan --debug and --json."""
    canary = f"canary-{secrets.token_hex(8)}"
    projects = (
        *with_sdists(),
        leaky_project("leaky-meta", "dist_info"),
        leaky_project("leaky-wheel", "bdist_wheel"),
    )
    with running_upstream(tmp_path / "upstream", projects) as up:
        up.require_auth("__token__", secret)
        folder = tmp_path / "spec"
        registry = init_worker(folder / "w")
        put_lambda(registry, "meta", requirements_in="leaky-meta==1.0\n")
        put_lambda(registry, "wheel", requirements_in="leaky-wheel==1.0\n")
        spec = write_spec(
            folder, up, [{"name": "w", "path": str(folder / "w")}],
            allowlist={"packages": ["omega==1.1"], "from_registry": True},
        )  # fmt: skip
        data = yaml.safe_load(spec.read_text())
        data["mirror"].update(engine="simple", upstream_auth={"token_env": "OLM_TEST_TOKEN"})
        spec.write_text(yaml.safe_dump(data))
        env = _env(up, folder, OLM_TEST_TOKEN=secret, OLM_TEST_CANARY=canary)
        runs = [
            _olmirror(env, "plan", "-f", str(spec), "--debug"),
            _olmirror(env, "plan", "-f", str(spec), "--json", "--debug"),
        ]
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
    failed = json.loads(resolved_path(spec).read_text())["failed"]
    assert len(failed) == 2, failed
    for why in failed.values():
        assert "the build's environment: " in why and "***" in why, why
    said = "".join(run.stdout + run.stderr for run in runs) + json.dumps(failed)
    assert "the build's environment: " in said
    pair = base64.b64encode(f"__token__:{secret}".encode()).decode()
    assert secret not in said and pair not in said
    assert canary not in said, "a build sees only what a build needs"
    assert _holding(secret, [folder]) == []


def test_redact_hides_every_form_of_the_secret() -> None:
    found = Credentials(USER, "p@ss word", "x")
    pair = base64.b64encode(f"{USER}:p@ss word".encode()).decode()
    text = f"Authorization: {found.header()}; {pair}; {pair.rstrip('=')}; p@ss word; p%40ss%20word"
    assert redact(text, found) == "Authorization: ***; ***; ***; ***; ***"
    assert redact(text, None) == text


# --------------------------------------------------------------------------------------
# netrc: the entry of the upstream's very host, and nothing of the file in a message
# --------------------------------------------------------------------------------------


def test_a_netrc_default_entry_goes_to_no_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(
        f"machine other.example login x password y\ndefault login u password {secret}\n"
    )
    monkeypatch.setenv("NETRC", str(netrc))
    assert credentials(NETRC, "https://pypi.org") is None
    assert credentials_from(NETRC, "https://pypi.org") is None
    lock = Lock(inputs="x", upstream="https://pypi.org", targets={})
    lock.auto_engine, lock.auto_engine_why = "bandersnatch", "serials"
    assert choose_engine("auto", lock, None, None, credentials_from(NETRC, lock.upstream)) == (
        "bandersnatch",
        "serials",
    )
    netrc.write_text(
        f"default login u password y\nmachine Pkgs.Example login v password {secret}\n"
    )
    found = credentials(NETRC, "https://pkgs.example/pypi")
    assert found is not None and (found.username, found.password) == ("v", secret)
    assert found.source == f"$NETRC ({netrc}) (machine pkgs.example)"


def test_a_netrc_that_cannot_be_parsed_is_named_by_its_line_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine pkgs.example\n  login u\n  password s3cr3t tail-of-it")
    monkeypatch.setenv("NETRC", str(netrc))
    with caplog.at_level(logging.DEBUG, logger="olmirror.lock.upstream_auth"):
        assert credentials(NETRC, "https://pkgs.example") is None
        auth = client_auth(None, "https://pkgs.example")
    logged = caplog.text
    assert f"{netrc}: olmirror cannot parse it (line 3)" in logged
    assert "tail-of-it" not in logged and "s3cr3t" not in logged
    said = refused("https://pkgs.example/simple/a/", 401, "Unauthorized", auth)
    assert said == (
        "the upstream https://pkgs.example/simple/a/ asks for credentials (HTTP 401 "
        f"Unauthorized); set mirror.upstream_auth, or mend $NETRC ({netrc}): olmirror cannot "
        "parse it (line 3), so no credentials came from it; give the machine pkgs.example an "
        "entry there"
    )
    assert "tail-of-it" not in said


# --------------------------------------------------------------------------------------
# Refusals: where the header goes, hop by hop, and what each refusal says
# --------------------------------------------------------------------------------------


def test_the_header_follows_an_upgrade_to_https_on_the_same_host_alone() -> None:
    auth = Auth("http://pkgs.example:80", "Basic eA==", "~/.netrc")
    assert sends_auth("http://pkgs.example/simple/a/", auth)
    assert sends_auth("https://pkgs.example/simple/a/", auth), "http -> https, default ports"
    assert sends_auth("https://PKGS.example:443/packages/a.whl", auth)
    assert not sends_auth("https://pkgs.example:8443/simple/a/", auth), "another port"
    assert not sends_auth("https://files.example/a.whl", auth), "another host"
    secure = Auth("https://pkgs.example:443", "Basic eA==", "~/.netrc")
    assert not sends_auth("http://pkgs.example/simple/a/", secure), "never down to http"
    odd = Auth("http://pkgs.example:8080", "Basic eA==", "~/.netrc")
    assert not sends_auth("https://pkgs.example:8443/simple/a/", odd)
    assert not sends_auth("https://pkgs.example/a/", Auth("http://pkgs.example:80", None, "x"))


class _Reply:
    def __init__(self, status: int, location: str | None = None) -> None:
        self.status, self.reason, self.location = status, "Moved" if location else "OK", location
        self.length, self.will_close = 0, False

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.location if name == "Location" else default

    def isclosed(self) -> bool:
        return True

    def read(self) -> bytes:
        return b""


class _Connection:
    """Answers http://pkgs.example/... with a redirect to its https, and https with 200."""

    def __init__(self, scheme: str, seen: list[tuple[str, str | None]]) -> None:
        self.scheme, self.seen, self.target = scheme, seen, ""

    def request(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.target = target
        self.seen.append((f"{self.scheme}:{target}", headers.get("Authorization")))

    def getresponse(self) -> _Reply:
        if self.scheme == "http":
            return _Reply(301, "https://pkgs.example" + self.target)
        return _Reply(200)

    def close(self) -> None:
        pass


def test_an_http_upstream_that_upgrades_to_https_is_read_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, str | None]] = []

    def connection(self: Client, parts: Any, proxy: Any, fresh: bool = False) -> Any:
        return (parts.scheme, parts.hostname), _Connection(parts.scheme, seen), False

    monkeypatch.setattr(upstream_http, "_proxy_for", lambda parts: None)
    monkeypatch.setattr(Client, "_connection", connection)
    found = Credentials(USER, "pw", "~/.netrc")
    client = Client(auth=client_auth(found, "http://pkgs.example"))
    client.get("http://pkgs.example/simple/a/", lambda reply, _: reply.read())
    assert seen == [("http:/simple/a/", found.header()), ("https:/simple/a/", found.header())]


def test_each_refusal_says_who_refused_what_and_the_way_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    upstream = "https://pkgs.example"
    file = f"{upstream}/packages/ab/cd/omega-1.1-py3-none-any.whl"
    sent = client_auth(Credentials(USER, "pw", "mirror.upstream_auth ($U, $P)"), upstream)
    none = client_auth(None, upstream)

    blocked = refused(file, 403, "Forbidden", sent)
    assert blocked.startswith(f"the upstream's index refused the file {file} (HTTP 403 Forbidden)")
    assert "with the credentials from mirror.upstream_auth ($U, $P): it blocks that file" in blocked
    assert "not permitted to read it" in blocked and "check their values" not in blocked

    page = refused(f"{upstream}/simple/omega/", 403, "Forbidden", sent)
    assert page.startswith(f"the upstream {upstream}/simple/omega/ refused the credentials from")

    elsewhere = refused("https://files.example/omega.whl", 401, "Unauthorized", sent)
    assert elsewhere.startswith("https://files.example/omega.whl asks for credentials (HTTP 401")
    assert "not on the upstream's origin https://pkgs.example:443" in elsewhere
    assert "the upstream https://files" not in elsewhere
    assert refused("https://files.example/omega.whl", 401, "Unauthorized", none) == elsewhere

    anonymous = refused(f"{upstream}/simple/omega/", 401, "Unauthorized", none)
    assert anonymous == (
        f"the upstream {upstream}/simple/omega/ asks for credentials (HTTP 401 Unauthorized); "
        f"set mirror.upstream_auth or add the host pkgs.example to $NETRC ({tmp_path / 'netrc'})"
    )
    assert "~/.netrc" not in anonymous
    monkeypatch.delenv("NETRC")
    assert client_auth(None, upstream).source.endswith("pkgs.example to ~/.netrc")


def test_uv_refused_reads_uvs_own_line_never_a_build_log() -> None:
    found = Credentials(USER, "pw", "~/.netrc")
    index = (
        "error: No solution found when resolving dependencies\n"
        "  cause: Because omega was not found in the package registry ...\n\n"
        "hint: An index URL (https://pkgs.example/pypi/simple/) could not be queried due to a "
        "lack of valid authentication credentials (401 Unauthorized)\n"
    )
    said = uv_refused(index, "https://pkgs.example/pypi", found)
    assert said is not None
    assert said.startswith("the upstream https://pkgs.example/pypi/simple/ refused the credentials")
    a_file = (
        "error: Failed to fetch: https://pkgs.example/packages/omega-1.1-py3-none-any.whl\n"
        "  cause: HTTP status client error (403 Forbidden) for url "
        "(https://pkgs.example/packages/omega-1.1-py3-none-any.whl)\n"
    )
    said = uv_refused(a_file, "https://pkgs.example/pypi", found)
    assert said is not None and said.startswith(
        "the upstream's index refused the file "
        "https://pkgs.example/packages/omega-1.1-py3-none-any.whl (HTTP 403 Forbidden)"
    )
    build_log = (
        "  \u00d7 Failed to build `leaky @ file:///tmp/leaky-1.0.tar.gz`\n"
        "  ├─▶ The build backend returned an error\n"
        "  ╰─▶ Call to `setuptools.build_meta:__legacy__.build_wheel` failed (exit status: 1)\n\n"
        "      [stdout]\n"
        "      fetching https://elsewhere.example/x: 401 Unauthorized\n"
        "      hint: An index URL (https://elsewhere.example/) could not be queried due to a "
        "lack of valid authentication credentials (401 Unauthorized)\n"
        "      HTTP status client error (403 Forbidden) for url (https://elsewhere.example/)\n"
    )
    assert uv_refused(build_log, "https://pkgs.example/pypi", found) is None


# --------------------------------------------------------------------------------------
# engine auto decides again when the credentials come or go
# --------------------------------------------------------------------------------------


def test_engine_auto_decides_again_once_the_credentials_are_gone(
    tmp_path: Path, private: Upstream, secret: str
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login {USER}\n  password {secret}\n")
    spec = _spec(tmp_path, private, engine="auto")
    private.json_api = False  # so auto, when it asks, chooses simple for another reason
    first = _olmirror(_env(private, tmp_path, NETRC=str(netrc)), "plan", "-f", str(spec))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "engine auto chose simple because the upstream is read with credentials" in first.stdout

    private.require_auth(None)
    netrc.unlink()
    again = _olmirror(_env(private, tmp_path, NETRC=str(netrc)), "plan", "-f", str(spec))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "read with credentials" not in again.stdout
    assert "engine auto chose simple because it has no JSON API" in again.stdout
    assert "credentials" not in json.loads(resolved_path(spec).read_text())["auto_engine_why"]
    assert secret not in first.stdout + first.stderr + again.stdout + again.stderr


def test_the_lock_digest_says_whether_auto_decided_with_credentials_never_which() -> None:
    args: tuple[Any, ...] = ([], [], "https://u.example", [], True)
    assert inputs_digest(*args) == inputs_digest(*args, False), "a lock without stays as it was"
    assert inputs_digest(*args, True) != inputs_digest(*args)
    assert inputs_digest(*args[:4], False, True) == inputs_digest(*args[:4], False)
