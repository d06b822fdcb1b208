"""The lock at scale: N lambdas on one worker, each requiring one of 100 popular projects
(bench/popular.txt), locked for two targets (CPython 3.12 x86_64, CPython 3.13 aarch64,
glibc 2.28: the newest releases of some of those projects ship no wheels for CPython 3.11
or for glibc 2.17 any more).

Measured, each as its own olmirror process: the first plan, the first apply, a no-op plan,
then one lambda changed: its plan and the apply after it (which should resolve nothing).
Also the files and bytes the mirror holds, and what each plan said of its lock.

By default against the tests' upstream (tests/upstream.py on 127.0.0.1), whose projects
here are stand-ins named after the popular ones (two releases each, pure-Python wheels,
a few dependencies between them), so any checkout can run it and nothing leaves this
machine. `--upstream public` leaves `mirror.upstream` unset (bandersnatch's default index)
and keeps this machine's proxy settings: a manual run, with the network it needs.

`--serve s3` publishes the mirror to a bucket of moto's S3 server on loopback (as the
tests do) instead of serving it with nginx, adds a no-op apply, and counts the S3 requests
of the no-op plan and apply by method.

    python3 bench/scale.py [--lambdas 100] [--upstream test|public] [--serve http|s3]
                           [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from common import BENCH, REPO, STANDIN_OL, TESTS, Timed, base_env, timed, tree_size

sys.path.insert(0, str(TESTS))
from s3 import BUCKET, ENV, S3Server, running_s3
from sshd import free_port
from upstream import Project, Release, Upstream, running_upstream

TARGETS = [
    {"python": "3.12", "platform": "manylinux_2_28_x86_64"},
    {"python": "3.13", "platform": "manylinux_2_28_aarch64"},
]
POPULAR = [
    line.strip()
    for line in (BENCH / "popular.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
# The stand-ins' dependencies: enough that a lambda's closure is more than one project.
DEPENDS = {
    "requests": ("urllib3", "idna", "certifi", "charset-normalizer"),
    "boto3": ("botocore", "s3transfer", "jmespath"),
    "botocore": ("urllib3", "python-dateutil", "jmespath"),
    "python-dateutil": ("six",),
    "flask": ("werkzeug", "jinja2", "itsdangerous", "click"),
    "jinja2": ("markupsafe",),
    "pandas": ("numpy", "python-dateutil", "pytz", "tzdata"),
    "httpx": ("httpcore", "anyio", "idna", "certifi"),
    "httpcore": ("h11", "certifi"),
    "anyio": ("idna", "sniffio"),
    "rich": ("markdown-it-py", "pygments"),
    "markdown-it-py": ("mdurl",),
    "pydantic": ("pydantic-core", "annotated-types", "typing-extensions"),
    "aiohttp": ("multidict", "yarl", "frozenlist", "aiosignal", "attrs"),
    "yarl": ("multidict", "idna"),
    "cryptography": ("cffi",),
    "cffi": ("pycparser",),
    "google-auth": ("cachetools", "pyasn1-modules", "rsa"),
    "rsa": ("pyasn1",),
    "pyasn1-modules": ("pyasn1",),
    "jsonschema": ("attrs", "jsonschema-specifications", "referencing"),
    "pytest": ("iniconfig", "packaging", "pluggy"),
    "virtualenv": ("distlib", "filelock", "platformdirs"),
    "openpyxl": ("et-xmlfile",),
    "beautifulsoup4": ("soupsieve",),
    "s3fs": ("aiobotocore", "fsspec"),
    "aiobotocore": ("botocore",),
}


def stand_ins() -> tuple[Project, ...]:
    return tuple(
        Project(name, tuple(Release(v, DEPENDS.get(name, ())) for v in ("1.0", "1.1")))
        for name in POPULAR
    )


@contextlib.contextmanager
def upstream_for(kind: str, work: Path) -> Iterator[Upstream | None]:
    if kind == "public":
        yield None
        return
    with running_upstream(work / "upstream", stand_ins()) as up:
        yield up


@contextlib.contextmanager
def bucket_for(serve: str, work: Path) -> Iterator[S3Server | None]:
    if serve != "s3":
        yield None
        return
    os.environ.update(ENV)  # this process makes the bucket, as an operator would
    with running_s3(work) as server:
        yield server


def write_spec(folder: Path, up: Upstream | None, count: int, s3: S3Server | None) -> Path:
    port = free_port()
    serve: dict[str, Any] = {
        "backend": "http",
        "listen": f"127.0.0.1:{port}",
        "url": f"http://127.0.0.1:{port}",
    }
    if s3 is not None:
        serve = {
            "backend": "s3",
            "bucket": BUCKET,
            "prefix": "pypi",
            "endpoint_url": s3.endpoint,
            "url": f"{s3.endpoint}/{BUCKET}/pypi",
        }
    mirror: dict[str, Any] = {
        "directory": str(folder / "mirror"),
        "engine": "simple",
        "targets": TARGETS,
        "serve": serve,
    }
    if up is not None:
        mirror |= {"upstream": up.url, "ca_file": str(up.ca_file)}
    lambdas = {f"l{i:03d}": {"requirements": [POPULAR[i % len(POPULAR)]]} for i in range(count)}
    spec = {
        "version": 1,
        "hosts": {"local": {"state_dir": str(folder / "state"), "ol": str(STANDIN_OL)}},
        "mirror": mirror,
        "workers": [
            {
                "name": "w",
                "path": str(folder / "w"),
                "target": TARGETS[0],  # the other target stands for workers elsewhere
                "state": "stopped",
                "requirements": [],
                "lambdas": lambdas,
            }
        ],
    }
    path = folder / "olmirror.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def change_one_lambda(spec: Path) -> None:
    """The first lambda also asks for the last popular project."""
    data = yaml.safe_load(spec.read_text())
    data["workers"][0]["lambdas"]["l000"]["requirements"].append(POPULAR[-1])
    spec.write_text(yaml.safe_dump(data, sort_keys=False))


def _lock_line(done: Timed) -> str:
    """What the run said of its lock: the plan's `Lock:` line, or none."""
    return next((line for line in done.out.splitlines() if line.startswith("Lock: ")), "")


