"""Target environments as pure functions: the platform tags a target accepts, the name uv
gives it, how it ranks wheels, and which requirements and files it installs.

olmirror chooses each target's file without running there, so these must agree with what
pip on the target would do; a wrong answer is a mirror that lacks the file a worker wants.
"""

from __future__ import annotations

import platform
import sys

import pytest
from packaging import tags
from packaging.requirements import Requirement
from packaging.version import Version

from olmirror.lock.targets import Target, compatible_platforms, release_of, uv_platform

X86 = Target("3.11", "manylinux_2_28_x86_64")


# ---------------------------------------------------------------------------------------
# compatible_platforms
# ---------------------------------------------------------------------------------------


def test_manylinux_accepts_older_glibc_and_plain_linux_but_not_newer() -> None:
    """A glibc 2.28 machine runs wheels built for older glibc, never for a newer one."""
    found = compatible_platforms("manylinux_2_28_x86_64")
    assert found[0] == "manylinux_2_28_x86_64", "its own tag is the best"
    assert found[-1] == "linux_x86_64", "pip takes a plain linux wheel, last"
    for older in ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"):
        assert older in found
    assert "manylinux_2_5_x86_64" in found and "manylinux_2_4_x86_64" not in found
    for other in ("manylinux_2_31_x86_64", "manylinux_2_29_x86_64", "manylinux_2_28_aarch64"):
        assert other not in found
    assert len(found) == len(set(found)), "no tag twice"


def test_legacy_aliases_follow_the_glibc_they_stand_for() -> None:
    """pip lists manylinux2014 right after manylinux_2_17 (and 2010 after 2_12): the same
    glibc, so the order of the two names decides nothing but must not skip a step."""
    found = compatible_platforms("manylinux_2_28_x86_64")
    index = found.index
    assert index("manylinux2014_x86_64") == index("manylinux_2_17_x86_64") + 1
    assert index("manylinux2010_x86_64") == index("manylinux_2_12_x86_64") + 1
    assert index("manylinux1_x86_64") == index("manylinux_2_5_x86_64") + 1
    assert index("manylinux_2_17_x86_64") < index("manylinux_2_12_x86_64")


def test_legacy_manylinux_names_are_read_as_their_pep_600_names() -> None:
    """A spec may name a target `manylinux2014_x86_64`; it is glibc 2.17 by PEP 600."""
    assert compatible_platforms("manylinux2014_x86_64") == compatible_platforms(
        "manylinux_2_17_x86_64"
    )
    assert compatible_platforms("manylinux2010_i686")[:2] == [
        "manylinux_2_12_i686",
        "manylinux2010_i686",
    ]
    assert compatible_platforms("manylinux1_x86_64") == [
        "manylinux_2_5_x86_64",
        "manylinux1_x86_64",
        "linux_x86_64",
    ]
    aarch64 = compatible_platforms("manylinux2014_aarch64")
    assert aarch64[0] == "manylinux_2_17_aarch64" and "manylinux_2_18_aarch64" not in aarch64


def test_musllinux_accepts_older_musl_then_plain_linux() -> None:
    assert compatible_platforms("musllinux_1_2_x86_64") == [
        "musllinux_1_2_x86_64",
        "musllinux_1_1_x86_64",
        "musllinux_1_0_x86_64",
        "linux_x86_64",
    ]
    assert not any("manylinux" in p for p in compatible_platforms("musllinux_1_2_aarch64"))


def test_macos_accepts_older_releases_and_universal_wheels_of_its_arch() -> None:
    arm = compatible_platforms("macosx_14_0_arm64")
    assert arm[0] == "macosx_14_0_arm64"
    assert "macosx_11_0_arm64" in arm and "macosx_10_9_universal2" in arm
    assert "macosx_15_0_arm64" not in arm, "not a newer macOS"
    assert "macosx_10_9_x86_64" not in arm, "not an Intel-only wheel"
    intel = compatible_platforms("macosx_10_9_x86_64")
    assert "macosx_10_9_intel" in intel and "macosx_10_4_x86_64" in intel
    assert "macosx_10_10_x86_64" not in intel
    assert "macosx_11_0_arm64" not in intel


def test_windows_and_unknown_platforms_accept_only_themselves() -> None:
    assert compatible_platforms("win_amd64") == ["win_amd64"]
    assert compatible_platforms("win32") == ["win32"]
    assert compatible_platforms("any") == ["any"]


