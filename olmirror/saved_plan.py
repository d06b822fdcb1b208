"""A saved plan is code: `olmirror apply PLANFILE` runs only what the spec itself makes.

A plan file names the spec it came from. Before anything runs, the spec must still have
the digest the plan recorded, the plan's hosts must be reached as the spec says, and
every resource in the plan (each file, each command and its argv) must be one that the
spec, with the lock the plan writes, generates: an edited plan file is refused, as a
plan made from another spec is (Terraform binds a saved plan to its configuration the
same way). Nothing is resolved and no host is asked: the check is local.
"""

from __future__ import annotations

import json
from pathlib import Path

from olmirror.desired import desired_state
from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock, lock_path, read_lock
from olmirror.lock.resolve import lock_inputs
from olmirror.openlambda.registry import recorded_registries
from olmirror.plan import Plan
from olmirror.resources import Resource
from olmirror.spec import LOCAL, LoadedSpec, TargetSetting, host_config, load_spec

REFUSED = "refusing the saved plan {source}: {why}; make a new one with `olmirror plan --out`"


def _saved_form(resource: Resource) -> str:
    """A resource as a saved plan holds it once read back: through JSON and its kind's
    validation (a float field given 30 reads back as 30.0), so both sides compare alike."""
    return json.dumps(Resource.from_json(resource.to_json()).to_json(), sort_keys=True)


def _lock_of(plan: Plan, loaded: LoadedSpec) -> Lock | None:
    """The lock the plan writes, else the one beside the spec."""
    path = str(lock_path(loaded.path))
    for host in plan.hosts:
        for change in host.changes if host.host == LOCAL else ():
            resource = change.resource.to_json()
            if resource.get("kind") == "file" and resource.get("path") == path:
                return Lock.from_text(resource["content"], Path(path))
    return read_lock(Path(path))


def _with_detected(loaded: LoadedSpec, plan: Plan) -> LoadedSpec:
    workers = []
    for worker in loaded.spec.workers:
        found = plan.detected.get(worker.name)
        if worker.target == "detect":
            target = TargetSetting.model_validate(found) if found else None
            if target is not None and target not in loaded.spec.mirror.targets:
                raise OlmirrorError(f"worker {worker.name!r}'s detected target is not a target")
            worker = worker.model_copy(update={"target": target})
        workers.append(worker)
    spec = loaded.spec.model_copy(update={"workers": workers})
    return LoadedSpec(spec, loaded.path, loaded.digest)


def check_saved_plan(plan: Plan, source: str) -> None:
    """Raise unless every resource of `plan` is one its spec makes (see the module)."""

    def refuse(why: str) -> OlmirrorError:
        return OlmirrorError(REFUSED.format(source=source, why=why))

    try:
        loaded = load_spec(plan.spec)
    except OlmirrorError as exc:
        raise refuse(f"its spec cannot be read ({exc})") from None
    if loaded.digest != plan.spec_digest:
        raise refuse(f"the spec {plan.spec} changed since the plan was made")
    for name, host in plan.inventory.items():
        known = name == LOCAL or name in loaded.spec.hosts
        if not known or host_config(loaded.spec, name) != host:
            raise refuse(f"it reaches host {name!r} otherwise than the spec says")
    try:
        detected = _with_detected(loaded, plan)
        lock = _lock_of(plan, loaded)
        if lock is None:
            raise OlmirrorError("it has no lock")
        registries = recorded_registries(detected, lock)
        if lock.inputs != lock_inputs(detected, registries)[1]:
            raise OlmirrorError("its lock was not made from the spec")
        desired = desired_state(detected, lock, registries, {h.host for h in plan.hosts})
    except OlmirrorError as exc:
        raise refuse(str(exc)) from None
    for host in plan.hosts:
        made = {_saved_form(r) for r in desired.get(host.host, [])}
        for change in host.changes:
            if _saved_form(change.resource) not in made:
                raise refuse(
                    f"{change.resource.id} on host {host.host!r} is not what the spec makes"
                )
