"""Packages the upstream has only as sdists: olmirror builds each wheel once, the mirror
serves it, and a worker installs it with `pip install --no-deps` (tests/sdists.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import write_spec
from sdists import with_sdists
from sshd import SshFarm
from test_lambdas import init_worker, put_lambda
from test_workers import (
    PY311,
    Cli,
    apply_ok,
    assert_installed_from_mirror,
    call_ok,
    edit,
    key,
    local_spec,
    lock_files,
    probe,
    served,  # noqa: F401 - a fixture
    set_mirror,
)
from upstream import Upstream, running_upstream

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import LockedFile
from olmirror.lock.relock import resolved_path
from olmirror.lock.wheel_build import (
    BuildFailed,
    Built,
    build_env,
    built_as_pinned,
    kept_wheel,
    sdist_of,
    this_builder,
)

ARM = {"python": "3.12", "platform": "manylinux_2_28_aarch64"}


@pytest.fixture(scope="module")
def sdist_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with running_upstream(tmp_path_factory.mktemp("upstream"), with_sdists()) as up:
        yield up


def _worker(folder: Path, requirements: list[str], **extra: object) -> dict[str, object]:
    lambdas = {"probe": probe(folder / "src", requirements)}
    return {"name": "w", "path": str(folder / "w"), "requirements": requirements,
            "lambdas": lambdas, **extra}  # fmt: skip


def test_a_pure_sdist_becomes_one_wheel_for_every_target_and_a_worker_installs_it(
    cli: Cli,
    served: Path,  # noqa: F811 - the fixture of test_workers
    sdist_upstream: Upstream,
) -> None:
    spec = local_spec(served, sdist_upstream, [_worker(served, ["docopt==0.6.2"], target=PY311)])
    set_mirror(spec, targets=[PY311, ARM], engine="auto")
    apply_ok(cli, spec)

    wheel, other = (lock_files(spec, t)["docopt==0.6.2"] for t in (PY311, ARM))
    assert wheel == other, "one pure wheel serves both targets"
    assert wheel["filename"] in (f"docopt-0.6.2-{tag}-none-any.whl" for tag in ("py2.py3", "py3"))
    sdist = sdist_upstream.catalogue.file("docopt-0.6.2.tar.gz")
    assert wheel["built"] == {
        "sdist": "docopt-0.6.2.tar.gz",
        "sdist_url": sdist_upstream.file_url(sdist.filename),
        "sdist_sha256": sdist.sha256,
        "builder": this_builder().describe,
    }
    kept = spec.parent / ".olmirror" / "wheels" / sdist.sha256 / wheel["filename"]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == wheel["sha256"]
    # the build's own requirements came from the upstream, and only the sdist was fetched
    assert sdist_upstream.counts.requests(sdist.url_path) >= 1

    call_ok(cli, spec)
    url = yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]
    assert_installed_from_mirror(served / "w", url, lock_files(spec, PY311))

    again = apply_ok(cli, spec)
    assert "Nothing to change" in again.out, again.out

    # another checkout, without the kept wheel: the mirror holds it, so nothing is built
    lock = spec.with_suffix(".lock").read_text()
    kept.unlink()
    (spec.parent / ".olmirror" / spec.with_suffix(".lock").name).unlink(missing_ok=True)
    plan = cli("plan", "-f", str(spec), "--no-color", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err
    assert not kept.exists()
    # ... and when the mirror lacks it too, the apply builds it again, to the same bytes
    placed = served / "mirror" / "web" / wheel["url"].lstrip("/")
    placed.unlink()
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert "to be built again first" in plan.out, plan.out
    apply_ok(cli, spec)
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == wheel["sha256"]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == wheel["sha256"]
    assert spec.with_suffix(".lock").read_text() == lock


def test_a_compiled_sdist_serves_the_builders_target_and_is_a_plan_error_for_others(
    cli: Cli,
    served: Path,  # noqa: F811 - the fixture of test_workers
    sdist_upstream: Upstream,
) -> None:
    builder = this_builder()
    assert builder.platform, "the tests run on glibc"
    here = {"python": ".".join(builder.python.split(".")[:2]), "platform": builder.platform}
    worker = served / "w"
    spec = local_spec(served, sdist_upstream, [_worker(served, ["cspeed==1.0"], target=here)])
    set_mirror(spec, targets=[here])
    apply_ok(cli, spec)
    wheel = lock_files(spec, here)["cspeed==1.0"]
    assert wheel["filename"].startswith("cspeed-1.0-cp") and "linux" in wheel["filename"]
    assert wheel["built"]["sdist"] == "cspeed-1.0.tar.gz"

    # an older glibc (manylinux_2_17) cannot run what was built here: a plan error
    set_mirror(spec, targets=[here, PY311])
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["workers"][0]["target"] = PY311
    spec.write_text(yaml.safe_dump(spec_data, sort_keys=False))
    plan = cli("plan", "-f", str(spec), "--no-color")
    message = plan.out + plan.err
    assert plan.code == 1, message
    assert "cspeed==1.0" in message and key(PY311) in message and "worker 'w'" in message
    assert f"only CPython {here['python']} on {builder.platform}" in message
    assert "Pin a release that has a wheel" in message
    assert "Traceback" not in message
    assert json.loads(spec.with_suffix(".lock").read_text())["targets"].keys() == {key(here)}
    assert worker.exists()


def test_an_sdist_whose_build_backend_the_upstream_lacks_is_named_as_such(
    cli: Cli,
    served: Path,  # noqa: F811 - the fixture of test_workers
    tmp_path: Path,
) -> None:
    with running_upstream(tmp_path / "upstream", with_sdists(backend=False)) as up:
        spec = local_spec(served, up, [_worker(served, ["docopt==0.6.2"])])
        plan = cli("plan", "-f", str(spec), "--no-color")
    message = plan.out + plan.err
    assert plan.code == 1, message
    assert "docopt" in message and "setuptools" in message
    assert "build requirements" in message
    assert "could not be read" not in message
    assert "Traceback" not in message


def test_a_found_lambda_whose_sdist_cannot_serve_its_target_fails_alone(
    cli: Cli, tmp_path: Path, sdist_upstream: Upstream
) -> None:
    """Lambdas someone put on the worker: the one needing a compiled sdist that cannot be
    built for the worker's target is reported; the others, one of them built from an sdist,
    converge."""
    worker = tmp_path / "w"
    registry = init_worker(worker)
    put_lambda(registry, "native", requirements_in="cspeed==1.0\n")
    put_lambda(registry, "docs", requirements_in="docopt==0.6.2\n")
    put_lambda(registry, "plain", requirements_in="omega==1.2\n")
    spec = write_spec(
        tmp_path, sdist_upstream, [{"name": "w", "path": str(worker)}],
        allowlist={"from_registry": True},
    )  # fmt: skip
    set_mirror(spec, engine="simple")
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 0, plan.out + plan.err
    assert "lambda native: not mirrored: lambda 'native' of worker 'w'" in plan.out, plan.out
    assert "cspeed==1.0: the upstream has only its source distribution" in plan.out
    files = json.loads(resolved_path(spec).read_text())["targets"][key(PY311)]["files"]
    assert files["docopt==0.6.2"]["built"]["sdist"] == "docopt-0.6.2.tar.gz"
    assert "omega==1.2" in files and "cspeed==1.0" not in files


def test_a_built_wheel_reaches_a_mirror_on_a_remote_host(
    cli: Cli, tmp_path: Path, farm: SshFarm, sdist_upstream: Upstream
) -> None:
    """The wheel is built here and sent over the host's one SSH session; the mirror host
    fetches the rest from the upstream itself."""
    host = farm.host("m")
    known = farm.known_hosts(host)
    directory = host.root / "srv" / "mirror"
    spec = write_spec(tmp_path, sdist_upstream, [], allowlist={"packages": ["docopt==0.6.2"]})
    edit(spec, lambda data: data["hosts"].update({"m": host.spec(known)}))
    set_mirror(spec, host="m", directory=str(directory), engine="auto")
    result = apply_ok(cli, spec)
    wheel = lock_files(spec, PY311)["docopt==0.6.2"]
    assert f"place {wheel['filename']}" in result.out, result.out
    placed = directory / "web" / wheel["url"].lstrip("/")
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == wheel["sha256"]
    page = (directory / "web" / "simple" / "docopt" / "index.html").read_text()
    assert f"{wheel['filename']}</a>" in page and wheel["sha256"] in page
    assert "Nothing to change" in apply_ok(cli, spec).out


def test_a_build_that_gives_another_project_or_version_fails_that_build(tmp_path: Path) -> None:
    sdist = LockedFile("docopt-0.6.2.tar.gz", "https://up.example/docopt-0.6.2.tar.gz", "0" * 64)
    with pytest.raises(BuildFailed, match="a wheel of another project or version"):
        built_as_pinned(Built(sdist, tmp_path / "docopt-0.7-py3-none-any.whl", "1" * 64, 1))
    right = tmp_path / "docopt-0.6.2-py2.py3-none-any.whl"
    assert built_as_pinned(Built(sdist, right, "1" * 64, 1)).path == right


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"sdist_sha256": "../../tmp/x"}, "is not one"),
        ({"sdist": "../secret.tar.gz"}, "is not a file name"),
        ({"sdist_url": "https://elsewhere.example/docopt-0.6.2.tar.gz"}, "its sdist's URL"),
    ],
)
def test_a_lock_edited_to_build_from_elsewhere_is_refused(change: dict, says: str) -> None:
    """A lock is a file anyone may edit; the sdist it names is downloaded and built (run)."""
    built = {
        "sdist": "docopt-0.6.2.tar.gz",
        "sdist_url": "https://up.example/packages/docopt-0.6.2.tar.gz",
        "sdist_sha256": "0" * 64,
        "builder": "uv",
    }
    wheel = LockedFile("docopt-0.6.2-py3-none-any.whl", "/packages/built/x", "1" * 64, 1)
    origins = ["https://up.example:443"]  # as `upstream_index.allowed_origins` writes them
    assert sdist_of(replace(wheel, built=built), origins).filename == "docopt-0.6.2.tar.gz"
    with pytest.raises(OlmirrorError, match=says):
        sdist_of(replace(wheel, built=built | change), origins)


def test_a_build_sees_no_secret_of_this_machines_environment() -> None:
    """The sdist's backend is the upstream's code: it gets what a build needs, not the
    variable that holds a `become` password or a token."""
    env = build_env(
        {"PATH": "/usr/bin", "HOME": "/root", "https_proxy": "http://proxy:3128",
         "UV_HTTP_RETRIES": "4", "SSL_CERT_FILE": "/ca.pem",
         "OLMIRROR_SUDO_PASSWORD": "hunter2", "AWS_SECRET_ACCESS_KEY": "k", "GITHUB_TOKEN": "t"}
    )  # fmt: skip
    assert "hunter2" not in env.values() and "k" not in env.values() and "t" not in env.values()
    assert env["PATH"] == "/usr/bin" and env["https_proxy"] == "http://proxy:3128"
    assert env["UV_HTTP_RETRIES"] == "4" and env["SSL_CERT_FILE"] == "/ca.pem"
    assert env["SOURCE_DATE_EPOCH"] == "315532800"


def test_built_wheels_are_never_kept_through_a_link(tmp_path: Path) -> None:
    """As the rest of olmirror's state: a `wheels` folder that is a link points elsewhere."""
    elsewhere = tmp_path / "elsewhere" / ("0" * 64)
    elsewhere.mkdir(parents=True)
    (elsewhere / "x-1.0-py3-none-any.whl").write_bytes(b"x")
    state = tmp_path / ".olmirror"
    state.mkdir()
    (state / "wheels").symlink_to(tmp_path / "elsewhere")
    assert kept_wheel(state, "0" * 64) is None
    (state / "wheels").unlink()
    (tmp_path / "elsewhere").rename(state / "wheels")
    assert kept_wheel(state, "0" * 64) == state / "wheels" / ("0" * 64) / "x-1.0-py3-none-any.whl"
