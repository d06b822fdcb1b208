"""The stand-in's base image: the folder that OpenLambda dumps a Docker image into.

A real `ol worker init` extracts a Docker image (`-i`, default `ol-min`) into
<P>/lambda and lambdas run chrooted there. The stand-in cannot run Docker, so it lays
out the few files of an image that matter to packages: the image's `python3` (a
real CPython of this machine with the image's version), its C library, and the
folders OpenLambda adds on top. `ol-min` is Ubuntu 22.04 with its python3, CPython
3.10 (min-image/Dockerfile:1,5); `python:3.X` is CPython 3.X. The C library is this
machine's, since the stand-in's sandbox runs on it.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shlex
import shutil
import subprocess
from pathlib import Path

# Image -> the CPython version its python3 is.
PYTHONS = {"ol-min": "3.10"}


class ImageError(Exception):
    pass


def python_version(image: str) -> str:
    if image in PYTHONS:
        return PYTHONS[image]
    match = re.fullmatch(r"python:(3\.\d+)(?:[-.].*)?", image)
    if match:
        return match[1]
    raise ImageError(
        f"the stand-in knows no image {image!r}: it builds 'ol-min' (CPython 3.10) and "
        "'python:3.X' images from this machine's interpreters"
    )


def _uv_python(version: str) -> str:
    """The CPython `version` uv has installed, or ''."""
    uv = shutil.which("uv")
    if not uv:
        return ""
    argv = [uv, "python", "find", "--no-python-downloads", version]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def _interpreter(version: str) -> str:
    """A CPython `version` of this machine: $OL_STANDIN_PYTHON, python3.X, pyenv's or uv's."""
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [
        os.environ.get("OL_STANDIN_PYTHON", ""),
        *sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"), reverse=True),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
        shutil.which(f"python{version}") or "",
        _uv_python(version),
    ]
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    raise ImageError(
        f"the stand-in's image needs a CPython {version} on this machine (none found as "
        f"python{version}, under pyenv or uv, or in $OL_STANDIN_PYTHON); `uv python install "
        f"{version}` gives one"
    )


def _libc() -> tuple[str, Path]:
    """This machine's multiarch folder name and its libc.so.6."""
    machine = platform.machine()
    for folder in (f"/usr/lib/{machine}-linux-gnu", f"/lib/{machine}-linux-gnu", "/lib64"):
        if os.path.exists(f"{folder}/libc.so.6"):
            return f"{machine}-linux-gnu", Path(folder, "libc.so.6").resolve()
    raise ImageError("the stand-in needs a glibc machine (no libc.so.6 found)")


def build(base: Path, image: str) -> None:
    """Lay out `image` in `base`, then add what initOLBaseDir adds (helpers.go:43-59)."""
    version = python_version(image)
    interpreter = _interpreter(version)
    (base / "usr" / "bin").mkdir(parents=True)
    wrapper = base / "usr" / "bin" / f"python{version}"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(interpreter)} "$@"\n')
    wrapper.chmod(0o755)
    (base / "usr" / "bin" / "python3").symlink_to(f"python{version}")
    (base / "usr" / "lib" / f"python{version}").mkdir(parents=True)
    multiarch, libc = _libc()
    (base / "usr" / "lib" / multiarch).mkdir(parents=True)
    shutil.copyfile(libc, base / "usr" / "lib" / multiarch / "libc.so.6")
    for folder in ("etc", "tmp", "root"):
        (base / folder).mkdir()
    for folder in ("handler", "host", "packages"):
        (base / folder).mkdir(mode=0o700)
    (base / "etc" / "resolv.conf").write_text("nameserver 8.8.8.8\n")


def python3(base: Path) -> str:
    """The image's python3, as the sandbox runs it: `chroot <root> python3` (sock.go:70)."""
    return str(base / "usr" / "bin" / "python3")
