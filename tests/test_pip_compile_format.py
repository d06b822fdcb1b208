"""The requirements.txt olmirror writes for a worker is pip-compile's, line for line: proven
against real pip-compile (pip-tools) resolving the same requirements.in on the same upstream.

olmirror resolves with uv, for each target's markers and tags, which pip-compile cannot do
for any interpreter but its own; pip-tools stays as the reference for the file's format, so
a worker's file reads (and diffs) as the pip-compile output operators know.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import TARGET
from test_workers import Cli, apply_ok, local_spec
from upstream import Upstream


def _without_header(text: str) -> str:
    """The pins and `# via` lines, without the leading comment block either tool writes."""
    lines = text.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines) + "\n"


def test_a_workers_requirements_txt_is_what_pip_compile_writes(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    assert sys.version_info[:2] == tuple(int(p) for p in TARGET["python"].split(".")), (
        "pip-compile resolves for the interpreter it runs on: the target's"
    )
    requirements = ["alpha==2.0", "omega>=1.0", "Zeta_Utils"]
    worker = tmp_path / "w"
    spec = local_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(worker), "requirements": requirements, "state": "stopped"}],
    )
    apply_ok(cli, spec)
    ours = (worker / "registry" / "requirements.txt").read_text()

    folder = tmp_path / "pip-compile"
    folder.mkdir()
    (folder / "requirements.in").write_text("".join(f"{r}\n" for r in requirements))
    argv = [
        sys.executable, "-m", "piptools", "compile", "--quiet", "--no-header",
        "--no-emit-index-url", "--index-url", clean_upstream.simple_url,
        "--output-file", "requirements.txt", "requirements.in",
    ]  # fmt: skip
    env = clean_upstream.env() | {"PIP_CERT": str(clean_upstream.ca_file)}
    done = subprocess.run(
        argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    theirs = (folder / "requirements.txt").read_text()
    assert "theta==1.5\n    # via\n    #   beta\n    #   gamma\n" in theirs, theirs
    assert _without_header(ours) == _without_header(theirs)
