"""The mirror end to end, filesystem backend, against the local upstream.

Real uv resolves, real bandersnatch syncs, and real pip installs from the mirror exactly
as an OpenLambda worker does: one requirement at a time, `--no-deps`, `--index-url
<pip_mirror>/simple/`. The upstream's counts prove what was (and was not) fetched.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult, venv, worker_install, write_spec
from sshd import free_port
from upstream import Upstream

LINUX = "py3.11-manylinux_2_17_x86_64"
WINDOWS = {"python": "3.10", "platform": "win_amd64"}
WIN = "py3.10-win_amd64"
FOREIGN_TAGS = ("win_amd64", "macosx", "aarch64", "musllinux")

Cli = Callable[..., CliResult]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def mirror_spec(
    folder: Path,
    up: Upstream,
    packages: list[str] | None = None,
    workers: dict[str, list[str]] | None = None,
    **allowlist: Any,
) -> Path:
    """A spec with `packages` in the allowlist and one local worker per `workers` entry."""
    listed = [
        {"name": name, "path": str(folder / "workers" / name), "requirements": requirements}
        for name, requirements in (workers or {}).items()
    ]
    extra: dict[str, Any] = {}
    if packages is not None or allowlist:
        extra["allowlist"] = {"packages": packages or [], **allowlist}
    spec = write_spec(folder, up, listed, **extra)
    edit(spec, lambda d: d["mirror"].update(engine="bandersnatch"))
    return spec


def edit(spec: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(spec.read_text())
    change(data)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))


def lock_of(spec: Path) -> dict[str, Any]:
    return json.loads(spec.with_suffix(".lock").read_text())


def locked_pins(spec: Path, target: str = LINUX) -> dict[str, list[str]]:
    """Every requirement set's pins for `target`, as the lock beside the spec holds them."""
    return lock_of(spec)["targets"][target]["sets"]


def locked_files(spec: Path, target: str | None = None) -> set[str]:
    targets = lock_of(spec)["targets"]
    keys = [target] if target else list(targets)
    return {f["filename"] for key in keys for f in targets[key]["files"].values()}


def web(folder: Path) -> Path:
    return folder / "mirror" / "web"


def stored(folder: Path) -> set[str]:
    """The file names bandersnatch stored under web/packages (not its hidden temporary files)."""
    return {
        p.name
        for p in (web(folder) / "packages").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def package_mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p): p.stat().st_mtime_ns for p in (web(folder) / "packages").rglob("*") if p.is_file()
    }


def expected_pins(up: Upstream, roots: list[str], python: str = "3.11", platform: str = "linux"):
    return sorted(f"{n}=={v}" for n, v in up.catalogue.closure(roots, python, platform).items())


def apply_ok(cli: Cli, spec: Path) -> CliResult:
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 0, result.out + result.err
    assert "Traceback" not in result.err
    return result


# ---------------------------------------------------------------------------------------
# 1. a fresh apply builds a mirror that pip installs every locked requirement from
# ---------------------------------------------------------------------------------------


def test_fresh_apply_builds_a_mirror_pip_installs_every_locked_requirement(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    spec = mirror_spec(
        tmp_path, up, ["alpha[fast]==2.0"], workers={"w": ["beta==1.0", "Zeta_Utils==0.5"]}
    )
    applied = apply_ok(cli, spec)

    sets = locked_pins(spec)
    assert sets["allowlist"] == expected_pins(up, ["alpha[fast]==2.0"])
    assert sets["worker:w"] == expected_pins(up, ["beta==1.0", "Zeta_Utils==0.5"])
    every = sorted({pin for pins in sets.values() for pin in pins})
    assert f"Verified: the mirror serves every locked requirement ({len(every)})." in applied.out
    assert stored(tmp_path) == locked_files(spec)

    config = json.loads((tmp_path / "workers" / "w" / "config.json").read_text())
    pip_mirror = config["pip_mirror"]
    assert pip_mirror == yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]
    python = venv(tmp_path / "venv")
    files = lock_of(spec)["targets"][LINUX]["files"]
    up.counts.reset()
    for pin in every:
        installed = worker_install(up, python, pip_mirror, pin, tmp_path / "report.json")
        assert installed["metadata"]["version"] == pin.partition("==")[2]
        url = installed["download_info"]["url"]
        assert url.startswith(f"{pip_mirror}/packages/"), url
        assert url.rsplit("/", 1)[1] == files[pin]["filename"]
    assert up.counts.requests() == 0, up.counts.by_path()

    tag = subprocess.run(
        [str(python), "-c", "import delta; print(delta.TAG)"], capture_output=True, text=True
    )
    assert tag.stdout.strip() == "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"


