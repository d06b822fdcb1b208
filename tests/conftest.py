"""Shared fixtures: a local spec in a temp folder and the CLI run in-process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from upstream import Upstream, clean_upstream, upstream_index

from olmirror.cli import main

__all__ = ["clean_upstream", "upstream_index"]  # fixtures for every test module

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


def write_spec(folder: Path, upstream: Upstream, workers: list[dict], **extra: object) -> Path:
    """A spec whose every path lies inside `folder`, mirroring the test upstream."""
    spec = {
        "version": 1,
        "hosts": {"local": {"ol": str(STANDIN_OL), "state_dir": str(folder / "state")}},
        "mirror": {
            "directory": str(folder / "mirror"),
            "upstream": upstream.url,
            "ca_file": str(upstream.ca_file),
            "targets": [TARGET],
        },
        "workers": workers,
        **extra,
    }
    path = folder / "olmirror.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def local_spec(tmp_path: Path, clean_upstream: Upstream) -> Path:
    """Two local workers with one requirement each, and the mirror they install from."""
    return write_spec(
        tmp_path,
        clean_upstream,
        [
            {"name": "alpha", "path": str(tmp_path / "alpha"), "requirements": ["omega==1.1"]},
            {"name": "beta", "path": str(tmp_path / "beta"), "requirements": ["theta==1.0"]},
        ],
    )