# ---------------------------------------------------------------------------------------
# uv_platform
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "uv"),
    [
        ("manylinux_2_28_x86_64", "x86_64-manylinux_2_28"),
        ("manylinux_2_17_aarch64", "aarch64-manylinux_2_17"),
        ("manylinux2014_x86_64", "x86_64-manylinux_2_17"),  # the legacy name, renamed
        ("manylinux_2_31_aarch64", "aarch64-manylinux_2_31"),
        # uv knows 2_17, 2_28 and 2_31..2_40: the newest it knows at or below the target's
        ("manylinux_2_30_x86_64", "x86_64-manylinux_2_28"),
        ("manylinux_2_27_x86_64", "x86_64-manylinux_2_17"),
        ("manylinux_2_45_x86_64", "x86_64-manylinux_2_40"),
        ("musllinux_1_2_x86_64", "x86_64-unknown-linux-musl"),
        ("musllinux_1_1_aarch64", "aarch64-unknown-linux-musl"),
        ("macosx_11_0_arm64", "aarch64-apple-darwin"),
        ("macosx_10_9_x86_64", "x86_64-apple-darwin"),
        ("linux_x86_64", "x86_64-unknown-linux-gnu"),
        ("linux_aarch64", "aarch64-unknown-linux-gnu"),
        ("win_amd64", "x86_64-pc-windows-msvc"),
        ("win_arm64", "aarch64-pc-windows-msvc"),
        ("win32", "i686-pc-windows-msvc"),
    ],
)
def test_uv_platform_names(tag: str, uv: str) -> None:
    """What `uv pip compile --python-platform` is given, so uv resolves for the target."""
    assert uv_platform(tag) == uv


@pytest.mark.parametrize(
    "tag",
    [
        "manylinux_2_16_x86_64",  # older than any manylinux uv knows
        "manylinux_2_28_i686",  # an architecture uv has no manylinux name for
        "musllinux_1_2_i686",
        "macosx_11_0_universal2",
        "linux_i686",
        "freebsd_13_x86_64",
        "any",
    ],
)
def test_uv_platform_is_none_when_uv_has_no_name(tag: str) -> None:
    """None, not a wrong name: the caller then resolves without a platform."""
    assert uv_platform(tag) is None


# ---------------------------------------------------------------------------------------
# Target.wheel_rank
# ---------------------------------------------------------------------------------------


def _rank(target: Target, filename: str) -> int:
    rank = target.wheel_rank(filename)
    assert rank is not None, f"{target.key} should accept {filename}"
    return rank


def test_a_cpython_wheel_ranks_above_abi3_and_abi3_above_pure_python() -> None:
    """pip's order: the interpreter's own ABI, then the stable ABI (newest first), then
    pure-Python wheels; a lower rank is better."""
    order = [
        "a-1.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "a-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "a-1.0-cp311-abi3-manylinux_2_17_x86_64.whl",
        "a-1.0-cp38-abi3-manylinux_2_17_x86_64.whl",
        "a-1.0-py3-none-manylinux_2_17_x86_64.whl",
        "a-1.0-cp311-none-any.whl",
        "a-1.0-py311-none-any.whl",
        "a-1.0-py3-none-any.whl",
    ]
    ranks = [_rank(X86, name) for name in order]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks), dict(
        zip(order, ranks, strict=True)
    )
    assert _rank(X86, "a-1.0-cp311-cp311-manylinux_2_28_x86_64.whl") == 0


def test_a_plain_linux_wheel_is_accepted_below_every_manylinux_one() -> None:
    linux = _rank(X86, "a-1.0-cp311-cp311-linux_x86_64.whl")
    assert linux > _rank(X86, "a-1.0-cp311-cp311-manylinux1_x86_64.whl")
    assert linux < _rank(X86, "a-1.0-cp311-abi3-manylinux_2_28_x86_64.whl")


