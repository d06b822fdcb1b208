"""What one host's fact probe costs that host: CPU seconds and wall time of one start.

The probe is the one command of a no-op plan on every host, so its cost is what N hosts
pay N times. Measured here, on this machine, for a worker's usual request (its folder,
config.json, registry and `ol worker status`), started the ways olmirror could start it:
`python3` from PATH (a version manager's shim, on machines that have one) with and
without `-I -S`, and an interpreter given by absolute path (`hosts.X.python`).

    python3 bench/probe_cost.py [--runs 30] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, STANDIN_OL

sys.path.insert(0, str(REPO))
from olmirror.connection.ssh import HOST_PROGRAM as PROBE


def _request(worker: Path) -> dict[str, object]:
    return {
        "paths": [str(worker), str(worker / "config.json")],
        "content": [str(worker / "config.json")],
        "programs": ["python3"],
        "commands": [[str(STANDIN_OL), "worker", "status", "-p", str(worker)]],
        "registries": [str(worker)],
    }


def _one(argv: list[str], stdin: bytes) -> tuple[float, float]:
    """(CPU seconds of the child and what it started, wall seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, input=stdin, capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--python", default="/usr/bin/python3", help="an absolute interpreter")
    args = parser.parse_args(argv)
    found = [shutil.which("python3") or "python3"]
    shim = Path.home() / ".pyenv" / "shims" / "python3"  # what a login shell finds first
    found += [str(shim)] if shim.exists() else []
    ways = {}
    for python in found:
        ways[f"{python}"] = [python, "-c", PROBE]
        ways[f"{python} -I -S"] = [python, "-I", "-S", "-c", PROBE]
    ways[f"{args.python} -I -S"] = [args.python, "-I", "-S", "-c", PROBE]
    with tempfile.TemporaryDirectory() as tmp:
        worker = Path(tmp) / "worker"
        # as root, as `ol worker init` must run
        subprocess.run([str(STANDIN_OL), "worker", "init", "-p", str(worker)], check=True,
                       capture_output=True)  # fmt: skip
        full = _request(worker)
        alone = {k: v for k, v in full.items() if k != "commands"}
        print(f"median of {args.runs}; CPU and wall ms of the probe alone, and with the "
              "stand-in's `ol worker status` it runs")  # fmt: skip
        print(f"{'started as':<52} {'CPU':>7} {'wall':>7} {'CPU+ol':>7} {'wall+ol':>7}")
        for label, command in ways.items():
            cells = []
            for request in (alone, full):
                stdin = json.dumps({"op": "facts", "request": request}).encode() + b"\n"
                runs = [_one(command, stdin) for _ in range(args.runs)]
                cells += [statistics.median(r[i] for r in runs) * 1000 for i in (0, 1)]
            print(f"{label:<52} " + " ".join(f"{c:7.1f}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
