"""The pure parts of olmirror's OpenLambda support, one behaviour each."""

from __future__ import annotations

import base64
import io
import tarfile

import pytest

from olmirror.connection.base import Facts, PathFact
from olmirror.errors import OlmirrorError
from olmirror.openlambda.lambda_tarball import LambdaTarball
from olmirror.openlambda.packages_dir import entry_name, stale_entries
from olmirror.openlambda.pip_conf import converge, index_options
from olmirror.openlambda.pip_conf_file import SandboxPipConf
from olmirror.openlambda.registry import registry_from_probe
from olmirror.openlambda.tarball import Member, build, read
from olmirror.openlambda.worker import sandbox_index
from olmirror.resources import ResourceError
from olmirror.spec import Spec, Worker

INDEX = {"index-url": "http://10.0.0.5:8080/simple/", "trusted-host": "10.0.0.5"}


def test_pip_conf_keeps_every_other_line_and_drops_every_other_index() -> None:
    text = (
        "# the image's own settings\n"
        "[global]\n"
        "timeout = 60\n"
        "index_url = https://elsewhere/simple\n"
        "extra-index-url =\n"
        "    https://a/simple\n"
        "    https://b/simple\n"
        "[install]\n"
        "--index-url = https://install-only/simple\n"
        "no-cache-dir = true\n"
        "find-links: /wheels\n"
    )
    converged = converge(text, INDEX)
    assert converged == (
        "# the image's own settings\n"
        "[global]\n"
        "timeout = 60\n"
        "index-url = http://10.0.0.5:8080/simple/\n"
        "trusted-host = 10.0.0.5\n"
        "[install]\n"
        "no-cache-dir = true\n"
    )
    assert converge(converged, INDEX) == converged, "a second run changes nothing"
    assert index_options(converged) == ["global.index-url", "global.trusted-host"]
    assert converge("", INDEX) == "[global]\nindex-url = http://10.0.0.5:8080/simple/\n" + (
        "trusted-host = 10.0.0.5\n"
    )
    assert converge("[install]\nuser = false", INDEX).startswith("[install]\nuser = false\n\n")


def _facts(files: dict[str, bytes | None], folders: tuple[str, ...] = ()) -> Facts:
    paths = {
        path: PathFact("file", 0o644, len(data), None, data) if data is not None else PathFact(None)
        for path, data in files.items()
    }
    paths |= {folder: PathFact("dir", 0o755) for folder in folders}
    return Facts(paths=paths)


def test_another_pip_configuration_of_the_sandbox_that_names_an_index_stops_the_plan() -> None:
    others = ("/w/lambda/root/.config/pip/pip.conf",)
    conf = SandboxPipConf("/w/lambda/etc/pip.conf", tuple(INDEX.items()), others, "w")
    clean = _facts({conf.path: None, others[0]: b"[global]\ntimeout = 5\n"}, ("/w/lambda/etc",))
    assert conf.plan(clean, frozenset()).action == "create"
    dirty = _facts({conf.path: None, others[0]: b"[install]\nextra-index-url = https://x\n"})
    with pytest.raises(ResourceError, match=r"root/\.config/pip/pip\.conf sets install\.extra"):
        conf.plan(dirty, frozenset())


def test_a_tarball_is_the_same_bytes_whatever_the_order_and_reads_back() -> None:
    members = [Member("requirements.txt", b"six==1.16.0\n", 0o644), Member("f.py", b"x\n", 0o755)]
    first, second = build(members), build(list(reversed(members)))
    assert first == second
    assert read(first) == sorted(members, key=lambda m: m.name)
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        infos = archive.getmembers()
    assert [(i.name, i.mtime, i.uid, i.gid, i.uname) for i in infos] == [
        ("f.py", 0, 0, 0, ""),
        ("requirements.txt", 0, 0, 0, ""),
    ]