# ---------------------------------------------------------------------------------------
# 2. only the files the targets need are stored
# ---------------------------------------------------------------------------------------


def test_only_files_the_targets_install_are_stored(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["alpha==2.0", "omega==1.1"])
    apply_ok(cli, spec)

    files = stored(tmp_path)
    assert files == locked_files(spec)
    assert sorted(up.counts.files()) == sorted(files), "each locked file fetched once"
    assert "delta-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl" in files
    for tag in FOREIGN_TAGS:
        assert not [f for f in files if tag in f], tag
    assert not [f for f in files if f.endswith(".tar.gz")], "wheels exist, so no sdist"
    pins = set(locked_pins(spec)["allowlist"])
    releases = {"-".join(f.split("-")[:2]) for f in files}
    assert releases == {p.replace("==", "-").replace("-utils", "_utils") for p in pins}
    assert "compat310==1.1" not in pins and "winonly==1.0" not in pins
    pages = {p.name for p in (web(tmp_path) / "simple").iterdir() if p.is_dir()}
    assert pages == {p.partition("==")[0] for p in pins}

    edit(spec, lambda d: d["mirror"]["targets"].append(WINDOWS))
    up.counts.reset()
    apply_ok(cli, spec)
    win = locked_pins(spec, WIN)["allowlist"]
    assert win == expected_pins(up, ["alpha==2.0", "omega==1.1"], "3.10", "win32")
    assert {"compat310==1.1", "winonly==1.0"} <= set(win)
    assert locked_pins(spec, LINUX)["allowlist"] == sorted(pins), "linux pins unchanged"
    added = {
        "delta-1.0-cp310-abi3-win_amd64.whl",
        "compat310-1.1-py3-none-any.whl",
        "winonly-1.0-py3-none-any.whl",
    }
    assert stored(tmp_path) == files | added == locked_files(spec)
    assert sorted(up.counts.files()) == sorted(added)
    assert locked_files(spec, WIN) >= added
    assert not [f for f in stored(tmp_path) if "macosx" in f or "aarch64" in f]


def test_yanked_and_prerelease_pins_and_per_target_python(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    """Exact pins of a yanked and a pre-release are mirrored; each target gets its own wheel
    and its own Python's newest release (modernlib 2.0 needs 3.12)."""
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["alpha==2.1", "omega==2.0b1"])
    mac = {"python": "3.12", "platform": "macosx_11_0_arm64"}
    edit(spec, lambda d: d["mirror"]["targets"].append(mac))
    apply_ok(cli, spec)
    assert "modernlib==1.0" in locked_pins(spec)["allowlist"]
    assert "modernlib==2.0" in locked_pins(spec, "py3.12-macosx_11_0_arm64")["allowlist"]
    assert stored(tmp_path) == locked_files(spec)
    assert {
        "alpha-2.1-py3-none-any.whl",
        "omega-2.0b1-py3-none-any.whl",
        "delta-1.0-cp310-abi3-macosx_11_0_arm64.whl",
        "modernlib-2.0-py3-none-any.whl",
    } <= stored(tmp_path)
    assert not [f for f in stored(tmp_path) if "win_amd64" in f or "musllinux" in f]

    python = venv(tmp_path / "venv")
    for pin in ("alpha==2.1", "omega==2.0b1"):
        installed = worker_install(up, python, str(web(tmp_path)), pin, tmp_path / "report.json")
        assert installed["metadata"]["version"] == pin.partition("==")[2]


# ---------------------------------------------------------------------------------------
# 3. a second apply changes nothing; plan works with the upstream down
# ---------------------------------------------------------------------------------------


