"""OpenLambda workers provisioned from one spec, and proof that each installs from the mirror.

Everything is real but OpenLambda itself: uv resolves against the local HTTPS upstream,
bandersnatch (or olmirror's simple engine) fills the mirror, nginx serves it, remote
workers live behind real sshd daemons on 127.0.0.1, and the `ol` stand-in
(tests/standin/ol) runs a worker as OpenLambda's code does: on a lambda's first call it
installs each line of the lambda's requirements.txt with real pip, `--no-deps`, in the
sandbox, whose pip reads only the sandbox's pip.conf. Each install leaves pip's output in
<Pkgs_dir>/<line>/standin-pip.log, and every init, up and down is journalled in
<path>/standin-journal.

The five ways DESIGN.md says a worker fails later ("unable to find /host/files") each have
a test here: a package missing from the mirror, a wrong mirror URL or path, requirements
without exact versions, a mirror gone stale after a requirement changed, and
platform-specific or conditional dependencies.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import STANDIN_OL, CliResult, journal, pinned, write_spec
from sshd import SshFarm, SshHost, free_port
from upstream import MANYLINUX_X86_64, PROJECTS, Project, Release, Upstream, running_upstream

Cli = Callable[..., CliResult]

PY311 = {"python": "3.11", "platform": "manylinux_2_17_x86_64"}
PY310 = {"python": "3.10", "platform": "manylinux_2_17_x86_64"}
PY39 = {"python": "3.9", "platform": "manylinux_2_17_x86_64"}
WIN = {"python": "3.11", "platform": "win_amd64"}
# Every line of a requirements.txt a worker installs: NAME==VERSION, nothing looser.
EXACT_PIN = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?==[0-9][0-9a-z.+!-]*")


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def key(target: dict[str, str]) -> str:
    """A target's key in the lock, e.g. py3.11-manylinux_2_17_x86_64."""
    return f"py{target['python']}-{target['platform']}"


def edit(spec: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(spec.read_text())
    change(data)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))


def set_worker(spec: Path, index: int, **values: Any) -> None:
    edit(spec, lambda data: data["workers"][index].update(values))


def set_mirror(spec: Path, **values: Any) -> None:
    edit(spec, lambda data: data["mirror"].update(values))


def add_host(spec: Path, host: SshHost, known_hosts: Path, **extra: Any) -> None:
    edit(spec, lambda data: data["hosts"].update({host.name: host.spec(known_hosts, **extra)}))


def apply_ok(cli: Cli, spec: Path, *extra: str) -> CliResult:
    result = cli("apply", "-f", str(spec), "--yes", "--no-color", *extra)
    assert result.code == 0, result.out + result.err
    return result


def lock_sets(spec: Path, target: dict[str, str]) -> dict[str, list[str]]:
    """The lock's pinned closure of every requirement set, for one target."""
    return json.loads(spec.with_suffix(".lock").read_text())["targets"][key(target)]["sets"]


def lock_files(spec: Path, target: dict[str, str]) -> dict[str, dict[str, Any]]:
    return json.loads(spec.with_suffix(".lock").read_text())["targets"][key(target)]["files"]


def pinned_lines(worker: Path) -> list[str]:
    """The lines of the worker's requirements.txt that pip installs (comments dropped)."""
    return pinned(worker / "registry" / "requirements.txt")


def probe(folder: Path, requirements: list[str]) -> dict[str, str]:
    """A lambda that needs `requirements`: calling it installs their closure."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "f.py").write_text("def f(event):\n    return 'ok'\n")
    (folder / "requirements.in").write_text("".join(f"{line}\n" for line in requirements))
    return {"source": str(folder)}


def lambda_lines(worker: Path, name: str = "probe") -> list[str]:
    """The pinned lines of a lambda's requirements.txt, read from its tarball."""
    with tarfile.open(worker / "registry" / f"{name}.tar.gz") as archive:
        member = archive.extractfile("requirements.txt")
        assert member is not None
        text = member.read().decode()
    return [line for line in (raw.split("#")[0].strip() for raw in text.splitlines()) if line]


def call_ok(cli: Cli, spec: Path) -> CliResult:
    result = cli("verify", "-f", str(spec), "--call", "--no-color")
    assert result.code == 0, result.out + result.err
    return result


