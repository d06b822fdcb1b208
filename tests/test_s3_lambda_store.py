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
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import IMAGE, STANDIN_OL, TARGET, CliResult, write_spec
from s3 import BUCKET, S3Server, s3
from sshd import free_port
from upstream import Upstream

from olmirror.desired import desired_state
from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock, LockedFile, TargetLock
from olmirror.openlambda.blob_store import host_name, lambda_key, location, refusal, store_url
from olmirror.openlambda.registry import FoundLambda, Registry, declared_alongside, registry_urls
from olmirror.remote import probe
from olmirror.serve.bucket import location_of
from olmirror.spec import LoadedSpec, Worker, load_spec

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
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
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


def listings_and_gets(server: S3Server) -> tuple[int, list[str]]:
    """The listings since `mark`, and the paths of the other GETs."""
    requested = [path for method, path in server.requested() if method == "GET"]
    return sum("list-type" in p for p in requested), [p for p in requested if "list-type" not in p]


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
    put(s3, "not.a.name", found)  # no lambda is named so (handlerPuller.go:70): never read
    spec = spec_of(tmp_path, clean_upstream, worker, allowlist={"from_registry": True})

    plan = ok(cli("plan", "-f", str(spec), "--no-color"))
    assert f"lambda found: not in the mirror yet for target {TARGET_KEY}: omega==1.1" in plan.out
    assert "deeper" not in plan.out and "lambda elsewhere" not in plan.out
    assert "ignored 'not.a.name': not a lambda name olmirror reads" in plan.out

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

    # The lock keeps what the listing said of the found lambda when it was read...
    head = s3.client().head_object(Bucket=BUCKET, Key=f"{PREFIX}found.tar.gz")
    assert (recorded["found"]["etag"], recorded["found"]["size"]) == (head["ETag"], len(found))
    # ...so a plan that changes nothing reads the bucket once, one listing, and no tarball:
    # neither the declared lambda nor the found one, whose ETag is the one the lock records.
    s3.mark()
    ok(cli("plan", "-f", str(spec), "--no-color", "--detailed-exitcode"))
    assert listings_and_gets(s3) == (1, []), s3.requested()
    assert s3.requests()["PUT"] == 0

    # A found lambda put there again is read again (its ETag changed), and only it.
    put(s3, "found", packed({"requirements.txt": "omega==1.0\n"}))
    s3.mark()
    changed = ok(cli("plan", "-f", str(spec), "--no-color"))
    assert listings_and_gets(s3) == (1, [f"/{BUCKET}/{PREFIX}found.tar.gz"]), s3.requested()
    assert "lambda found: not in the mirror yet" in changed.out and "omega==1.0" in changed.out
    ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    put(s3, "found", found)

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
    put(s3, "paxbomb", packed({"a" * (20 << 20): ""}))  # a 20 MiB path in a pax header
    monkeypatch.setattr(probe, "MAX_TARBALL", 64 << 10)
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
        f"lambda paxbomb: {where}paxbomb.tar.gz:requirements.txt: cannot read it: not a readable "
        "tar.gz (a member's headers larger than 65536 bytes)",
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
        "cannot read the registry (list lambdas/: the bucket "
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


def test_a_registry_url_is_read_as_gocloud_reads_it() -> None:
    """gocloud.dev v0.42.0: Go's url.Values (first value, ';' pairs dropped), the bucket
    `u.Host` as written, `profile` kept, the prefix verbatim; and a URL whose keys s3blob
    would escape, or that blob.OpenBucket cannot open, is refused with the fix."""
    url = store_url("s3://k:s@My.Bucket?prefix=a/&prefix=b/&region=r1&region=r2&profile=dev&x;y=1")
    assert url == "s3://My.Bucket?prefix=a/&profile=dev&region=r1"
    assert lambda_key(url, "etl") == "a/etl.tar.gz"
    assert host_name(url) == "s3://My.Bucket/a?region=r1&profile=dev"
    assert location(url).profile == "dev"
    assert store_url("s3://b?disable_https=T&endpoint=h:9000") == (
        "s3://b?disable_https=true&endpoint=h:9000"
    )
    assert location("s3://b?disable_https=true&endpoint=h:9000").endpoint_url == "http://h:9000"
    refused = {
        "prefix=a/../": "holds a control character or '../'",
        "prefix=a%0Ab/": "holds a control character or '../'",
        "prefix=a//b/": "holds an empty folder",
        "prefix=/a/": "holds an empty folder",
        "prefix=%FF/": "is not UTF-8",
        "region=r&token=t": "unknown parameter 'token'",
        "disable_https=yes": "disable_https not true or false",
        "disableSSL=true": "unknown parameter 'disableSSL'",
        "key=one.tar.gz": "makes every lambda the one object",
    }
    for query, why in refused.items():
        setting = f"s3://bucket?{query}"
        assert store_url(setting) is None, setting
        assert why in (refusal(setting) or ""), (setting, refusal(setting))
        assert "write it like s3://BUCKET?region=REGION&prefix=lambdas/" in (refusal(setting) or "")
    assert refusal("s3://bucket?prefix=a/b/&region=r&use_path_style=1") is None


