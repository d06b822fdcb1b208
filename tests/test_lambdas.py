"""Lambdas in a worker's registry, as OpenLambda's main branch keeps them: <name>.tar.gz.

Lambdas come from the spec (requirements, or a lambda folder whose files are packed)
or are found already on the worker's host (`allowlist.from_registry`). Every lambda is
its own requirement set, so two lambdas may pin different versions of one package.
The `ol` stand-in installs a lambda's requirements.txt on its first call, with real pip
and `--no-deps`, as a worker's package puller does.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml
from conftest import IMAGE, STANDIN_OL, TARGET, CliResult, journal, write_spec
from packaging.requirements import Requirement
from sshd import SshFarm
from upstream import Upstream

from olmirror.lock.targets import Target
from olmirror.openlambda.registry import registry_from_probe
from olmirror.remote.probe import registry_folder
from olmirror.spec import Worker

Cli = Callable[..., CliResult]
TARGET_KEY = f"py{TARGET['python']}-{TARGET['platform']}"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
F_PY = "def f(event):\n    return event\n"


def init_worker(path: Path) -> Path:
    """A worker that already exists on the host, made by `ol worker init`, whose registry
    its first start made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(STANDIN_OL), "worker", "init", "-p", str(path), "-i", IMAGE]
    subprocess.run(argv, check=True, capture_output=True)
    (path / "registry").mkdir()
    return path / "registry"


def put_lambda(registry: Path, name: str, *, folder: bool = False, **files: str) -> Path:
    """A lambda on the host, <name>.tar.gz (or a folder), with f.py and the given files
    (requirements_in -> requirements.in)."""
    named = {"f.py": F_PY, **{file.replace("_", "."): text for file, text in files.items()}}
    if folder:
        (registry / name).mkdir(parents=True)
        for file, text in named.items():
            (registry / name / file).write_text(text)
        return registry / name
    path = registry / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for file, text in named.items():
            info = tarfile.TarInfo(file)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return path


def members(tarball: Path) -> dict[str, str]:
    with tarfile.open(tarball) as archive:
        return {
            m.name: archive.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in archive.getmembers()
        }


def pins(text: str) -> list[str]:
    return [line for line in (raw.split("#")[0].strip() for raw in text.splitlines()) if line]


def call(spec: Path, name: str) -> tuple[int, str]:
    """POST /run/<name> to the spec's first worker, as `curl -X POST ... -d '{}'` does."""
    port = yaml.safe_load(spec.read_text())["workers"][0]["port"]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/run/{name}", b"{}", method="POST")
    try:
        with DIRECT.open(request, timeout=300) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def installed(worker: Path) -> set[str]:
    return {p.parent.name for p in (worker / "lambda" / "packages").glob("*/files")}


