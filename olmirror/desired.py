"""From a spec to the resources each host should have, in the order they must be applied."""

from __future__ import annotations

from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock, lock_path
from olmirror.mirror.desired import mirror_resources
from olmirror.openlambda.registry import Registry
from olmirror.openlambda.worker import bucket_lambdas, worker_resources
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
    worker's, as found on its host) says: declared lambdas of an s3:// registry to its
    bucket, a host of its own.
    """
    by_host: dict[str, list[Resource]] = {
        LOCAL: [File(str(lock_path(loaded.path)), lock.to_text())]
    }
    by_host.setdefault(loaded.spec.mirror.host, []).extend(mirror_resources(loaded, lock))
    by_host[loaded.spec.mirror.host].extend(serve_resources(loaded.spec))
    if location_of(loaded.spec) is not None:
        bucket, resources = bucket_resources(loaded.spec, lock)
        by_host[bucket] = resources
    declared: dict[str, tuple[str, Resource]] = {}  # resource id -> (worker, resource)
    for worker in (w for w in loaded.spec.workers if w.host in hosts):
        registry = registries[worker.name]
        resources = worker_resources(loaded, lock, worker, registry)
        by_host.setdefault(worker.host, []).extend(resources)
        if registry.bucket is not None and worker.lambdas:
            bucket, objects = bucket_lambdas(loaded, lock, worker, registry)
            by_host.setdefault(bucket, []).extend(_once(worker.name, objects, declared))
    return dict(sorted(by_host.items()))


def _once(
    worker: str, objects: list[Resource], declared: dict[str, tuple[str, Resource]]
) -> list[Resource]:
    """`objects` not yet declared by another worker reading the same bucket; the same key
    written two ways cannot be: every worker reading the bucket runs the one object."""
    new = []
    for resource in objects:
        other, before = declared.setdefault(resource.id, (worker, resource))
        if before is resource:
            new.append(resource)
        elif before != resource:
            raise OlmirrorError(
                f"workers {other!r} and {worker!r} both declare {resource.id}, which their "
                "registry bucket shares (every worker reading it runs that one object), with "
                "different contents; declare the lambda on one of them only"
            )
    return new
