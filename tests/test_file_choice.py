"""The file a target installs for a pin, chosen from an index page, and the pages olmirror
writes read back by the same parsers: pure functions, on file lists built by hand.

A wrong choice is a mirror without the file a worker asks for; a page that does not parse
back to what was locked is a mirror pip cannot install from.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from olmirror.errors import OlmirrorError
from olmirror.lock.file_choice import choose_file
from olmirror.lock.lockfile import Lock, LockedFile, TargetLock
from olmirror.lock.simple_api import IndexFile, pages, parse_simple_html, parse_simple_json
from olmirror.lock.targets import Target

UP = "https://up.example"
X86 = Target("3.11", "manylinux_2_28_x86_64")


def _sha(filename: str) -> str:
    """A distinct, valid-looking sha256 per file, so a mixed-up hash is caught."""
    return hashlib.sha256(filename.encode()).hexdigest()


def _file(
    filename: str,
    *,
    requires_python: str | None = None,
    yanked: bool = False,
    sha256: str | None = "",
    size: int | None = 1000,
) -> IndexFile:
    return IndexFile(
        filename=filename,
        url=f"{UP}/packages/ab/cd/{filename}",
        sha256=_sha(filename) if sha256 == "" else sha256,
        requires_python=requires_python,
        yanked=yanked,
        size=size,
    )


# ---------------------------------------------------------------------------------------
# choose_file
# ---------------------------------------------------------------------------------------


def test_the_best_ranked_wheel_is_chosen_whatever_the_index_order() -> None:
    files = [
        _file("demo-1.0.tar.gz"),
        _file("demo-1.0-py3-none-any.whl"),
        _file("demo-1.0-cp311-abi3-manylinux_2_17_x86_64.whl"),
        _file("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
        _file("demo-1.0-cp311-cp311-manylinux_2_31_x86_64.whl"),  # glibc too new
        _file("demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"),  # another Python
        _file("demo-1.0-cp311-cp311-manylinux_2_28_aarch64.whl"),  # another machine
    ]
    best = "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    for order in (files, files[::-1]):
        chosen = choose_file("demo==1.0", order, X86)
        assert chosen == LockedFile(best, f"{UP}/packages/ab/cd/{best}", _sha(best), 1000, None)


def test_pure_python_wheel_when_no_binary_fits() -> None:
    files = [
        _file("demo-1.0-cp311-cp311-win_amd64.whl"),
        _file("demo-1.0-py3-none-any.whl"),
        _file("demo-1.0.tar.gz"),
    ]
    assert choose_file("demo==1.0", files, X86).filename == "demo-1.0-py3-none-any.whl"
    windows = Target("3.11", "win_amd64")
    assert choose_file("demo==1.0", files, windows).filename == "demo-1.0-cp311-cp311-win_amd64.whl"


def test_wheels_of_equal_rank_are_chosen_by_name_not_by_index_order() -> None:
    """The same lock from the same page, whichever order the upstream lists files in."""
    files = [_file("demo-1.0-py3-none-any.whl"), _file("demo-1.0-py2.py3-none-any.whl")]
    for order in (files, files[::-1]):
        assert choose_file("demo==1.0", order, X86).filename == "demo-1.0-py2.py3-none-any.whl"


def test_of_wheels_differing_only_in_build_tag_the_highest_is_chosen() -> None:
    """pip prefers the wheel with the highest build tag (compared as a number) among wheels
    of equal tags: a rebuilt wheel replaces a broken one that way."""
    files = [_file("demo-1.0-1-py3-none-any.whl"), _file("demo-1.0-2-py3-none-any.whl")]
    assert choose_file("demo==1.0", files, X86).filename == "demo-1.0-2-py3-none-any.whl"


def test_only_files_of_the_pinned_release_are_considered() -> None:
    """Other versions and projects on the page are ignored; the name and version compare
    after normalisation (zeta_utils is zeta-utils, 1.0.0 is 1.0)."""
    files = [
        _file("zeta_utils-2.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
        _file("zeta_utils-1.0.0-py3-none-any.whl"),
        _file("zeta_other-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
    ]
    chosen = choose_file("zeta-utils==1.0", files, X86)
    assert chosen.filename == "zeta_utils-1.0.0-py3-none-any.whl"


def test_a_file_whose_requires_python_excludes_the_target_is_skipped() -> None:
    files = [
        _file("demo-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", requires_python=">=3.12"),
        _file("demo-1.0-py3-none-any.whl", requires_python=">=3.8"),
    ]
    chosen = choose_file("demo==1.0", files, X86)
    assert chosen.filename == "demo-1.0-py3-none-any.whl"
    assert chosen.requires_python == ">=3.8", "kept in the lock, for the mirror's pages"
    newer = Target("3.12", "manylinux_2_28_x86_64")
    assert choose_file("demo==1.0", files, newer).filename == "demo-1.0-py3-none-any.whl", (
        "a cp311 wheel is no use to 3.12, whatever its requires-python"
    )


def test_a_yanked_release_is_chosen_for_an_exact_pin() -> None:
    """choose_file does not look at `yanked`: every pin is exact (==), and PEP 592 lets an
    exact pin install a yanked release, as pip does (test_upstream's pip resolves one)."""
    files = [
        _file("demo-2.1-cp311-cp311-manylinux_2_28_x86_64.whl", yanked=True),
        _file("demo-2.1-py3-none-any.whl", yanked=True),
        _file("demo-2.0-py3-none-any.whl"),
    ]
    chosen = choose_file("demo==2.1", files, X86)
    assert chosen.filename == "demo-2.1-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_a_file_not_yanked_is_preferred_to_a_yanked_one_of_the_same_release() -> None:
    """PEP 592 yanks files, not only releases; pip ranks every unyanked file of a release
    above any yanked one (before wheel tags), so it would install the pure wheel here."""
    files = [
        _file("demo-2.1-cp311-cp311-manylinux_2_28_x86_64.whl", yanked=True),
        _file("demo-2.1-py3-none-any.whl"),
    ]
    assert choose_file("demo==2.1", files, X86).filename == "demo-2.1-py3-none-any.whl"


def test_the_sdist_is_chosen_when_no_wheel_fits() -> None:
    files = [
        _file("demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
        _file("demo-1.0-cp311-cp311-manylinux_2_28_aarch64.whl"),
        _file("demo-1.0-py3-none-any.whl", requires_python=">=3.12"),
        _file("demo-1.0.tar.gz", requires_python=">=3.8", size=None),
    ]
    chosen = choose_file("demo==1.0", files, X86)
    assert chosen == LockedFile(
        "demo-1.0.tar.gz",
        f"{UP}/packages/ab/cd/demo-1.0.tar.gz",
        _sha("demo-1.0.tar.gz"),
        None,
        ">=3.8",
    )
    assert chosen.built is None, "building a wheel from it is wheel_build's, later"


def test_of_several_sdists_the_first_by_name_is_chosen_whatever_the_order() -> None:
    """pip takes the first listed of files that rank equal; a lock takes the first by name,
    so the same page listed in another order gives the same lock."""
    files = [_file("demo-1.0.zip"), _file("demo-1.0.tar.gz")]
    for order in (files, files[::-1]):
        assert choose_file("demo==1.0", order, X86).filename == "demo-1.0.tar.gz"
    assert choose_file("demo==1.0", files[::-1], X86).filename == "demo-1.0.tar.gz"


def test_no_file_for_the_target_is_an_error_naming_what_there_is() -> None:
    files = [
        _file("demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
        _file("demo-1.0-cp311-cp311-win_amd64.whl"),
        _file("demo-0.9-py3-none-any.whl"),
    ]
    with pytest.raises(OlmirrorError) as raised:
        choose_file("demo==1.0", files, X86)
    message = str(raised.value)
    assert message.startswith("demo==1.0: the upstream has no file that target ")
    assert X86.key in message
    assert "demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl" in message
    assert "demo-1.0-cp311-cp311-win_amd64.whl" in message
    assert "demo-0.9" not in message, "only the pinned release's files are listed"


def test_no_file_of_the_version_at_all_says_so() -> None:
    with pytest.raises(OlmirrorError, match=r"\(it has: no files of this version\)"):
        choose_file("demo==3.0", [_file("demo-1.0-py3-none-any.whl")], X86)
    with pytest.raises(OlmirrorError, match="no files of this version"):
        choose_file("demo==1.0", [], X86)


def test_a_sdist_excluded_by_requires_python_is_no_fallback() -> None:
    files = [_file("demo-1.0.tar.gz", requires_python=">=3.12")]
    with pytest.raises(OlmirrorError, match=r"it has: demo-1\.0\.tar\.gz\)"):
        choose_file("demo==1.0", files, X86)


@pytest.mark.parametrize(
    "missing",
    ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"],
)
def test_a_chosen_file_without_a_sha256_is_an_error_naming_its_url(missing: str) -> None:
    """Without a hash the lock could not pin the file's content; olmirror refuses."""
    files = [_file(missing, sha256=None)]
    with pytest.raises(OlmirrorError) as raised:
        choose_file("demo==1.0", files, X86)
    assert str(raised.value) == (
        f"{UP}/packages/ab/cd/{missing}: the upstream gives no sha256 for this file"
    )


def test_the_sha256_is_required_of_the_chosen_file_only() -> None:
    """An unusable file without a hash does not stop the choice of one with a hash."""
    files = [
        _file("demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl", sha256=None),
        _file("demo-1.0-py3-none-any.whl"),
    ]
    assert choose_file("demo==1.0", files, X86).sha256 == _sha("demo-1.0-py3-none-any.whl")


# ---------------------------------------------------------------------------------------
# parse_simple_html and the PEP 691 parser, on pages written by hand
# ---------------------------------------------------------------------------------------

PROJECT = f"{UP}/simple/demo/"


def test_parse_simple_html_reads_hash_requires_python_and_yanked() -> None:
    page = f"""<!DOCTYPE html><html><body>
    <a href="../../packages/ab/demo-1.0.tar.gz#sha256={"1" * 64}"
       data-requires-python="&gt;=3.8,&lt;4">demo-1.0.tar.gz</a><br/>
    <a href="https://files.example/demo-2.0-py3-none-any.whl#md5=abc"
       data-yanked="broken &amp; bad">demo-2.0-py3-none-any.whl</a>
    <a href="/packages/demo-2.1-py3-none-any.whl" data-yanked>demo-2.1-py3-none-any.whl</a>
    <a href="../../packages/demo-3.0.tar.gz"></a>
    </body></html>"""
    files = parse_simple_html(page, PROJECT)
    assert files == [
        IndexFile(
            "demo-1.0.tar.gz", f"{UP}/packages/ab/demo-1.0.tar.gz", "1" * 64, ">=3.8,<4", False
        ),
        IndexFile(
            "demo-2.0-py3-none-any.whl",
            "https://files.example/demo-2.0-py3-none-any.whl",
            None,  # an md5 is not a sha256
            None,
            True,
        ),
        IndexFile(
            "demo-2.1-py3-none-any.whl",
            f"{UP}/packages/demo-2.1-py3-none-any.whl",
            None,
            None,
            True,  # data-yanked with no value is yanked too
        ),
        IndexFile("demo-3.0.tar.gz", f"{UP}/packages/demo-3.0.tar.gz", None, None, False),
    ]
    assert all(f.size is None for f in files), "HTML pages give no sizes"


def testparse_simple_json_reads_every_field() -> None:
    page = {
        "meta": {"api-version": "1.1"},
        "name": "demo",
        "files": [
            {
                "filename": "demo-1.0.tar.gz",
                "url": "../../packages/demo-1.0.tar.gz",
                "hashes": {"sha256": "2" * 64, "md5": "x"},
                "requires-python": ">=3.8",
                "size": 123,
                "yanked": False,
            },
            {
                "filename": "demo-2.0-py3-none-any.whl",
                "url": "https://files.example/demo-2.0-py3-none-any.whl",
                "hashes": {"md5": "x"},
                "yanked": "a reason is a yank",
            },
        ],
    }
    assert parse_simple_json(page, PROJECT) == [
        IndexFile(
            "demo-1.0.tar.gz", f"{UP}/packages/demo-1.0.tar.gz", "2" * 64, ">=3.8", False, 123
        ),
        IndexFile(
            "demo-2.0-py3-none-any.whl",
            "https://files.example/demo-2.0-py3-none-any.whl",
            None,
            None,
            True,
            None,
        ),
    ]


@pytest.mark.parametrize(
    "page",
    [
        [],
        {"files": "demo-1.0.tar.gz"},
        {"files": ["demo-1.0.tar.gz"]},
        {"files": [{"filename": "demo-1.0.tar.gz"}]},
        {"files": [{"filename": "demo-1.0.tar.gz", "url": "x", "hashes": ["sha256"]}]},
        {"files": [{"filename": "demo-1.0.tar.gz", "url": "x", "size": "12"}]},
    ],
)
def testparse_simple_json_refuses_a_page_of_another_shape(page: object) -> None:
    with pytest.raises(ValueError):
        parse_simple_json(page, PROJECT)


# ---------------------------------------------------------------------------------------
# The pages olmirror writes, read back
# ---------------------------------------------------------------------------------------

MIRROR = "http://mirror.internal:8080"  # where the mirror's web folder is served


def _locked(filename: str, *, size: int | None = 1000, requires: str | None = None) -> LockedFile:
    return LockedFile(filename, f"{UP}/packages/ab/cd/{filename}", _sha(filename), size, requires)


def _lock() -> Lock:
    """Two targets sharing a file, and a file name needing escape in a URL and in HTML."""
    x86 = {
        "demo==1.0": _locked("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", requires=">=3.8,<4"),
        "zeta-utils==1.0": _locked("zeta_utils-1.0-py3-none-any.whl", size=None),
        "torch==2.0+cpu": LockedFile(
            "torch-2.0+cpu-cp311-cp311-linux_x86_64.whl",
            f"{UP}/packages/ef/torch-2.0%2Bcpu-cp311-cp311-linux_x86_64.whl",
            _sha("torch"),
            5,
            None,
        ),
    }
    arm = {
        "demo==1.0": _locked("demo-1.0-cp311-cp311-manylinux_2_17_aarch64.whl", requires=">=3.8"),
        "zeta-utils==1.0": x86["zeta-utils==1.0"],
    }
    targets = {
        "x86": TargetLock("3.11", "manylinux_2_17_x86_64", {"s": list(x86)}, x86),
        "arm": TargetLock("3.11", "manylinux_2_17_aarch64", {"s": list(arm)}, arm),
    }
    return Lock("inputs", UP, targets)


def _served(page: str) -> str:
    """The URL at which the mirror serves `page`, a path under its index's folder."""
    return f"{MIRROR}/simple/{page.rpartition('/')[0]}/"


def _expected(lock: Lock) -> dict[str, dict[str, tuple[str, str, str | None]]]:
    """Project -> filename -> (URL on the mirror, sha256, requires-python) of every locked
    file: the upstream's path, now on the mirror, as bandersnatch lays files out."""
    found: dict[str, dict[str, tuple[str, str, str | None]]] = {}
    for target in lock.targets.values():
        for pin, f in target.files.items():
            project = found.setdefault(pin.partition("==")[0], {})
            path = f.url.removeprefix(UP)
            project[f.filename] = (MIRROR + path, f.sha256, f.requires_python)
    return found


def test_the_html_pages_written_parse_back_to_the_locked_files() -> None:
    lock = _lock()
    written = pages(lock)
    expected = _expected(lock)
    for project, files in expected.items():
        path = f"{project}/index.html"
        parsed = parse_simple_html(written[path], _served(path))
        assert {f.filename: (f.url, f.sha256, f.requires_python) for f in parsed} == files
        assert [f.filename for f in parsed] == sorted(files), "one link per file, in order"
        assert not any(f.yanked for f in parsed)
    assert sorted(expected["demo"]) == [
        "demo-1.0-cp311-cp311-manylinux_2_17_aarch64.whl",
        "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
    ], "both targets' files on one page, the file they share once"


def test_the_json_pages_written_parse_back_to_the_locked_files_and_sizes() -> None:
    lock = _lock()
    written = pages(lock)
    sizes = {f.filename: f.size for t in lock.targets.values() for f in t.files.values()}
    for project, files in _expected(lock).items():
        path = f"{project}/index.v1_json"
        parsed = parse_simple_json(json.loads(written[path]), _served(path))
        assert {f.filename: (f.url, f.sha256, f.requires_python) for f in parsed} == files
        assert {f.filename: f.size for f in parsed} == {name: sizes[name] for name in files}
        assert not any(f.yanked for f in parsed)


def test_links_are_relative_to_the_page_so_the_mirror_can_move() -> None:
    """The same page works wherever the mirror is served: no host is written into it."""
    written = pages(_lock())
    for path, text in written.items():
        assert UP not in text and MIRROR not in text, path
    html = written["torch/index.html"]
    elsewhere = parse_simple_html(html, "file:///mnt/copy/simple/torch/")
    assert [f.url for f in elsewhere] == [
        "file:///mnt/copy/packages/ef/torch-2.0%2Bcpu-cp311-cp311-linux_x86_64.whl"
    ]
    assert elsewhere[0].filename == "torch-2.0+cpu-cp311-cp311-linux_x86_64.whl"


def test_the_root_index_lists_every_project_page() -> None:
    written = pages(_lock())
    links = parse_simple_html(written["index.html"], f"{MIRROR}/simple/")
    assert [(f.filename, f.url) for f in links] == [
        (name, f"{MIRROR}/simple/{name}/") for name in ("demo", "torch", "zeta-utils")
    ]
    listing = json.loads(written["index.v1_json"])
    assert [p["name"] for p in listing["projects"]] == ["demo", "torch", "zeta-utils"]
    for name in ("demo", "torch", "zeta-utils"):
        assert f"{name}/index.html" in written and f"{name}/index.v1_json" in written


@pytest.mark.parametrize("kind", ["index.html", "index.v1_json"])
def test_a_target_chooses_the_same_file_from_the_mirrors_pages(kind: str) -> None:
    """Locking again against the mirror itself gives each target the file it has: the
    pages carry everything choose_file needs."""
    lock = _lock()
    written = pages(lock)
    for target in lock.targets.values():
        for pin, locked in target.files.items():
            path = f"{pin.partition('==')[0]}/{kind}"
            text = written[path]
            if kind == "index.html":
                files = parse_simple_html(text, _served(path))
            else:
                files = parse_simple_json(json.loads(text), _served(path))
            chosen = choose_file(pin, files, target.env)
            assert chosen.filename == locked.filename
            assert chosen.sha256 == locked.sha256
            assert chosen.requires_python == locked.requires_python
