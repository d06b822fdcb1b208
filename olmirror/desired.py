"""From a spec to the resources each host should have, in the order they must be applied."""

from __future__ import annotations

from olmirror.lock.lockfile import Lock, lock_path
from olmirror.mirror.desired import mirror_resources
from olmirror.openlambda.registry import Registry
from olmirror.openlambda.worker import worker_resources
from olmirror.resources import File, Resource
from olmirror.serve.bucket import bucket_resources, location_of
from olmirror.serve.desired import serve_resources
from olmirror.spec import LOCAL, LoadedSpec


def desired_state(
    loaded: LoadedSpec, lock: Lock, registries: dict[str, Registry], hosts: set[str]
) -> dict[str, list[Resource]]:
    """Resources per host, each list in apply order, for the workers on `hosts` (a worker
    elsewhere is not planned, so its faults must not stop the plan).

    The lock file comes first (on this machine), then the mirror, then the bucket it is
    published to (if any), then the workers, whose files go where `registries` (each
    worker's, as found on its host) says.
    """
    by_host: dict[str, list[Resource]] = {
        LOCAL: [File(str(lock_path(loaded.path)), lock.to_text())]
    }
    by_host.setdefault(loaded.spec.mirror.host, []).extend(mirror_resources(loaded, lock))
    by_host[loaded.spec.mirror.host].extend(serve_resources(loaded.spec))
    if location_of(loaded.spec) is not None:
        bucket, resources = bucket_resources(loaded.spec, lock)
        by_host[bucket] = resources
    for worker in (w for w in loaded.spec.workers if w.host in hosts):
        resources = worker_resources(loaded, lock, worker, registries[worker.name])
        by_host.setdefault(worker.host, []).extend(resources)
    return dict(sorted(by_host.items()))
