"""From a spec to a plan: what every worker's registry holds, the lock, then each host's facts.

The lock depends on the lambdas found in the workers' registries, and the facts to
gather depend on the lock. A plan therefore assumes each registry is as the lock
last recorded it and surveys it in the same round trip as the host's other facts;
only when a registry changed since is every host looked at a second time. When the
lock must be resolved anyway, the registries are surveyed first, so it is resolved once.

An s3:// registry is a bucket read from this machine (`blob_survey`), at most once per
plan: while the hosts are planned when the lock names it, else once a worker's host
named it in its config.json. Its declared lambdas make the bucket a host of the plan,
planned whenever a worker reading it is.
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
from olmirror.openlambda.blob_store import host_name, is_store, store_url
from olmirror.openlambda.blob_survey import survey_buckets
from olmirror.openlambda.detect import with_detected_targets
from olmirror.openlambda.findings import Finding, Held, registry_findings
from olmirror.openlambda.registry import (
    Registry,
    declared_alongside,
    declared_in,
    recorded_registries,
    registry_from_probe,
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


def _bucket(answer: dict) -> str | None:
    """The s3:// registry an answer's config.json names, or None."""
    setting = answer.get("setting")
    return store_url(setting) if not answer.get("error") and is_store(setting) else None


def _named(workers: list[Worker], answers: dict[str, dict[str, dict]]) -> set[str]:
    """The s3:// registries the workers' hosts name in their config.json."""
    return {url for answer in _answers(workers, answers).values() if (url := _bucket(answer))}


def _found(
    loaded: LoadedSpec,
    workers: list[Worker],
    answers: dict[str, dict[str, dict]],
    assumed: dict[str, Registry],
    buckets: dict[str, dict],
) -> tuple[dict[str, Registry], dict[str, dict]]:
    """(registry, raw answer) of each worker whose host answered, from per-host answers
    and, for an s3:// registry, its bucket's survey in `buckets`.

    A registry that could not be read keeps what the lock recorded (its error is still
    told): a passing fault must not drop its lambdas from the lock, and so the mirror. A
    bucket that could not be read keeps the lambdas found there before, at the place the
    worker's config.json names now.
    """
    discover = loaded.spec.allowlist.from_registry
    by_worker = _answers(workers, answers)
    urls = {name: r.bucket for name, r in assumed.items()}
    urls |= {name: _bucket(answer) for name, answer in by_worker.items()}
    shared = declared_alongside(loaded.spec.workers, urls)
    registries, raw = {}, {}
    for worker in workers:
        answer = by_worker.get(worker.name)
        if answer is None:
            continue
        url = urls[worker.name]
        survey = buckets.get(url, {}) if url is not None else {}
        raw[worker.name] = {**answer, **survey}  # its lambdas, or why they cannot be read
        if answer.get("error"):
            continue
        also = shared.get(worker.name, frozenset())
        registry = registry_from_probe(worker, raw[worker.name], discover, also)
        if "error" in survey and worker.name in assumed:  # where it is, and what it held
            registry = replace(registry, found=assumed[worker.name].found)
        registries[worker.name] = registry
    return registries, raw


def _survey(
    loaded: LoadedSpec,
    workers: list[Worker],
    connections: Connections,
    forks: int,
    recorded: dict[str, Registry],
    buckets: dict[str, dict],
) -> dict[str, Registry]:
    """Each worker's registry, read on its own (one round trip per host, in parallel), then
    the buckets of s3:// registries (kept in `buckets`).

    A host that cannot be reached is left out here: the plan reports it."""

    def one(host: str) -> dict[str, dict]:
        try:
            facts = connections.get(host).gather(FactRequest(registries=folders[host]))
        except OlmirrorError:
            return {}
        return facts.registries

    folders = _folders(workers)
    answers = in_parallel(folders, one, forks)
    declared = _declared(loaded, recorded, workers, answers)
    buckets |= survey_buckets(_named(workers, answers), connections, forks, declared)
    return _found(loaded, workers, answers, recorded, buckets)[0]


def _declared(
    loaded: LoadedSpec,
    assumed: dict[str, Registry],
    workers: list[Worker],
    answers: dict[str, dict[str, dict]],
) -> dict[str, set[str]]:
    """The lambdas the spec declares in each s3:// registry, which a survey need not read."""
    urls = {name: registry.bucket for name, registry in assumed.items()}
    urls |= {name: _bucket(answer) for name, answer in _answers(workers, answers).items()}
    return declared_in(loaded.spec.workers, urls)


def _bucket_hosts(registries: dict[str, Registry], workers: list[Worker]) -> set[str]:
    """The hosts of the s3:// registries `workers` write their declared lambdas to."""
    urls = {registries[w.name].bucket for w in workers if w.lambdas}
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
    bucket = {location.name} if location else set()
    previous = read_lock(lock_path(loaded.path))
    registries = recorded_registries(loaded, previous)
    stores = _bucket_hosts(registries, spec.workers)
    every = sorted({LOCAL, spec.mirror.host, *bucket, *stores, *(w.host for w in spec.workers)})
    names = limit_hosts(every, limit)
    if bucket & set(names) and spec.mirror.host not in names:
        raise OlmirrorError(
            f"--limit: the bucket {location.name if location else ''} is published from the "
            f"mirror folder on {spec.mirror.host!r}, under its apply lock; add "
            f"{spec.mirror.host} to --limit"
        )
    loaded, undetected = with_detected_targets(loaded, connections, names, forks)
    workers = [w for w in loaded.spec.workers if w.host in names]
    buckets: dict[str, dict] = {}  # s3:// registry -> its survey, once per plan
    if discover and (previous is None or previous.inputs != lock_inputs(loaded, registries)[1]):
        registries |= _survey(loaded, workers, connections, forks, registries, buckets)
    for last in (False, True):
        lock = current_lock(loaded, registries)
        desired = desired_state(loaded, lock, registries, set(names) - set(undetected))
        hosts = sorted(set(names) | _bucket_hosts(registries, workers))
        assumed = {url for w in workers if (url := registries[w.name].bucket) and discover}
        declared = _declared(loaded, registries, workers, {})
        with ThreadPoolExecutor(max_workers=1) as aside:  # the buckets while hosts answer
            reading = aside.submit(
                survey_buckets, assumed - buckets.keys(), connections, forks, declared
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
            buckets |= reading.result()
        answers = {h.host: h.registries for h in plan.hosts}
        named = _named(workers, answers) if discover else set()
        declared = _declared(loaded, registries, workers, answers)
        buckets |= survey_buckets(named - buckets.keys(), connections, forks, declared)
        seen, raw = _found(loaded, workers, answers, registries, buckets)
        changed = sorted(n for n, registry in seen.items() if registries[n] != registry)
        if not changed or last:
            break
        registries |= seen
    findings = registry_findings(
        loaded, lock, registries, raw, set(names) - set(undetected), _held(loaded, lock, plan)
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