def test_second_apply_changes_nothing_and_plan_needs_no_upstream(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["alpha[fast]==2.0"], workers={"w": ["omega==1.0"]})
    apply_ok(cli, spec)
    lock_text = spec.with_suffix(".lock").read_text()
    before = package_mtimes(tmp_path)
    conf = tmp_path / "mirror" / "bandersnatch.conf"
    conf_mtime = conf.stat().st_mtime_ns

    up.counts.reset()
    plan = cli("plan", "-f", str(spec), "--detailed-exitcode", "--no-color")
    assert plan.code == 0, plan.out + plan.err
    assert up.counts.requests() == 0, "an unchanged lock is not resolved again"
    again = apply_ok(cli, spec)
    assert "Nothing to change" in again.out
    assert "Verified: the mirror serves every locked requirement" in again.out
    assert up.counts.requests("/packages/") == 0
    assert up.counts.requests() == 0
    assert package_mtimes(tmp_path) == before
    assert conf.stat().st_mtime_ns == conf_mtime
    assert spec.with_suffix(".lock").read_text() == lock_text

    up.down()
    plan = cli("plan", "-f", str(spec), "--detailed-exitcode", "--no-color")
    assert plan.code == 0, plan.out + plan.err
    assert "sync the mirror" not in plan.out
    assert cli("verify", "-f", str(spec)).code == 0
    assert apply_ok(cli, spec)
    assert package_mtimes(tmp_path) == before


# ---------------------------------------------------------------------------------------
# 4. one more package: exactly that addition is planned and fetched
# ---------------------------------------------------------------------------------------


