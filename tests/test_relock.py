"""The lock at scale: each set is resolved again only when its own inputs change, a plan's
resolution serves the apply after it, and `olmirror lock` refreshes on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult, write_spec
from upstream import Hit, Upstream

from olmirror.lock import uv_compile
from olmirror.lock.relock import resolved_path

Cli = Callable[..., CliResult]
Resolved = list[tuple[str, list[str]]]


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Resolved:
    """(set, the pins it was told to prefer) of every resolution uv runs."""
    seen: Resolved = []
    real = uv_compile.compile_set

    def counted(requirements: Any, target: Any, *args: Any) -> Any:
        seen.append((requirements.name, list(args[4] or [])))
        return real(requirements, target, *args)

    monkeypatch.setattr(uv_compile, "compile_set", counted)
    return seen


def _spec(tmp_path: Path, upstream: Upstream, a: list[str], b: list[str]) -> Path:
    workers = [
        {"name": name, "path": str(tmp_path / name), "requirements": requirements}
        for name, requirements in (("a", a), ("b", b))
    ]
    return write_spec(tmp_path, upstream, workers)


def _requirements(spec: Path, worker: int, requirements: list[str]) -> None:
    data = yaml.safe_load(spec.read_text())
    data["workers"][worker]["requirements"] = requirements
    spec.write_text(yaml.safe_dump(data, sort_keys=False))


def _pins(lock: Path, set_name: str) -> list[str]:
    (target,) = json.loads(lock.read_text())["targets"].values()
    return target["sets"][set_name]


def test_only_changed_sets_are_resolved_and_the_apply_after_a_plan_resolves_nothing(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, resolved: Resolved
) -> None:
    spec = _spec(tmp_path, clean_upstream, ["omega<1.2"], ["theta==1.0"])
    assert cli("lock", "-f", str(spec)).code == 0
    assert sorted(name for name, _ in resolved) == ["worker:a", "worker:b"]
    lock = spec.with_suffix(".lock")
    assert _pins(lock, "worker:a") == ["omega==1.1"]

    # b changes: a is kept as locked, b alone is resolved, from the pins it had
    _requirements(spec, 1, ["theta==1.0", "omega==1.0"])
    resolved.clear()
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 0, plan.out + plan.err
    assert resolved == [("worker:b", ["theta==1.0"])]
    assert "Lock: resolved 1 of 2 (set, target) pairs again" in plan.out
    kept = resolved_path(spec)
    assert _pins(kept, "worker:a") == ["omega==1.1"]
    assert _pins(kept, "worker:b") == ["omega==1.0", "theta==1.0"]
    assert (kept.parent / ".gitignore").read_text() == "*\n"

    # the apply after the plan takes the plan's resolution: nothing is resolved twice
    resolved.clear()
    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code == 0, applied.out + applied.err
    assert resolved == []
    assert "the lock the last plan resolved, used as it is" in applied.out
    assert json.loads(lock.read_text()) == json.loads(kept.read_text())
    resolved.clear()
    again = cli("plan", "-f", str(spec), "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
    assert resolved == [] and "Lock:" not in again.out


def test_a_changed_set_keeps_its_pins_and_lock_upgrades_on_purpose(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, resolved: Resolved
) -> None:
    spec = _spec(tmp_path, clean_upstream, ["omega<1.2", "theta<1.5"], ["theta==1.0"])
    lock = spec.with_suffix(".lock")
    assert cli("lock", "-f", str(spec)).code == 0
    # no longer capped, but a's pins stay where they were, as pip-compile keeps them
    _requirements(spec, 0, ["omega", "theta"])
    assert cli("lock", "-f", str(spec), "--set", "worker:b").code == 0
    assert _pins(lock, "worker:a") == ["omega==1.1", "theta==1.0"]
    assert _pins(lock, "worker:b") == ["theta==1.0"]

    resolved.clear()
    upgraded = cli("lock", "-f", str(spec), "--upgrade-package", "Omega")
    assert upgraded.code == 0, upgraded.out + upgraded.err
    assert [name for name, _ in resolved] == ["worker:a"], "only the set that pins omega"
    assert _pins(lock, "worker:a") == ["omega==1.2", "theta==1.0"], "omega alone moves"

    resolved.clear()
    assert cli("lock", "-f", str(spec), "--set", "worker:a").code == 0
    assert resolved == [("worker:a", [])], "a set named is resolved afresh"
    assert _pins(lock, "worker:a") == ["omega==1.2", "theta==1.5"]
    assert not resolved_path(spec).exists(), "`lock` leaves no older resolution behind"

    unknown = cli("lock", "-f", str(spec), "--set", "worker:zz")
    assert unknown.code == 1
    assert "no requirement set named 'worker:zz'" in unknown.err
    assert "worker:a, worker:b" in unknown.err


def test_an_older_lock_keeps_its_pins_and_gains_a_digest_per_set(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, resolved: Resolved
) -> None:
    spec = _spec(tmp_path, clean_upstream, ["omega<1.2"], ["theta==1.0"])
    lock = spec.with_suffix(".lock")
    assert cli("lock", "-f", str(spec)).code == 0
    older = json.loads(lock.read_text())
    for target in older["targets"].values():
        del target["inputs"]  # as olmirror wrote locks before per-set digests
    lock.write_text(json.dumps(older, indent=2, sort_keys=True) + "\n")

    resolved.clear()
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 0, plan.out + plan.err
    assert resolved == [], "the lock's inputs are unchanged: its pins are used as they are"
    assert '"inputs": {' in plan.out, "the apply writes the digests in"

    # changed before any apply wrote them: which set changed is unknown, so both are
    # resolved again, each from the pins it had
    _requirements(spec, 1, ["theta==1.5"])
    assert cli("plan", "-f", str(spec)).code == 0
    assert sorted(resolved) == [("worker:a", ["omega==1.1"]), ("worker:b", ["theta==1.0"])]
    assert _pins(resolved_path(spec), "worker:a") == ["omega==1.1"]


def test_a_state_folder_that_is_a_link_is_not_written_through(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, resolved: Resolved
) -> None:
    spec = _spec(tmp_path, clean_upstream, ["omega<1.2"], ["theta==1.0"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resolved_path(spec).parent.symlink_to(elsewhere)
    assert cli("plan", "-f", str(spec)).code == 0
    assert list(elsewhere.iterdir()) == [], "olmirror's state stays beside the spec"
    resolved.clear()
    assert cli("plan", "-f", str(spec)).code == 0
    assert len(resolved) == 2, "without kept state, the next plan resolves again"


def test_index_pages_are_kept_between_runs_and_asked_again_with_their_etag(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    spec = _spec(tmp_path, clean_upstream, ["omega<1.2"], ["theta==1.0"])
    lock = spec.with_suffix(".lock")

    def pages_read() -> list[Hit]:  # olmirror's own reads: uv keeps its own cache
        return [h for h in clean_upstream.counts.hits("/simple/") if h.agent == "olmirror"]

    def lock_again() -> list[Hit]:
        """Resolve from nothing, as for a new target: every pin's page is read again."""
        lock.unlink()
        clean_upstream.counts.reset()
        assert cli("lock", "-f", str(spec)).code == 0
        return pages_read()

    assert cli("lock", "-f", str(spec)).code == 0
    first = lock.read_text()
    assert {h.status for h in pages_read()} == {200}
    kept = resolved_path(spec).parent / "pages"
    assert len(list(kept.iterdir())) == len(pages_read()) == 2, "omega's and theta's"

    again = lock_again()
    assert [h.status for h in again] == [304, 304], "unchanged pages cost no body"
    assert lock.read_text() == first

    for page in kept.iterdir():  # a damaged kept page is not used: it is read whole
        page.write_bytes(page.read_bytes()[:-1])
    assert [h.status for h in lock_again()] == [200, 200]
    assert lock.read_text() == first

    clean_upstream.etags = False  # an upstream that sends no validators: read whole each time
    for page in kept.iterdir():
        page.unlink()
    assert [h.status for h in lock_again()] == [200, 200]
    assert list(kept.iterdir()) == [], "nothing to ask again with, so nothing is kept"
    assert [h.status for h in lock_again()] == [200, 200]