def test_three_lambdas_are_converged_and_install_from_the_mirror(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    worker = tmp_path / "w"
    registry = init_worker(worker)
    legacy = put_lambda(
        registry, "legacy", requirements_in="omega==1.1\n", requirements_txt="omega==1.1\n"
    )
    before = legacy.read_bytes()
    etl = tmp_path / "lambdas" / "etl"
    etl.mkdir(parents=True)
    (etl / "f.py").write_text("import theta\n\ndef f(event):\n    return theta.__name__\n")
    (etl / "requirements.in").write_text("theta==1.5\n")
    (etl / "requirements.txt").write_text("theta>=1\n")  # the author's; olmirror compiles its own
    lambdas = {
        "scraper": {"requirements": ["theta==1.0", "zeta-utils==0.5"]},
        "etl": {"source": "lambdas/etl"},
    }
    spec = write_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(worker), "lambdas": lambdas}],
        allowlist={"from_registry": True},
    )

    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 0, plan.err
    not_yet = f"not in the mirror yet for target {TARGET_KEY}"
    assert f"lambda scraper: {not_yet}: theta==1.0, zeta-utils==0.5 (this apply adds them)" in (
        plan.out
    )
    assert f"lambda etl: {not_yet}: theta==1.5" in plan.out
    assert f"lambda legacy: {not_yet}: omega==1.1" in plan.out
    assert not (registry / "scraper.tar.gz").exists(), "plan must not touch the host"

    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code == 0, applied.out + applied.err
    scraper = members(registry / "scraper.tar.gz")
    assert sorted(scraper) == ["requirements.in", "requirements.txt"]
    assert pins(scraper["requirements.txt"]) == ["theta==1.0", "zeta-utils==0.5"]
    assert pins(scraper["requirements.in"]) == ["theta==1.0", "zeta-utils==0.5"]
    packed = members(registry / "etl.tar.gz")
    assert sorted(packed) == ["f.py", "requirements.in", "requirements.txt"]
    assert pins(packed["requirements.txt"]) == ["theta==1.5"]
    assert packed["f.py"] == (etl / "f.py").read_text()
    assert packed["requirements.in"] == "theta==1.5\n"
    assert legacy.read_bytes() == before, "found lambdas are read, never written"
    # Each lambda installs its requirements on its first call; one without code cannot run.
    assert call(spec, "etl") == (200, '"theta"')
    assert call(spec, "legacy") == (200, "{}")
    status, body = call(spec, "scraper")
    assert status == 500 and "cannot determine runtime: no f.py" in body
    assert installed(worker) == {"theta==1.5", "omega==1.1"}
    lock = json.loads((tmp_path / "olmirror.lock").read_text())
    sets = lock["targets"][TARGET_KEY]["sets"]
    assert sets["lambda:w/scraper"] == ["theta==1.0", "zeta-utils==0.5"]
    assert sets["lambda:w/etl"] == ["theta==1.5"]
    assert sets["lambda:w/legacy"] == ["omega==1.1"]
    assert list(lock["registries"]["w"]["found"]) == ["legacy"]

    again = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert again.code == 0, again.err
    assert "Nothing to change: every host matches the spec." in again.out
    assert "not in the mirror yet" not in again.out
    assert journal(worker) == ["init", "up"]

    # A lambda its author puts on the host later is found by the next plan and mirrored.
    put_lambda(registry, "late", requirements_in="omega==1.2\n", requirements_txt="omega==1.2\n")
    untouched = (registry / "etl.tar.gz").stat().st_mtime_ns
    late = cli("plan", "-f", str(spec), "--no-color")
    assert f"lambda late: {not_yet}: omega==1.2" in late.out
    assert cli("apply", "-f", str(spec), "--yes").code == 0
    verified = cli("verify", "-f", str(spec))
    assert verified.code == 0, verified.out
    found = json.loads((tmp_path / "olmirror.lock").read_text())["registries"]["w"]["found"]
    assert sorted(found) == ["late", "legacy"]
    assert "Nothing to change" in cli("apply", "-f", str(spec), "--yes").out
    assert (registry / "etl.tar.gz").stat().st_mtime_ns == untouched, "OpenLambda pulls by mtime"

    # A lambda olmirror wrote that the spec drops stays on the host (the worker may still
    # run it): the plan says so, and from_registry keeps it in the mirror.
    data = yaml.safe_load(spec.read_text())
    del data["workers"][0]["lambdas"]["scraper"]
    spec.write_text(yaml.safe_dump(data))
    dropped = cli("plan", "-f", str(spec), "--no-color")
    assert dropped.code == 0, dropped.err
    assert (
        f"lambda scraper: {registry}/scraper.tar.gz:requirements.in: olmirror wrote this lambda, "
        "but the spec no longer declares it" in dropped.out
    )