def test_adding_a_package_plans_and_fetches_only_that_package(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["alpha==2.0"])
    apply_ok(cli, spec)
    old_lock = lock_of(spec)
    before = package_mtimes(tmp_path)

    edit(spec, lambda d: d["allowlist"]["packages"].append("omega==1.0"))
    up.counts.reset()
    plan = cli("plan", "-f", str(spec), "--json")
    assert plan.code == 0, plan.err
    (host,) = json.loads(plan.out)["hosts"]
    changed = {c["id"]: c for c in host["changes"] if c["action"] != "none"}
    lock_change = changed.pop(f"file {spec.with_suffix('.lock')}")
    conf_change = changed.pop(f"file {tmp_path / 'mirror' / 'bandersnatch.conf'}")
    sync = changed.pop(f"bandersnatch sync {tmp_path / 'mirror' / 'bandersnatch.conf'}")
    assert changed == {}, "nothing else changes"

    removed = [ln for ln in lock_change["diff"] if ln.startswith("-") and not ln.startswith("---")]
    # the lock's digests change, of all its inputs and of the one set that changed
    assert len(removed) == 2 and '"inputs":' in removed[0], removed
    assert removed[1].split(":")[0].strip() == '-        "allowlist"', removed
    added = [ln for ln in lock_change["diff"] if ln.startswith("+") and not ln.startswith("+++")]
    assert '"omega==1.0",' in [ln[1:].strip() for ln in added]
    assert any("omega-1.0-py3-none-any.whl" in ln for ln in added)
    conf_diff = [
        ln for ln in conf_change["diff"] if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    ]
    assert conf_diff == ["+    omega==1.0", "+    ^omega\\-1\\.0\\-py3\\-none\\-any\\.whl$"]
    omega = up.catalogue.file("omega-1.0-py3-none-any.whl")
    assert sync["summary"] == "sync the mirror with bandersnatch (2 missing)"
    assert sync["diff"] == [f"+ web{omega.url_path}", "+ web/simple/omega/index.html"]

    up.counts.reset()
    apply_ok(cli, spec)
    assert up.counts.files() == ["omega-1.0-py3-none-any.whl"]
    new_lock = lock_of(spec)
    new_lock["targets"][LINUX]["sets"]["allowlist"].remove("omega==1.0")
    del new_lock["targets"][LINUX]["files"]["omega==1.0"]
    assert new_lock["targets"][LINUX]["via"]["allowlist"].pop("omega") == ["(requested)"]
    assert new_lock["targets"][LINUX].pop("inputs") != old_lock["targets"][LINUX].pop("inputs")
    assert new_lock["targets"] == old_lock["targets"]
    after = package_mtimes(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    assert stored(tmp_path) == locked_files(spec)


@pytest.mark.parametrize("engine", ["bandersnatch", "simple"])
def test_a_dropped_package_leaves_the_mirror(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path, engine: str
) -> None:
    """The mirror serves the lock and nothing more: pip can no longer find what was dropped."""
    spec = mirror_spec(tmp_path, clean_upstream, ["alpha==2.0", "omega==1.0"])
    edit(spec, lambda d: d["mirror"].update(engine=engine))
    apply_ok(cli, spec)
    assert (web(tmp_path) / "simple" / "omega" / "index.html").exists()
    kept = {name: path for name, path in package_mtimes(tmp_path).items() if "omega" not in name}

    edit(spec, lambda d: d["allowlist"].update(packages=["alpha==2.0"]))
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert "remove " in plan.out and "the lock no longer holds from the mirror" in plan.out
    assert "- simple/omega" in plan.out and "omega-1.0-py3-none-any.whl" in plan.out
    apply_ok(cli, spec)
    assert not (web(tmp_path) / "simple" / "omega").exists()
    assert not (web(tmp_path) / "json" / "omega").exists()
    assert stored(tmp_path) == locked_files(spec), "only the locked files are left"
    assert {n: p for n, p in package_mtimes(tmp_path).items() if n in kept} == kept
    assert cli("verify", "-f", str(spec)).code == 0
    assert "Nothing to change" in apply_ok(cli, spec).out

    # Asked for again, it comes back.
    edit(spec, lambda d: d["allowlist"].update(packages=["alpha==2.0", "omega==1.0"]))
    apply_ok(cli, spec)
    assert (web(tmp_path) / "simple" / "omega" / "index.html").exists()
    assert stored(tmp_path) == locked_files(spec)
    assert "Nothing to change" in apply_ok(cli, spec).out


def test_removals_wait_until_every_host_has_converged(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    """A worker that did not converge may still pin what the lock dropped: it stays."""
    spec = mirror_spec(tmp_path, clean_upstream, ["omega==1.0"], {"near": ["theta==1.0"]})
    edit(spec, lambda d: d["mirror"].update(engine="simple"))
    apply_ok(cli, spec)
    page = web(tmp_path) / "simple" / "omega" / "index.html"
    edit(spec, lambda d: d["allowlist"].update(packages=[]))
    # A port nothing listens on: the host is unreachable.
    gone = {"address": "127.0.0.1", "port": free_port(), "known_hosts": str(tmp_path / "known")}
    far = {"name": "far", "host": "gone", "path": "/opt/ol/far", "requirements": []}
    edit(spec, lambda d: (d["hosts"].update(gone=gone), d["workers"].append(far)))

    limited = cli("apply", "-f", str(spec), "--yes", "--no-color", "--limit", "local")
    assert limited.code == 0, limited.out + limited.err
    assert "not yet: remove " in limited.err and "--limit left hosts out" in limited.err
    assert page.exists()

    failed = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert failed.code == 1
    assert "gone did not converge; a later apply does it" in failed.err
    assert page.exists()

    edit(spec, lambda d: (d["hosts"].pop("gone"), d["workers"].pop()))
    done = apply_ok(cli, spec)
    assert "remove " in done.out and not page.exists()
    assert "Nothing to change" in apply_ok(cli, spec).out


# ---------------------------------------------------------------------------------------
# 5. a deleted file is found by verify and restored by apply
# ---------------------------------------------------------------------------------------


def test_deleted_file_is_found_by_verify_and_restored(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["alpha==2.0"])
    edit(spec, lambda d: d["mirror"]["targets"].append(WINDOWS))
    apply_ok(cli, spec)
    assert cli("verify", "-f", str(spec)).code == 0
    gone = "delta-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    (path,) = (web(tmp_path) / "packages").rglob(gone)
    path.unlink()

    result = cli("verify", "-f", str(spec), "--no-color")
    assert result.code == 1
    assert "Verify found 1 gap in the mirror:" in result.out
    (line,) = [ln.strip() for ln in result.out.splitlines() if gone in ln]
    assert line.startswith(f"{LINUX}: delta==1.0 (needed by the allowlist): {gone} ")
    assert "delta-1.0-cp310-abi3-win_amd64.whl" in line, "what the mirror has instead"
    assert "Traceback" not in result.err

    plan = cli("plan", "-f", str(spec), "--detailed-exitcode", "--no-color")
    assert plan.code == 2
    assert "sync the mirror with bandersnatch (1 missing)" in plan.out
    up.counts.reset()
    apply_ok(cli, spec)
    assert up.counts.files() == [gone]
    assert path.is_file()
    assert cli("verify", "-f", str(spec)).code == 0
    assert cli("plan", "-f", str(spec), "--detailed-exitcode").code == 0


# ---------------------------------------------------------------------------------------
# 6. the upstream fails: clear error, nothing lost, the next apply completes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["down", "500"])
def test_upstream_failure_mid_sync_keeps_the_mirror_and_the_next_apply_completes(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path, failure: str
) -> None:
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["alpha==2.0"])
    apply_ok(cli, spec)
    kept = package_mtimes(tmp_path)
    edit(spec, lambda d: d["allowlist"]["packages"].extend(["omega==1.0", "winonly==1.0"]))
    assert cli("lock", "-f", str(spec)).code == 0
    new = {"omega-1.0-py3-none-any.whl", "winonly-1.0-py3-none-any.whl"}
    assert locked_files(spec) - stored(tmp_path) == new

    if failure == "down":
        up.down()
    else:
        up.fail_after(1)
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "local  failed" in result.out
    reason = (
        "Cannot connect to host 127.0.0.1"
        if failure == "down"
        else "500, message='Internal Server Error'"
    )
    # nothing can be had: bandersnatch ran as often as mirror.retries allows
    assert "bandersnatch ran 5 times (the last run exited" in result.out
    assert reason in result.out
    assert "the next apply resumes" in result.out
    assert package_mtimes(tmp_path).items() >= kept.items(), "files already present are kept"

    missing = new - stored(tmp_path)
    assert missing, "a file failed"
    verify = cli("verify", "-f", str(spec), "--no-color")
    assert verify.code == 1
    for filename in missing:
        assert any(filename in ln and LINUX in ln for ln in verify.out.splitlines()), verify.out

    up.reset()
    apply_ok(cli, spec)
    assert sorted(up.counts.files()) == sorted(missing), "only the missing files are fetched"
    assert stored(tmp_path) == locked_files(spec)
    assert cli("verify", "-f", str(spec)).code == 0
    assert cli("plan", "-f", str(spec), "--detailed-exitcode").code == 0


def test_upstream_down_on_a_fresh_mirror_fails_clearly_then_completes(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["alpha[fast]==2.0"])
    assert cli("lock", "-f", str(spec)).code == 0
    up.fail_after(3)
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 1
    assert "500, message='Internal Server Error'" in result.out
    have = stored(tmp_path)
    assert len(have) <= 3
    verify = cli("verify", "-f", str(spec), "--no-color")
    assert verify.code == 1
    gaps = [ln for ln in verify.out.splitlines() if ln.startswith(f"  {LINUX}: ")]
    assert len(gaps) == len(locked_files(spec) - have), verify.out

    up.reset()
    apply_ok(cli, spec)
    assert sorted(up.counts.files()) == sorted(locked_files(spec) - have)
    assert cli("verify", "-f", str(spec)).code == 0


@pytest.mark.parametrize(
    ("mode", "reason", "hint"),
    [
        ("no_serial", "Stale serial for package", "sends no X-PyPI-Last-Serial header"),
        ("simple_only", "omega no longer exists on PyPI", "has no JSON API"),
        ("html_only", "406, message='Not Acceptable'", "PEP 691 JSON simple API"),
        ("tamper", "Inconsistent file", ""),
    ],
)
def test_an_upstream_bandersnatch_cannot_use_is_a_clear_error(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path, mode: str, reason: str, hint: str
) -> None:
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["omega==1.0"])
    assert cli("lock", "-f", str(spec)).code == 0
    if mode == "no_serial":
        up.serial_header = False
    elif mode == "simple_only":
        up.simple_only()
    elif mode == "html_only":
        up.html_only()
    else:
        up.tamper("omega-1.0-py3-none-any.whl")
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 1
    assert "Traceback" not in result.err
    (line,) = [ln for ln in result.out.splitlines() if "bandersnatch said:" in ln]
    assert "1 of 1 locked files (omega-1.0-py3-none-any.whl)" in line
    assert reason in line and hint in line
    assert stored(tmp_path) == set()

    up.reset()
    apply_ok(cli, spec)
    assert cli("verify", "-f", str(spec)).code == 0


