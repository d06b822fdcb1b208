"""Workers as OpenLambda runs them: lambdas install from the mirror on their first call.

Three workers on one host, two run by the stand-in of OpenLambda's main branch and one by
that of the older generation (tests/standin/README.md says what each copies), an http
mirror served by nginx, lambdas declared in the spec and lambdas found in the registries
(two of them pinning different versions of one package). `olmirror verify --call` calls
every lambda; the stand-in installs each requirements.txt line with real pip inside the
sandbox, which reads only the sandbox's own pip.conf, so the upstream must see no request.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import STANDIN_OL, STANDIN_OL_LEGACY, CliResult, stop_workers, write_spec
from sshd import free_port
from test_serve_http import Mirror, serve_on
from upstream import Upstream

Cli = Callable[..., CliResult]

F_PY = """import importlib

def f(event):
    found = {{}}
    for name in {modules!r}:
        module = importlib.import_module(name)
        found[name] = [module.__version__, module.__file__]
    return found
"""


def lambda_source(folder: Path, requirements: list[str], modules: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "f.py").write_text(F_PY.format(modules=modules))
    (folder / "requirements.in").write_text("".join(f"{line}\n" for line in requirements))
    return folder


def tarball(path: Path, files: dict[str, str]) -> None:
    """A lambda as `ol admin install` uploads it: relative names, regular files."""
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))


def stale_folder(packages: Path, entry: str, dist_info: str) -> None:
    """A Pkgs_dir folder as an earlier install from elsewhere left it."""
    (packages / entry / "files" / dist_info).mkdir(parents=True)


@pytest.fixture
def site(cli: Cli, clean_upstream: Upstream) -> Iterator[tuple[Path, Mirror]]:
    """A world-readable folder (nginx serves as `nobody`) for the mirror and workers."""
    folder = Path(tempfile.mkdtemp(prefix="olmirror-ol-"))
    folder.chmod(0o755)
    mirror = Mirror(folder, folder / "olmirror.yaml", free_port(), CliResult(1, "", ""))
    try:
        yield folder, mirror
    finally:
        stop_workers(folder)
        mirror.stop()
        shutil.rmtree(folder)


def test_three_workers_two_generations_call_every_lambda_from_the_mirror(
    cli: Cli, site: tuple[Path, Mirror], clean_upstream: Upstream
) -> None:
    folder, mirror = site
    old = lambda_source(folder / "src" / "old", ["omega==1.0"], ["omega"])
    new = lambda_source(folder / "src" / "new", ["omega==1.1"], ["omega"])
    chain = lambda_source(folder / "src" / "chain", ["alpha==2.0"], ["alpha", "beta", "delta"])
    paths = {name: folder / name for name in ("main-a", "main-b", "legacy")}
    workers = [
        {"name": "main-a", "path": str(paths["main-a"]), "ol": str(STANDIN_OL),
         "stale_packages": "remove",
         "lambdas": {"old": {"source": str(old)}, "chain": {"source": str(chain)}}},
        {"name": "main-b", "path": str(paths["main-b"]), "ol": str(STANDIN_OL),
         "lambdas": {"new": {"source": str(new)}}},
        {"name": "legacy", "path": str(paths["legacy"]), "ol": str(STANDIN_OL_LEGACY),
         "lambdas": {"old": {"source": str(old)}}},
    ]  # fmt: skip
    spec = write_spec(folder, clean_upstream, workers, allowlist={"from_registry": True})
    data = yaml.safe_load(spec.read_text())
    serve_on(mirror.port)(data)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))

    # A worker that exists already, with a lambda of its own and a stale Pkgs_dir folder:
    # omega 1.2 where OpenLambda will look for omega==1.0.
    import subprocess

    for name, ol in (("main-a", STANDIN_OL), ("legacy", STANDIN_OL_LEGACY)):
        argv = [str(ol), "worker", "init", "-p", str(paths[name]), "-i", "python:3.11"]
        subprocess.run(argv, check=True, capture_output=True)
    registry = paths["main-a"] / "registry"
    registry.mkdir()
    tarball(
        registry / "found.tar.gz",
        {"f.py": F_PY.format(modules=["theta"]), "requirements.txt": "theta==1.0\n"},
    )
    (paths["legacy"] / "registry" / "folder").mkdir(parents=True)
    (paths["legacy"] / "registry" / "folder" / "f.py").write_text(F_PY.format(modules=["theta"]))
    (paths["legacy"] / "registry" / "folder" / "requirements.txt").write_text("theta==1.5\n")
    stale_folder(paths["main-a"] / "lambda" / "packages", "omega==1.0", "omega-1.2.dist-info")

    plan = cli("plan", "-f", str(spec), "--no-color", "--json")
    assert plan.code == 0, plan.out + plan.err
    findings = json.loads(plan.out)["findings"]
    stale = [f for f in findings if f["where"] and f["where"].endswith("/omega==1.0")]
    assert stale and "holds omega 1.2, not omega 1.0" in stale[0]["message"], findings

    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code == 0, applied.out + applied.err
    for name in ("main-a", "main-b"):
        assert (
            (paths[name] / "registry")
            .joinpath("new.tar.gz" if name == "main-b" else "old.tar.gz")
            .exists()
        )
        pip_conf = (paths[name] / "lambda" / "etc" / "pip.conf").read_text()
        assert f"index-url = {mirror.url}/simple/" in pip_conf
    assert (paths["legacy"] / "registry" / "old" / "f.py").exists()
    assert not (paths["legacy"] / "registry" / "old.tar.gz").exists()
    assert not (paths["main-a"] / "lambda" / "packages" / "omega==1.0").exists()

    clean_upstream.counts.reset()
    called = cli("verify", "-f", str(spec), "--call", "--no-color")
    assert called.code == 0, called.out + called.err
    assert "Called 6 lambdas, 0 failed" in called.out, called.out
    assert clean_upstream.counts.requests() == 0, "a call went around the mirror"
    packages = {name: paths[name] / "lambda" / "packages" for name in paths}
    assert (packages["main-a"] / "omega==1.0" / "files" / "omega-1.0.dist-info").is_dir()
    assert (packages["main-b"] / "omega==1.1" / "files" / "omega-1.1.dist-info").is_dir()
    assert (packages["main-a"] / "theta==1.0").is_dir()
    assert (packages["legacy"] / "theta==1.5").is_dir()

    again = cli("plan", "-f", str(spec), "--no-color", "--detailed-exitcode")
    assert again.code == 0, again.out


def test_a_stale_package_folder_left_in_place_fails_the_call_check(
    cli: Cli, site: tuple[Path, Mirror], clean_upstream: Upstream
) -> None:
    """With stale_packages: report, the plan lists the folder and leaves it; OpenLambda then
    reuses it, and verify --call says which lambda got what instead of the locked file.
    A hand-made extra index in the sandbox's pip.conf is taken out again by the next apply."""
    folder, mirror = site
    old = lambda_source(folder / "src" / "old", ["omega==1.0"], ["omega"])
    path = folder / "w"
    worker = {"name": "w", "path": str(path), "lambdas": {"old": {"source": str(old)}}}
    spec = write_spec(folder, clean_upstream, [worker])
    data = yaml.safe_load(spec.read_text())
    serve_on(mirror.port)(data)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code == 0, applied.out + applied.err
    stale_folder(path / "lambda" / "packages", "omega==1.0", "omega-1.2.dist-info")

    plan = cli("plan", "-f", str(spec), "--no-color", "--detailed-exitcode")
    assert plan.code == 0, "reported, not removed: " + plan.out
    assert "omega==1.0: holds omega 1.2, not omega 1.0" in plan.out
    called = cli("verify", "-f", str(spec), "--call", "--no-color")
    assert called.code == 1
    assert "w/old (host local): FAILED:" in called.out
    assert "omega==1.0 holds omega 1.2, not omega 1.0" in called.out

    pip_conf = path / "lambda" / "etc" / "pip.conf"
    pip_conf.write_text(pip_conf.read_text() + "extra-index-url = https://example.invalid/\n")
    drift = cli("plan", "-f", str(spec), "--no-color")
    assert "-extra-index-url = https://example.invalid/" in drift.out
    assert cli("apply", "-f", str(spec), "--yes").code == 0
    assert "extra-index-url" not in pip_conf.read_text()
