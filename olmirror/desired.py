"""From a spec to the resources each host should have, in the order they must be applied."""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import urlsplit

from olmirror import simple_pages
from olmirror.bandersnatch_config import render, stored_path, web_dir
from olmirror.engine import choose_engine
from olmirror.lockfile import Lock, lock_path
from olmirror.resources import Command, Directory, File, JsonKeys, Resource
from olmirror.resources.bandersnatch_sync import BandersnatchSync
from olmirror.resources.mirror_files import FetchFiles
from olmirror.resources.python_tool import PythonTool
from olmirror.serve import serve_resources
from olmirror.spec import LOCAL, Host, LoadedSpec, Spec, Worker

BANDERSNATCH = "bandersnatch>=6.5,<7"


def host_config(spec: Spec, name: str) -> Host:
    """The settings of host `name`; `local` needs no entry in the spec."""
    return spec.hosts.get(name, Host()) if name == LOCAL else spec.hosts[name]


def pip_mirror(spec: Spec) -> str:
    """What a worker's `pip_mirror` holds: the mirror's base URL or web folder, never /simple."""
    serve = spec.mirror.serve
    if serve.backend == "http" and serve.url:
        return serve.url.rstrip("/")
    return web_dir(spec.mirror.directory)


def _config_values(spec: Spec) -> tuple[tuple[tuple[str, ...], str], ...]:
    values = [(("pip_mirror",), pip_mirror(spec))]
    serve = spec.mirror.serve
    if serve.backend == "http" and serve.url:
        values.append((("mirror_host",), urlsplit(serve.url).hostname or ""))
    return tuple(values)


def requirements_in(worker: Worker, spec_name: str) -> str:
    header = f"# Managed by olmirror: worker {worker.name} in {spec_name}. Edits are overwritten.\n"
    return header + "".join(f"{line}\n" for line in worker.requirements)


def worker_resources(loaded: LoadedSpec, worker: Worker) -> list[Resource]:
    spec = loaded.spec
    path = worker.path.rstrip("/") or "/"
    config = posixpath.join(path, "config.json")
    registry = posixpath.join(path, "registry")
    ol = host_config(spec, worker.host).ol
    return [
        Command(
            argv=(ol, "worker", "init", "-p", path, "-i", worker.image),
            creates=config,
            missing_hint=(
                f"install OpenLambda on host {worker.host!r}, or set hosts.{worker.host}.ol "
                "to the path of its `ol` program"
            ),
        ),
        Directory(registry),
        File(
            posixpath.join(registry, "requirements.in"),
            requirements_in(worker, loaded.path.name),
        ),
        JsonKeys(config, _config_values(spec)),
    ]


def _engine_resources(loaded: LoadedSpec, lock: Lock, ca_file: str | None) -> list[Resource]:
    mirror = loaded.spec.mirror
    directory = mirror.directory
    engine, why = choose_engine(mirror.engine, lock, mirror.ca_file)
    files = lock.files()
    stored = tuple((stored_path(directory, f.url), f.url, f.sha256, f.size) for f in files.values())
    if engine == "simple":
        pages = simple_pages.pages(web_dir(directory), lock)
        folders = sorted({posixpath.dirname(path) for path in pages})
        return [
            FetchFiles(directory, stored, why, ca_file),
            *(Directory(folder) for folder in folders),
            *(File(path, content) for path, content in pages.items()),
        ]
    venv = posixpath.join(directory, ".olmirror", "venv")
    config = posixpath.join(directory, "bandersnatch.conf")
    projects = sorted({pin.partition("==")[0] for t in lock.targets.values() for pin in t.files})
    return [
        PythonTool("bandersnatch", BANDERSNATCH, venv),
        File(config, render(directory, lock)),
        BandersnatchSync(
            config=config,
            venv_program=posixpath.join(venv, "bin", "bandersnatch"),
            files=tuple((path, size) for path, _, _, size in stored),
            pages=tuple(
                posixpath.join(web_dir(directory), "simple", p, "index.html") for p in projects
            ),
            ca_file=ca_file,
        ),
    ]


def mirror_resources(loaded: LoadedSpec, lock: Lock) -> list[Resource]:
    """The mirror folder and the engine that fills it with the locked files (none: no engine)."""
    mirror = loaded.spec.mirror
    state = posixpath.join(mirror.directory, ".olmirror")
    resources: list[Resource] = [Directory(mirror.directory), Directory(state)]
    if not lock.files():
        return resources
    ca_file = None
    if mirror.ca_file:
        ca_file = posixpath.join(state, "upstream-ca.pem")
        resources.append(File(ca_file, Path(mirror.ca_file).read_text()))
    return resources + _engine_resources(loaded, lock, ca_file)


def desired_state(loaded: LoadedSpec, lock: Lock) -> dict[str, list[Resource]]:
    """Resources per host, each list in apply order; hosts with nothing to manage are left out.

    The lock file comes first (on this machine), then the mirror, then the workers.
    """
    by_host: dict[str, list[Resource]] = {
        LOCAL: [File(str(lock_path(loaded.path)), lock.to_text())]
    }
    by_host.setdefault(loaded.spec.mirror.host, []).extend(mirror_resources(loaded, lock))
    by_host[loaded.spec.mirror.host].extend(serve_resources(loaded.spec))
    for worker in loaded.spec.workers:
        by_host.setdefault(worker.host, []).extend(worker_resources(loaded, worker))
    return dict(sorted(by_host.items()))