def test_upstream_down_while_the_lock_must_be_resolved(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    spec = mirror_spec(tmp_path, up, ["omega==1.0"])
    up.down()
    result = cli("plan", "-f", str(spec), "--no-color")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert up.url in result.err
    assert "fix the requirement" not in result.err
    assert not spec.with_suffix(".lock").exists()


# ---------------------------------------------------------------------------------------
# 7. unresolvable input, and workers that disagree
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requirements", "named"),
    [
        (["nosuchpkg==1.0"], "nosuchpkg"),
        (["omega==9.9"], "omega==9.9"),
        (["omega==1.0", "omega==1.1"], "omega==1.0"),
        (["alpha==2.0", "beta==1.0"], "beta==1.0"),
        (["modernlib==2.0"], "modernlib==2.0"),  # needs Python 3.12; the target is 3.11
    ],
)
def test_unresolvable_worker_requirements_name_the_requirement_and_the_worker(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path, requirements: list[str], named: str
) -> None:
    spec = mirror_spec(
        tmp_path, clean_upstream, workers={"good": ["omega==1.0"], "bad": requirements}
    )
    result = cli("plan", "-f", str(spec), "--no-color")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert named in result.err
    assert "worker 'bad'" in result.err and "workers[1].requirements" in result.err
    assert "'good'" not in result.err
    assert LINUX in result.err
    assert not spec.with_suffix(".lock").exists()
    assert not (tmp_path / "mirror").exists()


