"""From a spec to a plan: what every worker's registry holds, the lock, then each host's facts.

The lock depends on the lambdas found in the workers' registries, and the facts to
gather depend on the lock. A plan therefore assumes each registry is as the lock
last recorded it and surveys it in the same round trip as the host's other facts;
only when a registry changed since is every host looked at a second time. When the
lock must be resolved anyway, the registries are surveyed first, so it is resolved once.
"""

from __future__ import annotations

from olmirror.connection import FactRequest
from olmirror.connection.hosts import Connections, in_parallel
from olmirror.desired import desired_state
from olmirror.errors import OlmirrorError, Unreachable
from olmirror.lock.lockfile import Lock, lock_path, read_lock
from olmirror.lock.resolve import current_lock, lock_inputs
from olmirror.mirror.fetch import absent
from olmirror.mirror.layout import stored_path
from olmirror.openlambda.detect import with_detected_targets
from olmirror.openlambda.findings import Finding, Held, registry_findings
from olmirror.openlambda.registry import (
    Registry,
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


def _found(
    loaded: LoadedSpec, workers: list[Worker], answers: dict[str, dict[str, dict]]
) -> tuple[dict[str, Registry], dict[str, dict]]:
    """(registry, raw answer) of each worker whose host answered, from per-host answers.

    A registry that could not be read keeps what the lock recorded (its error is still
    told): a passing fault must not drop its lambdas from the lock, and so the mirror.
    """
    discover = loaded.spec.allowlist.from_registry
    registries, raw = {}, {}
    for worker in workers:
        answer = answers.get(worker.host, {}).get(worker_dir(worker))
        if answer is not None:
            raw[worker.name] = answer
            if not answer.get("error"):
                registries[worker.name] = registry_from_probe(worker, answer, discover)
    return registries, raw


def _survey(
    loaded: LoadedSpec, workers: list[Worker], connections: Connections, forks: int
) -> dict[str, Registry]:
    """Each worker's registry, read on its own (one round trip per host, in parallel).

    A host that cannot be reached is left out here: the plan reports it."""

    def one(host: str) -> dict[str, dict]:
        try:
            facts = connections.get(host).gather(FactRequest(registries=folders[host]))
        except OlmirrorError:
            return {}
        return facts.registries

    folders = _folders(workers)
    return _found(loaded, workers, in_parallel(folders, one, forks))[0]


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
    location = location_of(spec)
    bucket = {location.name} if location else set()
    every = sorted({LOCAL, spec.mirror.host, *bucket, *(w.host for w in spec.workers)})
    names = limit_hosts(every, limit)
    loaded, undetected = with_detected_targets(loaded, connections, names, forks)
    workers = [w for w in loaded.spec.workers if w.host in names]
    previous = read_lock(lock_path(loaded.path))
    registries = recorded_registries(loaded, previous)
    if spec.allowlist.from_registry and (
        previous is None or previous.inputs != lock_inputs(loaded, registries)[1]
    ):
        registries |= _survey(loaded, workers, connections, forks)
    for last in (False, True):
        lock = current_lock(loaded, registries)
        desired = desired_state(loaded, lock, registries, set(names) - set(undetected))
        plan = build_plan(
            spec_file,
            loaded.digest,
            {n: desired[n] for n in names if n in desired and n not in undetected},
            connections,
            forks,
            mirror if spec.mirror.host in names else None,
            _folders(workers),
        )
        seen, raw = _found(loaded, workers, {h.host: h.registries for h in plan.hosts})
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
    plan.complete = names == every and not undetected
    plan.detected = {
        w.name: w.target.model_dump()
        for w, asked in zip(loaded.spec.workers, spec.workers, strict=True)
        if asked.target == "detect" and w.target is not None and not isinstance(w.target, str)
    }
    for host, exc in undetected.items():
        plan.hosts.append(HostPlan(host, error=str(exc), unreachable=isinstance(exc, Unreachable)))
    plan.hosts.sort(key=lambda h: h.host)
    return plan
