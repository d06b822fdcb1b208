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

WORKERS = 8


def _spec(folder: Path, version: int) -> Path:
    requirements = [f"package-{i}=={version}.0" for i in range(300)]
    workers = [
        {"name": f"w{i}", "path": str(folder / f"w{i}"), "requirements": requirements}
        for i in range(WORKERS)
    ]
    path = write_spec(folder, workers)
    data = yaml.safe_load(path.read_text())
    data["mirror"]["directory"] = str(folder / f"mirror-{version}")
    path.write_text(yaml.safe_dump(data))
    return path


def _apply(spec: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "olmirror", "apply", "-f", str(spec), "--yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _check_every_file_is_whole(folder: Path) -> None:
    mirrors = {"", str(folder / "mirror-1" / "web"), str(folder / "mirror-2" / "web")}
    for i in range(WORKERS):
        worker = folder / f"w{i}"
        requirements = worker / "registry" / "requirements.in"
        if requirements.exists():
            lines = requirements.read_text().splitlines()
            assert len(lines) == 301, f"{requirements} is half written"
            assert len({line.split("==")[1] for line in lines[1:]}) == 1
        config = worker / "config.json"
        if config.exists():
            assert json.loads(config.read_text())["pip_mirror"] in mirrors


def test_killed_applies_leave_whole_files_and_the_next_apply_converges(tmp_path: Path) -> None:
    started = time.monotonic()
    assert _apply(_spec(tmp_path, 1)).wait(timeout=120) == 0
    duration = time.monotonic() - started
    killed = 0
    for step in range(1, 13):
        process = _apply(_spec(tmp_path, 2 if step % 2 else 1))
        time.sleep(duration * step / 13)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait(timeout=60)
        _check_every_file_is_whole(tmp_path)
    assert killed, "no apply was interrupted; the test proved nothing"

    spec = _spec(tmp_path, 2)
    assert _apply(spec).wait(timeout=120) == 0
    _check_every_file_is_whole(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "olmirror", "plan", "-f", str(spec), "--detailed-exitcode"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for i in range(WORKERS):
        assert "package-0==2.0" in (tmp_path / f"w{i}" / "registry" / "requirements.in").read_text()
