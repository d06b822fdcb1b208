"""From a spec to a plan: what every worker's registry holds, the lock, then each host's facts.

The lock depends on the lambdas found in the workers' registries, and the facts to
gather depend on the lock. A plan therefore assumes each registry is as the lock
last recorded it and surveys it in the same round trip as the host's other facts;
only when a registry changed since is every host looked at a second time. When the
lock must be resolved anyway, the registries are surveyed first, so it is resolved once.

An s3:// registry is a bucket read from this machine (`blob_survey`), at most once per
plan and store (`store_id`: two URLs that differ only in ways gocloud ignores are one):
while the hosts are planned when the lock names it, else once a worker's host named it
in its config.json. Its declared lambdas make the bucket a host of the plan, planned
whenever a worker reading it is; when it is the mirror's bucket too, only the lambdas
are planned without the mirror's host.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from olmirror.connection import FactRequest
from olmirror.connection.hosts import Connections, in_parallel
from olmirror.desired import desired_state
from olmirror.errors import OlmirrorError, Unreachable
from olmirror.lock.lockfile import Lock, lock_path, read_lock
from olmirror.lock.resolve import current_lock, lock_inputs
from olmirror.mirror.fetch import absent
from olmirror.mirror.layout import stored_path
from olmirror.openlambda.blob_store import host_name, store_id
from olmirror.openlambda.blob_survey import survey_buckets
from olmirror.openlambda.detect import with_detected_targets
from olmirror.openlambda.findings import Finding, Held, registry_findings
from olmirror.openlambda.registry import (
    Registry,
    declared_alongside,
    declared_in,
    recorded_lambdas,
    recorded_registries,
    registry_from_probe,
    registry_urls,
    worker_dir,
)
from olmirror.plan import HostPlan, Plan, build_plan
from olmirror.serve.bucket import location_of
from olmirror.spec import LOCAL, LoadedSpec, Worker


def limit_hosts(names: list[str], limit: str | None) -> list[str]:
    """`names` cut to those `--limit` lists; a name it lists that is not there is an error."""
    if not limit:
        return names
    wanted = [n.strip() for n in limit.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise OlmirrorError(
            f"--limit: {', '.join(map(repr, unknown))} not among the hosts of this plan "
            f"({', '.join(names) or 'none'})"
        )
    return [n for n in names if n in wanted]


def _folders(workers: list[Worker]) -> dict[str, frozenset[str]]:
    by_host: dict[str, set[str]] = {}
    for worker in workers:
        by_host.setdefault(worker.host, set()).add(worker_dir(worker))
    return {host: frozenset(folders) for host, folders in by_host.items()}


def _answers(workers: list[Worker], answers: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Each worker's answer from its host, for the workers whose host answered."""
    found = {w.name: answers.get(w.host, {}).get(worker_dir(w)) for w in workers}
    return {name: answer for name, answer in found.items() if answer is not None}


def _named(by_worker: dict[str, dict], discover: bool) -> set[str]:
    """The s3:// registries that workers' config.json names, in answers that could be read."""
    return {url for url in registry_urls({}, by_worker).values() if url} if discover else set()


def _read_buckets(
    loaded: LoadedSpec,
    wanted: set[str],
    urls: dict[str, str | None],
    recorded: dict[str, Registry],
    connections: Connections,
    forks: int,
) -> dict[str, dict]:
    """The surveys of the s3:// registries `wanted`, by `store_id`: without the lambdas the
    spec declares there (`urls`: each worker's registry), nor those the lock `recorded`
    with the ETag listed now."""
    declared = declared_in(loaded.spec.workers, urls)
    return survey_buckets(wanted, connections, forks, declared, recorded_lambdas(recorded))


def _found(
    loaded: LoadedSpec,
    workers: list[Worker],
    by_worker: dict[str, dict],
    urls: dict[str, str | None],
    recorded: dict[str, Registry],
    surveys: dict[str, dict],
) -> tuple[dict[str, Registry], dict[str, dict]]:
    """(registry, raw answer) of each worker whose host answered (`by_worker`), and for an
    s3:// registry (`urls`) its bucket's survey in `surveys`.

    A registry that could not be read keeps what the lock `recorded` (its error is still
    told): a passing fault must not drop its lambdas from the lock, and so the mirror. A
    bucket that could not be read keeps the lambdas found there before, at the place the
    worker's config.json names now.
    """
    discover = loaded.spec.allowlist.from_registry
    shared = declared_alongside(loaded.spec.workers, urls)
    known = recorded_lambdas(recorded)
    registries, raw = {}, {}
    for worker in workers:
        answer = by_worker.get(worker.name)
        if answer is None:
            continue
        store = store_id(url) if (url := urls[worker.name]) is not None else None
        survey = surveys.get(store, {}) if store is not None else {}
        raw[worker.name] = {**answer, **survey}  # its lambdas, or why they cannot be read
        if answer.get("error"):
            continue
        also = shared.get(worker.name, frozenset())
        registry = registry_from_probe(worker, raw[worker.name], discover, also, known.get(store))
        if "error" in survey and worker.name in recorded:  # where it is, and what it held
            registry = replace(registry, found=recorded[worker.name].found)
        registries[worker.name] = registry
    return registries, raw


