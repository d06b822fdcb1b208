"""Paths in a spec resolved against the spec's folder (for this machine's hosts), and the
local files it names checked to exist before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

from olmirror.spec.checks import Loc
from olmirror.spec.models import LOCAL, Spec, Worker


def _local_path(base: Path, path: str) -> str:
    return str((base / os.path.expanduser(path)).resolve(strict=False))


def _resolve_worker(worker: Worker, base: Path, on_this_machine: bool) -> Worker:
    """The worker's path (when local) and its lambdas' source folders (always on this machine)."""
    lambdas = {
        name: item.model_copy(update={"source": _local_path(base, item.source)})
        if item.source is not None
        else item
        for name, item in worker.lambdas.items()
    }
    update: dict[str, object] = {"lambdas": lambdas}
    if on_this_machine:
        update["path"] = _local_path(base, worker.path)
        if worker.ol is not None and "/" in worker.ol:
            update["ol"] = _local_path(base, worker.ol)
    return worker.model_copy(update=update)


def missing_local_files(spec: Spec) -> list[tuple[Loc, str]]:
    """Files the spec names on this machine that cannot be read, with the field and the fix."""
    found: list[tuple[Loc, str]] = []
    ca_file = spec.mirror.ca_file
    if ca_file is not None and not os.access(ca_file, os.R_OK):
        reason = "does not exist" if not os.path.exists(ca_file) else "is not readable"
        found.append(
            (
                ("mirror", "ca_file"),
                f"{ca_file} {reason}; give the path of the upstream's CA bundle (PEM)",
            )
        )
    for i, worker in enumerate(spec.workers):
        for name, item in worker.lambdas.items():
            if item.source is not None and not os.path.isdir(item.source):
                found.append(
                    (
                        ("workers", i, "lambdas", name, "source"),
                        f"{item.source} is not a folder; give the lambda's folder (with its "
                        "f.py and requirements.in), relative to the spec",
                    )
                )
    return found


def resolve_paths(spec: Spec, base: Path) -> Spec:
    """Make every path on this machine absolute, relative to the spec file's folder."""

    def local(host: str) -> bool:
        return host == LOCAL or host not in spec.hosts

    hosts = {}
    for name, host in spec.hosts.items():
        update: dict[str, str] = {}
        for field in ("identity_file", "known_hosts"):
            value = getattr(host, field)
            if value is not None:
                update[field] = _local_path(base, value)
        if local(name):
            if "/" in host.ol:
                update["ol"] = _local_path(base, host.ol)
            if host.state_dir is not None:
                update["state_dir"] = _local_path(base, host.state_dir)
        hosts[name] = host.model_copy(update=update)
    mirror = spec.mirror
    if mirror.ca_file is not None:
        mirror = mirror.model_copy(update={"ca_file": _local_path(base, mirror.ca_file)})
    if local(mirror.host):
        mirror = mirror.model_copy(update={"directory": _local_path(base, mirror.directory)})
    allowlist = spec.allowlist.model_copy(
        update={"requirements": [_local_path(base, p) for p in spec.allowlist.requirements]}
    )
    workers = [_resolve_worker(w, base, local(w.host)) for w in spec.workers]
    return spec.model_copy(
        update={"hosts": hosts, "mirror": mirror, "allowlist": allowlist, "workers": workers}
    )
