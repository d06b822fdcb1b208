"""From a spec to the resources each host should have, in the order they must be applied."""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit

from olmirror.resources import Command, Directory, File, JsonKeys, Resource
from olmirror.spec import LOCAL, Host, LoadedSpec, Spec, Worker


def host_config(spec: Spec, name: str) -> Host:
    """The settings of host `name`; `local` needs no entry in the spec."""
    return spec.hosts.get(name, Host()) if name == LOCAL else spec.hosts[name]


def pip_mirror(spec: Spec) -> str:
    """What a worker's `pip_mirror` holds: the mirror's base URL or web folder, never /simple."""
    serve = spec.mirror.serve
    if serve.backend == "http" and serve.url:
        return serve.url.rstrip("/")
    return posixpath.join(spec.mirror.directory, "web")


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


def desired_state(loaded: LoadedSpec) -> dict[str, list[Resource]]:
    """Resources per host, each list in apply order; hosts with nothing to manage are left out."""
    by_host: dict[str, list[Resource]] = {}
    for worker in loaded.spec.workers:
        by_host.setdefault(worker.host, []).extend(worker_resources(loaded, worker))
    return dict(sorted(by_host.items()))
