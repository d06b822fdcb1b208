"""s3:// lambda stores: a worker whose config.json `registry` is a bucket of a real S3 API
server (moto's, on loopback), as OpenLambda's main branch reads it with gocloud.

olmirror writes each declared lambda there as `<prefix><name>.tar.gz`, uploads it only
when its sha256 differs, and with `allowlist.from_registry` reads the other lambdas from
this machine; the `ol` stand-in pulls them from the bucket (handlerPuller.go) and installs
their packages from the mirror with real pip.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import IMAGE, STANDIN_OL, TARGET, CliResult, write_spec
from s3 import BUCKET, S3Server, s3
from sshd import free_port
from upstream import Upstream

from olmirror.openlambda import blob_survey
from olmirror.openlambda.blob_store import host_name, lambda_key, store_url

sys.path.insert(0, str(STANDIN_OL.parent))

from olstandin.lambdas import LambdaError, Manager

__all__ = ["s3"]  # the fixture

Cli = Callable[..., CliResult]
PREFIX = "lambdas/"
TARGET_KEY = f"py{TARGET['python']}-{TARGET['platform']}"
F_PY = "import {module}\n\ndef f(event):\n    return {module}.__name__\n"


def registry(server: S3Server) -> str:
    return (
        f"s3://{BUCKET}?endpoint={server.endpoint}&region=us-east-1&use_path_style=true"
        f"&prefix={PREFIX}"
    )


def s3_worker(path: Path, server: S3Server) -> Path:
    """A worker made by `ol worker init`, its config.json's registry set to the bucket."""
    argv = [str(STANDIN_OL), "worker", "init", "-p", str(path), "-i", IMAGE]
    subprocess.run(argv, check=True, capture_output=True)
    config = json.loads((path / "config.json").read_text())
    config["registry"] = registry(server)
    config["registry_cache_ms"] = 0  # each call asks the bucket for the lambda's ModTime
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


