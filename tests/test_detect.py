"""`target: detect`: a worker gets the mirror target its host's own python3 can install."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import yaml
from conftest import write_spec
from upstream import Upstream

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # python3 here is this one


def _spec(folder: Path, upstream: Upstream, targets: list[dict]) -> Path:
    worker = {"name": "w", "path": str(folder / "w"), "target": "detect", "state": "stopped"}
    path = write_spec(folder, upstream, [{**worker, "requirements": ["alpha==2.0"]}])
    data = yaml.safe_load(path.read_text())
    data["mirror"]["targets"] = targets
    path.write_text(yaml.safe_dump(data))
    return path


def test_detect_picks_the_target_the_host_can_install(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    other = "3.10" if HOST_PYTHON != "3.10" else "3.12"
    targets = [
        {"python": other, "platform": "win_amd64"},
        {"python": HOST_PYTHON, "platform": f"manylinux_2_17_{platform.machine()}"},
    ]
    spec = _spec(tmp_path, clean_upstream, targets)
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 0, result.out + result.err
    requirements = (tmp_path / "w" / "registry" / "requirements.txt").read_text()
    assert f"for target py{HOST_PYTHON}-manylinux_2_17_{platform.machine()}" in requirements
    assert "winonly" not in requirements, "the Windows target's closure is not the worker's"


def test_detect_names_what_the_host_has_when_no_target_fits(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    spec = _spec(tmp_path, clean_upstream, [{"python": "3.10", "platform": "win_amd64"}])
    result = cli("plan", "-f", str(spec), "--no-color")
    assert result.code == 1
    report = f"local: error: worker 'w': host 'local' has Python {HOST_PYTHON} on "
    assert report + platform.machine() in result.out, "the host fails, the plan is still made"
    assert "add a target for it to mirror.targets" in result.out
    assert not (tmp_path / "w").exists()