def test_a_remote_workers_lambdas_are_found_over_ssh_and_a_noop_plan_reads_it_once(
    cli: Cli,
    farm: SshFarm,
    calls: dict[str, Counter[int]],
    tmp_path: Path,
    clean_upstream: Upstream,
) -> None:
    node = farm.host("lnode")
    # short: the worker's ol.sock path must stay within a UNIX socket's 107 bytes
    worker = node.root / "ol"
    registry = init_worker(worker)
    put_lambda(registry, "found", requirements_in="omega==1.0\n", requirements_txt="omega==1.0\n")
    spec = write_spec(
        tmp_path,
        clean_upstream,
        [
            {
                "name": "remote",
                "host": node.name,
                "path": str(worker),
                "lambdas": {"made": {"requirements": ["omega==1.2"]}},
            }
        ],
        allowlist={"from_registry": True},
    )
    data = yaml.safe_load(spec.read_text())
    data["hosts"][node.name] = node.spec(farm.known_hosts(node))
    spec.write_text(yaml.safe_dump(data))

    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code == 0, applied.out + applied.err
    assert "lambda found: not in the mirror yet" in applied.out
    assert pins(members(registry / "made.tar.gz")["requirements.txt"]) == ["omega==1.2"]
    assert call(spec, "found") == (200, "{}")
    assert installed(worker) == {"omega==1.0"}

    for counter in calls.values():
        counter.clear()
    again = cli("plan", "-f", str(spec), "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
    assert calls["exec"] == Counter({node.port: 1}), "the registry is read with the other facts"
    assert calls["trips"] == Counter({node.name: 1})

    # A lambda added on the host since costs a second look, and the plan covers it.
    put_lambda(registry, "late", requirements_in="theta==1.0\n", requirements_txt="theta==1.0\n")
    for counter in calls.values():
        counter.clear()
    late = cli("plan", "-f", str(spec), "--no-color")
    assert late.code == 0, late.out + late.err
    assert calls["exec"] == Counter({node.port: 1}), "one program per host per run"
    assert calls["trips"] == Counter({node.name: 2})
    assert f"lambda late: not in the mirror yet for target {TARGET_KEY}: theta==1.0" in late.out


def test_plan_lists_each_found_lambda_line_a_worker_would_install_wrongly(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    worker = tmp_path / "w"
    registry = init_worker(worker)
    put_lambda(registry, "loose", requirements_txt="omega>=1.0\nzeta-utils\ntheta==1.0  # ok\n")
    put_lambda(
        registry, "partial", requirements_in="speedups==1.0\n", requirements_txt="speedups==1.0\n"
    )
    put_lambda(registry, "stale", requirements_in="omega==1.2\n", requirements_txt="omega==1.0\n")
    put_lambda(registry, "bare", requirements_in="omega==1.2\n")
    put_lambda(registry, "broken", requirements_in="omega==9.9\n", requirements_txt="omega==9.9\n")
    put_lambda(registry, "blocked", requirements_in="gamma==1.0\n")
    put_lambda(registry, "not a name", requirements_txt="omega==1.2\n")
    put_lambda(registry, "folder", folder=True, requirements_txt="omega==1.2\n")
    spec = write_spec(
        tmp_path,
        clean_upstream,
        [{"name": "w", "path": str(worker)}],
        allowlist={"from_registry": True, "block": ["delta"]},
    )

    plan = cli("plan", "-f", str(spec), "--no-color")
    assert plan.code == 0, plan.err
    txt = f"{registry}/loose.tar.gz:requirements.txt"
    assert f"lambda loose: {txt}:1: 'omega>=1.0' is loosely pinned" in plan.out
    assert f"lambda loose: {txt}:2: 'zeta-utils' is unpinned" in plan.out
    assert f"lambda loose: {txt}:3" not in plan.out, "an exact pin is fine"
    assert (
        f"lambda partial: {registry}/partial.tar.gz:requirements.txt: lists no version of "
        "zeta-utils==1.0, which its requirements need" in plan.out
    )
    assert (
        f"lambda stale: {registry}/stale.tar.gz:requirements.txt:1: 'omega==1.0' is not in the "
        f"mirror for target {TARGET_KEY}" in plan.out
    )
    assert f"lambda bare: {registry}/bare.tar.gz:requirements.txt: missing" in plan.out
    assert (
        f"lambda folder: {registry}/folder: a lambda folder, which OpenLambda's main branch "
        "never runs" in plan.out
    )
    # A lambda someone else put on the host never stops the plan: it is reported.
    assert "lambda broken: not mirrored: cannot resolve lambda 'broken' of worker 'w'" in plan.out
    assert (
        "lambda blocked: not mirrored: delta==1.0 is blocked by allowlist.block but lambda "
        "'blocked' of worker 'w'" in plan.out
    )
    assert f"worker: {registry}: ignored 'not a name': not a lambda name" in plan.out

    as_json = json.loads(cli("plan", "-f", str(spec), "--json").out)
    loose = [f for f in as_json["findings"] if f["lambda_name"] == "loose"]
    assert {f["where"] for f in loose if f["level"] == "warning"} == {f"{txt}:1", f"{txt}:2"}
    assert all(f["worker"] == "w" and f["host"] == "local" for f in as_json["findings"])


def test_a_registry_that_is_not_a_folder_is_reported_and_the_rest_converges(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    worker = tmp_path / "w"
    init_worker(worker)
    config = json.loads((worker / "config.json").read_text())
    config["registry"] = "gs://lambdas/registry"
    (worker / "config.json").write_text(json.dumps(config, indent=2))
    spec = write_spec(
        tmp_path,
        clean_upstream,
        [
            {
                "name": "w",
                "path": str(worker),
                "requirements": ["omega==1.1"],
                "lambdas": {"scraper": {"requirements": ["theta==1.0"]}},
            }
        ],
        allowlist={"from_registry": True},
    )

    applied = cli("apply", "-f", str(spec), "--yes", "--no-color")
    assert applied.code == 0, applied.out + applied.err
    assert (
        "worker: " + str(worker / "config.json") + ": registry 'gs://lambdas/registry' is not a "
        "local folder, and gs:// registries are not yet supported" in applied.out
    )
    config = json.loads((worker / "config.json").read_text())
    assert config["pip_mirror"] == yaml.safe_load(spec.read_text())["mirror"]["serve"]["url"]
    assert journal(worker) == ["init", "up"], "the worker still runs"
    assert not (worker / "registry" / "scraper.tar.gz").exists()
    assert not (worker / "registry" / "requirements.in").exists()
    assert "Nothing to change" in cli("apply", "-f", str(spec), "--yes").out


def test_a_lambda_needs_requirements_or_a_source_folder_but_not_both(
    cli: Cli, tmp_path: Path, clean_upstream: Upstream
) -> None:
    lambdas = {
        "both": {"requirements": ["omega==1.1"], "source": "lambdas/both"},
        "gone": {"source": "lambdas/gone"},
    }
    (tmp_path / "lambdas" / "both").mkdir(parents=True)
    spec = write_spec(
        tmp_path, clean_upstream, [{"name": "w", "path": str(tmp_path / "w"), "lambdas": lambdas}]
    )
    both = cli("validate", "-f", str(spec))
    assert both.code == 1
    assert "workers[0].lambdas.both.requirements: lambda 'both' has both a source" in both.err

    del lambdas["both"]
    spec = write_spec(
        tmp_path, clean_upstream, [{"name": "w", "path": str(tmp_path / "w"), "lambdas": lambdas}]
    )
    gone = cli("validate", "-f", str(spec))
    assert gone.code == 1
    assert f"workers[0].lambdas.gone.source: {tmp_path}/lambdas/gone is not a folder" in gone.err
    assert "Traceback" not in gone.err

    clash = {"requirements.txt": {"requirements": ["omega==1.1"]}}
    spec = write_spec(
        tmp_path, clean_upstream, [{"name": "w", "path": str(tmp_path / "w"), "lambdas": clash}]
    )
    named = cli("validate", "-f", str(spec))
    assert named.code == 1
    assert "lambda name 'requirements.txt' is not valid here; a lambda's name uses only" in (
        named.err
    )


def test_the_registry_folder_is_read_from_config_json_as_openlambda_writes_it() -> None:
    worker = Worker(name="w", path="/opt/ol/w")
    home = "/opt/ol/w/registry"
    for setting, folder in [
        (None, home),
        ("", home),
        (f"file://{home}", home),
        (f"file://localhost{home}", home),
        (f"file:{home}", home),
        (f"file://{home}?create_dir=true", home),
        (f"file://{home}/", home),
        (home, home),
        ("file:///opt/ol/w/../../../etc", "/etc"),
        ("s3://bucket/registry", None),
        ("gs://bucket/registry", None),
        ("file://otherhost/opt/ol/w/registry", None),
        ("registry", None),
        ("/opt/ol/w/\0", None),
    ]:
        assert registry_folder(setting, worker.path) == folder, setting
    dotted = Worker(name="w", path="/opt/ol/./w/")  # OpenLambda writes the clean path
    raw = {"setting": f"file://{home}", "folder": home, "lambdas": {}}
    assert registry_from_probe(dotted, raw, discover=True).folder == home
    raw = {"setting": "file:///etc", "folder": "/etc", "lambdas": {}}
    outside = registry_from_probe(worker, raw, discover=True)
    assert (outside.folder, outside.elsewhere) == (None, "file:///etc"), "never written to"
    raw = {"setting": "gs://key:secret@bucket/registry?token=t", "folder": None}
    assert registry_from_probe(worker, raw, discover=True).elsewhere == "gs://bucket/registry"
    setting = "s3://key:secret@bucket/registry?region=eu-west-1&endpoint=https://u:p@s3.example"
    in_bucket = registry_from_probe(worker, {"setting": setting, "folder": None}, discover=True)
    assert (in_bucket.folder, in_bucket.elsewhere, in_bucket.refused) == (None, None, None)
    assert in_bucket.s3_url == "s3://bucket/registry?endpoint=https://s3.example&region=eu-west-1"
    raw = {"setting": "s3://key:secret@bucket/registry?token=t&region=eu-west-1", "folder": None}
    refused = registry_from_probe(worker, raw, discover=True)  # gocloud cannot open it
    assert (refused.s3_url, refused.elsewhere) == (None, "s3://bucket/registry?region=eu-west-1")
    assert "unknown parameter 'token'" in (refused.refused or ""), "no secret is kept"


def test_requirements_txt_lines_are_judged_by_the_markers_of_the_workers_target() -> None:
    line = Requirement('foo==1; platform_machine == "x86_64" and sys_platform == "linux"')
    assert Target("3.11", "manylinux_2_28_x86_64").installs(line)
    assert not Target("3.11", "manylinux_2_17_aarch64").installs(line)
    assert not Target("3.11", "win_amd64").installs(line)
    assert Target("3.11", "win_amd64").installs(Requirement('foo; platform_machine == "AMD64"'))
    assert not Target("3.10", "any").installs(Requirement('foo; python_version >= "3.11"'))