def installed(worker: Path) -> dict[str, str]:
    """{Pkgs_dir folder: pip's output} of everything the worker's calls installed."""
    packages = worker / "lambda" / "packages"
    return {log.parent.name: log.read_text() for log in packages.glob("*/standin-pip.log")}


def expected_pins(upstream: Upstream, roots: list[str], python: str, platform: str) -> list[str]:
    sys_platform = "win32" if platform.startswith("win") else "linux"
    closure = upstream.catalogue.closure(roots, python, sys_platform)
    return sorted(f"{name}=={version}" for name, version in closure.items())


def assert_installed_from_mirror(
    worker: Path, mirror: str, files: dict[str, Any] | None = None, name: str = "probe"
) -> None:
    """Every pinned line of lambda `name` was installed by its calls, from `mirror`; as the
    locked file of `files` (the lock's files of the worker's target) when given."""
    logs = installed(worker)
    lines = lambda_lines(worker, name)
    assert lines and set(lines) <= set(logs), (lines, sorted(logs))
    for line in lines:
        log = logs[line]
        assert f"Looking in indexes: {mirror}/simple/" in log, log
        assert "Successfully installed" in log, log
        downloaded = re.search(r"Downloading (\S+)", log)
        assert downloaded and downloaded[1].startswith(f"{mirror}/packages/"), log
        if files is not None:
            assert downloaded[1].rsplit("/", 1)[1] == files[line]["filename"]


def names_worker(text: str, name: str) -> bool:
    """Whether `text` names worker `name` ("worker 'b'", "worker b", "workers: b, c"...)."""
    listed = r"(?:[\w'.-]+,\s+)*"
    pattern = rf"\bworkers?:?\s+{listed}'?{re.escape(name)}'?(?![\w-])"
    return re.search(pattern, text) is not None


def serve_http(spec: Path, listen: int, url: str = "") -> None:
    """Serve the mirror with nginx on 127.0.0.1:`listen`; workers use `url` (default: that)."""
    url = url or f"http://127.0.0.1:{listen}"
    set_mirror(spec, serve={"backend": "http", "listen": f"127.0.0.1:{listen}", "url": url})


