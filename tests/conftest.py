"""Shared fixtures: a local spec in a temp folder and the CLI run in-process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from olmirror.cli import main

STANDIN_OL = Path(__file__).resolve().parent / "standin" / "ol"
TARGET = {"python": "3.11", "platform": "manylinux_2_17_x86_64"}


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `olmirror ARGS` in this process; stdin is not a terminal, as in CI."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def write_spec(folder: Path, workers: list[dict], **extra: object) -> Path:
    """A spec whose every path lies inside `folder`, with the stand-in `ol`."""
    spec = {
        "version": 1,
        "hosts": {"local": {"ol": str(STANDIN_OL), "state_dir": str(folder / "state")}},
        "mirror": {"directory": str(folder / "mirror"), "targets": [TARGET]},
        "workers": workers,
        **extra,
    }
    path = folder / "olmirror.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def local_spec(tmp_path: Path) -> Path:
    """Two local workers, one of them already initialised with a hand-edited config."""
    return write_spec(
        tmp_path,
        [
            {"name": "alpha", "path": str(tmp_path / "alpha"), "requirements": ["six==1.16.0"]},
            {"name": "beta", "path": str(tmp_path / "beta"), "requirements": ["idna==3.7"]},
        ],
    )
