"""A flaky upstream: does one apply converge, how long does it take, and what did it retry?

Against the tests' local upstream (tests/upstream.py) failing at random from a seed, as
issue 13 measured it: 10% of requests answered 503, 10% of bodies cut at half, 5% of files
sent with one wrong byte. Per engine and seed: a clean lock, then ONE apply under the
faults (converged or not, seconds, requests retried as the recap counts them, faults
fired), then a resolve from nothing under the same faults. Prints a table and writes
bench/flaky.json. Needs the test extras (`pip install -e '.[test]'`); nothing leaves
127.0.0.1.

    python3 bench/flaky.py [--seeds 5] [--out bench/flaky.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import BENCH, TESTS, base_env, timed
from mirror import write_spec

sys.path.insert(0, str(TESTS))
from upstream import Faults, Upstream

ALLOWLIST = ["alpha[fast]", "omega==1.1", "theta==1.0", "delta==1.0", "modernlib"]


def _olmirror(env: dict[str, str], folder: Path, name: str, *args: str) -> Any:
    argv = [sys.executable, "-m", "olmirror", *args]
    return timed(argv, env, folder, folder / "out" / name)


def one_seed(work: Path, up: Upstream, engine: str, seed: int) -> dict[str, Any]:
    folder = work / f"{engine}-{seed}"
    folder.mkdir(parents=True)
    env = up.env(base_env(work / "home")) | {"UV_CACHE_DIR": str(folder / "uv-cache")}
    spec = write_spec(folder, up, engine, ALLOWLIST)
    up.reset()
    _olmirror(env, folder, "lock", "lock", "-f", str(spec)).check()
    up.flaky(Faults(seed, unavailable=0.10, cut=0.10, corrupt=0.05))
    applied = _olmirror(env, folder, "apply", "apply", "-f", str(spec), "--yes", "--json")
    fired = dict(up.counts.faults())
    result = json.loads(applied.out) if applied.out.strip().startswith("{") else {}
    (host,) = result.get("results", [{"outcome": "failed", "retried": 0}])
    found: dict[str, Any] = {
        "converged": applied.returncode == 0 and not result.get("verify_gaps"),
        "apply_seconds": applied.seconds,
        "retried": host.get("retried", 0),
        "faults": fired,
    }
    spec.with_suffix(".lock").unlink()
    up.counts.reset()
    resolved = _olmirror(env, folder, "resolve", "lock", "-f", str(spec))
    found |= {
        "resolved": resolved.returncode == 0,
        "resolve_seconds": resolved.seconds,
        "resolve_faults": dict(up.counts.faults()),
    }
    up.flaky(None)
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default=str(BENCH / "flaky.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="olmirror-flaky-") as tmp:
        work = Path(tmp)
        (work / "home").mkdir()
        results: dict[str, Any] = {"allowlist": ALLOWLIST, "runs": {}}
        with Upstream(work / "upstream") as up:
            for engine in ("simple", "bandersnatch"):
                for seed in range(1, args.seeds + 1):
                    run = one_seed(work, up, engine, seed)
                    results["runs"][f"{engine}-{seed}"] = run
                    print(
                        f"{engine:<13} seed {seed}: apply "
                        f"{'converged' if run['converged'] else 'FAILED':<9} "
                        f"{run['apply_seconds']:5.1f} s, retried {run['retried']:>2}, faults "
                        f"{sum(run['faults'].values()):>2} | resolve "
                        f"{'ok' if run['resolved'] else 'FAILED':<6} {run['resolve_seconds']:5.1f}"
                        f" s, faults {sum(run['resolve_faults'].values()):>2}",
                        flush=True,
                    )
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
