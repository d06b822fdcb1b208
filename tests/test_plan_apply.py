"""Plan and apply on the local host: changes shown, applied, then nothing left to change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import STANDIN_OL, write_spec

from olmirror.connection import LocalConnection

REPO = Path(__file__).resolve().parent.parent


def _mtimes(*folders: Path) -> dict[str, int]:
    """Every file's mtime, but the running worker's log (worker.out)."""
    return {
        str(p): p.stat().st_mtime_ns
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file() and p.name != "worker.out"
    }


def _standin_config(worker: Path) -> dict:
    template = (STANDIN_OL.parent / "config.json").read_text()
    return json.loads(template.replace("/opt/ol/default-ol", str(worker)))


def _url(spec: Path) -> str:
    return yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]


def _plan_json(cli, spec: Path) -> dict:
    """`olmirror plan --json`: the plan as data, the source of every count a test checks, so
    that no test breaks when olmirror comes to manage one more resource."""
    result = cli("plan", "-f", str(spec), "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _pending(host: dict) -> list[dict]:
    """A JSON plan host's changes that do something (action other than none)."""
    return [c for c in host["changes"] if c["action"] != "none"]


def test_plan_apply_then_nothing_to_change(cli, local_spec: Path, tmp_path: Path) -> None:
    url = _url(local_spec)
    (planned,) = _plan_json(cli, local_spec)["hosts"]
    pending = _pending(planned)
    total, to_change = len(planned["changes"]), len(pending)
    assert 0 < to_change < total, "a first apply makes most things; some are there already"
    plan = cli("plan", "-f", str(local_spec), "--detailed-exitcode", "--no-color")
    assert plan.code == 2, plan.err
    assert f"local: {to_change} to change, {total - to_change} unchanged" in plan.out
    assert f"run `{STANDIN_OL} worker init -p {tmp_path / 'alpha'} -i python:3.11`" in plan.out
    assert "+omega==1.1" in plan.out
    assert f'+ pip_mirror = "{url}"' in plan.out
    assert f"+index-url = {url}/simple/" in plan.out
    assert not (tmp_path / "alpha").exists(), "plan must not touch the host"

    applied = cli("apply", "-f", str(local_spec), "--yes", "--no-color")
    assert applied.code == 0, applied.err
    assert f"local  changed     changed={to_change} unchanged={total - to_change}" in applied.out
    assert "local: bandersnatch synced 2 projects: fetched 2 files (" in applied.err
    for name, requirement in (("alpha", "omega==1.1"), ("beta", "theta==1.0")):
        worker = tmp_path / name
        lines = (worker / "registry" / "requirements.in").read_text().splitlines()
        assert lines[1:] == [requirement]
        config = json.loads((worker / "config.json").read_text())
        port = yaml.safe_load(local_spec.read_text())["workers"][name == "beta"]["port"]
        expected = _standin_config(worker) | {
            "pip_mirror": url,
            "worker_port": str(port),
            "mirror_host": "127.0.0.1",
        }
        assert config == expected
        assert list(config) == list(expected), "key order is kept"
        pip_conf = (worker / "lambda" / "etc" / "pip.conf").read_text()
        assert pip_conf == f"[global]\nindex-url = {url}/simple/\ntrusted-host = 127.0.0.1\n"

    before = _mtimes(tmp_path / "alpha", tmp_path / "beta")
    again = cli("apply", "-f", str(local_spec), "--yes", "--json")
    assert again.code == 0, again.err
    result = json.loads(again.out)
    assert result["results"] == [], "nothing was applied"
    assert result["plan"]["summary"] == {"changes": 0, "hosts": 1, "failed_hosts": []}
    (replanned,) = result["plan"]["hosts"]
    assert _pending(replanned) == []
    assert [c["id"] for c in replanned["changes"]] == [c["id"] for c in planned["changes"]]
    assert result["verify_gaps"] == []
    assert _mtimes(tmp_path / "alpha", tmp_path / "beta") == before

    third = cli("apply", "-f", str(local_spec), "--yes", "--no-color")
    assert third.code == 0, third.err
    assert f"Plan: 0 to change on 1 host, {total} unchanged." in third.out
    assert "Nothing to change: every host matches the spec." in third.out
    assert _mtimes(tmp_path / "alpha", tmp_path / "beta") == before
    assert cli("plan", "-f", str(local_spec), "--detailed-exitcode").code == 0


