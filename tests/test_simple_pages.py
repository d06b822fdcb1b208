"""The simple engine's pages, as pure functions: PEP 503 HTML and PEP 691/700 JSON."""

from __future__ import annotations

import json

from packaging.version import Version

from olmirror.lock.lockfile import Lock, LockedFile, TargetLock
from olmirror.lock.simple_api import pages


def _file(name: str, size: int | None = 100) -> LockedFile:
    return LockedFile(name, f"https://up.example/packages/ab/{name}", "0" * 64, size, ">=3.8")


def _lock(*targets: dict[str, LockedFile]) -> Lock:
    locked = {
        f"t{i}": TargetLock("3.11", "manylinux_2_17_x86_64", {"s": list(files)}, files)
        for i, files in enumerate(targets)
    }
    return Lock("inputs", "https://up.example", locked)


def _pep700_problems(page: dict) -> list[str]:
    """What a PEP 700 (API 1.1) project page lacks: `versions` naming each file's version,
    and an integer `size` on every file."""
    problems = []
    if "versions" not in page:
        problems.append("no versions")
    for file in page["files"]:
        if not isinstance(file.get("size"), int):
            problems.append(f"{file['filename']}: no size")
        version = file["filename"].split("-")[1].removesuffix(".tar.gz")
        if str(Version(version)) not in page.get("versions", []):
            problems.append(f"{file['filename']}: version not in versions")
    return problems


def test_json_pages_follow_pep_700_when_every_size_is_known() -> None:
    lock = _lock(
        {"omega==1.2": _file("omega-1.2-py3-none-any.whl")},
        {"omega==1.0": _file("omega-1.0-py3-none-any.whl"), "zeta-utils==1.0": _file(
            "zeta_utils-1.0-cp311-cp311-manylinux_2_17_x86_64.whl")},
    )  # fmt: skip
    found = pages(lock)
    omega = json.loads(found["omega/index.v1_json"])
    assert omega["meta"] == {"api-version": "1.1"}
    assert omega["versions"] == ["1.0", "1.2"]
    assert [f["filename"] for f in omega["files"]] == [
        "omega-1.0-py3-none-any.whl", "omega-1.2-py3-none-any.whl"
    ]  # fmt: skip
    assert _pep700_problems(omega) == []
    zeta = json.loads(found["zeta-utils/index.v1_json"])
    assert _pep700_problems(zeta) == [] and zeta["versions"] == ["1.0"]
    assert omega["files"][0]["url"] == "../../packages/ab/omega-1.0-py3-none-any.whl"
    html = found["omega/index.html"]
    assert 'href="../../packages/ab/omega-1.0-py3-none-any.whl#sha256=' + "0" * 64 in html
    assert 'data-requires-python="&gt;=3.8"' in html


def test_a_page_with_a_file_of_unknown_size_declares_api_1_0() -> None:
    """An upstream's HTML pages give no sizes; PEP 700 requires one on every file."""
    lock = _lock({"omega==1.2": _file("omega-1.2-py3-none-any.whl", size=None)})
    page = json.loads(pages(lock)["omega/index.v1_json"])
    assert page["meta"] == {"api-version": "1.0"}
    assert "versions" not in page and "size" not in page["files"][0]
