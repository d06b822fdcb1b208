"""requirements.txt as one module reads and writes it (olmirror/lock/requirements_txt.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from olmirror.errors import SpecError
from olmirror.lock.requirements_txt import (
    REQUESTED,
    parse_requirements,
    pinned_text,
    read_compiled,
    read_requirements_file,
)


def test_pinned_text_reads_back_as_the_same_pins_in_pip_compiles_layout() -> None:
    pins = ["certifi==2024.2.2", "requests==2.31.0", "urllib3==2.2.1"]
    via = {"requests": [REQUESTED], "urllib3": ["requests"], "certifi": ["requests", "x"]}
    text = pinned_text(pins, via)
    assert text == (
        "certifi==2024.2.2\n    # via\n    #   requests\n    #   x\n"
        "requests==2.31.0\n    # via -r requirements.in\n"
        "urllib3==2.2.1\n    # via requests\n"
    )
    parsed = parse_requirements(text, "requirements.txt")
    assert [line for line, _ in parsed.requirements] == pins
    assert [where for _, where in parsed.requirements] == [
        "requirements.txt:1", "requirements.txt:5", "requirements.txt:7"
    ]  # fmt: skip
    assert not parsed.problems and not parsed.includes


def test_uvs_compiled_output_gives_pins_and_who_needs_them() -> None:
    text = (
        "certifi==2024.2.2        # via requests\n"
        "Requests==2.31.0         # via -r -\n"
        "zeta_utils==1.0          # via speedups, Alpha\n"
    )
    pins, needed_by = read_compiled(text)
    assert pins == ["certifi==2024.2.2", "requests==2.31.0", "zeta-utils==1.0"]
    assert needed_by == {
        "certifi": ["requests"], "requests": [], "zeta-utils": ["speedups", "alpha"]
    }  # fmt: skip


def test_continuations_hashes_comments_includes_and_refused_options(tmp_path: Path) -> None:
    text = (
        "# a comment\n"
        "six==1.16.0 \\\n"
        "    --hash=sha256:abc  # pinned\n"
        "-r more.txt\n"
        "--index-url https://elsewhere/simple\n"
        "name @ https://host/x.whl\n"
        "not a requirement!\n"
    )
    parsed = parse_requirements(text, "r.in")
    assert parsed.requirements == (("six==1.16.0", "r.in:2"),)
    assert parsed.includes == (("more.txt", "r.in:4"),)
    assert [where for where, _ in parsed.problems] == ["r.in:5", "r.in:6", "r.in:7"]
    assert "the mirror decides the index" in parsed.problems[0][1]

    (tmp_path / "a.txt").write_text("omega==1.2\n-r b.txt\n")
    (tmp_path / "b.txt").write_text("theta==1.0\n")
    assert read_requirements_file(tmp_path / "a.txt") == [
        ("omega==1.2", f"{tmp_path / 'a.txt'}:1"), ("theta==1.0", f"{tmp_path / 'b.txt'}:1")
    ]  # fmt: skip
    (tmp_path / "b.txt").write_text("-r a.txt\n")
    with pytest.raises(SpecError, match="includes itself through -r"):
        read_requirements_file(tmp_path / "a.txt")