def test_changes_show_a_unified_diff_and_key_diff(cli, local_spec: Path, tmp_path: Path) -> None:
    assert cli("apply", "-f", str(local_spec), "--yes").code == 0
    spec = yaml.safe_load(local_spec.read_text())
    spec["workers"][0]["requirements"] = ["omega==1.2", "theta==1.0"]
    local_spec.write_text(yaml.safe_dump(spec))
    config = tmp_path / "alpha" / "config.json"
    config.write_text(config.read_text().replace('"pip_mirror": "', '"pip_mirror": "elsewhere'))
    (tmp_path / "beta" / "registry" / "requirements.in").chmod(0o600)

    (host,) = _plan_json(cli, local_spec)["hosts"]
    plan = cli("plan", "-f", str(local_spec), "--no-color", "--detailed-exitcode")
    assert plan.code == 2
    assert "-omega==1.1" in plan.out and "+omega==1.2" in plan.out and "+theta==1.0" in plan.out
    url = _url(local_spec)
    assert f'~ pip_mirror: "elsewhere{url}" -> "{url}"' in plan.out
    assert "mode 0600 -> 0644" in plan.out
    # the lock, bandersnatch.conf, the sync, omega 1.1's file removed; alpha's two requirement
    # files and config.json, beta's requirements.in; and each running worker restarted once
    mirror, alpha, beta = tmp_path / "mirror", tmp_path / "alpha", tmp_path / "beta"
    assert sorted(c["id"] for c in _pending(host)) == sorted([
        f"file {local_spec.with_suffix('.lock')}",
        f"file {mirror / 'bandersnatch.conf'}",
        f"bandersnatch sync {mirror / 'bandersnatch.conf'}",
        f"mirror prune {mirror / 'web'}",
        f"file {alpha / 'registry' / 'requirements.in'}",
        f"file {alpha / 'registry' / 'requirements.txt'}",
        f"json {alpha / 'config.json'}",
        f"worker {alpha}",
        f"file {beta / 'registry' / 'requirements.in'}",
        f"worker {beta}",
    ])  # fmt: skip
    unchanged = len(host["changes"]) - len(_pending(host))
    assert f"local: {len(_pending(host))} to change, {unchanged} unchanged" in plan.out
    assert "remove 1 path the lock no longer holds from the mirror" in plan.out
    assert "omega-1.1-py3-none-any.whl" in plan.out
    assert plan.out.count("restart the worker") == 2
    assert "sync the mirror with bandersnatch (1 missing)" in plan.out
    assert "omega-1.2-py3-none-any.whl" in plan.out

    applied = cli("apply", "-f", str(local_spec), "--yes")
    assert applied.code == 0, applied.out + applied.err
    assert json.loads(config.read_text())["pip_mirror"] == url
    assert (tmp_path / "beta" / "registry" / "requirements.in").stat().st_mode & 0o777 == 0o644
    assert cli("plan", "-f", str(local_spec), "--detailed-exitcode").code == 0


def test_json_plan_is_the_same_plan(cli, local_spec: Path) -> None:
    result = cli("plan", "-f", str(local_spec), "--json")
    assert result.code == 0
    plan = json.loads(result.out)
    (host,) = plan["hosts"]
    assert plan["summary"] == {"changes": len(_pending(host)), "hosts": 1, "failed_hosts": []}
    actions = [(c["action"], c["resource"]["kind"]) for c in host["changes"]]
    lock_and_mirror = [
        ("create", "file"),  # the lock
        ("create", "directory"),
        ("create", "directory"),  # olmirror's state in the mirror
        ("create", "file"),  # the upstream's CA
        ("none", "python_tool"),  # bandersnatch is installed
        ("create", "file"),  # bandersnatch.conf
        ("run", "bandersnatch_sync"),
        ("none", "prune_mirror"),  # nothing beyond the lock
        ("create", "directory"),  # olmirror's nginx
        ("create", "directory"),  # its temp folder
        ("create", "file"),  # nginx.conf
        ("run", "nginx"),
        ("run", "http_check"),
    ]
    worker = [
        ("run", "mirror_reachable"),  # not yet: the mirror is built in this apply
        ("none", "directory"),  # the worker folder's parent, which `ol worker init` needs
        ("run", "command"),
        ("create", "directory"),
        ("create", "file"),  # requirements.in
        ("create", "file"),  # requirements.txt
        ("create", "sandbox_pip_conf"),
        ("update", "json_keys"),
        ("run", "ol_worker_state"),
    ]
    assert actions == lock_and_mirror + worker * 2
    requirements_in = len(lock_and_mirror) + worker.index(("create", "file"))
    assert host["changes"][requirements_in]["diff"][-1] == "+omega==1.1"


