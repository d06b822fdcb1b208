"""The `ol` stand-in does what OpenLambda's code does (tests/standin/README.md cites it)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IMAGE, STANDIN_OL, STANDIN_OL_LEGACY

sys.path.insert(0, str(STANDIN_OL.parent))

from olstandin.lambdas import Manager, Package, requirement_lines

INSTALLER = STANDIN_OL.parent / "olstandin" / "installer.py"


def ol(*args: str, legacy: bool = False) -> subprocess.CompletedProcess[str]:
    program = STANDIN_OL_LEGACY if legacy else STANDIN_OL
    return subprocess.run([str(program), *args], capture_output=True, text=True, timeout=120)


def test_init_makes_a_private_folder_and_refuses_one_it_did_not_make(tmp_path: Path) -> None:
    path = tmp_path / "w"
    assert ol("worker", "init", "-p", str(path), "-i", IMAGE).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((path / "ol.init").stat().st_mode) == 0o400
    config = json.loads((path / "config.json").read_text())
    assert config["registry"] == f"file://{path}/registry"
    assert config["Pkgs_dir"] == f"{path}/lambda/packages"
    assert "installer_limits" in config and "mirror_host" not in config

    (path / "lambda" / "etc" / "pip.conf").write_text("[global]\n")
    (path / "extra").write_text("gone after a new init\n")
    assert ol("worker", "init", "-p", str(path), "-i", IMAGE).returncode == 0
    assert (path / "lambda" / "etc" / "pip.conf").exists(), "the base image is kept"
    assert not (path / "extra").exists()

    other = tmp_path / "not-a-worker"
    other.mkdir()
    refused = ol("worker", "init", "-p", str(other))
    assert refused.returncode == 1
    assert "already exists but does not contain a previous OL deployment" in refused.stderr
    missing = ol("worker", "init", "-p", str(tmp_path / "no" / "parent"))
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr


def test_the_older_generation_writes_its_own_config(tmp_path: Path) -> None:
    path = tmp_path / "w"
    assert ol("worker", "init", "-p", str(path), "-i", IMAGE, legacy=True).returncode == 0
    config = json.loads((path / "config.json").read_text())
    assert config["registry"] == f"{path}/registry"
    assert config["mirror_host"] == "" and config["limits"]["installer_mem_mb"] == 500
    assert (path / "config.json").read_text().startswith("{\n\t")


def test_status_asks_the_worker_port_and_up_down_follow_the_pid_file(tmp_path: Path) -> None:
    path = tmp_path / "w"
    ol("worker", "init", "-p", str(path), "-i", IMAGE)
    config = json.loads((path / "config.json").read_text())
    from sshd import free_port

    config["worker_port"] = str(free_port())
    (path / "config.json").write_text(json.dumps(config))
    stopped = ol("worker", "status", "-p", str(path))
    assert stopped.returncode == 1
    assert f"could not send GET to http://localhost:{config['worker_port']}/status" in (
        stopped.stderr
    )
    assert ol("worker", "up", "-p", str(path), "-d").returncode == 0
    pid = int((path / "worker" / "worker.pid").read_text())
    assert "=> ready" in ol("worker", "status", "-p", str(path)).stdout
    assert ol("worker", "down", "-p", str(path)).returncode == 0
    assert not (path / "worker" / "worker.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _installer(root: Path, scratch: Path, event: dict) -> subprocess.CompletedProcess[str]:
    python = root / "usr" / "bin" / "python3"
    return subprocess.run(
        [str(python), "-I", str(INSTALLER), str(root), str(scratch), json.dumps(event)],
        capture_output=True, text=True, env={}, timeout=120,
    )  # fmt: skip


def test_the_installer_reads_only_the_sandbox_and_the_older_one_inverts_its_test(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w"
    ol("worker", "init", "-p", str(path), "-i", IMAGE)
    root = path / "lambda"
    scratch = root / "packages" / "omega==1.0"
    (scratch / "tmp").mkdir(parents=True)
    event = {"pkg": "omega==1.0", "alreadyInstalled": False}
    # No index in the sandbox's pip configuration: a real worker's pip would use the public
    # index, which the stand-in refuses to reach.
    refused = _installer(root, scratch, event)
    assert refused.returncode != 0
    assert "no index-url in the sandbox's pip configuration" in refused.stderr
    # The older generation passes --index-url=<pip_mirror> only when pip_mirror is empty:
    # an empty index, so nothing can be installed (63e30bc6 packagePullerInstaller.py:72).
    inverted = _installer(root, scratch, event | {"pip_mirror": "", "mirror_host": "m.lan"})
    assert inverted.returncode != 0
    log = (scratch / "standin-pip.log").read_text()
    assert "--trusted-host=m.lan --index-url= -vvv" in log.splitlines()[0]


def test_lambda_lines_install_alone_and_zygotes_pull_dependencies_by_name() -> None:
    code = Path(__file__).parent / "standin"  # any folder without requirements.txt
    assert requirement_lines(code) == []
    manager = Manager.__new__(Manager)
    manager.guard = __import__("threading").Lock()
    metadata = {
        "markupsafe==2.0": [],
        "jinja2==3.1.6": ["markupsafe"],
        "markupsafe": [],
        "flask": ["jinja2"],
        "jinja2": ["markupsafe"],
    }
    manager.packages = {name: Package(name, deps, [], True) for name, deps in metadata.items()}
    # Dependencies are added by name; the list is keyed by the text before '==', not
    # normalized, so MarkupSafe pinned does not stop markupsafe by name.
    assert manager.install_recursive(["MarkupSafe==2.0", "jinja2==3.1.6"]) == [
        "MarkupSafe==2.0",
        "jinja2==3.1.6",
        "markupsafe",
    ]
    assert manager.install_recursive(["flask"]) == ["flask", "jinja2", "markupsafe"]
    manager.config = {
        "features": {"import_cache": "tree"},
        "import_cache_tree": json.dumps(
            {"packages": [], "children": [{"packages": ["numpy"], "children": [
                {"packages": ["pandas"], "children": []}]}]}
        ),
    }  # fmt: skip
    assert manager._zygote_chain(["numpy", "pandas"]) == [["numpy"], ["pandas"]]
    assert manager._zygote_chain(["numpy==1.26.4"]) == [], "a pinned line matches no node"