def _survey(
    loaded: LoadedSpec,
    workers: list[Worker],
    connections: Connections,
    forks: int,
    recorded: dict[str, Registry],
    surveys: dict[str, dict],
) -> dict[str, Registry]:
    """Each worker's registry, read on its own (one round trip per host, in parallel), then
    the buckets of s3:// registries (kept in `surveys`).

    A host that cannot be reached is left out here: the plan reports it."""

    def one(host: str) -> dict[str, dict]:
        try:
            facts = connections.get(host).gather(FactRequest(registries=folders[host]))
        except OlmirrorError:
            return {}
        return facts.registries

    folders = _folders(workers)
    by_worker = _answers(workers, in_parallel(folders, one, forks))
    urls = registry_urls(recorded, by_worker)
    named = _named(by_worker, discover=True)
    surveys |= _read_buckets(loaded, named, urls, recorded, connections, forks)
    return _found(loaded, workers, by_worker, urls, recorded, surveys)[0]


def _registry_hosts(registries: dict[str, Registry], workers: list[Worker]) -> set[str]:
    """The hosts of the s3:// registries `workers` write their declared lambdas to."""
    urls = {registries[w.name].s3_url for w in workers if w.lambdas}
    return {host_name(url) for url in urls if url is not None}


def _held(loaded: LoadedSpec, lock: Lock, plan: Plan) -> Held:
    """Whether the mirror holds a pin's file, from the mirror host's facts in `plan`."""
    mirror = loaded.spec.mirror
    facts = next((h.facts for h in plan.hosts if h.host == mirror.host and not h.error), None)
    if facts is None:
        return None

    def held(target: str, pin: str) -> bool:
        locked = lock.targets[target].files[pin]
        path = stored_path(mirror.directory, locked.url)
        return path not in facts.paths or not absent(facts, path, locked.size)

    return held


def plan_spec(
    spec_file: str,
    loaded: LoadedSpec,
    connections: Connections,
    limit: str | None,
    forks: int,
    mirror: dict[str, str] | None,
) -> Plan:
    """The plan of `loaded` for the hosts `limit` leaves (all by default)."""
    spec = loaded.spec
    discover = spec.allowlist.from_registry
    location = location_of(spec)
    serve_bucket = {location.name} if location else set()
    previous = read_lock(lock_path(loaded.path))
    registries = recorded_registries(loaded, previous)
    registry_hosts = _registry_hosts(registries, spec.workers)
    every = sorted({LOCAL, spec.mirror.host, *serve_bucket, *registry_hosts,
                    *(w.host for w in spec.workers)})  # fmt: skip
    names = limit_hosts(every, limit)
    if location is not None and location.name in names and spec.mirror.host not in names:
        raise OlmirrorError(
            f"--limit: the bucket {location.name} is published from the mirror folder on "
            f"{spec.mirror.host!r}, under its apply lock; add {spec.mirror.host} to --limit"
        )
    loaded, undetected = with_detected_targets(loaded, connections, names, forks)
    workers = [w for w in loaded.spec.workers if w.host in names]
    surveys: dict[str, dict] = {}  # s3:// registry (`store_id`) -> its survey, once per plan
    if discover and (previous is None or previous.inputs != lock_inputs(loaded, registries)[1]):
        registries |= _survey(loaded, workers, connections, forks, registries, surveys)
    for last in (False, True):
        lock = current_lock(loaded, registries)
        # The bucket of the mirror is planned only with the mirror's host (`desired_state`).
        desired = desired_state(loaded, lock, registries, set(names) - set(undetected))
        hosts = sorted(set(names) | _registry_hosts(registries, workers))
        urls = registry_urls(registries, {})
        to_read = {u for w in workers if (u := urls[w.name]) and store_id(u) not in surveys}
        to_read = to_read if discover else set()
        with ThreadPoolExecutor(max_workers=1) as aside:  # the buckets while hosts answer
            reading = aside.submit(
                _read_buckets, loaded, to_read, urls, registries, connections, forks
            )
            plan = build_plan(
                spec_file,
                loaded.digest,
                {n: desired[n] for n in hosts if n in desired and n not in undetected},
                connections,
                forks,
                mirror if spec.mirror.host in names else None,
                _folders(workers),
            )
            surveys |= reading.result()
        by_worker = _answers(workers, {h.host: h.registries for h in plan.hosts})
        urls = registry_urls(registries, by_worker)
        named = {u for u in _named(by_worker, discover) if store_id(u) not in surveys}
        surveys |= _read_buckets(loaded, named, urls, registries, connections, forks)
        seen, raw = _found(loaded, workers, by_worker, urls, registries, surveys)
        changed = sorted(n for n, registry in seen.items() if registries[n] != registry)
        if not changed or last:
            break
        registries |= seen
    planned = set(names) - set(undetected)
    shared = declared_alongside(loaded.spec.workers, urls)
    findings = registry_findings(
        loaded, lock, registries, raw, planned, _held(loaded, lock, plan), shared
    )
    for name in changed:
        worker = next(w for w in workers if w.name == name)
        findings.append(
            Finding(
                worker.host, name, None, None, "the registry changed while planning; plan again"
            )
        )
    plan.findings = findings
    plan.lock_note = lock.note
    plan.complete = set(every) <= set(hosts) and not undetected
    plan.detected = {
        w.name: w.target.model_dump()
        for w, asked in zip(loaded.spec.workers, spec.workers, strict=True)
        if asked.target == "detect" and w.target is not None and not isinstance(w.target, str)
    }
    for host, exc in undetected.items():
        plan.hosts.append(HostPlan(host, error=str(exc), unreachable=isinstance(exc, Unreachable)))
    plan.hosts.sort(key=lambda h: h.host)
    return plan
