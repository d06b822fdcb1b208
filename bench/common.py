"""Shared pieces of the benchmarks: paths, the bench's own virtual environment, timed runs."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TESTS = REPO / "tests"
VENV = BENCH / ".venv"
# pyinfra 3.x pins paramiko<5 where olmirror allows <6: its own venv keeps olmirror (and the
# floor) on the paramiko the project resolves to, not one downgraded for a peer.
PYINFRA_VENV = BENCH / ".venv-pyinfra"
PYINFRA = ("pyinfra>=3,<4",)
STANDIN_OL = TESTS / "standin" / "ol"
# The bench's own tools, beside olmirror's dependencies (read from pyproject.toml).
BENCH_TOOLS = ("ansible-core>=2.16", "pyinstrument>=4.6", "py-spy>=0.3")
TARGET = {"python": "3.11", "platform": "manylinux_2_17_x86_64"}
TARGET_KEY = "py3.11-manylinux_2_17_x86_64"


def _requirements() -> list[str]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [
        *project["dependencies"],
        *project.get("optional-dependencies", {}).get("test", []),
        *BENCH_TOOLS,
    ]


def in_bench_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_venv(argv: list[str]) -> None:
    """Re-run this script inside bench/.venv, creating or updating it and pyinfra's first.

    The venv holds olmirror's dependencies, ansible-core, pyinstrument and py-spy; olmirror
    itself runs from this checkout (PYTHONPATH), so nothing is installed outside bench/.
    This is the only place the bench reaches a package index.
    """
    if in_bench_venv():
        return
    _install(VENV, _requirements())
    _install(PYINFRA_VENV, list(PYINFRA))
    python = VENV / "bin" / "python"
    os.execv(str(python), [str(python), *argv])


def _install(venv: Path, requirements: list[str]) -> None:
    """Create `venv` or bring it up to `requirements`; a stamp file skips an unchanged one."""
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"bench: installing {len(requirements)} packages into {venv} ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *requirements],
        check=True,
    )  # fmt: skip
    stamp.write_text(wanted)


def venv_bin(program: str, venv: Path = VENV) -> str:
    found = venv / "bin" / program
    return str(found) if found.exists() else (shutil.which(program) or program)


def base_env(home: Path) -> dict[str, str]:
    """Environment for every measured program: its own HOME (no ~/.ssh/config, no agent),
    the bench venv first on PATH, this checkout importable, and no proxies (loopback only)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        and k != "SSH_AUTH_SOCK"
        and not k.startswith(("PIP_", "UV_", "ANSIBLE_"))
    }
    env.update(
        HOME=str(home),
        PATH=f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(REPO),
        NO_PROXY="127.0.0.1,localhost",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@dataclass
class Timed:
    argv: list[str]
    seconds: float
    returncode: int
    out: str
    err: str
    max_rss_kib: int

    def check(self, *ok: int) -> Timed:
        if self.returncode not in (ok or (0,)):
            raise RuntimeError(
                f"`{' '.join(self.argv)}` exited {self.returncode}:\n{self.out[-3000:]}\n"
                f"{self.err[-3000:]}"
            )
        return self


def timed(argv: list[str], env: dict[str, str], cwd: Path, out_dir: Path) -> Timed:
    """Run `argv` to its end: wall time, exit code, output and the peak RSS of its process tree.

    Peak RSS comes from wait4() on this child alone (the largest of it and the descendants it
    waited for), so runs never mix as they would through RUSAGE_CHILDREN.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stdout, stderr = out_dir / "stdout", out_dir / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Timed(
        argv,
        seconds,
        proc.returncode,
        stdout.read_text(errors="replace"),
        stderr.read_text(errors="replace"),
        usage.ru_maxrss,
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def tree_size(folder: Path) -> tuple[int, int]:
    """(files, bytes) of the regular files under `folder`."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return len(files), sum(p.stat().st_size for p in files)
