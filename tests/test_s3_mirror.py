"""serve.backend s3: the mirror published to a bucket of a real S3 API server (moto's, on
loopback), real pip installing from the bucket's HTTP URL, and applies that change nothing
making no PUT and no DELETE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CliResult, write_spec
from s3 import BUCKET, FlakyRelay, S3Server, s3
from sshd import free_port
from upstream import Upstream

from olmirror.connection.base import Facts, PathFact
from olmirror.connection.bucket import BucketLocation
from olmirror.serve.bucket import PruneBucket

__all__ = ["s3"]  # the fixture

PREFIX = "pypi"
ALLOWLIST = ["alpha==2.0", "omega==1.1"]


def _spec(folder: Path, upstream: Upstream, server: S3Server, **mirror: object) -> Path:
    path = write_spec(folder, upstream, [], allowlist={"packages": ALLOWLIST})
    data = yaml.safe_load(path.read_text())
    data["mirror"]["serve"] = {
        "backend": "s3",
        "bucket": BUCKET,
        "prefix": PREFIX,
        "endpoint_url": server.endpoint,
        "region": "us-east-1",
        "url": f"{server.endpoint}/{BUCKET}/{PREFIX}",
    }
    data["mirror"].update(mirror)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _locked(spec: Path) -> dict[str, dict]:
    lock = json.loads(spec.with_suffix(".lock").read_text())
    (target,) = lock["targets"].values()
    return target["files"]


def _ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.out + result.err
    assert "Traceback" not in result.out + result.err
    return result


def _pip_install(folder: Path, index: str, pins: list[str], env: dict[str, str]) -> None:
    venv = folder / "venv"
    if not venv.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for pin in pins:
        done = subprocess.run(
            [venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-cache-dir",
             "--index-url", index, "--target", folder / "site" / pin, pin],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


def test_apply_publishes_the_mirror_and_pip_installs_every_pin_from_the_bucket(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    spec = _spec(tmp_path, clean_upstream, s3)
    plan = _ok(cli("plan", "-f", str(spec), "--no-color", "--diff"))
    bucket_host = f"s3://{BUCKET}/{PREFIX}?endpoint={s3.endpoint}&region=us-east-1"
    assert bucket_host in plan.out
    assert f"+ {PREFIX}/simple/alpha/" in plan.out

    _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    locked = _locked(spec)
    keys = s3.objects()
    files = {k.rpartition("/")[2] for k in keys if k.startswith(f"{PREFIX}/packages/")}
    assert files == {file["filename"] for file in locked.values()}
    pages = {f"{PREFIX}/simple/", f"{PREFIX}/simple/alpha/", f"{PREFIX}/simple/alpha/index.html"}
    assert pages <= keys
    head = s3.client().head_object(Bucket=BUCKET, Key=f"{PREFIX}/simple/alpha/")
    assert head["ContentType"].startswith("text/html")

    # Real pip, through the bucket's HTTP URL (a key ending in '/' answers simple/<p>/).
    clean_upstream.counts.reset()
    index = f"{s3.endpoint}/{BUCKET}/{PREFIX}/simple/"
    _pip_install(tmp_path, index, sorted(locked), clean_upstream.env())
    assert clean_upstream.counts.requests() == 0, "every install came from the bucket"

    verify = _ok(cli("verify", "-f", str(spec), "--no-color"))
    assert f"every locked requirement ({len(locked)})" in verify.out

    # A no-op plan lists the prefix and reads olmirror's manifest: 2 requests (a listing
    # is one per 1,000 keys), and no HEAD (the listing's ETags vouch for each sha256).
    s3.mark()
    _ok(cli("plan", "-f", str(spec), "--no-color"))
    assert s3.requests() == {"GET": 2}, s3.requests()

    # A second apply changes nothing, and makes no PUT and no DELETE: the plan's two
    # requests, and the worker-less spec's apply reads nothing more.
    s3.mark()
    again = _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    assert "Nothing to change" in again.out
    assert s3.requests() == {"GET": 2}, s3.requests()

    # Without the manifest, each object's metadata is read instead, and nothing changes.
    s3.client().delete_object(Bucket=BUCKET, Key=f"{PREFIX}/.olmirror/objects.json")
    s3.mark()
    assert "Plan: 0 to change" in _ok(cli("plan", "-f", str(spec), "--no-color")).out
    assert s3.requests()["HEAD"] == len(keys - {f"{PREFIX}/.olmirror/objects.json"})


def test_a_changed_object_is_uploaded_again_and_what_the_lock_drops_is_deleted(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    spec = _spec(tmp_path, clean_upstream, s3)
    _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key="elsewhere/keep.txt", Body=b"not the mirror's")
    client.put_object(Bucket=BUCKET, Key="hello.tar.gz", Body=b"a lambda beside it")
    omega = sorted(
        k for k in s3.objects() if k.startswith(f"{PREFIX}/packages/") and "/omega-" in k
    )
    assert omega
    client.put_object(Bucket=BUCKET, Key=omega[0], Body=b"tampered")  # no sha256 metadata

    verify = cli("verify", "-f", str(spec), "--no-color")
    assert verify.code == 1 and "omega==1.1" in verify.out, verify.out

    plan = _ok(cli("plan", "-f", str(spec), "--no-color", "--diff"))
    assert f"~ {omega[0]}" in plan.out
    s3.mark()
    _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    assert s3.requests()["PUT"] == 2, "the object, and olmirror's manifest of what it wrote"
    _ok(cli("verify", "-f", str(spec), "--no-color"))

    # omega leaves the allowlist: its pages and files leave the bucket, nothing else does.
    data = yaml.safe_load(spec.read_text())
    data["allowlist"]["packages"] = ["alpha==2.0"]
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = _ok(cli("plan", "-f", str(spec), "--no-color", "--diff"))
    assert f"- {PREFIX}/simple/omega/" in plan.out
    assert f"- {omega[0]}" in plan.out
    _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    keys = s3.objects()
    assert not [k for k in keys if "omega" in k]
    assert {"elsewhere/keep.txt", "hello.tar.gz", f"{PREFIX}/simple/alpha/"} <= keys
    s3.mark()
    assert "Nothing to change" in _ok(cli("apply", "-f", str(spec), "--yes", "--no-color")).out
    assert s3.requests()["PUT"] == 0 and s3.requests()["DELETE"] == 0


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("no-credentials", "no AWS credentials were found"),
        ("no-bucket", "does not exist at http://127.0.0.1"),
    ],
)
def test_a_bucket_that_cannot_be_written_is_a_clear_error(
    cli,
    tmp_path: Path,
    clean_upstream: Upstream,
    s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    expected: str,
) -> None:
    spec = _spec(tmp_path, clean_upstream, s3)
    if setup == "no-credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    else:
        data = yaml.safe_load(spec.read_text())
        data["mirror"]["serve"]["bucket"] = "no-such-bucket"
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 1
    assert expected in plan.out + plan.err
    assert "Traceback" not in plan.out + plan.err
    assert "olmirror-test-secret" not in plan.out + plan.err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"bucket": None}, "backend 's3' needs 'bucket'"),
        ({"prefix": "/pypi/"}, "is not a key prefix"),
        ({"prefix": "a/../b"}, "is not a key prefix"),
        ({"bucket": "Ol_Mirror"}, "is not an S3 bucket name"),
        ({"listen": "127.0.0.1:9"}, "'listen' is only used with backend 'http'"),
        ({"url": None}, "backend 's3' needs 'url'"),
        ({"engine": "bandersnatch"}, "bandersnatch's own S3 storage keeps a project's page"),
        ({"host": "far"}, "set mirror.host to local"),
    ],
)
def test_a_bad_s3_setting_names_its_field_and_the_fix(
    cli, tmp_path: Path, clean_upstream: Upstream, change: dict, expected: str
) -> None:
    server = S3Server("http://127.0.0.1:9", tmp_path / "unused.log", None)  # type: ignore[arg-type]
    spec = _spec(tmp_path, clean_upstream, server)
    data = yaml.safe_load(spec.read_text())
    for key, value in change.items():
        if key in ("engine", "host"):
            data["mirror"][key] = value
            data["hosts"]["far"] = {"address": "10.0.0.5"}
        elif value is None:
            del data["mirror"]["serve"][key]
        else:
            data["mirror"]["serve"][key] = value
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    result = cli("validate", "-f", str(spec))
    assert result.code == 1
    assert expected in result.err, result.err
    assert "mirror" in result.err and "Traceback" not in result.err


def test_a_worker_installs_its_lambdas_packages_from_the_bucket(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    lam = tmp_path / "src" / "probe"
    lam.mkdir(parents=True)
    (lam / "f.py").write_text("import omega\n\ndef f(event):\n    return omega.__name__\n")
    (lam / "requirements.in").write_text("omega==1.1\n")
    worker = tmp_path / "w"
    spec = write_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(worker), "lambdas": {"probe": {"source": str(lam)}}}],
    )
    data = yaml.safe_load(spec.read_text())
    url = f"{s3.endpoint}/{BUCKET}/{PREFIX}"
    data["mirror"]["serve"] = {
        "backend": "s3",
        "bucket": BUCKET,
        "prefix": PREFIX,
        "endpoint_url": s3.endpoint,
        "url": url,
    }
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    pip_conf = (worker / "lambda" / "etc" / "pip.conf").read_text()
    assert f"index-url = {url}/simple/" in pip_conf

    clean_upstream.counts.reset()
    called = _ok(cli("verify", "-f", str(spec), "--call", "--no-color"))
    assert "Called 1 lambda, 0 failed" in called.out, called.out
    assert clean_upstream.counts.requests() == 0, "the call went around the bucket"
    logs = list((worker / "lambda" / "packages").glob("*/standin-pip.log"))
    assert logs and all(url in log.read_text() for log in logs)


def test_a_saved_plan_publishes_what_it_showed(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    spec = _spec(tmp_path, clean_upstream, s3)
    saved = tmp_path / "plan.json"
    _ok(cli("plan", "-f", str(spec), "--out", str(saved), "--no-color"))
    hosts = [h["host"] for h in json.loads(saved.read_text())["hosts"]]
    assert any(h.startswith(f"s3://{BUCKET}/{PREFIX}?") for h in hosts), hosts
    assert "olmirror-test-secret" not in saved.read_text()
    _ok(cli("apply", str(saved), "--no-color"))
    assert f"{PREFIX}/simple/alpha/" in s3.objects()
    _ok(cli("verify", "-f", str(spec), "--no-color"))


def test_a_store_that_answers_503_to_every_third_request_still_converges_in_one_apply(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    relay = FlakyRelay(int(s3.endpoint.rpartition(":")[2]), every=3)
    try:
        spec = _spec(tmp_path, clean_upstream, s3)
        data = yaml.safe_load(spec.read_text())
        data["mirror"]["serve"]["endpoint_url"] = relay.endpoint
        data["mirror"]["serve"]["url"] = f"{relay.endpoint}/{BUCKET}/{PREFIX}"
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
        _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
        assert relay.failed >= 5, relay.failed
        _ok(cli("verify", "-f", str(spec), "--no-color"))
        assert "Nothing to change" in _ok(cli("apply", "-f", str(spec), "--yes")).out
        assert not relay.errors, relay.errors
    finally:
        relay.shutdown()


def test_an_endpoint_that_does_not_answer_is_named_with_its_cause(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    spec = _spec(tmp_path, clean_upstream, s3)
    data = yaml.safe_load(spec.read_text())
    data["mirror"]["serve"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 1
    said = plan.out + plan.err
    assert "cannot be reached after 5 tries" in said and "Connection refused" in said, said
    assert "Traceback" not in said


def test_an_upstream_that_gives_no_sizes_is_published_once(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    clean_upstream.simple_only()
    clean_upstream.html_only()  # as Artifactory and Nexus serve it: no sizes
    spec = _spec(tmp_path, clean_upstream, s3)
    _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    assert not any(f.get("size") for f in _locked(spec).values())
    s3.mark()
    assert "Nothing to change" in _ok(cli("apply", "-f", str(spec), "--yes")).out
    assert s3.requests()["PUT"] == 0, s3.requests()


def test_a_mirror_that_did_not_converge_is_not_published(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    spec = _spec(tmp_path, clean_upstream, s3)
    _ok(cli("lock", "-f", str(spec), "--no-color"))  # the lock, with the true sha256s
    omega = next(f["filename"] for f in _locked(spec).values() if "omega" in f["filename"])
    clean_upstream.tamper(omega)  # every download of it now fails its sha256 check
    s3.mark()
    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code == 1
    assert "not applied: the mirror host local did not converge" in applied.out, applied.out
    assert s3.requests()["PUT"] == 0, "nothing was published from a mirror that failed"
    assert not s3.objects()

    clean_upstream.tamper(omega, on=False)
    _ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    _ok(cli("verify", "-f", str(spec), "--no-color"))


def test_pruning_keeps_the_prefix_top_level_and_olmirrors_own_folder() -> None:
    location = BucketLocation("ol-mirror", "pypi")
    manifest = json.dumps({"pypi/root/+f/old.whl": ["0" * 64, 3, '"e"']}).encode()
    facts = Facts(
        paths={"pypi/.olmirror/objects.json": PathFact("file", content=manifest)},
        trees={
            "pypi": [
                "simple//x",  # a key with an empty segment is deleted as it is
                "simple/alpha/",
                "simple/omega/index.html",
                "packages/ab/omega-1.0.whl",
                "root/+f/old.whl",  # elsewhere, but olmirror wrote it
                "root/+f/theirs.whl",  # elsewhere, and not olmirror's
                "hello.tar.gz",  # a lambda beside the mirror
                ".olmirror/objects.json",
            ]
        },
    )
    prune = PruneBucket(location.name, ("pypi/simple/alpha/",))
    assert prune.request().trees == {"pypi"}
    assert prune._stale(facts) == [
        "pypi/packages/ab/omega-1.0.whl",
        "pypi/root/+f/old.whl",
        "pypi/simple//x",
        "pypi/simple/omega/index.html",
    ]


def test_limit_never_publishes_without_the_mirror_host(
    cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    spec = _spec(tmp_path, clean_upstream, s3)
    bucket = f"s3://{BUCKET}/{PREFIX}?endpoint={s3.endpoint}&region=us-east-1"
    refused = cli("plan", "-f", str(spec), "--limit", bucket, "--no-color")
    assert refused.code == 1
    assert "is published from the mirror folder on 'local'" in refused.err, refused.err
    _ok(cli("apply", "-f", str(spec), "--limit", f"local,{bucket}", "--yes", "--no-color"))
    assert f"{PREFIX}/simple/alpha/" in s3.objects()
