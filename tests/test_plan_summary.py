"""The plan as package changes first: what moves, comes and goes per set and target, with
the lock's and the index pages' mechanical diffs kept behind --diff."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from conftest import CliResult, write_spec
from upstream import Upstream

from olmirror.lock.lockfile import Lock, LockedFile, TargetLock
from olmirror.plan import HostPlan, Plan
from olmirror.plan_summary import PackageChange, package_changes
from olmirror.render import MAX_PACKAGE_LINES, Painter, print_plan
from olmirror.resources import Change, File
from olmirror.resources.file import unified_diff

Cli = Callable[..., CliResult]
PY311 = "py3.11-manylinux_2_17_x86_64"
PY312 = "py3.12-manylinux_2_17_x86_64"


def _file(pin: str, tag: str = "py3-none-any", sha: str = "a") -> LockedFile:
    name, _, version = pin.partition("==")
    filename = f"{name}-{version}-{tag}.whl"
    return LockedFile(filename=filename, url=f"https://files.example/{filename}", sha256=sha * 64)


def _target(python: str, sets: dict[str, list[str]], **files: LockedFile) -> TargetLock:
    pins = {pin for pinned in sets.values() for pin in pinned}
    chosen = {pin: files.get(pin.partition("==")[0], _file(pin)) for pin in pins}
    return TargetLock(python=python, platform="manylinux_2_17_x86_64", sets=sets, files=chosen)


def _lock(*targets: TargetLock) -> Lock:
    keys = {f"py{t.python}-{t.platform}": t for t in targets}
    return Lock(inputs="i", upstream="https://pypi.example/simple/", targets=keys)


def _lines(old: Lock | None, new: Lock) -> list[str]:
    return [f"{c.mark} {c}" for c in package_changes(old, new)]


def test_a_moved_pin_is_one_line_naming_its_set_and_target() -> None:
    old = _lock(_target("3.11", {"allowlist": ["six==1.16.0"], "worker:w1": ["omega==1.1"]}))
    new = _lock(_target("3.11", {"allowlist": ["six==1.17.0"], "worker:w1": ["omega==1.1"]}))
    assert _lines(old, new) == [f"~ six 1.16.0 → 1.17.0 (the allowlist; {PY311})"]


def test_added_and_removed_pins_and_a_file_leaving_the_mirror() -> None:
    old = _lock(_target("3.11", {"worker:w1": ["pandas==1.5.3", "six==1.16.0"]}))
    new = _lock(_target("3.11", {"worker:w1": ["six==1.16.0"], "lambda:w1/etl": ["numpy==2.2.6"]}))
    assert _lines(old, new) == [
        f"- pandas 1.5.3 (worker 'w1'; {PY311}; leaves the mirror)",
        f"+ numpy 2.2.6 (lambda 'etl' of worker 'w1'; {PY311})",
    ]


def test_a_pin_dropped_by_one_set_but_kept_by_another_stays_in_the_mirror() -> None:
    old = _lock(_target("3.11", {"worker:a": ["six==1.16.0"], "worker:b": ["six==1.16.0"]}))
    new = _lock(_target("3.11", {"worker:a": [], "worker:b": ["six==1.16.0"]}))
    assert _lines(old, new) == [f"- six 1.16.0 (worker 'a'; {PY311})"]


def test_the_same_change_is_merged_across_targets_then_sets() -> None:
    before = {"worker:a": ["omega==1.1"], "worker:b": ["omega==1.1", "theta==1.0"]}
    after = {"worker:a": ["omega==1.2"], "worker:b": ["omega==1.2", "theta==1.0"]}
    old = _lock(_target("3.11", before), _target("3.12", before))
    new = _lock(_target("3.11", after), _target("3.12", {**after, "worker:b": ["omega==1.2"]}))
    assert _lines(old, new) == [
        f"~ omega 1.1 → 1.2 (worker 'a', worker 'b'; {PY311}, {PY312})",
        f"- theta 1.0 (worker 'b'; {PY312})",
    ]


def test_a_new_file_for_the_same_version_is_told() -> None:
    sets = {"worker:w": ["native==1.0", "omega==1.1"]}
    old = _lock(_target("3.11", sets, native=_file("native==1.0", "py3-none-any")))
    rebuilt = _file("native==1.0", "cp311-cp311-manylinux_2_17_x86_64", "b")
    new = _lock(_target("3.11", sets, native=rebuilt))
    (change,) = package_changes(old, new)
    assert change.action == "file" and (change.old, change.new) == ("1.0", "1.0")
    assert str(change) == (
        f"native 1.0 (worker 'w'; {PY311}; file native-1.0-py3-none-any.whl → "
        "native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl)"
    )
    same_name = _lock(_target("3.11", sets, native=_file("native==1.0", sha="c")))
    assert "changed (sha256 aaaaaaaaaaaa → cccccccccccc)" in str(package_changes(old, same_name)[0])


def test_the_first_lock_adds_every_pin_and_an_unchanged_lock_nothing() -> None:
    lock = _lock(_target("3.11", {"allowlist": ["six==1.17.0"], "worker:w": ["omega==1.1"]}))
    assert _lines(None, lock) == [
        f"+ six 1.17.0 (the allowlist; {PY311})",
        f"+ omega 1.1 (worker 'w'; {PY311})",
    ]
    assert package_changes(lock, lock) == []


def test_the_json_of_a_change() -> None:
    change = PackageChange("move", "omega", "1.1", "1.2", ("worker:a",), (PY311,))
    assert change.to_json() == {
        "action": "move",
        "project": "omega",
        "old": "1.1",
        "new": "1.2",
        "sets": ["worker:a"],
        "targets": [PY311],
        "detail": "",
    }


# What `print_plan` is given: a plan with a lock, an index page, a short and a long file diff.
LOCK = "/spec/olmirror.lock"
MIRROR = {"host": "local", "directory": "/srv/mirror", "lock": LOCK}
OMEGA = PackageChange("move", "omega", "1.1", "1.2", ("worker:a",), (PY311,))


def _update(path: str, old: str, new: str, *before: str) -> Change:
    """A file's update as `File.plan` makes it; `before`: lines ahead of the unified diff."""
    diff = (*before, *unified_diff(path, old, new))
    return Change(File(path, new), "update", f"update file {path}", diff)