def stop_nginx(mirror: Path) -> None:
    """Stop the nginx instance olmirror started for `mirror`, by the pid in its pid file."""
    nginx = mirror / ".olmirror" / "nginx"
    try:
        pid = int((nginx / "nginx.pid").read_text())
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ValueError):
        return
    if not (title.startswith("nginx: master process") and str(nginx / "nginx.conf") in title):
        return
    fd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGTERM)
        select.select([fd], [], [])  # readable once the process has exited
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    """A folder for a mirror served by nginx, stopped and removed afterwards.

    Run as root, nginx reads the web folder as `nobody`, and pytest's folders are private,
    so this one lies under the system temp folder, readable by others.
    """
    folder = Path(tempfile.mkdtemp(prefix="olmirror-workers-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        stop_nginx(folder / "mirror")
        shutil.rmtree(folder)


def local_spec(folder: Path, upstream: Upstream, workers: list[dict[str, Any]]) -> Path:
    """A spec whose mirror (engine simple, filesystem) and workers are on this machine."""
    spec = write_spec(folder, upstream, workers)
    set_mirror(spec, engine="simple")
    return spec


# --------------------------------------------------------------------------------------
# 1. The end-to-end: a mirror, a local and a remote worker, each installing from it
# --------------------------------------------------------------------------------------


def test_one_spec_provisions_a_mirror_and_two_workers_that_install_only_from_it(
    cli: Cli, farm: SshFarm, served: Path, tmp_path: Path, clean_upstream: Upstream
) -> None:
    up = clean_upstream
    node = farm.host("wnode")
    port = free_port()
    local_worker = tmp_path / "ol" / "fast"
    remote_worker = node.root / "opt" / "ol" / "lean"
    spec = write_spec(
        served,
        up,
        [
            {
                "name": "fast",
                "path": str(local_worker),
                "requirements": ["alpha[fast]==2.0"],
                "lambdas": {"probe": probe(served / "fast", ["alpha[fast]==2.0"])},
                "state": "stopped",
            },
            {
                "name": "lean",
                "host": node.name,
                "path": str(remote_worker),
                "requirements": ["gamma==1.0"],
                "lambdas": {"probe": probe(served / "lean", ["gamma==1.0"])},
                "state": "stopped",
            },
        ],
    )
    add_host(spec, node, farm.known_hosts(node))
    set_mirror(spec, engine="bandersnatch")
    serve_http(spec, port)
    url = f"http://127.0.0.1:{port}"

    # First the mirror and the workers' files, with the workers stopped.
    first = apply_ok(cli, spec)
    assert f"start nginx on 127.0.0.1:{port}" in first.out
    assert "Verified: the mirror serves every locked requirement" in first.out
    for worker in (local_worker, remote_worker):
        config = json.loads((worker / "config.json").read_text())
        assert (config["pip_mirror"], config["mirror_host"]) == (url, "127.0.0.1")
        assert journal(worker) == ["init"], "a stopped worker is not started"
    files = lock_files(spec, PY311)
    assert pinned_lines(local_worker) == expected_pins(up, ["alpha[fast]==2.0"], "3.11", "linux")
    assert pinned_lines(remote_worker) == expected_pins(up, ["gamma==1.0"], "3.11", "linux")
    assert {"speedups==1.2", "zeta-utils==1.0"} <= set(pinned_lines(local_worker))

    # Then start them and call their lambdas: each installs every pin from the mirror, and
    # the upstream hears nothing.
    up.counts.reset()
    set_worker(spec, 0, state="running")
    set_worker(spec, 1, state="running")
    second = apply_ok(cli, spec)
    assert second.out.count("start the worker") == 2
    assert "Called 2 lambdas, 0 failed" in call_ok(cli, spec).out
    assert up.counts.requests() == 0, up.counts.by_path()
    for worker in (local_worker, remote_worker):
        assert_installed_from_mirror(worker, url, files)
        assert journal(worker) == ["init", "up"]
    assert {"speedups==1.2", "zeta-utils==1.0"} <= set(installed(local_worker))
    recap = second.out[second.out.index("Recap") :]
    assert re.search(rf"{node.name}\s+changed", recap) and re.search(r"local\s+changed", recap)

    third = apply_ok(cli, spec)
    assert "Nothing to change" in third.out
    assert journal(local_worker) == journal(remote_worker) == ["init", "up"]
    assert up.counts.files() == [], "nothing is downloaded again"


# --------------------------------------------------------------------------------------
# 2. requirements.txt: exact pins, the lock's closure for the worker's own target
# --------------------------------------------------------------------------------------


def test_requirements_txt_is_the_pinned_closure_for_the_workers_target(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    up = clean_upstream
    workers = {
        "new": PY311,
        "old": PY310,
        "win": WIN,
    }
    spec = local_spec(
        tmp_path,
        up,
        [
            {
                "name": name,
                "path": str(tmp_path / name),
                "requirements": ["alpha==2.0"],
                "lambdas": {"probe": probe(tmp_path / "src", ["alpha==2.0"])},
                "target": target,
                "image": "ol-min" if name == "old" else "python:3.11",  # CPython 3.10, 3.11
                # the stand-in's sandbox runs on Linux x86_64: it cannot install win wheels
                "state": "stopped" if name == "win" else "running",
            }
            for name, target in workers.items()
        ],
    )
    set_mirror(spec, targets=[PY311, PY310, WIN])
    apply_ok(cli, spec)

    for name, target in workers.items():
        worker = tmp_path / name
        text = (worker / "registry" / "requirements.txt").read_text()
        assert f"for target {key(target)}" in text
        lines = pinned_lines(worker)
        assert lines and all(EXACT_PIN.fullmatch(line) for line in lines), lines
        assert lines == lock_sets(spec, target)[f"worker:{name}"]
        python, platform = target["python"], target["platform"]
        assert lines == expected_pins(up, ["alpha==2.0"], python, platform)
    # pip-compile's annotations: what asked for each pin.
    new = (tmp_path / "new" / "registry" / "requirements.txt").read_text()
    assert "\nalpha==2.0\n    # via -r requirements.in\n" in new
    assert "\ngamma==2.0\n    # via beta\n" in new
    assert "\ntheta==1.5\n    # via\n    #   beta\n    #   gamma\n" in new
    # The conditional dependencies follow each worker's target, not this machine.
    assert "compat310==1.1" in pinned_lines(tmp_path / "old")
    assert "compat310==1.1" not in pinned_lines(tmp_path / "new")
    assert "winonly==1.0" in pinned_lines(tmp_path / "win")
    assert "winonly==1.0" not in pinned_lines(tmp_path / "new")
    call_ok(cli, spec)
    url = yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]
    assert_installed_from_mirror(tmp_path / "new", url, lock_files(spec, PY311))
    assert_installed_from_mirror(tmp_path / "old", url, lock_files(spec, PY310))
    assert "compat310==1.1" in installed(tmp_path / "old")
    assert journal(tmp_path / "win") == ["init"]


# --------------------------------------------------------------------------------------
# 3. state: start, one restart after all of a running worker's changes, stop
# --------------------------------------------------------------------------------------


def test_state_starts_restarts_once_after_changes_and_stops(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    worker = tmp_path / "w"
    spec = local_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(worker), "requirements": ["omega==1.1"], "state": "stopped",
          "lambdas": {"probe": probe(tmp_path / "src", ["omega==1.1"])}}],
    )  # fmt: skip
    apply_ok(cli, spec)
    assert journal(worker) == ["init"]

    set_worker(spec, 0, state="running")
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert f"start the worker: `{STANDIN_OL} worker up -p {worker} -d`" in plan.out
    apply_ok(cli, spec)
    assert journal(worker) == ["init", "up"]
    call_ok(cli, spec)
    assert sorted(installed(worker)) == ["omega==1.1"]

    # Three of its files change at once (two through the spec, config.json by hand): the
    # running worker is restarted once, after all of them. Its lambda changes too, which
    # needs no restart: OpenLambda pulls a lambda when it is called.
    probe(tmp_path / "src", ["omega==1.2", "theta==1.0"])
    set_worker(spec, 0, requirements=["omega==1.2", "theta==1.0"])
    config = worker / "config.json"
    config.write_text(config.read_text().replace('"pip_mirror": "', '"pip_mirror": "/gone'))
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.out.count("restart the worker") == 1, plan.out
    for path in ("config.json", "registry/requirements.in", "registry/requirements.txt"):
        assert f"~ {worker / path}" in plan.out
    assert plan.out.rindex("restart the worker") > plan.out.rindex("pip_mirror")
    apply_ok(cli, spec)
    assert journal(worker) == ["init", "up", "down", "up"]
    call_ok(cli, spec)
    assert sorted(installed(worker)) == ["omega==1.1", "omega==1.2", "theta==1.0"]

    # Nothing changed: no restart.
    assert "Nothing to change" in apply_ok(cli, spec).out
    assert journal(worker) == ["init", "up", "down", "up"]

    set_worker(spec, 0, state="stopped")
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert f"stop the worker: `{STANDIN_OL} worker down -p {worker}`" in plan.out
    apply_ok(cli, spec)
    assert journal(worker) == ["init", "up", "down", "up", "down"]
    assert "Nothing to change" in apply_ok(cli, spec).out