def run(kind: str, count: int, work: Path, serve: str) -> dict[str, Any]:
    env_base = dict(os.environ) if kind == "public" else base_env(work / "home")
    env = env_base | {
        "PYTHONPATH": str(REPO),
        "HOME": str(work / "home"),
        "UV_CACHE_DIR": str(work / "uv-cache"),  # every run starts with a cold cache
    }
    (work / "home").mkdir(exist_ok=True)
    requests: dict[str, dict[str, int]] = {}
    with upstream_for(kind, work) as up, bucket_for(serve, work) as s3:
        if up is not None:
            env = up.env(env)
        if s3 is not None:
            env |= ENV
        spec = write_spec(work, up, count, s3)

        def olmirror(name: str, *args: str, ok: tuple[int, ...] = (0,)) -> Timed:
            argv = [sys.executable, "-m", "olmirror", *args, "-f", str(spec), "--no-color"]
            done = timed(argv, env, work, work / "out" / name).check(*ok)
            print(f"  {name}: {done.seconds:.2f} s {_lock_line(done)}", file=sys.stderr)
            return done

        try:
            steps = {
                "first_plan": olmirror("first_plan", "plan", "--detailed-exitcode", ok=(2,)),
                "first_apply": olmirror("first_apply", "apply", "--yes"),
            }
            if s3 is not None:
                s3.mark()
            steps["noop_plan"] = olmirror("noop_plan", "plan", "--detailed-exitcode")
            if s3 is not None:
                requests["noop_plan"] = dict(s3.requests())
                s3.mark()
                steps["noop_apply"] = olmirror("noop_apply", "apply", "--yes")
                requests["noop_apply"] = dict(s3.requests())
            change_one_lambda(spec)
            steps["change_plan"] = olmirror("change_plan", "plan", "--detailed-exitcode", ok=(2,))
            steps["change_apply"] = olmirror("change_apply", "apply", "--yes")
        finally:
            _stop_nginx(work / "mirror")
    files, size = tree_size(work / "mirror" / "web" / "packages")
    return {
        "upstream": kind,
        "lambdas": count,
        "targets": [f"py{t['python']}-{t['platform']}" for t in TARGETS],
        "seconds": {name: round(done.seconds, 2) for name, done in steps.items()},
        "lock": {name: _lock_line(done) for name, done in steps.items()},
        "mirror_files": files,
        "mirror_bytes": size,
        **({"serve": serve, "s3_requests": requests} if requests else {}),
    }


def _stop_nginx(mirror: Path) -> None:
    pid_file = mirror / ".olmirror" / "nginx" / "nginx.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambdas", type=int, default=100)
    parser.add_argument("--upstream", choices=("test", "public"), default="test")
    parser.add_argument("--serve", choices=("http", "s3"), default="http")
    parser.add_argument("--out", type=Path, default=BENCH / "results.json")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="olmirror-scale-"))
    work.chmod(0o755)  # nginx's workers (nobody) read the web root below it
    try:
        print(f"scale: {args.lambdas} lambdas x {len(TARGETS)} targets, {args.upstream} "
              "upstream", file=sys.stderr)  # fmt: skip
        found = run(args.upstream, args.lambdas, work, args.serve)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'step':<14} {'seconds':>8}  lock")
    for name, seconds in found["seconds"].items():
        print(f"{name:<14} {seconds:>8.2f}  {found['lock'][name]}")
    print(f"mirror: {found['mirror_files']} files, {found['mirror_bytes'] / 1e6:.1f} MB")
    for step, counted in found.get("s3_requests", {}).items():
        print(f"S3 requests, {step}: {counted}")
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    name = f"{args.upstream}-{args.lambdas}" + ("-s3" if args.serve == "s3" else "")
    results.setdefault("scale", {})[name] = found
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"results written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
