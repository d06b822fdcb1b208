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
    published to (if any, and only with the mirror's host: it is published from the
    mirror folder, under that host's apply lock), then the workers, whose files go where
    `registries` (each worker's, as found on its host) says: declared lambdas of an s3://
    registry to its bucket, a host of its own, which may be the mirror's bucket too.
    """
    by_host: dict[str, list[Resource]] = {
        LOCAL: [File(str(lock_path(loaded.path)), lock.to_text())]
    }
    by_host.setdefault(loaded.spec.mirror.host, []).extend(mirror_resources(loaded, lock))
    by_host[loaded.spec.mirror.host].extend(serve_resources(loaded.spec))
    if location_of(loaded.spec) is not None and loaded.spec.mirror.host in hosts:
        bucket, resources = bucket_resources(loaded.spec, lock)
        by_host[bucket] = resources
    for worker in (w for w in loaded.spec.workers if w.host in hosts):
        registry = registries[worker.name]
        by_host.setdefault(worker.host, []).extend(worker_resources(loaded, lock, worker, registry))
    for bucket, objects in _lambda_objects(loaded, lock, registries, hosts).items():
        by_host.setdefault(bucket, []).extend(objects)
    return dict(sorted(by_host.items()))


def _lambda_objects(
    loaded: LoadedSpec, lock: Lock, registries: dict[str, Registry], hosts: set[str]
) -> dict[str, list[Resource]]:
    """The declared lambdas of the planned workers' s3:// registries, per bucket host, each
    once. Every worker reading a bucket runs its one object of a key, so two workers that
    declare it with different contents are refused, whether both are planned or one is
    not (its registry as the lock recorded it): else each apply would rewrite the other's."""
    by_bucket: dict[str, list[Resource]] = {}
    declared: dict[tuple[str, str], tuple[str, Resource]] = {}  # (bucket, key) -> first
    for worker in loaded.spec.workers:
        registry = registries[worker.name]
        if registry.s3_url is None or not worker.lambdas:
            continue
        planned = worker.host in hosts
        try:
            bucket, objects = bucket_lambdas(loaded, lock, worker, registry)
        except OlmirrorError:
            if planned:
                raise
            continue  # not planned: its own faults are told when it is
        for resource in objects:
            other, before = declared.setdefault((bucket, resource.key), (worker.name, resource))
            if before != resource:
                raise OlmirrorError(
                    f"workers {other!r} and {worker.name!r} both declare {resource.id}, which "
                    "their registry bucket shares (every worker reading it runs that one "
                    "object), with different contents; declare the lambda on one of them only"
                )
            if planned and resource not in by_bucket.get(bucket, []):
                by_bucket.setdefault(bucket, []).append(resource)
    return by_bucket