def test_a_requirement_change_of_a_stopped_worker_does_not_start_it(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    worker = tmp_path / "w"
    spec = local_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(worker), "requirements": ["omega==1.1"], "state": "stopped"}],
    )
    apply_ok(cli, spec)
    set_worker(spec, 0, requirements=["omega==1.2"])
    changed = apply_ok(cli, spec)
    assert "restart" not in changed.out and "start the worker" not in changed.out
    assert pinned_lines(worker) == ["omega==1.2"]
    assert journal(worker) == ["init"]


# --------------------------------------------------------------------------------------
# 4. a missing `ol` on a remote host
# --------------------------------------------------------------------------------------


def test_a_missing_ol_on_a_remote_host_names_the_host_and_the_fix(
    cli: Cli, farm: SshFarm, tmp_path: Path, clean_upstream: Upstream
) -> None:
    node = farm.host("bare")
    known = farm.known_hosts(node)
    path = node.root / "opt" / "ol" / "w"
    spec = local_spec(
        tmp_path, clean_upstream, [{"name": "w", "host": node.name, "path": str(path)}]
    )

    # A new worker on a host without OpenLambda: `ol` is not on its PATH.
    add_host(spec, node, known, ol="ol")
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 1, plan.out
    assert f"{node.name}: error:" in plan.out
    assert "program 'ol' not found on PATH" in plan.out
    assert f"install OpenLambda on host {node.name!r}, or set hosts.{node.name}.ol" in plan.out
    assert not path.exists()

    # An existing worker whose `ol` went away.
    add_host(spec, node, known)
    apply_ok(cli, spec)
    gone = node.root / "usr" / "bin" / "ol"
    add_host(spec, node, known, ol=str(gone))
    for command in (("plan",), ("apply", "--yes")):
        result = cli(*command, "-f", str(spec), "--no-color")
        assert result.code == 1, result.out
        assert f"{node.name}: error:" in result.out or re.search(
            rf"{node.name}\s+failed", result.out
        )
        assert f"cannot run OpenLambda's {str(gone)!r}" in result.out
        assert "install OpenLambda on" in result.out
        assert "to the path of its `ol` program" in result.out
    assert journal(path) == ["init", "up"]


