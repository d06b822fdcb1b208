"""Apply a plan: per host, under its lock, refusing a host that moved since the plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from olmirror.connection import Connection, Facts
from olmirror.connection.batched import Batched, Deferred
from olmirror.connection.hosts import Connections, in_parallel
from olmirror.errors import OlmirrorError, Unreachable
from olmirror.plan import HostPlan, Plan, fact_request
from olmirror.progress import reporting_to
from olmirror.resources import Change

Outcome = Literal["ok", "changed", "failed", "unreachable"]
NOT_CONVERGED = ("failed", "unreachable")


@dataclass
class HostResult:
    host: str
    outcome: Outcome
    applied: list[str] = field(default_factory=list)
    unchanged: int = 0
    error: str | None = None
    retries: int = 0  # requests to the network that had to be tried again

    def count_retries(self, count: int) -> None:
        self.retries += count


class StalePlan(OlmirrorError):
    """The host no longer looks as it did when the plan was made."""


def _check_fresh(observed: dict[str, str], plan: HostPlan) -> None:
    moved = [rid for rid, seen in plan.fingerprints.items() if observed.get(rid) != seen]
    if moved:
        listed = "; ".join(moved[:5]) + (f"; and {len(moved) - 5} more" if len(moved) > 5 else "")
        raise StalePlan(
            f"host {plan.host!r} changed since the plan was made ({listed}); nothing was applied "
            "there: run `olmirror plan` again and review the new plan"
        )


def _named(owner: str, exc: Exception) -> Exception:
    """`exc` said of the resource `owner` names; other kinds of error stay as they are."""
    if isinstance(exc, Unreachable):
        return Unreachable(f"{owner}: {exc}")
    if isinstance(exc, OlmirrorError):
        return OlmirrorError(f"{owner}: {exc}")
    if isinstance(exc, OSError):
        return OlmirrorError(f"{owner}: {exc.strerror or exc} ({exc.filename or 'no file'})")
    return exc


def _converge(
    plan: HostPlan,
    conn: Connection,
    facts: Facts | None,
    result: HostResult,
    on_event: Callable[[str, str, bool], None],
) -> None:
    """Apply the pending changes in order; each is told done once what it wrote reached the
    host (writes wait to go together, see `Batched`)."""
    finished: list[Change] = []

    def settle() -> None:
        while finished and finished[0].resource.id not in batched.waiting:
            change = finished.pop(0)
            result.applied.append(change.summary)
            on_event(plan.host, change.summary, True)

    batched = Batched(conn, facts, settle)
    try:
        for change in plan.pending:
            owner = batched.owner = change.resource.id
            try:
                with reporting_to(
                    lambda text, final: on_event(plan.host, text, final), result.count_retries
                ):
                    change.resource.apply(batched)
            except Deferred:
                raise
            except Exception as exc:
                try:
                    batched.flush()  # what the changes before it made still goes
                except Deferred as sent:
                    if sent.owner != owner:
                        raise
                raise _named(owner, exc) from None
            finished.append(change)
            settle()
        batched.flush()
    except Deferred as exc:
        raise _named(exc.owner, exc.cause) from None


def apply_host(
    plan: HostPlan,
    connections: Connections,
    on_event: Callable[[str, str, bool], None],
    recheck: bool,
    facts: Facts | None = None,
) -> HostResult:
    """Converge one host to `plan` under its apply lock; a failure stops this host only.

    `recheck`: gather the facts again and refuse a host that moved since the plan; else the
    plan was made in this run, under the lock `connections` took, and `facts` (when given)
    are still the host's.
    """
    result = HostResult(plan.host, "ok", unchanged=len(plan.unchanged))
    if plan.error:
        result.outcome = "unreachable" if plan.unreachable else "failed"
        result.error = plan.error
        return result
    resources = [c.resource for c in plan.changes]
    try:
        conn = connections.get(plan.host)
        conn.hold_lock(connections.host(plan.host).state_dir)
        if recheck:
            facts = conn.gather(fact_request(resources))
            _check_fresh({r.id: r.observe(facts) for r in resources}, plan)
        _converge(plan, conn, facts, result, on_event)
    except Unreachable as exc:
        result.outcome, result.error = "unreachable", str(exc)
        return result
    except OlmirrorError as exc:
        result.outcome, result.error = "failed", str(exc)
        return result
    except Exception as exc:  # one host's surprise must not take the other hosts' results
        result.outcome, result.error = "failed", f"{type(exc).__name__}: {exc}"
        return result
    result.outcome = "changed" if result.applied else "ok"
    return result


def _only(plan: HostPlan, changes: list[Change]) -> HostPlan:
    ids = {c.resource.id for c in changes}
    fingerprints = {rid: seen for rid, seen in plan.fingerprints.items() if rid in ids}
    return replace(plan, changes=changes, fingerprints=fingerprints)


def _part(plan: HostPlan, last: bool) -> HostPlan:
    """The pending changes of `plan` that wait for every host (`last`), or all the rest."""
    return _only(
        plan, [c for c in plan.changes if (c.changes and c.resource.after_all_hosts) == last]
    )


def _until_served(plan: HostPlan) -> tuple[HostPlan, HostPlan]:
    """`plan` cut before its first change that needs the mirror served (a worker on the
    mirror host checking its bucket): (what goes before the bucket's upload, the rest)."""
    changes = plan.changes
    cut = next((i for i, c in enumerate(changes) if c.resource.needs_served_mirror), len(changes))
    return _only(plan, changes[:cut]), _only(plan, changes[cut:])


def _tell_not_yet(part: HostPlan, why: str, on_event: Callable[[str, str, bool], None]) -> None:
    for change in part.pending:
        on_event(part.host, f"not yet: {change.summary} ({why}; a later apply does it)", True)


def _not_yet(part: HostPlan, why: str, on_event: Callable[[str, str, bool], None]) -> HostResult:
    """The result of a part left for a later apply because of `why`: not converged when it
    had changes to make."""
    _tell_not_yet(part, why, on_event)
    result = HostResult(part.host, "ok", unchanged=len(part.unchanged))
    if part.pending:
        result.outcome, result.error = "failed", f"not applied: {why}"
    return result


def _joined(first: HostResult, last: HostResult) -> HostResult:
    outcome: Outcome = last.outcome if last.outcome != "ok" else first.outcome
    if outcome == "ok" and (first.applied or last.applied):
        outcome = "changed"
    return HostResult(
        first.host,
        outcome,
        first.applied + last.applied,
        first.unchanged + last.unchanged,
        first.error or last.error,
        first.retries + last.retries,
    )


def apply_plan(
    plan: Plan,
    connections: Connections,
    forks: int,
    on_event: Callable[[str, str, bool], None] = lambda host, text, final: None,
    recheck: bool = True,
) -> list[HostResult]:
    """Apply every host's changes in parallel; `on_event(host, text, final)` tells the progress.

    `recheck`: as `apply_host`'s (False only for a plan made in this run with `connections`
    holding every host's lock from the start).

    The mirror host goes first (workers elsewhere check that it answers), then the bucket
    it is published to (from the folder the mirror host filled), then the other hosts and
    the mirror host's own workers, then, only when the plan is complete and every host
    converged, the changes that wait for all of them (the mirror's removals). Final
    events are lasting lines (a change made, a sync's summary); others are transient.
    """
    by_host = {h.host: _part(h, last=False) for h in plan.hosts}
    mirror, bucket = ((plan.mirror or {}).get(key) for key in ("host", "bucket"))
    after_bucket: dict[str, HostPlan] = {}
    if mirror in by_host and bucket in by_host:
        by_host[mirror], after_bucket[mirror] = _until_served(by_host[mirror])
    results: dict[str, HostResult] = {}

    def run(hosts: list[str]) -> None:
        results.update(
            in_parallel(
                hosts,
                lambda h: apply_host(by_host[h], connections, on_event, recheck, by_host[h].facts),
                forks,
            )
        )

    if mirror in by_host:
        run([mirror])
    if bucket in by_host:
        if mirror in results and results[mirror].outcome in NOT_CONVERGED:
            why = f"the mirror host {mirror} did not converge"
            results[bucket] = _not_yet(by_host[bucket], why, on_event)
        else:
            run([bucket])
    run([h for h in by_host if h not in (mirror, bucket)])
    for host, part in after_bucket.items():
        if results[host].outcome in NOT_CONVERGED:
            continue
        if results[bucket].outcome in NOT_CONVERGED:
            late = _not_yet(part, f"the bucket {bucket} did not converge", on_event)
        else:
            late = apply_host(part, connections, on_event, recheck)
        results[host] = _joined(results[host], late)
    waiting = {h.host: _part(h, last=True) for h in plan.hosts}
    waiting = {host: part for host, part in waiting.items() if part.pending}
    behind = sorted(h for h, r in results.items() if r.outcome in NOT_CONVERGED)
    for host, part in waiting.items():
        if behind or not plan.complete:
            why = f"{', '.join(behind)} did not converge" if behind else "--limit left hosts out"
            _tell_not_yet(part, why, on_event)
            continue
        # no facts: the first part changed this host since the plan gathered them
        results[host] = _joined(results[host], apply_host(part, connections, on_event, recheck))
    return [results[h] for h in by_host]