def _tar(files: dict[str, str], mtime: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mtime, info.mode = len(text), mtime, 0o644
            archive.addfile(info, io.BytesIO(text.encode()))
    return raw.getvalue()


def test_a_lambda_tarball_is_compared_by_its_files_not_its_bytes() -> None:
    files = {"f.py": "def f(e):\n    return e\n", "requirements.txt": "six==1.16.0\n"}
    wanted = LambdaTarball("/r/a.tar.gz", tuple((n, t, 0o644) for n, t in files.items()))
    same = _facts({wanted.path: _tar(files, mtime=1_700_000_000)}, ("/r",))
    assert wanted.plan(same, frozenset()).action == "none", "another tar's bytes, same files"
    changed = _facts({wanted.path: _tar({**files, "f.py": "x\n"}, 0)}, ("/r",))
    change = wanted.plan(changed, frozenset())
    assert change.action == "update" and change.diff[3:5] == ("-x", "+def f(e):")
    gone = LambdaTarball(wanted.path, wanted.members, present=False)
    assert gone.plan(same, frozenset()).action == "update", "olmirror's own tarball goes"
    with pytest.raises(ResourceError, match="olmirror did not write it; remove it"):
        gone.plan(changed, frozenset())


def test_stale_packages_are_the_folders_openlambda_would_reuse_with_another_version() -> None:
    pins = {"omega==1.0", "zeta-utils==1.0", "theta==1.5"}
    installed = {
        "omega==1.0": ["omega-1.0.dist-info"],  # as locked
        "zeta-utils==1.0": ["Zeta_Utils-1.0.dist-info"],  # names compare canonically
        "theta==1.5": ["theta-1.4.dist-info"],  # another version
        "theta": ["theta-1.5.dist-info"],  # by name, a locked version
        "omega": ["omega-2.0.dist-info"],  # by name, a version no lambda pins
        "elsewhere==3": [],  # no lambda of the worker installs it: not olmirror's
    }
    stale = {s.entry: s.why for s in stale_entries(installed, pins)}
    assert stale == {
        "theta==1.5": "holds theta 1.4, not theta 1.5",
        "omega": "installed by name (unpinned), holds omega 2.0, not 1.0",
    }
    assert stale_entries({"omega==1.0": []}, pins)[0].why == (
        "holds no installed package, not omega 1.0"
    )
    assert entry_name("Zeta_Utils==1.0  # via x") == "zeta-utils==1.0"


def test_the_generation_and_the_sandbox_are_read_from_the_probe() -> None:
    worker = Worker(name="w", path="/opt/ol/w")
    raw = {
        "setting": "/opt/ol/w/registry",
        "folder": "/opt/ol/w/registry",
        "generation": "legacy",
        "sandbox": "/opt/ol/w/lambda",
        "packages": "/opt/ol/w/lambda/packages",
    }
    found = registry_from_probe(worker, raw, discover=False)
    assert (found.generation, found.sandbox) == ("legacy", "/opt/ol/w/lambda")
    pinned = Worker(name="w", path="/opt/ol/w", openlambda="main")
    assert registry_from_probe(pinned, raw, discover=False).generation == "main"
    shared = registry_from_probe(worker, raw | {"sandbox": "/srv/images/ol-min"}, False)
    assert shared.sandbox is None, "olmirror writes only inside the worker's folder"


def _spec(serve: dict, directory: str = "/opt/ol/w/lambda/mirror") -> Spec:
    return Spec.model_validate(
        {
            "version": 1,
            "mirror": {"directory": directory, "serve": serve, "targets": [
                {"python": "3.10", "platform": "manylinux_2_35_x86_64"}]},
            "workers": [{"name": "w", "path": "/opt/ol/w"}],
        }
    )  # fmt: skip


def test_the_sandbox_reaches_an_http_mirror_or_a_folder_inside_it() -> None:
    worker = Worker(name="w", path="/opt/ol/w")
    http = _spec({"backend": "http", "listen": "0.0.0.0:80", "url": "http://m.lan:80"})
    assert sandbox_index(http, worker, "/opt/ol/w/lambda") == (
        ("index-url", "http://m.lan:80/simple/"),
        ("trusted-host", "m.lan"),
    )
    https = _spec({"backend": "http", "listen": "0.0.0.0:443", "url": "https://m.lan"})
    assert sandbox_index(https, worker, "/opt/ol/w/lambda") == (
        ("index-url", "https://m.lan/simple/"),
    )
    inside = _spec({"backend": "filesystem"})
    assert sandbox_index(inside, worker, "/opt/ol/w/lambda") == (
        ("index-url", "file:///mirror/web/simple/"),
    )
    outside = _spec({"backend": "filesystem"}, directory="/srv/pypi")
    with pytest.raises(OlmirrorError, match="cannot see the mirror's web folder /srv/pypi/web"):
        sandbox_index(outside, worker, "/opt/ol/w/lambda")


def test_pip_conf_content_round_trips_through_probe_facts() -> None:
    """PathFact.from_probe decodes what the probe sends, so the resource sees bytes."""
    data = b"[global]\nindex-url = x\n"
    fact = PathFact.from_probe({"kind": "file", "content": base64.b64encode(data).decode()})
    assert fact.content == data