# --------------------------------------------------------------------------------------
# 5. The failures of DESIGN.md, each caught before a worker meets it
# --------------------------------------------------------------------------------------


def test_a_wrong_mirror_url_is_caught_from_the_workers_host_and_nothing_of_it_changes(
    cli: Cli, farm: SshFarm, served: Path, clean_upstream: Upstream
) -> None:
    node = farm.host("far")
    path = node.root / "opt" / "ol" / "w"
    port = free_port()
    spec = write_spec(
        served,
        clean_upstream,
        [{"name": "w", "host": node.name, "path": str(path), "requirements": ["omega==1.1"]}],
    )
    add_host(spec, node, farm.known_hosts(node))
    set_mirror(spec, engine="simple")
    serve_http(spec, port)
    good = f"http://127.0.0.1:{port}"
    apply_ok(cli, spec)
    assert journal(path) == ["init", "up"]

    # The url names a path nginx does not serve the mirror under (as behind a proxy's /pypi).
    serve_http(spec, port, url=f"{good}/pypi")
    wrong = f"{good}/pypi/simple/"
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert "check that the mirror answers for worker w, after the mirror's own changes" in plan.out
    assert f"GET {wrong} from " in plan.out and "HTTP 404" in plan.out

    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 1
    recap = result.out[result.out.index("Recap") :]
    assert re.search(rf"{node.name}\s+failed", recap), recap
    assert f"worker 'w' cannot reach its mirror {good}/pypi: GET {wrong}" in recap
    assert "it answered HTTP 404 Not Found" in recap
    assert "fix mirror.serve.url" in recap
    # Nothing else of the worker changed: it still points at the mirror that answers, and
    # was not restarted.
    assert json.loads((path / "config.json").read_text())["pip_mirror"] == good
    assert journal(path) == ["init", "up"]


def test_a_filesystem_mirror_the_sandbox_cannot_see_is_a_plan_error(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    """serve.backend filesystem: a worker's pip runs chrooted in its sandbox (<path>/lambda),
    which sees nothing of the host's files outside it, so it cannot read the mirror's
    folder; the plan says so, and what to change, before anything of the worker changes."""
    worker = tmp_path / "w"
    spec = local_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(worker), "requirements": ["omega==1.1"]}],
    )
    set_mirror(spec, serve={"backend": "filesystem"})
    plan = cli("plan", "-f", str(spec), "--no-color")
    message = plan.out + plan.err
    assert plan.code == 1, message
    assert (
        f"worker 'w' cannot install from the mirror: its packages are installed by pip "
        f"chrooted in {worker / 'lambda'}, which cannot see the mirror's web folder "
        f"{tmp_path / 'mirror' / 'web'}" in message
    )
    assert "(mirror.serve.backend: http)" in message
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 1
    assert not worker.exists(), "nothing of the worker was changed"


def test_requirements_without_exact_versions_are_installed_as_exact_pins(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    worker = tmp_path / "w"
    spec = local_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(worker), "requirements": ["omega>=1.0", "Zeta_Utils"],
          "lambdas": {"probe": probe(tmp_path / "src", ["omega>=1.0", "Zeta_Utils"])}}],
    )  # fmt: skip
    apply_ok(cli, spec)
    requirements_in = (worker / "registry" / "requirements.in").read_text().splitlines()
    assert requirements_in[1:] == ["omega>=1.0", "Zeta_Utils"]
    # the newest stable release of each, never the pre-release omega 2.0b1
    assert pinned_lines(worker) == ["omega==1.2", "zeta-utils==1.0"]
    assert all(EXACT_PIN.fullmatch(line) for line in pinned_lines(worker))
    assert lambda_lines(worker) == ["omega==1.2", "zeta-utils==1.0"]
    call_ok(cli, spec)
    url = yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]
    assert_installed_from_mirror(worker, url, lock_files(spec, PY311))