def test_the_standin_reads_keys_as_s3blob_escapes_them(tmp_path: Path, s3: S3Server) -> None:
    """The first `prefix` counts, and the '/' of its "../" is sent as __0x2f__ (s3blob's
    escapeKey), so the stand-in reads the object olmirror refuses to write."""
    config = {
        "registry": f"{registry(s3)}&prefix=ignored/".replace(f"prefix={PREFIX}", "prefix=x/../"),
        "registry_cache_ms": 0,
        "sock_base_path": str(tmp_path / "lambda"),
        "Pkgs_dir": str(tmp_path / "lambda" / "packages"),
        "worker_dir": str(tmp_path / "worker"),
    }
    put(s3, "hello", packed({"f.py": "def f(event):\n    return 1\n"}), prefix="x/..__0x2f__")
    assert (Manager(config, legacy=False).pull("hello") / "f.py").exists()
    config["registry"] = f"{registry(s3)}&token=t"
    with pytest.raises(LambdaError, match=r"failed to open blob bucket: .*unknown query parameter"):
        Manager(config, legacy=False).pull("hello")


def test_a_registry_with_a_prefix_s3blob_escapes_is_told_and_never_written(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    worker = s3_worker(tmp_path / "w", s3)
    config = json.loads((worker / "config.json").read_text())
    config["registry"] = config["registry"].replace(f"prefix={PREFIX}", "prefix=team/../")
    (worker / "config.json").write_text(json.dumps(config))
    spec = spec_of(tmp_path, clean_upstream, worker)
    s3.mark()
    applied = ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    assert "worker w (host local):" in applied.out
    assert "its prefix 'team/../' holds a control character or '../'" in applied.out
    assert "write it like s3://BUCKET?region=REGION&prefix=lambdas/" in applied.out
    assert s3.requests()["PUT"] == 0 and "create lambda" not in applied.out
    recorded = json.loads(spec.with_suffix(".lock").read_text())["registries"]["w"]
    assert "bucket" not in recorded and "team/../" in recorded["refused"]


def _two_workers(tmp_path: Path, *, b_lambdas: dict) -> tuple[LoadedSpec, Lock]:
    """Workers a (host node) and b (host other) reading the bucket `olb`, which the mirror
    is published to too, without a prefix: one name for both hosts."""
    spec = {
        "version": 1,
        "hosts": {"node": {"address": "10.0.0.9"}, "other": {"address": "10.0.0.10"}},
        "mirror": {
            "directory": "/srv/m",
            "targets": [{"python": "3.12", "platform": "any"}],
            "serve": {
                "backend": "s3",
                "bucket": "olb",
                "region": "us-east-1",
                "url": "https://olb.s3.amazonaws.com",
            },
        },
        "workers": [
            {
                "name": "a",
                "host": "node",
                "path": "/o/a",
                "lambdas": {"etl": {"requirements": ["six==1.16.0"]}},
            },
            {"name": "b", "host": "other", "path": "/o/b", "lambdas": b_lambdas},
        ],
    }
    (tmp_path / "olmirror.yaml").write_text(yaml.safe_dump(spec))
    wheel = "six-1.16.0-py2.py3-none-any.whl"
    six = LockedFile(wheel, f"https://u/packages/x/{wheel}", "0" * 64, 1)
    sets = {"lambda:a/etl": ["six==1.16.0"], "lambda:b/etl": ["six==1.16.0"]}
    target = TargetLock(python="3.12", platform="any", sets=sets, files={"six==1.16.0": six})
    lock = Lock(inputs="x", upstream="https://u.example/", targets={"py3.12-any": target})
    return load_spec(tmp_path / "olmirror.yaml"), lock


OLB = "s3://olb?region=us-east-1"


def _in_olb(loaded: LoadedSpec) -> dict[str, Registry]:
    return {w.name: Registry(None, s3_url=OLB, sandbox=f"{w.path}/lambda", packages=f"{w.path}/p")
            for w in loaded.spec.workers}  # fmt: skip


def test_limit_to_a_worker_writes_its_lambdas_and_never_publishes_the_mirrors_bucket(
    tmp_path: Path,
) -> None:
    """The registry `s3://olb?region=us-east-1` and the mirror's bucket `olb` are one host;
    a plan limited to the worker's host plans its lambda there, not the mirror's publish
    and prune, which need the mirror host's apply lock."""
    loaded, lock = _two_workers(tmp_path, b_lambdas={})
    assert host_name(OLB) == location_of(loaded.spec).name  # type: ignore[union-attr]
    desired = desired_state(loaded, lock, _in_olb(loaded), {"node"})
    assert [r.id for r in desired[host_name(OLB)]] == ["lambda s3://olb/etl.tar.gz"]
    desired = desired_state(loaded, lock, _in_olb(loaded), {"node", "local"})
    assert [r.kind for r in desired[host_name(OLB)]] == [
        "bucket_objects", "prune_bucket", "lambda_object"]  # fmt: skip


def test_two_workers_writing_one_object_two_ways_are_refused_under_limit_too(
    tmp_path: Path,
) -> None:
    """b, not planned, declares etl in the same bucket (as the lock recorded b's registry):
    planning a alone would rewrite the object b's apply writes, and the other way round."""
    loaded, lock = _two_workers(tmp_path, b_lambdas={"etl": {"requirements": ["six==1.16.0"]}})
    with pytest.raises(OlmirrorError, match="workers 'a' and 'b' both declare lambda s3://olb/etl"):
        desired_state(loaded, lock, _in_olb(loaded), {"node"})
    registries = _in_olb(loaded) | {"b": Registry("/o/b/registry")}  # b's registry elsewhere
    assert desired_state(loaded, lock, registries, {"node"})[host_name(OLB)]


def test_a_worker_whose_registry_cannot_be_read_keeps_its_url_and_its_lambdas_declared() -> None:
    """A read that failed says nothing of where the registry is: the recorded URL stays,
    so the other workers of its bucket still leave its declared lambdas alone."""
    workers = [Worker(name="a", path="/o/a", lambdas={"etl": {"requirements": ["six"]}}),
               Worker(name="b", path="/o/b")]  # fmt: skip
    recorded = {"a": Registry(None, s3_url=OLB), "b": Registry(None, s3_url=OLB)}
    answers = {"a": {"error": "cannot read /o/a/config.json"}, "b": {"setting": OLB}}
    urls = registry_urls(recorded, answers)
    assert urls == {"a": OLB, "b": OLB}
    assert declared_alongside(workers, urls)["b"] == frozenset({"etl"})
    assert registry_urls(recorded, {"a": {"setting": "/o/a/registry"}})["a"] is None


def test_a_lock_written_before_etags_is_read_and_a_found_lambda_keeps_its_etag() -> None:
    file = "s3://olb/f.tar.gz:requirements.txt"
    entry = {"file": file, "requirements": [["six", "x:1"]]}
    old = {"folder": None, "bucket": OLB, "elsewhere": None, "found": {"f": entry}}
    registry = Registry.from_json(old)
    assert registry.found == (FoundLambda("f", file, (("six", "x:1"),)),), "no ETag"
    found = FoundLambda("f", file, (), '"e1"', 12)
    again = Registry.from_json(json.loads(json.dumps(replace(registry, found=(found,)).to_json())))
    assert again.found == (found,)


def test_two_workers_whose_urls_differ_only_where_gocloud_ignores_share_one_listing(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream, s3: S3Server
) -> None:
    """The URL's path and its path-style and https flags do not change which objects a
    registry holds: the bucket is read once a plan."""
    first, second = s3_worker(tmp_path / "a", s3), s3_worker(tmp_path / "b", s3)
    config = json.loads((second / "config.json").read_text())
    config["registry"] = (
        config["registry"].replace(f"s3://{BUCKET}?", f"s3://{BUCKET}/ignored/path?")
        .replace("use_path_style=true", "use_path_style=1&disable_https=false")
    )  # fmt: skip
    (second / "config.json").write_text(json.dumps(config))
    put(s3, "found", packed({"requirements.txt": "omega==1.1\n"}))
    spec = spec_of(tmp_path, clean_upstream, first, allowlist={"from_registry": True})
    data = yaml.safe_load(spec.read_text())
    data["workers"].append({**data["workers"][0], "name": "b", "path": str(second),
                            "port": free_port(), "lambdas": {}})  # fmt: skip
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    s3.mark()
    ok(cli("plan", "-f", str(spec), "--no-color"))
    assert listings_and_gets(s3) == (1, [f"/{BUCKET}/{PREFIX}found.tar.gz"]), s3.requested()
    ok(cli("apply", "-f", str(spec), "--yes", "--no-color"))
    s3.mark()
    ok(cli("plan", "-f", str(spec), "--no-color", "--detailed-exitcode"))
    assert listings_and_gets(s3) == (1, []), s3.requested()
    lock = json.loads(spec.with_suffix(".lock").read_text())
    assert list(lock["registries"]["w"]["found"]) == list(lock["registries"]["b"]["found"])
    assert list(lock["registries"]["b"]["found"]) == ["found"]