def test_unresolvable_allowlist_file_names_the_file_and_line(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    requirements = tmp_path / "requirements" / "ml.in"
    requirements.parent.mkdir()
    requirements.write_text("# the ML stack\nomega==1.0\nalpha==3.0\n")
    spec = mirror_spec(
        tmp_path, clean_upstream, ["theta==1.0"], requirements=["requirements/ml.in"]
    )
    result = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "alpha==3.0" in result.err
    assert f"{requirements}:3" in result.err
    assert not (tmp_path / "mirror").exists()


def test_workers_pinning_different_versions_each_get_their_own_closure(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    spec = mirror_spec(
        tmp_path, up, workers={"old": ["omega==1.0", "beta==1.0"], "new": ["omega==1.1", "beta"]}
    )
    apply_ok(cli, spec)
    sets = locked_pins(spec)
    assert sets["worker:old"] == expected_pins(up, ["omega==1.0", "beta==1.0"])
    assert sets["worker:new"] == expected_pins(up, ["omega==1.1", "beta"])
    assert "beta==1.1" in sets["worker:new"] and "beta==1.0" in sets["worker:old"]
    assert {"omega-1.0-py3-none-any.whl", "omega-1.1-py3-none-any.whl"} <= stored(tmp_path)
    assert stored(tmp_path) == locked_files(spec)

    python = venv(tmp_path / "venv")
    up.counts.reset()
    for pin in ("omega==1.0", "omega==1.1", "beta==1.0", "beta==1.1"):
        installed = worker_install(up, python, str(web(tmp_path)), pin, tmp_path / "report.json")
        assert installed["metadata"]["version"] == pin.partition("==")[2]
    assert up.counts.requests() == 0


# ---------------------------------------------------------------------------------------
# 8. blocked packages
# ---------------------------------------------------------------------------------------


def test_blocked_package_pulled_in_transitively_names_who_needs_it(
    cli: Cli, clean_upstream: Upstream, tmp_path: Path
) -> None:
    spec = mirror_spec(
        tmp_path, clean_upstream, ["omega==1.0"], workers={"w": ["alpha==2.0"]}, block=["Delta"]
    )
    result = cli("plan", "-f", str(spec), "--no-color")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "delta==1.0 is blocked by allowlist.block" in result.err
    assert "worker 'w'" in result.err
    assert "alpha==2.0 -> beta==1.1 -> gamma==2.0 -> delta==1.0" in result.err
    assert not (tmp_path / "mirror").exists()
