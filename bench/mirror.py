"""Mirror footprint: what olmirror (both engines) and plain bandersnatch store and fetch.

Against the tests' local upstream (tests/upstream.py, HTTPS on 127.0.0.1), for one allowlist
with platform wheels (delta 1.0 ships six platform wheels and an sdist; alpha[fast] 2.0 pulls
a chain of eight projects) and one target platform. The exact need is what pip installs on
the target for the locked closure: one file per pin, as olmirror's lock records it.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from common import TARGET, TARGET_KEY, TESTS, Timed, base_env, timed, tree_size, venv_bin

sys.path.insert(0, str(TESTS))
from upstream import Upstream

ALLOWLIST = ["delta==1.0", "alpha[fast]==2.0"]
ADDED = "omega==1.1"


def fetched(up: Upstream) -> dict[str, int]:
    """What the upstream served since its counts were reset."""
    files = up.counts.files()
    package_bytes = sum(
        h.bytes
        for h in up.counts.hits("/packages/")
        if h.method == "GET" and h.status == 200 and not h.path.endswith(".metadata")
    )
    return {
        "files": len(files),
        "file_bytes": package_bytes,
        "requests": up.counts.requests(),
        "all_bytes": up.counts.bytes(),
    }


def stored(directory: Path) -> dict[str, int]:
    """Package files kept under <directory>/web/packages, and everything under web/."""
    files, size = tree_size(directory / "web" / "packages")
    web_files, web_bytes = tree_size(directory / "web")
    return {"files": files, "bytes": size, "web_files": web_files, "web_bytes": web_bytes}


def write_spec(folder: Path, up: Upstream, engine: str, packages: list[str]) -> Path:
    spec = {
        "version": 1,
        "hosts": {"local": {"state_dir": str(folder / "state")}},
        "mirror": {
            "directory": str(folder / "mirror"),
            "upstream": up.url,
            "ca_file": str(up.ca_file),
            "engine": engine,
            "targets": [TARGET],
        },
        "allowlist": {"packages": packages},
        "workers": [],
    }
    path = folder / "olmirror.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def exact_need(lock: Path) -> dict[str, Any]:
    """The files pip needs on the target for the locked closure (one per pin)."""
    files = json.loads(lock.read_text())["targets"][TARGET_KEY]["files"]
    return {
        "files": len(files),
        "bytes": sum(f["size"] for f in files.values()),
        "pins": sorted(files),
        "filenames": sorted(f["filename"] for f in files.values()),
    }


def olmirror_apply(folder: Path, env: dict[str, str], spec: Path, name: str) -> Timed:
    argv = [sys.executable, "-m", "olmirror", "apply", "-f", str(spec), "--yes", "--no-color"]
    return timed(argv, env, folder, folder / "out" / name).check()


def measure_olmirror(
    work: Path, up: Upstream, engine: str, runs: int, log: Callable[[str], None]
) -> dict[str, Any]:
    folder = work / f"olmirror-{engine}"
    folder.mkdir(parents=True)
    env = up.env(base_env(work / "home"))
    spec = write_spec(folder, up, engine, ALLOWLIST)

    up.counts.reset()
    first = olmirror_apply(folder, env, spec, "first")
    result: dict[str, Any] = {
        "first_apply_seconds": first.seconds,
        "fetched": fetched(up),
        "stored": stored(folder / "mirror"),
        "need": exact_need(spec.with_suffix(".lock")),
    }
    noop_seconds, noop_files = [], []
    for run in range(runs):
        up.counts.reset()
        done = olmirror_apply(folder, env, spec, f"noop{run}")
        noop_seconds.append(done.seconds)
        noop_files.append(len(up.counts.files()))
        if "Nothing to change" not in done.out:
            raise RuntimeError(f"olmirror {engine}: the re-apply was not a no-op:\n{done.out}")
    result["noop_apply_seconds"] = noop_seconds
    result["noop_apply_files_fetched"] = noop_files

    write_spec(folder, up, engine, [*ALLOWLIST, ADDED])
    up.counts.reset()
    added = olmirror_apply(folder, env, spec, "add")
    result["add_one_seconds"] = added.seconds
    result["add_one_fetched"] = fetched(up)
    result["stored_after_add"] = stored(folder / "mirror")
    log(
        f"  olmirror engine {engine}: first {first.seconds:.2f}s, no-op "
        + ", ".join(f"{s:.2f}s" for s in noop_seconds)
        + f", add {ADDED} {added.seconds:.2f}s"
    )
    return result


def bandersnatch_conf(directory: Path, up: Upstream, projects: list[str]) -> str:
    """bandersnatch.conf as its docs show it: an allowlist of project names, nothing else."""
    names = "".join(f"    {name}\n" for name in projects)
    return (
        "[mirror]\n"
        f"directory = {directory}\n"
        f"master = {up.url}\n"
        "api-method = simple\n"
        "json = false\n"
        "release-files = true\n"
        "hash-index = false\n"
        "workers = 3\n"
        "timeout = 30\n"
        "global-timeout = 3600\n"
        "stop-on-error = false\n"
        "\n[plugins]\nenabled =\n    allowlist_project\n"
        f"\n[allowlist]\npackages =\n{names}"
    )


def measure_bandersnatch(
    work: Path, up: Upstream, projects: list[str], log: Callable[[str], None]
) -> dict[str, Any]:
    """Plain bandersnatch, allowlisting the closure's project names (it follows no
    dependencies, so a working mirror needs every one of them listed)."""
    folder = work / "bandersnatch"
    folder.mkdir(parents=True)
    conf = folder / "bandersnatch.conf"
    conf.write_text(bandersnatch_conf(folder / "mirror", up, projects))
    env = up.env(base_env(work / "home"))
    up.counts.reset()
    argv = [venv_bin("bandersnatch"), "-c", str(conf), "mirror"]
    done = timed(argv, env, folder, folder / "out").check()
    result = {
        "projects": projects,
        "seconds": done.seconds,
        "fetched": fetched(up),
        "stored": stored(folder / "mirror"),
    }
    up.counts.reset()
    again = timed(argv, env, folder, folder / "out-noop").check()
    result["noop_seconds"] = again.seconds
    result["noop_files_fetched"] = len(up.counts.files())
    log(f"  bandersnatch (names only): {done.seconds:.2f}s, no-op {again.seconds:.2f}s")
    return result


def measure(work: Path, runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    (work / "home").mkdir(parents=True, exist_ok=True)
    with Upstream(work / "upstream") as up:
        results: dict[str, Any] = {"allowlist": ALLOWLIST, "added": ADDED, "target": TARGET}
        for engine in ("bandersnatch", "simple"):
            results[f"olmirror_{engine}"] = measure_olmirror(work, up, engine, runs, log)
        need = results["olmirror_bandersnatch"]["need"]
        projects = sorted({pin.partition("==")[0] for pin in need["pins"]})
        results["bandersnatch_names_only"] = measure_bandersnatch(work, up, projects, log)
        results["need"] = need
    shutil.rmtree(work / "home", ignore_errors=True)
    return results
