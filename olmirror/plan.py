"""Plans as data: what would change on every host, built from facts gathered first.

A plan can be printed, saved as JSON and applied later; it records a
fingerprint of every resource's state so that a stale plan is refused.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from olmirror import __version__
from olmirror.connection import Connection, FactRequest, Facts
from olmirror.connection.bucket import is_bucket
from olmirror.connection.hosts import Connections, in_parallel
from olmirror.errors import OlmirrorError, Unreachable
from olmirror.openlambda.findings import Finding
from olmirror.resources import Change, Resource, ResourceError
from olmirror.resources.base import Action
from olmirror.spec import Host
from olmirror.spec.yaml_reader import json_fault

PLAN_FORMAT = 1


@dataclass
class HostPlan:
    host: str
    changes: list[Change] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    unreachable: bool = False
    # For the planner only, never saved: each worker folder's registry as the probe found
    # it (see `olmirror.openlambda.registry`), and the facts the changes were planned from.
    registries: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    facts: Facts | None = field(default=None, repr=False)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.changes]

    @property
    def unchanged(self) -> list[Change]:
        return [c for c in self.changes if not c.changes]

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "error": self.error,
            "unreachable": self.unreachable,
            "changes": [c.to_json() for c in self.changes],
            "fingerprints": self.fingerprints,
        }


@dataclass
class Plan:
    spec: str
    spec_digest: str
    inventory: dict[str, Host]
    hosts: list[HostPlan]
    # Where verify looks after apply: {"host", "directory", "lock"}; None without a mirror.
    mirror: dict[str, str] | None = None
    findings: list[Finding] = field(default_factory=list)
    # Every host of the spec is in the plan (no --limit left one out): only then may an
    # apply make the changes that wait for all hosts (`Resource.after_all_hosts`).
    complete: bool = True
    # The target `target: detect` found for each such worker: a saved plan is checked
    # against the resources the spec makes with them (`olmirror.saved_plan`).
    detected: dict[str, dict[str, str]] = field(default_factory=dict)
    # How the plan came by its lock ("resolved 1 of 80 ..."), None when it was as locked.
    lock_note: str | None = None
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
    )

    @property
    def change_count(self) -> int:
        return sum(len(h.pending) for h in self.hosts)

    @property
    def failed(self) -> list[HostPlan]:
        return [h for h in self.hosts if h.error]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "olmirror": __version__,
            "created": self.created,
            "spec": self.spec,
            "spec_digest": self.spec_digest,
            "mirror": self.mirror,
            "inventory": {n: h.model_dump(mode="json") for n, h in self.inventory.items()},
            "summary": {
                "changes": self.change_count,
                "hosts": len(self.hosts),
                "failed_hosts": [h.host for h in self.failed],
            },
            "findings": [f.to_json() for f in self.findings],
            "complete": self.complete,
            "detected": self.detected,
            "lock_note": self.lock_note,
            "hosts": [h.to_json() for h in self.hosts],
        }

    @classmethod
    def from_text(cls, text: str, source: str) -> Plan:
        """The plan saved in `text`; a damaged one is an error naming the line and field."""
        try:
            raw = _PLAN_FILE.validate_json(text)
            hosts = [_host(h, n, text, source) for n, h in enumerate(raw["hosts"])]
        except ValidationError as exc:
            raise OlmirrorError(
                f"{json_fault(source, text, exc)}; the plan file is damaged: make a new one with "
                "`olmirror plan --out FILE`"
            ) from None
        return cls(
            spec=raw["spec"],
            spec_digest=raw["spec_digest"],
            inventory=raw["inventory"],
            hosts=hosts,
            mirror=raw["mirror"],
            findings=raw["findings"],
            complete=raw["complete"],
            detected=raw["detected"],
            lock_note=raw["lock_note"],
            created=raw["created"],
        )


class _ChangeFile(TypedDict):
    id: str
    action: Action
    summary: str
    diff: tuple[str, ...]
    resource: dict[str, Any]  # read by its kind's own type (`Resource.from_json`)


class _HostFile(TypedDict):
    host: str
    error: str | None
    unreachable: bool
    changes: list[_ChangeFile]
    fingerprints: dict[str, str]


class _PlanFile(TypedDict):
    """A saved plan's JSON, checked before it is used: a damaged plan names its field."""

    format: Literal[1]
    olmirror: str
    created: str
    spec: str
    spec_digest: str
    mirror: dict[str, str] | None
    inventory: dict[str, Host]
    findings: list[Finding]
    complete: bool
    detected: dict[str, dict[str, str]]
    lock_note: str | None
    hosts: list[_HostFile]


_PLAN_FILE: TypeAdapter[_PlanFile] = TypeAdapter(_PlanFile)


def _host(raw: _HostFile, index: int, text: str, source: str) -> HostPlan:
    """A host's part of a saved plan, each resource read by its kind's own type."""
    changes = []
    for n, change in enumerate(raw["changes"]):
        try:
            resource = Resource.from_json(change["resource"])
        except ValidationError as exc:
            within = ("hosts", index, "changes", n, "resource")
            raise OlmirrorError(
                f"{json_fault(source, text, exc, within)}; the plan file is damaged: make a new "
                "one with `olmirror plan --out FILE`"
            ) from None
        changes.append(Change(resource, change["action"], change["summary"], change["diff"]))
    return HostPlan(raw["host"], changes, raw["fingerprints"], raw["error"], raw["unreachable"])


def fact_request(resources: list[Resource]) -> FactRequest:
    return functools.reduce(FactRequest.merge, (r.request() for r in resources), FactRequest())


def plan_resources(
    conn: Connection, resources: list[Resource], registries: frozenset[str] = frozenset()
) -> HostPlan:
    """Gather the host's facts in one round trip, then compare each resource in order.

    `registries`: worker folders whose registry the same round trip surveys.
    """
    plan = HostPlan(conn.name)
    facts = conn.gather(fact_request(resources).merge(FactRequest(registries=registries)))
    plan.registries = {path: facts.registries[path] for path in registries}
    plan.facts = facts
    pending: frozenset[str] = frozenset()
    for resource in resources:
        try:
            change = resource.plan(facts, pending)
        except ResourceError as exc:
            plan.error = f"{resource.id}: {exc}"
            return plan
        if change.changes:
            pending |= resource.provides()
        plan.changes.append(change)
    plan.fingerprints = {r.id: r.observe(facts) for r in resources}
    return plan


def build_plan(
    spec: str,
    spec_digest: str,
    desired: dict[str, list[Resource]],
    connections: Connections,
    forks: int,
    mirror: dict[str, str] | None = None,
    registries: dict[str, frozenset[str]] | None = None,
) -> Plan:
    """Plan every host of `desired` in parallel; `registries`: worker folders per host."""

    def one(host: str) -> HostPlan:
        try:
            survey = (registries or {}).get(host, frozenset())
            return plan_resources(connections.get(host), desired[host], survey)
        except Unreachable as exc:
            return HostPlan(host, error=str(exc), unreachable=True)
        except OlmirrorError as exc:
            return HostPlan(host, error=str(exc))

    results = in_parallel(desired, one, forks)
    inventory = {name: connections.inventory[name] for name in desired if not is_bucket(name)}
    return Plan(spec, spec_digest, inventory, list(results.values()), mirror)
