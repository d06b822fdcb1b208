"""An apply killed at any moment leaves every file old or new, and the next apply converges."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import write_spec
from upstream import Upstream

WORKERS = 8
VERSIONS = ("1.0", "1.1")


def _spec(folder: Path, upstream: Upstream, version: str) -> Path:
    """The spec with omega `version`; its ports stay those of the first spec written."""
    old = folder / "olmirror.yaml"
    kept = yaml.safe_load(old.read_text()) if old.exists() else None
    workers = [
        {
            "name": f"w{i}",
            "path": str(folder / f"w{i}"),
            "requirements": [f"omega=={version}"],
            "state": "stopped",  # files are the point here, not the stand-in's pip installs
            **({"port": kept["workers"][i]["port"]} if kept else {}),
        }
        for i in range(WORKERS)
    ]
    spec = write_spec(folder, upstream, workers)
    if kept:
        data = yaml.safe_load(spec.read_text())
        data["mirror"]["serve"] = kept["mirror"]["serve"]
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
    return spec


def _url(folder: Path) -> str:
    return yaml.safe_load((folder / "olmirror.yaml").read_text())["mirror"]["serve"]["url"]


def _apply(spec: Path, upstream: Upstream) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "olmirror", "apply", "-f", str(spec), "--yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=upstream.env(),
    )


def _check_every_file_is_whole(folder: Path) -> None:
    lock = folder / "olmirror.lock"
    if lock.exists():
        json.loads(lock.read_text())
    config = folder / "mirror" / "bandersnatch.conf"
    if config.exists():
        assert config.read_text().endswith("any\\.whl$\n"), "bandersnatch.conf is cut"
    for i in range(WORKERS):
        worker = folder / f"w{i}"
        requirements = worker / "registry" / "requirements.in"
        if requirements.exists():
            lines = requirements.read_text().splitlines()
            assert lines[1:] in ([f"omega=={v}"] for v in VERSIONS), f"{requirements} is cut"
        config_json = worker / "config.json"
        if config_json.exists():
            assert json.loads(config_json.read_text())["pip_mirror"] in ("", _url(folder))
        pip_conf = worker / "lambda" / "etc" / "pip.conf"
        if pip_conf.exists():
            assert pip_conf.read_text().endswith("trusted-host = 127.0.0.1\n"), "pip.conf is cut"


def test_killed_applies_leave_whole_files_and_the_next_apply_converges(
    tmp_path: Path, clean_upstream: Upstream
) -> None:
    started = time.monotonic()
    assert _apply(_spec(tmp_path, clean_upstream, "1.0"), clean_upstream).wait(timeout=120) == 0
    duration = time.monotonic() - started
    killed = 0
    for step in range(1, 13):
        spec = _spec(tmp_path, clean_upstream, VERSIONS[step % 2])
        process = _apply(spec, clean_upstream)
        time.sleep(duration * step / 13)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait(timeout=60)
        _check_every_file_is_whole(tmp_path)
    assert killed, "no apply was interrupted; the test proved nothing"

    spec = _spec(tmp_path, clean_upstream, "1.1")
    final = subprocess.run(
        [sys.executable, "-m", "olmirror", "apply", "-f", str(spec), "--yes"],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_upstream.env(),
    )
    assert final.returncode == 0, final.stdout + final.stderr
    _check_every_file_is_whole(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "olmirror", "plan", "-f", str(spec), "--detailed-exitcode"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_upstream.env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for i in range(WORKERS):
        assert "omega==1.1" in (tmp_path / f"w{i}" / "registry" / "requirements.in").read_text()