def test_a_wheel_with_several_tags_ranks_by_its_best_one() -> None:
    both = _rank(X86, "a-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert both == _rank(X86, "a-1.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    universal = _rank(X86, "a-1.0-py2.py3-none-any.whl")
    assert universal == _rank(X86, "a-1.0-py3-none-any.whl")


@pytest.mark.parametrize(
    "filename",
    [
        "a-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",  # another Python
        "a-1.0-cp310-cp310-manylinux_2_17_x86_64.whl",
        "a-1.0-cp312-abi3-manylinux_2_17_x86_64.whl",  # stable ABI from a newer Python
        "a-1.0-cp311-cp311-manylinux_2_17_aarch64.whl",  # another architecture
        "a-1.0-cp311-cp311-manylinux_2_31_x86_64.whl",  # a newer glibc
        "a-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",  # musl, not glibc
        "a-1.0-cp311-cp311-win_amd64.whl",
        "a-1.0-py2-none-any.whl",
        "a-1.0.tar.gz",  # not a wheel
        "a.whl",  # not a valid wheel name
    ],
)
def test_wheels_the_target_cannot_install_have_no_rank(filename: str) -> None:
    assert X86.wheel_rank(filename) is None


def test_musllinux_and_any_targets_rank_their_own_wheels_only() -> None:
    musl = Target("3.11", "musllinux_1_2_x86_64")
    assert _rank(musl, "a-1.0-cp311-cp311-musllinux_1_1_x86_64.whl") < _rank(
        musl, "a-1.0-cp311-cp311-linux_x86_64.whl"
    )
    assert musl.wheel_rank("a-1.0-cp311-cp311-manylinux_2_17_x86_64.whl") is None
    assert musl.wheel_rank("a-1.0-cp311-cp311-musllinux_1_3_x86_64.whl") is None
    anywhere = Target("3.11", "any")
    assert _rank(anywhere, "a-1.0-py3-none-any.whl") is not None
    assert anywhere.wheel_rank("a-1.0-cp311-abi3-manylinux_2_17_x86_64.whl") is None


@pytest.mark.skipif(
    sys.platform != "linux"
    or platform.libc_ver()[0] != "glibc"
    or sys.implementation.name != "cpython",
    reason="compares with this machine's own tags, which needs CPython on glibc Linux",
)
def test_ranks_are_pips_order_on_a_machine_like_the_target() -> None:
    """For a target that is this very machine, every tag pip accepts here (packaging's
    sys_tags, which pip uses) is accepted, and in pip's order of preference."""
    glibc = platform.libc_ver()[1].replace(".", "_")
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    here = Target(python, f"manylinux_{glibc}_{platform.machine()}")
    supported = list(tags.sys_tags())
    ranks = [here.wheel_rank(f"a-1.0-{tag}.whl") for tag in supported]
    assert ranks == list(range(len(supported)))


# ---------------------------------------------------------------------------------------
# Target.accepts_python
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requires_python", "accepted"),
    [
        (None, True),
        ("", True),
        (">=3.8", True),
        (">=3.11", True),
        ("==3.11.*", True),
        ("<3.11", False),
        (">=3.12", False),
        ("!=3.11.*", False),
        (">=3.8, <3.11", False),
        # The target is MAJOR.MINOR, read as x.y.0 (as uv reads --python-version 3.11)
        (">=3.11.1", False),
        (">=3.11.0rc1", True),  # a pre-release bound still admits the final x.y.0
        ("not a specifier", True),  # pip ignores a broken requires-python, so does olmirror
    ],
)
def test_accepts_python(requires_python: str | None, accepted: bool) -> None:
    assert X86.accepts_python(requires_python) is accepted


# ---------------------------------------------------------------------------------------
# Target.installs
# ---------------------------------------------------------------------------------------


def _installs(target: Target, marker: str) -> bool:
    return target.installs(Requirement(f"a; {marker}"))


def test_a_requirement_without_a_marker_is_installed_everywhere() -> None:
    assert X86.installs(Requirement("a==1.0"))
    assert Target("3.8", "win32").installs(Requirement("a"))


def test_python_version_markers_are_the_targets_not_this_interpreters() -> None:
    old = Target("3.8", "manylinux_2_17_x86_64")
    new = Target("3.13", "manylinux_2_17_x86_64")
    assert _installs(old, 'python_version < "3.9"') and not _installs(new, 'python_version < "3.9"')
    assert _installs(new, 'python_version >= "3.12"')
    assert not _installs(old, 'python_version >= "3.12"')
    assert _installs(X86, 'python_full_version == "3.11.0"'), "MAJOR.MINOR is x.y.0"