def test_saved_plan_is_applied_exactly(cli, local_spec: Path, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    assert cli("plan", "-f", str(local_spec), "--out", str(saved)).code == 0
    original = local_spec.read_text()
    spec = yaml.safe_load(original)
    spec["workers"][0]["requirements"] = ["something-else==1.0"]
    local_spec.write_text(yaml.safe_dump(spec))
    refused = cli("apply", str(saved), "--no-color")
    assert refused.code == 1, "a saved plan is bound to the spec it was made from"
    assert "changed since the plan was made" in refused.err
    assert not (tmp_path / "alpha").exists()

    local_spec.write_text(original)
    applied = cli("apply", str(saved), "--no-color")
    assert applied.code == 0, applied.err
    requirements = (tmp_path / "alpha" / "registry" / "requirements.in").read_text()
    assert "omega==1.1" in requirements
    again = cli("apply", str(saved))
    assert again.code == 1
    assert "local  failed" in again.out
    assert "changed since the plan was made" in again.out
    assert "run `olmirror plan` again" in again.out


def test_stale_saved_plan_is_refused_and_nothing_applied(cli, local_spec, tmp_path) -> None:
    assert cli("apply", "-f", str(local_spec), "--yes").code == 0
    spec = yaml.safe_load(local_spec.read_text())
    spec["workers"][1]["requirements"] = ["theta==1.5"]
    local_spec.write_text(yaml.safe_dump(spec))
    saved = tmp_path / "plan.json"
    assert cli("plan", "-f", str(local_spec), "--out", str(saved)).code == 0
    config = tmp_path / "alpha" / "config.json"
    config.write_text(config.read_text().replace('"log_output": true', '"log_output": false'))

    result = cli("apply", str(saved))
    assert result.code == 1
    assert f"json {config}" in result.out and "changed since the plan was made" in result.out
    assert "theta==1.0" in (tmp_path / "beta" / "registry" / "requirements.in").read_text()


def test_apply_without_a_terminal_needs_yes(local_spec: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "olmirror", "apply", "-f", str(local_spec)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 1
    assert "standard input is not a terminal" in done.stderr and "--yes" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "alpha").exists()


def test_a_second_apply_is_locked_out(cli, local_spec: Path, tmp_path: Path) -> None:
    holder = LocalConnection()
    holder.hold_lock(str(tmp_path / "state"))
    try:
        result = cli("apply", "-f", str(local_spec), "--yes")
    finally:
        holder.close()
    assert result.code == 1
    assert "another olmirror apply is running" in result.out
    assert f"pid {os.getpid()}" in result.out
    assert not (tmp_path / "alpha").exists()
    assert cli("apply", "-f", str(local_spec), "--yes").code == 0


def test_missing_ol_names_the_host_and_the_fix(cli, tmp_path: Path, clean_upstream) -> None:
    spec = write_spec(tmp_path, clean_upstream, [{"name": "w", "path": str(tmp_path / "w")}])
    data = yaml.safe_load(spec.read_text())
    data["hosts"]["local"]["ol"] = str(tmp_path / "no-such-ol")
    spec.write_text(yaml.safe_dump(data))
    result = cli("plan", "-f", str(spec), "--no-color")
    assert result.code == 1
    assert "local: error:" in result.out
    assert f"program '{tmp_path / 'no-such-ol'}' not found" in result.out
    assert "install OpenLambda on host 'local', or set hosts.local.ol" in result.out


def test_http_mirror_sets_mirror_host(cli, tmp_path: Path, clean_upstream) -> None:
    spec = write_spec(tmp_path, clean_upstream, [{"name": "w", "path": str(tmp_path / "w")}])
    data = yaml.safe_load(spec.read_text())
    data["mirror"]["serve"] = {
        "backend": "http",
        "listen": "127.0.0.1:8080",
        "url": "http://mirror.internal:8080/",
    }
    spec.write_text(yaml.safe_dump(data))
    subprocess.run([STANDIN_OL, "worker", "init", "-p", tmp_path / "w"], check=True)
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert '~ pip_mirror: "" -> "http://mirror.internal:8080"' in plan.out, plan.out
    assert '+ mirror_host = "mirror.internal"' in plan.out


def test_broken_config_json_is_reported_with_its_position(cli, local_spec, tmp_path) -> None:
    assert cli("apply", "-f", str(local_spec), "--yes").code == 0
    (tmp_path / "beta" / "config.json").write_text('{\n  "pip_mirror": ,\n}\n')
    result = cli("plan", "-f", str(local_spec), "--no-color")
    assert result.code == 1
    assert f"{tmp_path / 'beta' / 'config.json'}:2:17: not valid JSON" in result.out
    assert "1 host failed" in result.out


def test_limit_to_unknown_host_is_an_error(cli, local_spec: Path) -> None:
    result = cli("plan", "-f", str(local_spec), "--limit", "nope")
    assert result.code == 1
    assert "'nope' not among the hosts of this plan (local)" in result.err
