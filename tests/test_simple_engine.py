"""The simple engine: a mirror from any index that speaks the simple API, no serials needed.

Run against the full local upstream and against the same upstream behaving like a proxy,
Artifactory or devpi (no JSON API, no `X-PyPI-Last-Serial`), and one serving HTML only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import CliResult, write_spec
from upstream import Upstream

from olmirror.lock.relock import resolved_path

ALLOWLIST = ["alpha[fast]==2.0", "delta==1.0"]


@pytest.fixture(params=["full", "simple-only", "html-only"])
def upstream(request: pytest.FixtureRequest, clean_upstream: Upstream) -> Iterator[Upstream]:
    """The local upstream in each of the shapes the simple engine must handle."""
    clean_upstream.simple_only(request.param != "full")
    clean_upstream.html_only(request.param == "html-only")
    yield clean_upstream


def _spec(folder: Path, upstream: Upstream, engine: str = "simple", **allowlist: object) -> Path:
    path = write_spec(folder, upstream, [], allowlist={"packages": ALLOWLIST, **allowlist})
    data = yaml.safe_load(path.read_text())
    data["mirror"]["engine"] = engine
    path.write_text(yaml.safe_dump(data))
    return path


def _locked(spec: Path) -> dict[str, dict]:
    lock = json.loads(spec.with_suffix(".lock").read_text())
    (target,) = lock["targets"].values()
    return target["files"]


def _stored(folder: Path) -> set[str]:
    return {p.name for p in (folder / "mirror" / "web" / "packages").rglob("*") if p.is_file()}


def test_apply_builds_a_mirror_pip_installs_from(cli, tmp_path: Path, upstream: Upstream) -> None:
    spec = _spec(tmp_path, upstream)
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 0, result.out + result.err
    locked = _locked(spec)
    assert _stored(tmp_path) == {f["filename"] for f in locked.values()}
    assert sorted(upstream.counts.files()) == sorted(f["filename"] for f in locked.values())
    assert "Verified: the mirror serves every locked requirement" in result.out

    upstream.counts.reset()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    index = (tmp_path / "mirror" / "web").as_uri() + "/simple/"
    for pin in locked:
        done = subprocess.run(
            [venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--index-url", index,
             "--target", tmp_path / "site" / pin, pin],
            capture_output=True, text=True, env=upstream.env(), check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    assert upstream.counts.requests() == 0, "every install came from the mirror"


def test_auto_says_which_engine_and_why(cli, tmp_path: Path, clean_upstream: Upstream) -> None:
    spec = _spec(tmp_path, clean_upstream, engine="auto")
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert "sync the mirror with bandersnatch" in plan.out

    clean_upstream.simple_only()
    spec.with_suffix(".lock").unlink(missing_ok=True)
    resolved_path(spec).unlink()  # what the first plan resolved, which chose bandersnatch
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 0, plan.out + plan.err
    assert "engine auto chose simple because it has no JSON API" in plan.out
    assert "bandersnatch" not in plan.out.replace("which bandersnatch needs", "")


def _apply(cli, spec: Path) -> CliResult:
    return cli("apply", "-f", str(spec), "--yes", "--no-color")


def test_second_apply_fetches_nothing_and_one_more_package_fetches_only_its_files(
    cli, tmp_path: Path, upstream: Upstream
) -> None:
    spec = _spec(tmp_path, upstream)
    assert _apply(cli, spec).code == 0
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "mirror").rglob("*") if p.is_file()}

    upstream.counts.reset()
    again = _apply(cli, spec)
    assert again.code == 0 and "Nothing to change" in again.out
    assert upstream.counts.requests("/packages/") == 0
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    before = set(_locked(spec))
    data = yaml.safe_load(spec.read_text())
    data["allowlist"]["packages"].append("omega==1.2")
    spec.write_text(yaml.safe_dump(data))
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert "fetch 1 file" in plan.out and "omega-1.2-py3-none-any.whl" in plan.out
    upstream.counts.reset()
    assert _apply(cli, spec).code == 0
    assert set(_locked(spec)) - before == {"omega==1.2"}
    assert upstream.counts.files() == ["omega-1.2-py3-none-any.whl"]


def test_a_deleted_file_is_found_by_verify_and_restored(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    spec = _spec(tmp_path, clean_upstream)
    assert _apply(cli, spec).code == 0
    victim = next((tmp_path / "mirror" / "web" / "packages").rglob("beta-1.1-*.whl"))
    victim.unlink()

    verify = cli("verify", "-f", str(spec), "--no-color")
    assert verify.code == 1
    assert (
        "beta==1.1 (needed by the allowlist): beta-1.1-py3-none-any.whl is listed but the file "
        "is missing" in verify.out
    )

    assert _apply(cli, spec).code == 0
    assert victim.exists()
    assert cli("verify", "-f", str(spec)).code == 0


def test_upstream_failing_mid_fetch_keeps_what_was_fetched_and_the_next_apply_completes(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    spec = _spec(tmp_path, clean_upstream)
    assert cli("lock", "-f", str(spec)).code == 0
    total = len(_locked(spec))
    clean_upstream.fail_after(3)

    failed = _apply(cli, spec)
    assert failed.code == 1
    assert f"fetched 3 of {total} files, {total - 3} failed" in failed.out
    assert "HTTP 500 Internal Server Error" in failed.out
    assert "the next apply fetches the rest" in failed.out
    kept = _stored(tmp_path)
    assert len(kept) == 3
    assert not [p for p in (tmp_path / "mirror").rglob("*.olmirror-tmp")]

    clean_upstream.reset()
    assert _apply(cli, spec).code == 0
    everything = {f["filename"] for f in _locked(spec).values()}
    assert _stored(tmp_path) == everything
    assert sorted(clean_upstream.counts.files()) == sorted(everything - kept), "no refetch"


def test_a_tampered_file_is_refused(cli, tmp_path: Path, clean_upstream: Upstream) -> None:
    spec = _spec(tmp_path, clean_upstream)
    assert cli("lock", "-f", str(spec)).code == 0
    clean_upstream.tamper("gamma-2.0-py3-none-any.whl")
    result = _apply(cli, spec)
    assert result.code == 1
    assert "gamma-2.0-py3-none-any.whl: its sha256" in result.out
    assert "is not the lock's" in result.out and "gave up after 5 tries" in result.out
    assert "gamma-2.0-py3-none-any.whl" not in _stored(tmp_path)
    hits = clean_upstream.counts.hits("/packages/")
    tries = [h for h in hits if h.path.endswith("/gamma-2.0-py3-none-any.whl")]
    assert len(tries) == 5, "a wrong sha256 is fetched again, as often as mirror.retries allows"


def test_auto_decides_once_so_a_plan_neither_asks_nor_switches_when_the_upstream_is_down(
    cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    spec = _spec(tmp_path, clean_upstream, engine="auto")
    assert _apply(cli, spec).code == 0
    lock = json.loads(spec.with_suffix(".lock").read_text())
    assert lock["auto_engine"] == "bandersnatch"

    clean_upstream.counts.reset()
    clean_upstream.down()
    plan = cli("plan", "-f", str(spec), "--detailed-exitcode", "--no-color")
    assert plan.code == 0, plan.out + plan.err
    clean_upstream.up()
    assert clean_upstream.counts.requests() == 0