# Projects added to the catalogue: `fastcore` ships one Linux x86_64 wheel and no sdist.
NATIVE = (
    Project(
        "fastcore", (Release("1.0", wheels=(f"cp311-cp311-{MANYLINUX_X86_64}",), sdist=False),)
    ),
    Project("app", (Release("1.0", ("fastcore>=1.0",)),)),
)


def test_a_dependency_without_a_wheel_for_the_workers_platform_is_a_plan_error(
    cli: Cli, tmp_path: Path
) -> None:
    arm = {"python": "3.11", "platform": "manylinux_2_17_aarch64"}
    with running_upstream(tmp_path / "upstream", PROJECTS + NATIVE) as up:
        worker = tmp_path / "w"
        spec = local_spec(
            tmp_path,
            up,
            [{"name": "arm-w", "path": str(worker), "requirements": ["app==1.0"], "target": arm}],
        )
        set_mirror(spec, targets=[PY311, arm])
        plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 1
    message = plan.out + plan.err
    assert (
        f"cannot resolve worker 'arm-w' (olmirror.yaml: workers[0].requirements) for "
        f"target {key(arm)}" in message
    )
    assert "fastcore==1.0 has no wheels with a matching platform tag" in message
    assert "'app==1.0' from olmirror.yaml: workers[0].requirements[0]" in message
    assert "fix the requirement" in message
    assert not worker.exists()


def test_an_sdist_only_dependency_that_cannot_be_built_is_a_plan_error(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    """delta 1.0 has cp310-abi3 wheels, none for Python 3.9, and an sdist.

    A worker cannot build that sdist (`--no-deps`, only the mirror as its index), so olmirror
    builds its wheel; this upstream lacks its build backend (setuptools), so the plan says
    that, on the worker that needs it (tests/test_sdist_builds.py builds with one).
    """
    worker = tmp_path / "w"
    spec = local_spec(
        tmp_path,
        clean_upstream,
        [{"name": "old", "path": str(worker), "requirements": ["gamma==1.0"], "target": PY39}],
    )
    set_mirror(spec, targets=[PY311, PY39])
    plan = cli("plan", "-f", str(spec), "--no-color")
    message = plan.out + plan.err
    assert plan.code == 1, message
    assert "delta==1.0" in message and key(PY39) in message and "worker 'old'" in message
    assert "needs setuptools>=68, one of its build requirements" in message
    assert not worker.exists()


def test_verify_names_the_worker_that_needs_a_package_missing_from_the_mirror(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    spec = local_spec(
        tmp_path,
        clean_upstream,
        [
            {"name": "a", "path": str(tmp_path / "a"), "requirements": ["omega==1.1"]},
            {"name": "b", "path": str(tmp_path / "b"), "requirements": ["gamma==1.0"]},
        ],
    )
    apply_ok(cli, spec)
    assert cli("verify", "-f", str(spec)).code == 0
    # delta is a dependency of gamma, not named by any worker: gone from the mirror.
    shutil.rmtree(tmp_path / "mirror" / "web" / "simple" / "delta")

    result = cli("verify", "-f", str(spec), "--no-color")
    assert result.code == 1
    gaps = [line for line in result.out.splitlines() if "delta==1.0" in line]
    assert gaps, result.out
    assert names_worker(result.out, "b"), result.out
    assert not names_worker(result.out, "a"), "worker a needs nothing that is missing"
    assert "olmirror apply" in result.out


def test_verify_names_the_worker_whose_changed_requirement_the_mirror_lacks(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    spec = local_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(tmp_path / "w"), "requirements": ["omega==1.1"]}],
    )
    apply_ok(cli, spec)
    set_worker(spec, 0, requirements=["omega==1.2"])  # the spec moved on, the mirror did not

    result = cli("verify", "-f", str(spec), "--no-color")
    assert result.code == 1
    assert "omega==1.2" in result.out, result.out
    assert names_worker(result.out, "w"), result.out
    assert "olmirror apply" in result.out