def _printed(changes: list[Change], packages: Sequence[PackageChange], full: bool = False) -> str:
    host = HostPlan(host="local", changes=changes)
    plan = Plan(
        spec="/spec/olmirror.yaml", spec_digest="d", inventory={}, hosts=[host], mirror=MIRROR
    )
    stream = io.StringIO()
    print_plan(plan, Painter(stream, colour=False), packages, full_diff=full)
    return stream.getvalue()


def test_mechanical_and_long_file_diffs_are_one_line_unless_asked() -> None:
    page = "/srv/mirror/web/simple/omega/index.html"
    long_old = "".join(f"line {i}\n" for i in range(40))
    changes = [
        _update(LOCK, '"omega==1.1"\n', '"omega==1.2"\n'),
        _update(page, "<a>omega-1.1</a>\n", "<a>omega-1.2</a>\n"),
        _update("/w/requirements.in", "omega==1.1\n", "omega==1.2\n"),
        _update("/w/big.py", long_old, long_old.replace("line", "row"), "mode 0600 -> 0644"),
    ]
    out = _printed(changes, [OMEGA])
    assert out.splitlines()[:3] == ["Packages", f"  ~ omega 1.1 → 1.2 (worker 'a'; {PY311})", ""]
    assert f"  ~ update file {LOCK} (+1 -1 lines; --diff shows them)" in out
    assert f"  ~ update file {page} (+1 -1 lines; --diff shows them)" in out
    assert "      -omega==1.1\n      +omega==1.2" in out, "a short diff is shown"
    assert "  ~ update file /w/big.py (+40 -40 lines; --diff shows them)\n      mode 0600" in out
    assert [line for line in out.splitlines() if "(planned)" in line] == [
        "      +++ /w/requirements.in (planned)"
    ]

    full = _printed(changes, [OMEGA], full=True)
    for path in (LOCK, page, "/w/big.py"):
        assert f"+++ {path} (planned)" in full
    assert "+row 39" in full and "--diff shows them" not in full


def test_a_lock_change_no_package_tells_shows_its_diff() -> None:
    out = _printed([_update(LOCK, '"inputs": "a"\n', '"inputs": "b"\n')], [])
    assert "Packages" not in out
    assert '      +"inputs": "b"' in out


def test_a_long_package_list_is_cut_by_default() -> None:
    many = [
        PackageChange("add", f"p{i:02}", None, "1.0", ("allowlist",), (PY311,))
        for i in range(MAX_PACKAGE_LINES + 5)
    ]
    out = _printed([], many)
    assert "p29 1.0" in out and "p30 1.0" not in out
    assert "  ... 5 more package changes (--diff or --json lists them all)" in out
    assert "p34 1.0" in _printed([], many, full=True)


def _requirements(spec: Path, worker: int, requirements: list[str]) -> None:
    data = yaml.safe_load(spec.read_text())
    data["workers"][worker]["requirements"] = requirements
    spec.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_one_package_change_fits_on_a_screen_and_diff_shows_the_lock(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    workers = [
        {"name": name, "path": str(tmp_path / name), "requirements": requirements}
        for name, requirements in (("a", ["omega==1.1"]), ("b", ["theta==1.0"]))
    ]
    spec = write_spec(tmp_path, clean_upstream, workers)
    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code == 0, applied.out + applied.err
    _requirements(spec, 0, ["omega==1.2"])
    lock = str(spec.with_suffix(".lock"))

    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 0, plan.out + plan.err
    lines = plan.out.splitlines()
    assert lines[0].startswith("Lock: resolved 1 of 2 (set, target) pairs again")
    assert lines[1:3] == ["Packages", f"  ~ omega 1.1 → 1.2 (worker 'a'; {PY311})"]
    assert f"~ update file {lock} (+" in plan.out and "--diff shows them" in plan.out
    assert f"{lock} (planned)" not in plan.out, "the lock's diff is behind --diff"
    assert len(lines) <= 40

    full = cli("plan", "-f", str(spec), "--no-color", "--diff")
    assert f"+++ {lock} (planned)" in full.out
    assert '+        "omega==1.2"' in full.out

    as_json = json.loads(cli("plan", "-f", str(spec), "--json").out)
    (change,) = as_json["packages"]
    assert change == PackageChange("move", "omega", "1.1", "1.2", ("worker:a",), (PY311,)).to_json()

    applied = cli("apply", "-f", str(spec), "--yes", "--no-color", "--diff")
    assert applied.code == 0, applied.out + applied.err
    assert "omega 1.1 → 1.2" in applied.out and f"+++ {lock} (planned)" in applied.out
    assert cli("plan", "-f", str(spec), "--json").out.count('"packages": []') == 1
