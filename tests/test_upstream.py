"""The test upstream is a real index: real pip, uv and bandersnatch 6.8 use it over HTTPS.

Every mirror test rests on this fixture, so these tests prove it speaks the protocol the
real clients speak (and that its failure modes fail the way a real outage does), and they
record how bandersnatch's config and filter plugins behave against it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from upstream import MANYLINUX_X86_64, PROJECTS, SIMPLE_HTML, SIMPLE_JSON, Upstream
from uv import find_uv_bin

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
BASE_PLUGINS = ("allowlist_project", "allowlist_release")


def get(up: Upstream, path: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects, trusting only the upstream's CA."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(
        NoRedirect, urllib.request.HTTPSHandler(context=up.ssl_context())
    )
    request = urllib.request.Request(up.url + path, headers={"Accept": accept} if accept else {})
    try:
        with opener.open(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def run(args: list[str], up: Upstream, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=up.env(), capture_output=True, text=True, timeout=300, **kw)


def pip(up: Upstream, *args: str) -> subprocess.CompletedProcess[str]:
    """Real pip, trusting the test CA (via env: REQUESTS_CA_BUNDLE beats --cert)."""
    return run(
        [sys.executable, "-m", "pip", *args, "--no-cache-dir", "--index-url", up.simple_url], up
    )


def pip_plan(up: Upstream, *reqs: str) -> dict[str, str]:
    """What pip would install (name -> version), from `--dry-run --report`."""
    done = pip(up, "install", "--dry-run", "--quiet", "--ignore-installed", "--report", "-", *reqs)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    return {
        canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
        for i in report["install"]
    }


def bandersnatch_conf(
    up: Upstream,
    directory: Path,
    packages: Iterable[str],
    plugins: Iterable[str] = BASE_PLUGINS,
    extra: str = "",
) -> Path:
    """The bandersnatch 6.8 config that works against this upstream (see the report)."""
    indent = "\n    "
    text = (
        "[mirror]\n"
        f"directory = {directory}\n"
        f"master = {up.url}\n"
        "api-method = simple\n"
        "workers = 2\n"
        "timeout = 10\n"
        "global-timeout = 300\n"
        "stop-on-error = true\n"
        "hash-index = false\n"
        "json = true\n"
        "release-files = true\n"
        "simple-format = ALL\n"
        "compare-method = hash\n"
        "\n[plugins]\n"
        f"enabled ={indent}{indent.join(plugins)}\n"
        "\n[allowlist]\n"
        f"packages ={indent}{indent.join(packages)}\n"
        f"{extra}"
    )
    path = directory.parent / f"{directory.name}.conf"
    path.write_text(text)
    return path


def bandersnatch(up: Upstream, conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["bandersnatch", "--config", str(conf), *(args or ("mirror",))], up)


def mirrored(directory: Path) -> set[str]:
    return {p.name for p in (directory / "web" / "packages").rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------
# The catalogue and the files are what the issue asks for
# ---------------------------------------------------------------------------------------


def test_catalogue_has_the_cases_mirror_tests_need(upstream_index: Upstream) -> None:
    cat = upstream_index.catalogue
    assert len(cat.projects) >= 10
    assert all(len(p.releases) >= 2 for p in PROJECTS if p.name != "winonly")
    # a chain at least 3 deep, markers, an extra, a yanked newest release
    assert cat.closure(["alpha"], python="3.11") == {
        "alpha": "2.0",
        "beta": "1.1",
        "gamma": "2.0",
        "delta": "1.0",
        "theta": "1.5",
        "modernlib": "1.0",
    }
    assert "compat310" in cat.closure(["alpha"], python="3.10")
    assert "winonly" in cat.closure(["alpha"], sys_platform="win32")
    assert {"speedups", "zeta-utils"} <= set(cat.closure(["alpha[fast]"]))
    assert cat.closure(["modernlib"], python="3.12") == {"modernlib": "2.0"}
    newest = max(cat.projects["alpha"].releases, key=lambda r: r.version)
    assert newest.yanked and newest.yanked_reason
    delta = {f.filename for f in cat.release_files("delta", "1.0")}
    assert {
        f"delta-1.0-cp310-abi3-{MANYLINUX_X86_64}.whl",
        f"delta-1.0-cp311-cp311-{MANYLINUX_X86_64}.whl",
        "delta-1.0-cp310-abi3-win_amd64.whl",
        "delta-1.0-cp310-abi3-macosx_11_0_arm64.whl",
        "delta-1.0.tar.gz",
    } <= delta
    for name in cat.projects:  # pip and uv never need to build an sdist
        tags = {f.tag for f in cat.release_files(name) if f.tag}
        assert "py3-none-any" in tags or any(MANYLINUX_X86_64 in t for t in tags), name


def test_wheels_are_valid_and_records_match(upstream_index: Upstream) -> None:
    for built in upstream_index.catalogue.all_files():
        data = built.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == built.sha256
        if built.packagetype == "sdist":
            assert built.filename.endswith(".tar.gz")
            continue
        with zipfile.ZipFile(built.path) as zf:
            assert zf.testzip() is None
            names = zf.namelist()
            record = next(n for n in names if n.endswith(".dist-info/RECORD"))
            for line in zf.read(record).decode().splitlines():
                path, digest, size = line.rsplit(",", 2)
                assert path in names
                if digest:
                    assert int(size) == len(zf.read(path))


# ---------------------------------------------------------------------------------------
# Protocol, read with a plain HTTPS client
# ---------------------------------------------------------------------------------------


def test_simple_api_html_json_and_normalisation(clean_upstream: Upstream) -> None:
    up = clean_upstream
    cat = up.catalogue
    status, headers, body = get(up, "/simple/", SIMPLE_JSON)
    assert status == 200 and headers["Content-Type"] == SIMPLE_JSON
    index = json.loads(body)
    assert index["meta"]["api-version"] == "1.1"
    assert int(headers["X-PyPI-Last-Serial"]) == index["meta"]["_last-serial"] == cat.serial
    assert {p["name"]: p["_last-serial"] for p in index["projects"]}["Zeta_Utils"] == (
        cat.project_serial("zeta-utils")
    )

    status, headers, body = get(up, "/simple/alpha/")  # no Accept: HTML (PEP 503)
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    wheel = cat.release_files("alpha", "2.1")[0]
    assert f'href="{up.url}{wheel.url_path}#sha256={wheel.sha256}"' in page
    assert 'data-requires-python="&gt;=3.9"' in page
    assert 'data-yanked="broken &lt;build&gt; &amp; &quot;bad&quot; metadata"' in page

    accept = "text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.9"
    status, headers, body = get(up, "/simple/alpha/", accept)
    assert headers["Content-Type"] == SIMPLE_JSON and headers["Vary"] == "Accept"
    doc = json.loads(body)
    assert doc["meta"]["_last-serial"] == cat.project_serial("alpha")
    files = {f["filename"]: f for f in doc["files"]}
    assert files[wheel.filename]["yanked"] == wheel.yanked_reason
    assert files[wheel.filename]["requires-python"] == ">=3.9"
    assert files[wheel.filename]["hashes"] == {"sha256": wheel.sha256}
    assert files["alpha-1.0.tar.gz"]["yanked"] is False
    # PEP 658/714: a wheel's METADATA beside it, announced with its hash
    assert files[wheel.filename]["core-metadata"] == {"sha256": wheel.metadata_sha256}
    assert "core-metadata" not in files["alpha-1.0.tar.gz"]
    assert f'data-core-metadata="sha256={wheel.metadata_sha256}"' in page
    status, _, metadata = get(up, wheel.url_path + ".metadata")
    assert hashlib.sha256(metadata).hexdigest() == wheel.metadata_sha256
    with zipfile.ZipFile(wheel.path) as zf:
        assert metadata == zf.read("alpha-2.1.dist-info/METADATA")
    assert up.counts.metadata_files() == [wheel.filename + ".metadata"]
    assert up.counts.files() == []

    assert get(up, "/simple/Zeta_Utils/")[:2][0] == 301
    assert get(up, "/simple/Zeta_Utils/")[1]["Location"] == "/simple/zeta-utils/"
    assert get(up, "/simple/zeta-utils")[1]["Location"] == "/simple/zeta-utils/"
    assert get(up, "/simple/no-such-project/")[0] == 404
    assert get(up, "/simple/alpha/", "application/xml")[0] == 406

    up.html_only()
    assert get(up, "/simple/alpha/", SIMPLE_JSON)[0] == 406
    assert get(up, "/simple/alpha/", f"{SIMPLE_JSON}, text/html;q=0.1")[1][
        "Content-Type"
    ].startswith("text/html")


def test_json_api_has_what_bandersnatch_reads(clean_upstream: Upstream) -> None:
    up = clean_upstream
    status, headers, body = get(up, "/pypi/alpha/json")
    doc = json.loads(body)
    assert status == 200
    assert int(headers["X-PyPI-Last-Serial"]) == doc["last_serial"]
    assert doc["info"]["name"] == "alpha" and doc["info"]["version"] == "2.0"  # 2.1 is yanked
    assert set(doc["releases"]) == {"1.0", "2.0", "2.1"}
    for f in doc["releases"]["2.1"]:
        built = up.catalogue.file(f["filename"])
        assert f["url"] == up.url + built.url_path and f["url"].startswith(f"{up.url}/packages/")
        assert f["digests"]["sha256"] == built.sha256 and f["digests"]["md5"] == built.md5
        assert f["size"] == built.size and f["packagetype"] in ("bdist_wheel", "sdist")
        assert f["yanked"] is True and f["yanked_reason"] == built.yanked_reason
        assert f["requires_python"] == ">=3.9" and f["upload_time_iso_8601"].endswith("Z")
    version = json.loads(get(up, "/pypi/alpha/2.1/json")[2])
    assert "releases" not in version and version["info"]["yanked"] is True
    assert get(up, "/pypi/Zeta_Utils/json")[1]["Location"] == "/pypi/zeta-utils/json"
    assert get(up, "/pypi/no-such-project/json")[0] == 404


def test_counts_and_failure_modes(clean_upstream: Upstream) -> None:
    up = clean_upstream
    a, b = (f.url_path for f in up.catalogue.release_files("omega", "1.0"))
    up.fail_after(1)
    assert get(up, a)[0] == 200
    assert get(up, b)[0] == 500
    assert (
        up.counts[a].requests == 1
        and up.counts[a].bytes == up.catalogue.file(a.rsplit("/", 1)[1]).size
    )
    assert up.counts.files() == [a.rsplit("/", 1)[1]]
    up.fail_after(None)
    assert get(up, b)[0] == 200

    up.simple_only()
    status, headers, _ = get(up, "/simple/alpha/", SIMPLE_JSON)
    assert status == 200 and "X-PyPI-Last-Serial" not in headers
    assert get(up, "/pypi/alpha/json")[0] == 404
    up.simple_only(False)

    up.down()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", up.port), timeout=5)
    up.up()
    assert get(up, "/simple/")[0] == 200
    up.counts.reset()
    assert up.counts.requests() == 0 and up.counts.bytes() == 0


# ---------------------------------------------------------------------------------------
# Real pip
# ---------------------------------------------------------------------------------------


def test_pip_downloads_and_checks_the_hash(clean_upstream: Upstream, tmp_path: Path) -> None:
    up = clean_upstream
    done = pip(up, "download", "--no-deps", "alpha==2.0", "-d", str(tmp_path / "ok"))
    assert done.returncode == 0, done.stderr
    wheel = up.catalogue.file("alpha-2.0-py3-none-any.whl")
    got = tmp_path / "ok" / wheel.filename
    assert hashlib.sha256(got.read_bytes()).hexdigest() == wheel.sha256
    assert up.counts.files() == [wheel.filename]
    assert up.counts["/simple/alpha/"].requests == 1

    up.tamper(wheel.filename)
    done = pip(up, "download", "--no-deps", "alpha==2.0", "-d", str(tmp_path / "bad"))
    assert done.returncode != 0
    assert "DO NOT MATCH THE HASHES" in done.stderr and wheel.sha256 in done.stderr


def test_pip_resolves_chain_markers_extras_and_yanked(clean_upstream: Upstream) -> None:
    up = clean_upstream
    cat = up.catalogue
    assert pip_plan(up, "alpha", "omega") == {**cat.closure(["alpha"], python=PY), "omega": "1.2"}
    assert pip_plan(up, "alpha[fast]") == cat.closure(["alpha[fast]"], python=PY)
    assert pip_plan(up, "alpha==2.1")["alpha"] == "2.1"  # a yanked release only when pinned
    assert {h.content_type for h in up.counts.hits("/simple/")} == {SIMPLE_JSON}
    # pip resolves from the PEP 658 metadata files, then (pip 23.2) downloads the wheels
    # for the report anyway; never an sdist, and never a wheel of a release it did not pick
    assert sorted(up.counts.metadata_files()) == sorted(f + ".metadata" for f in up.counts.files())
    assert not [f for f in up.counts.files() if f.endswith(".tar.gz")]


def test_pip_reads_the_pep503_html_pages(clean_upstream: Upstream) -> None:
    """Yanked, requires-python and hashes must also work from HTML (as an older index serves)."""
    up = clean_upstream
    up.html_only()
    expected = {**up.catalogue.closure(["alpha[fast]"], python=PY), "omega": "1.2"}
    assert pip_plan(up, "alpha[fast]", "omega") == expected
    served = {h.content_type for h in up.counts.hits("/simple/")}
    assert served == {SIMPLE_HTML}  # pip accepts v1+html at q=0.1, ahead of text/html


# ---------------------------------------------------------------------------------------
# Real uv, the cross-target resolver
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "platform", "sys_platform"),
    [
        ("3.10", "x86_64-manylinux_2_28", "linux"),
        ("3.12", "x86_64-manylinux_2_28", "linux"),
        ("3.11", "x86_64-pc-windows-msvc", "win32"),
    ],
)
def test_uv_compile_evaluates_markers_for_the_target(
    clean_upstream: Upstream, python: str, platform: str, sys_platform: str
) -> None:
    up = clean_upstream
    done = run(
        [
            find_uv_bin(),
            "pip",
            "compile",
            "-",
            "--no-cache",
            "--no-header",
            "--no-annotate",
            "--python-version",
            python,
            "--python-platform",
            platform,
            "--index-url",
            up.simple_url,
        ],
        up,
        input="alpha[fast]\n",
    )
    assert done.returncode == 0, done.stderr
    pins = dict(
        line.split("==") for line in done.stdout.splitlines() if "==" in line
    )  # e.g. "alpha==2.0"
    assert pins == up.catalogue.closure(["alpha[fast]"], python=python, sys_platform=sys_platform)
    assert ("compat310" in pins) == (python == "3.10")
    assert ("winonly" in pins) == (sys_platform == "win32")
    assert up.counts.files() == []  # uv resolves from the PEP 658 metadata alone
    assert len(up.counts.metadata_files()) == len(pins)


# ---------------------------------------------------------------------------------------
# Real bandersnatch 6.8
# ---------------------------------------------------------------------------------------


def test_bandersnatch_mirrors_an_allowlisted_release(
    clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    directory = tmp_path / "mirror"
    conf = bandersnatch_conf(up, directory, ["alpha==2.0"])
    done = bandersnatch(up, conf)
    assert done.returncode == 0, done.stderr
    web = directory / "web"
    wanted = up.catalogue.release_files("alpha", "2.0")
    for built in wanted:  # bandersnatch keeps the URL path: web/<path of the file URL>
        stored = web / built.url_path.lstrip("/")
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == built.sha256
    assert mirrored(directory) == {b.filename for b in wanted}
    page = (web / "simple" / "alpha" / "index.html").read_text()
    for built in wanted:
        assert f'href="../..{built.url_path}#sha256={built.sha256}"' in page
    assert "alpha-2.1" not in page and "alpha-1.0" not in page
    assert json.loads((web / "simple" / "alpha" / "index.v1_json").read_text())["name"] == "alpha"
    assert json.loads((web / "pypi" / "alpha" / "json").read_text())["info"]["name"] == "alpha"
    assert 'href="alpha/"' in (web / "simple" / "index.html").read_text()
    assert (directory / "status").read_text().strip() == str(up.catalogue.serial)
    # it asked for exactly: the PEP 691 listing, alpha's JSON, alpha 2.0's files
    listing = up.counts.hits("/simple/")
    assert [h.path for h in listing] == ["/simple/"] and listing[0].accept == SIMPLE_JSON
    assert set(up.counts.by_path("/pypi/")) == {"/pypi/alpha/json"}
    assert sorted(up.counts.files()) == sorted(b.filename for b in wanted)

    up.counts.reset()  # a second run with nothing new upstream fetches no files
    assert bandersnatch(up, conf).returncode == 0
    assert up.counts.files() == [] and up.counts.requests("/pypi/") == 0


@pytest.mark.parametrize(
    ("plugin", "section", "kept_tags"),
    [
        (
            "exclude_platform",
            "[blocklist]\nplatforms =\n    windows\n    macos\n",
            {"cp310-abi3-x86", "cp311-cp311-x86", "aarch64", "musllinux", "sdist"},
        ),
        (
            "exclude_platform",
            "[blocklist]\nplatforms =\n    linux\n",
            {"win_amd64", "macosx", "musllinux", "sdist"},
        ),
        (
            "exclude_platform",
            "[blocklist]\nplatforms =\n    py3.10\n",
            {"cp311-cp311-x86", "sdist"},
        ),
        (
            "regex_release_file_metadata",
            "[regex_release_file_metadata]\nany:release_file.filename =\n"
            "    delta-1\\.0-cp310-abi3-manylinux_2_17_x86_64\\.manylinux2014_x86_64\\.whl$\n",
            {"cp310-abi3-x86"},
        ),
    ],
    ids=["exclude-windows-macos", "exclude-linux", "exclude-py3.10", "regex-filename"],
)
def test_bandersnatch_file_filters(
    clean_upstream: Upstream, tmp_path: Path, plugin: str, section: str, kept_tags: set[str]
) -> None:
    up = clean_upstream
    short = {
        f"cp310-abi3-{MANYLINUX_X86_64}": "cp310-abi3-x86",
        f"cp311-cp311-{MANYLINUX_X86_64}": "cp311-cp311-x86",
        "cp310-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64": "aarch64",
        "cp310-abi3-musllinux_1_1_x86_64": "musllinux",
        "cp310-abi3-win_amd64": "win_amd64",
        "cp310-abi3-macosx_11_0_arm64": "macosx",
        None: "sdist",
    }
    expected = {
        f.filename for f in up.catalogue.release_files("delta", "1.0") if short[f.tag] in kept_tags
    }
    directory = tmp_path / "mirror"
    conf = bandersnatch_conf(up, directory, ["delta==1.0"], (*BASE_PLUGINS, plugin), section)
    done = bandersnatch(up, conf)
    assert done.returncode == 0, done.stderr
    assert mirrored(directory) == expected
    assert sorted(up.counts.files()) == sorted(expected)  # filtered files are never fetched


def test_bandersnatch_requires_python_filter(clean_upstream: Upstream, tmp_path: Path) -> None:
    up = clean_upstream
    directory = tmp_path / "mirror"
    section = "[version_range_release_file_metadata]\nrelease_file.requires_python = 3.11\n"
    plugins = (*BASE_PLUGINS, "version_range_release_file_metadata")
    conf = bandersnatch_conf(up, directory, ["modernlib", "omega==1.0"], plugins, section)
    done = bandersnatch(up, conf)
    assert done.returncode == 0, done.stderr
    expected = up.catalogue.release_files("modernlib", "1.0") + up.catalogue.release_files(
        "omega", "1.0"
    )  # modernlib 2.0 needs >=3.12; omega declares nothing, and a missing value passes
    assert mirrored(directory) == {f.filename for f in expected}


def test_bandersnatch_refuses_pages_without_the_serial_header(
    clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    up.serial_header = False  # what the proxy on this machine does to the public index
    done = bandersnatch(up, bandersnatch_conf(up, tmp_path / "mirror", ["omega==1.0"]))
    assert done.returncode != 0
    assert "Stale serial for package omega" in done.stderr
    assert up.counts.files() == []


def test_bandersnatch_against_a_simple_only_upstream_mirrors_nothing_and_exits_0(
    clean_upstream: Upstream, tmp_path: Path
) -> None:
    """bandersnatch treats a JSON-API 404 as "project gone": success, with an empty mirror."""
    up = clean_upstream
    up.simple_only()
    directory = tmp_path / "mirror"
    done = bandersnatch(up, bandersnatch_conf(up, directory, ["omega==1.0"]))
    assert done.returncode == 0, done.stderr
    assert up.counts["/pypi/omega/json"].requests == 1
    assert mirrored(directory) == set()
    assert not (directory / "web" / "simple" / "omega").exists()


def test_bandersnatch_stops_on_http_500_and_resumes(
    clean_upstream: Upstream, tmp_path: Path
) -> None:
    up = clean_upstream
    directory = tmp_path / "mirror"
    conf = bandersnatch_conf(up, directory, ["omega"])
    up.fail_after(2)
    done = bandersnatch(up, conf)
    assert done.returncode == 1
    assert "500, message='Internal Server Error'" in done.stderr
    assert len(mirrored(directory)) == 2
    assert not (directory / "status").exists()  # the serial is not recorded: next run retries
    up.fail_after(None)
    up.counts.reset()
    done = bandersnatch(up, conf)
    assert done.returncode == 0, done.stderr
    every = {f.filename for f in up.catalogue.release_files("omega")}
    assert mirrored(directory) == every
    assert len(up.counts.files()) == len(every) - 2  # the two it had are not fetched again


def test_bandersnatch_rejects_a_tampered_file_but_exits_0(
    clean_upstream: Upstream, tmp_path: Path
) -> None:
    """A sha256 mismatch is a ValueError, which bandersnatch's on_error ignores: exit 0."""
    up = clean_upstream
    bad = "omega-1.0-py3-none-any.whl"
    up.tamper(bad)
    directory = tmp_path / "mirror"
    done = bandersnatch(up, bandersnatch_conf(up, directory, ["omega==1.0"]))
    assert done.returncode == 0
    assert "Inconsistent file" in done.stderr
    assert bad not in mirrored(directory)
    assert not (directory / "web" / "simple" / "omega").exists()
    assert not (directory / "status").exists()


def test_bandersnatch_upstream_down(clean_upstream: Upstream, tmp_path: Path) -> None:
    up = clean_upstream
    up.down()
    done = bandersnatch(up, bandersnatch_conf(up, tmp_path / "mirror", ["omega==1.0"]))
    assert done.returncode == 1
    assert "Cannot connect to host 127.0.0.1" in done.stderr
