"""`target: detect`: a worker gets the mirror target its sandbox's Python can install.

The sandbox is the worker's base image (<worker>/lambda), not its host: OpenLambda's
ol-min runs CPython 3.10 whatever python3 the host has (here 3.11).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import STANDIN_OL, write_spec
from upstream import Upstream

from olmirror.remote import sandbox_facts

MACHINE = platform.machine()
HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _spec(folder: Path, upstream: Upstream, targets: list[dict], image: str = "ol-min") -> Path:
    worker = {"name": "w", "path": str(folder / "w"), "target": "detect", "state": "stopped"}
    worker |= {"image": image, "requirements": ["alpha==2.0"]}
    path = write_spec(folder, upstream, [worker])
    data = yaml.safe_load(path.read_text())
    data["mirror"]["targets"] = targets
    path.write_text(yaml.safe_dump(data))
    return path


def test_detect_takes_the_sandboxs_python_not_the_hosts(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    assert HOST_PYTHON != "3.10", "this test needs a host whose python3 is not ol-min's"
    targets = [
        {"python": HOST_PYTHON, "platform": f"manylinux_2_17_{MACHINE}"},
        {"python": "3.10", "platform": "win_amd64"},
        {"python": "3.10", "platform": f"manylinux_2_17_{MACHINE}"},
    ]
    spec = _spec(tmp_path, clean_upstream, targets)
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")  # ol-min, before init
    assert result.code == 0, result.out + result.err
    requirements = (tmp_path / "w" / "registry" / "requirements.txt").read_text()
    assert f"for target py3.10-manylinux_2_17_{MACHINE}" in requirements
    assert "compat310==" in requirements, "3.10's closure: alpha needs compat310 below 3.11"
    # Now read from the image `ol worker init` made: the same target, nothing to change.
    assert cli("plan", "-f", str(spec), "--detailed-exitcode").code == 0


def test_detect_names_what_the_sandbox_has_when_no_target_fits(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    argv = [str(STANDIN_OL), "worker", "init", "-p", str(tmp_path / "w"), "-i", "python:3.11"]
    subprocess.run(argv, check=True, capture_output=True)
    spec = _spec(tmp_path, clean_upstream, [{"python": "3.10", "platform": "win_amd64"}])
    result = cli("plan", "-f", str(spec), "--no-color")
    assert result.code == 1
    report = f"local: error: worker 'w': its sandbox on host 'local' has Python 3.11 on {MACHINE}"
    assert report in result.out, "the host fails, the plan is still made"
    assert "add a target for it to mirror.targets" in result.out


def test_an_image_not_made_yet_and_unknown_asks_for_the_target(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    targets = [{"python": "3.11", "platform": f"manylinux_2_17_{MACHINE}"}]
    spec = _spec(tmp_path, clean_upstream, targets, image="my-image")
    result = cli("plan", "-f", str(spec), "--no-color")
    assert result.code == 1
    assert "olmirror does not know what image 'my-image' holds" in result.out
    assert "name the worker's target in the spec" in result.out


def test_sandbox_facts_follow_links_inside_the_image_as_a_chroot_does(
    tmp_path: Path, capsys
) -> None:
    """An Ubuntu 22.04 layout: /lib -> usr/lib, python3 -> python3.10 -> an absolute link."""
    image = tmp_path / "w" / "lambda"
    (image / "usr" / "bin").mkdir(parents=True)
    (image / "usr" / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (image / "lib").symlink_to("usr/lib")
    (image / "usr" / "bin" / "python3.10").write_bytes(b"\x7fELF")
    (image / "usr" / "bin" / "python3").symlink_to("/usr/bin/python3.10")  # absolute: in the image
    libc = b"\x7fELF...GNU C Library (Ubuntu GLIBC 2.35-0ubuntu3.8) stable release version 2.35.\n"
    (image / "usr" / "lib" / "x86_64-linux-gnu" / "libc.so.6").write_bytes(libc)
    sandbox_facts.main(str(tmp_path / "w"))
    facts = json.loads(capsys.readouterr().out)
    assert (facts["python"], facts["machine"], facts["libc"]) == (
        "3.10",
        "x86_64",
        ["glibc", "2.35"],
    )
    # A link out of the image is followed inside it, as the chroot would: nothing there.
    (image / "usr" / "bin" / "python3.10").unlink()
    (image / "usr" / "bin" / "python3.10").symlink_to("/../../../../usr/bin/python3")
    sandbox_facts.main(str(tmp_path / "w"))
    assert json.loads(capsys.readouterr().out)["python"] is None