def packed(files: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    """A lambda's tarball, as an author makes it: regular files, and symbolic links."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return raw.getvalue()


def put(server: S3Server, name: str, data: bytes, prefix: str = PREFIX) -> str:
    """A lambda put in the bucket by hand (no sha256 metadata)."""
    key = f"{prefix}{name}.tar.gz"
    server.client().put_object(Bucket=BUCKET, Key=key, Body=data)
    return key


def members(server: S3Server, key: str) -> dict[str, str]:
    body = server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read().decode() for m in archive}  # type: ignore[union-attr]


def pins(text: str) -> list[str]:
    return [line for line in (raw.split("#")[0].strip() for raw in text.splitlines()) if line]


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.out + result.err
    assert "Traceback" not in result.out + result.err
    return result


def spec_of(folder: Path, upstream: Upstream, worker: Path, **extra: object) -> Path:
    etl = folder / "src" / "etl"
    etl.mkdir(parents=True)
    (etl / "f.py").write_text(F_PY.format(module="theta"))
    (etl / "requirements.in").write_text("theta==1.5\n")
    lambdas = {"etl": {"source": str(etl)}}
    return write_spec(folder, upstream, [{"name": "w", "path": str(worker), "lambdas": lambdas}],
                      **extra)  # fmt: skip


def test_a_declared_lambda_is_written_to_the_bucket_pulled_by_the_worker_and_not_rewritten(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    worker = s3_worker(tmp_path / "w", s3)
    spec = spec_of(tmp_path, clean_upstream, worker)
    key = f"{PREFIX}etl.tar.gz"

    plan = ok(cli("plan", "-f", str(spec), "--no-color", "--diff"))
    assert host_name(registry(s3)) in plan.out, "the bucket is a host of the plan"
    assert f"create lambda s3://{BUCKET}/{key}" in plan.out
    assert "not yet supported" not in plan.out
    assert s3.objects(prefix=PREFIX) == set(), "a plan writes nothing"

    ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    lambdas = {k for k in s3.objects() if k.endswith(".tar.gz")}
    assert lambdas == {key}, "only the declared lambda"
    written = members(s3, key)
    assert sorted(written) == ["f.py", "requirements.in", "requirements.txt"]
    assert pins(written["requirements.txt"]) == ["theta==1.5"]
    assert not (worker / "registry" / "etl.tar.gz").exists()
    lock = json.loads(spec.with_suffix(".lock").read_text())
    assert lock["registries"]["w"]["bucket"] == store_url(registry(s3))

    called = ok(cli("verify", "-f", str(spec), "--call", "--no-color"))
    assert "Called 1 lambda, 0 failed" in called.out, called.out
    assert "w/etl (host local): ok: HTTP 200" in called.out
    assert (worker / "lambda" / "packages" / "theta==1.5" / "files").is_dir()

    s3.mark()
    again = ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    assert "Nothing to change" in again.out, again.out
    assert s3.requests()["PUT"] == 0, "an unchanged lambda is not uploaded again"

    # A changed requirement changes the tarball: a saved plan uploads it (one PUT), and the
    # worker pulls it anew.
    (tmp_path / "src" / "etl" / "requirements.in").write_text("theta==1.0\n")
    saved = tmp_path / "plan.json"
    planned = ok(cli("plan", "-f", str(spec), "--out", str(saved), "--no-color"))
    assert f"update lambda s3://{BUCKET}/{key}" in planned.out
    s3.mark()
    ok(cli("apply", str(saved), "--no-color"))
    puts = [path for method, path in s3.requested() if method == "PUT"]
    assert [p for p in puts if p.endswith(".tar.gz")] == [f"/{BUCKET}/{key}"], puts
    assert pins(members(s3, key)["requirements.txt"]) == ["theta==1.0"]
    ok(cli("verify", "-f", str(spec), "--call", "--no-color"))
    assert (worker / "lambda" / "packages" / "theta==1.0" / "files").is_dir()


def test_lambdas_found_in_the_bucket_are_mirrored_and_never_written(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    worker = s3_worker(tmp_path / "w", s3)
    found = packed({"f.py": F_PY.format(module="omega"), "requirements.in": "omega==1.1\n",
                    "requirements.txt": "omega==1.1\n"})  # fmt: skip
    put(s3, "found", found)
    put(s3, "deeper", found, prefix=f"{PREFIX}team/")  # not at the top: OpenLambda never reads it
    put(s3, "elsewhere", found, prefix="")  # outside the prefix
    spec = spec_of(tmp_path, clean_upstream, worker, allowlist={"from_registry": True})

    plan = ok(cli("plan", "-f", str(spec), "--no-color"))
    assert f"lambda found: not in the mirror yet for target {TARGET_KEY}: omega==1.1" in plan.out
    assert "deeper" not in plan.out and "lambda elsewhere" not in plan.out

    ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    lock = json.loads(spec.with_suffix(".lock").read_text())
    assert lock["targets"][TARGET_KEY]["sets"]["lambda:w/found"] == ["omega==1.1"]
    recorded = lock["registries"]["w"]["found"]
    assert list(recorded) == ["found"]
    assert recorded["found"]["file"] == f"s3://{BUCKET}/{PREFIX}found.tar.gz:requirements.in"
    assert list((tmp_path / "mirror").rglob("omega-1.1-*.whl")), "the mirror holds it"
    body = s3.client().get_object(Bucket=BUCKET, Key=f"{PREFIX}found.tar.gz")["Body"].read()
    assert body == found, "a found lambda is read, never written"

    called = ok(cli("verify", "-f", str(spec), "--call", "--no-color"))
    assert "Called 2 lambdas, 0 failed" in called.out, called.out

    # A plan that changes nothing reads the bucket once: one listing, one GET a found lambda.
    s3.mark()
    ok(cli("plan", "-f", str(spec), "--no-color", "--detailed-exitcode"))
    requested = s3.requested()
    lists = [path for method, path in requested if method == "GET" and "list-type" in path]
    gets = [path for method, path in requested if method == "GET" and "list-type" not in path]
    assert len(lists) == 1, requested
    assert gets == [f"/{BUCKET}/{PREFIX}found.tar.gz"], "a declared lambda is not read"
    assert s3.requests()["PUT"] == 0

    # A lambda put there later is found by the next plan and mirrored.
    put(s3, "late", packed({"requirements.txt": "omega==1.2\n"}))
    late = ok(cli("plan", "-f", str(spec), "--no-color"))
    assert f"lambda late: not in the mirror yet for target {TARGET_KEY}: omega==1.2" in late.out
    ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    lock = json.loads(spec.with_suffix(".lock").read_text())
    assert sorted(lock["registries"]["w"]["found"]) == ["found", "late"]


def test_a_hostile_tarball_in_the_bucket_is_refused_with_one_line(
    cli: Cli,
    tmp_path: Path,
    clean_upstream: Upstream,
    s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = s3_worker(tmp_path / "w", s3)
    put(s3, "linked", packed({"f.py": "x = 1\n"}, links={"requirements.in": "/etc/passwd"}))
    huge = "omega==1.1\n" + "#" * (2 << 20) + "\n"  # squeezes to a few kB
    put(s3, "huge", packed({"requirements.txt": huge}))
    put(s3, "garbage", b"\x1f\x8b not really gzip")
    put(s3, "empty", b"")
    monkeypatch.setattr(blob_survey, "MAX_TARBALL", 64 << 10)
    big = put(s3, "big", bytes(range(256)) * 1024)  # 256 kB, larger than the bound
    spec = spec_of(tmp_path, clean_upstream, worker, allowlist={"from_registry": True})

    s3.mark()
    plan = ok(cli("plan", "-f", str(spec), "--no-color"))
    where = f"s3://{BUCKET}/{PREFIX}"
    expected = [
        f"lambda linked: {where}linked.tar.gz:requirements.in: cannot read it: not a regular "
        "file of at most 1 MiB",
        f"lambda huge: {where}huge.tar.gz:requirements.txt: cannot read it: not a regular "
        "file of at most 1 MiB",
        f"lambda garbage: {where}garbage.tar.gz:requirements.txt: cannot read it: not a "
        "readable tar.gz",
        f"lambda big: {where}big.tar.gz:requirements.txt: cannot read it: larger than 65536 bytes",
        f"lambda empty: {where}empty.tar.gz:requirements.txt: cannot read it: not a readable "
        "tar.gz (empty file)",
    ]
    lines = plan.out.splitlines()
    for text in expected:
        assert any(text in line for line in lines), (text, plan.out)
    assert ("GET", f"/{BUCKET}/{big}") not in s3.requested(), "an oversized object is not read"
    assert "root:" not in plan.out
    applied = ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    assert "Traceback" not in applied.out
    lock = json.loads(spec.with_suffix(".lock").read_text())
    assert lock["registries"]["w"]["found"] == {}
    assert not any(name.startswith("lambda:w/") and name != "lambda:w/etl"
                   for name in lock["targets"][TARGET_KEY]["sets"])  # fmt: skip


def test_an_unreachable_bucket_is_told_and_the_lambdas_found_before_stay(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    worker = s3_worker(tmp_path / "w", s3)
    put(s3, "found", packed({"requirements.txt": "omega==1.1\n"}))
    spec = spec_of(tmp_path, clean_upstream, worker, allowlist={"from_registry": True})
    ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))

    config = json.loads((worker / "config.json").read_text())
    config["registry"] = config["registry"].replace(f"s3://{BUCKET}?", "s3://no-such-bucket?")
    (worker / "config.json").write_text(json.dumps(config))
    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code != 0 and "Traceback" not in applied.out + applied.err
    assert (
        "cannot read the registry (list s3://no-such-bucket/lambdas/: the bucket "
        f"'no-such-bucket' does not exist at {s3.endpoint}; create it" in applied.out
    ), applied.out
    recorded = json.loads(spec.with_suffix(".lock").read_text())["registries"]["w"]
    assert recorded["bucket"].startswith("s3://no-such-bucket?")
    assert list(recorded["found"]) == ["found"], "a bucket that cannot be read keeps them"


def test_the_standin_pulls_from_the_bucket_as_handler_puller_does(
    tmp_path: Path, s3: S3Server
) -> None:
    config = {
        "registry": registry(s3),
        "registry_cache_ms": 0,
        "sock_base_path": str(tmp_path / "lambda"),
        "Pkgs_dir": str(tmp_path / "lambda" / "packages"),
        "worker_dir": str(tmp_path / "worker"),
    }
    manager = Manager(config, legacy=False)
    put(s3, "hello", packed({"f.py": "def f(event):\n    return 1\n"}))
    s3.mark()
    first = manager.pull("hello")
    assert (first / "f.py").read_text() == "def f(event):\n    return 1\n"
    assert manager.pull("hello") == first, "the same ModTime: the cached folder"
    assert [m for m, _ in s3.requested()] == ["HEAD", "GET", "HEAD"]

    time.sleep(1.1)  # a new ModTime (S3 keeps it to the second)
    put(s3, "hello", packed({"f.py": "def f(event):\n    return 2\n"}))
    second = manager.pull("hello")
    assert second != first and not first.exists(), "a new ModTime: pulled anew, old removed"
    assert (second / "f.py").read_text() == "def f(event):\n    return 2\n"

    with pytest.raises(LambdaError) as missing:
        manager.pull("nope")
    assert str(missing.value) == (
        f'lambda "nope" not found in blob store (bucket="{registry(s3)}", key="nope.tar.gz")'
    )
    assert lambda_key(registry(s3), "nope") == f"{PREFIX}nope.tar.gz"


def test_two_workers_sharing_a_bucket_do_not_find_each_others_lambdas(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    first, second = s3_worker(tmp_path / "a", s3), s3_worker(tmp_path / "b", s3)
    spec = spec_of(tmp_path, clean_upstream, first, allowlist={"from_registry": True})
    data = yaml.safe_load(spec.read_text())
    data["workers"].append({**data["workers"][0], "name": "b", "path": str(second),
                            "port": free_port(), "lambdas": {}})  # fmt: skip
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    plan = ok(cli("plan", "-f", str(spec), "--no-color", "--detailed-exitcode"))
    assert "olmirror wrote this lambda" not in plan.out
    lock = json.loads(spec.with_suffix(".lock").read_text())
    assert lock["registries"]["b"]["found"] == {}, "etl is a's, declared, not found by b"