@pytest.mark.parametrize(
    ("platform_tag", "sys_platform", "os_name", "system", "machine"),
    [
        ("manylinux_2_28_x86_64", "linux", "posix", "Linux", "x86_64"),
        ("musllinux_1_2_aarch64", "linux", "posix", "Linux", "aarch64"),
        ("linux_armv7l", "linux", "posix", "Linux", "armv7l"),
        ("macosx_11_0_arm64", "darwin", "posix", "Darwin", "arm64"),
        ("macosx_11_0_universal2", "darwin", "posix", "Darwin", "arm64"),
        ("macosx_10_9_x86_64", "darwin", "posix", "Darwin", "x86_64"),
        ("win_amd64", "win32", "nt", "Windows", "AMD64"),
        pytest.param(
            *("win_arm64", "win32", "nt", "Windows", "ARM64"),
        ),
        ("win32", "win32", "nt", "Windows", "x86"),
    ],
)
def test_platform_markers_are_the_targets(
    platform_tag: str, sys_platform: str, os_name: str, system: str, machine: str
) -> None:
    """What `sys.platform`, `os.name`, `platform.system()` and `platform.machine()` say on
    the target, whatever machine olmirror runs on."""
    target = Target("3.11", platform_tag)
    assert _installs(target, f'sys_platform == "{sys_platform}"')
    assert _installs(target, f'os_name == "{os_name}"')
    assert _installs(target, f'platform_system == "{system}"')
    assert _installs(target, f'platform_machine == "{machine}"')
    others = {"linux", "darwin", "win32"} - {sys_platform}
    assert not any(_installs(target, f'sys_platform == "{o}"') for o in others)


def test_markers_combine_and_implementation_is_cpython() -> None:
    windows = Target("3.12", "win_amd64")
    marker = 'python_version >= "3.12" and sys_platform == "win32"'
    assert _installs(windows, marker) and not _installs(X86, marker)
    assert _installs(X86, 'python_version >= "3.12" or sys_platform == "linux"')
    assert _installs(X86, 'implementation_name == "cpython"')
    assert not _installs(X86, 'platform_python_implementation == "PyPy"')


def test_an_extra_marker_does_not_hold_for_a_plain_requirement() -> None:
    """A dependency only of an extra is not installed when the extra is not asked for."""
    assert not _installs(X86, 'extra == "fast"')


def test_a_marker_that_cannot_be_evaluated_is_a_value_error() -> None:
    """The caller names the requirement; a traceback from packaging would not."""
    with pytest.raises(ValueError, match="cannot be evaluated"):
        _installs(X86, 'python_version ~= "not-a-version"')


def test_implementation_version_is_the_targets() -> None:
    """On CPython, implementation_version is the Python version: a 3.12 target's, not that of
    the interpreter running olmirror."""
    other = "3.12" if sys.version_info[:2] != (3, 12) else "3.11"
    target = Target(other, "manylinux_2_17_x86_64")
    assert _installs(target, f'implementation_version >= "{other}"')


# ---------------------------------------------------------------------------------------
# release_of
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "release"),
    [
        ("Foo_Bar-1.0-py3-none-any.whl", ("foo-bar", "1.0")),  # the name canonicalized
        ("zeta_utils-01.0-cp311-cp311-manylinux_2_17_x86_64.whl", ("zeta-utils", "1.0")),
        ("foo-1.0-1-py3-none-any.whl", ("foo", "1.0")),  # a build tag is not the version
        ("foo.bar-2.0rc1.tar.gz", ("foo-bar", "2.0rc1")),
        ("foo_bar-1.0.post1.tar.gz", ("foo-bar", "1.0.post1")),
        ("Foo-Bar-1.0.zip", ("foo-bar", "1.0")),
    ],
)
def test_release_of_wheels_and_sdists(filename: str, release: tuple[str, str]) -> None:
    assert release_of(filename) == (release[0], Version(release[1]))


@pytest.mark.parametrize(
    "filename", ["README.txt", "foo-1.0.tar.bz2", "foo-1.0.exe", "foo.whl", "foo-1.0.egg"]
)
def test_release_of_anything_else_is_none(filename: str) -> None:
    """An index may list installers and eggs; they are no release's wheel or sdist."""
    assert release_of(filename) is None
