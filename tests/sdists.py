"""Real source distributions for the test upstream, and the real build backend they need.

- `docopt` 0.6.2 as PyPI has it: only an sdist, built by setuptools from its `setup.py`
  (no pyproject.toml), with the project's real metadata (PKG-INFO, setup.py, setup.cfg);
  its module is a short stand-in with the real version.
- `cspeed` 1.0: an sdist with a C extension, so its wheel is a platform wheel.
- `setuptools`: the build backend, as the wheel of the setuptools installed here (its files
  and metadata, zipped again): tests never reach a public index, and the upstream must hold
  what a build in isolation installs.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import importlib.metadata
import io
import tarfile
import zipfile

from upstream import PROJECTS, Project, Release

DOCOPT_PKG_INFO = """\
Metadata-Version: 1.1
Name: docopt
Version: 0.6.2
Summary: Pythonic argument parser, that will make you smile
Home-page: http://docopt.org
Author: Vladimir Keleshev
Author-email: vladimir@keleshev.com
License: MIT
Description: docopt creates beautiful command-line interfaces
Keywords: option arguments parsing optparse argparse getopt
Platform: UNKNOWN
Classifier: Development Status :: 3 - Alpha
Classifier: Topic :: Utilities
Classifier: Programming Language :: Python :: 2.5
Classifier: Programming Language :: Python :: 2.6
Classifier: Programming Language :: Python :: 2.7
Classifier: Programming Language :: Python :: 3.2
Classifier: Programming Language :: Python :: 3.3
Classifier: License :: OSI Approved :: MIT License
"""

DOCOPT_SETUP = """\
from setuptools import setup

from docopt import __version__


setup(
    name='docopt',
    version=__version__,
    author='Vladimir Keleshev',
    author_email='vladimir@keleshev.com',
    description='Pythonic argument parser, that will make you smile',
    license='MIT',
    keywords='option arguments parsing optparse argparse getopt',
    url='http://docopt.org',
    py_modules=['docopt'],
    long_description=open('README.rst').read(),
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Topic :: Utilities',
        'Programming Language :: Python :: 2.5',
        'Programming Language :: Python :: 2.6',
        'Programming Language :: Python :: 2.7',
        'Programming Language :: Python :: 3.2',
        'Programming Language :: Python :: 3.3',
        'License :: OSI Approved :: MIT License',
    ],
)
"""

DOCOPT_MODULE = '''\
"""Pythonic command-line interface parser that will make you smile (a test stand-in)."""

__all__ = ['docopt']
__version__ = '0.6.2'


def docopt(doc, argv=None, help=True, version=None, options_first=False):
    return {'doc': doc, 'argv': argv}
'''

CSPEED_C = """\
#include <Python.h>

static PyObject *twice(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(2 * n);
}

static PyMethodDef methods[] = {{"twice", twice, METH_O, "2 * n"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "cspeed", NULL, -1, methods};
PyMODINIT_FUNC PyInit_cspeed(void) { return PyModule_Create(&module); }
"""


def _sdist(top: str, members: dict[str, str]) -> bytes:
    """A .tar.gz of `members` under `top/`, with pinned times, as `setup.py sdist` makes."""
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def docopt_sdist() -> tuple[str, bytes]:
    members = {
        "PKG-INFO": DOCOPT_PKG_INFO,
        "README.rst": "docopt creates beautiful command-line interfaces\n",
        "LICENSE-MIT": "Copyright (c) 2012 Vladimir Keleshev, <vladimir@keleshev.com>\n",
        "setup.py": DOCOPT_SETUP,
        "setup.cfg": "[wheel]\nuniversal = 1\n\n[egg_info]\ntag_build = \ntag_date = 0\n",
        "docopt.py": DOCOPT_MODULE,
    }
    return "docopt-0.6.2.tar.gz", _sdist("docopt-0.6.2", members)


def cspeed_sdist() -> tuple[str, bytes]:
    members = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: cspeed\nVersion: 1.0\nSummary: a C module\n",
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        ),
        "setup.py": (
            "from setuptools import Extension, setup\n\n"
            "setup(name='cspeed', version='1.0', "
            "ext_modules=[Extension('cspeed', ['cspeed.c'])])\n"
        ),
        "cspeed.c": CSPEED_C,
    }
    return "cspeed-1.0.tar.gz", _sdist("cspeed-1.0", members)


def installed_wheel(name: str) -> tuple[str, bytes]:
    """The installed distribution `name` as a wheel: its files under site-packages, its
    METADATA and WHEEL, and a RECORD made for them."""
    dist = importlib.metadata.distribution(name)
    version = dist.version
    info = f"{name}-{version}.dist-info"
    skipped = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    paths = sorted(
        str(f) for f in dist.files or []
        if not str(f).startswith("..") and "__pycache__" not in str(f)
        and not (str(f).startswith(info + "/") and f.name in skipped)
    )  # fmt: skip
    raw, record = io.BytesIO(), io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            data = dist.locate_file(path).read_bytes()
            zf.writestr(zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            writer.writerow([path, f"sha256={digest.decode()}", len(data)])
        writer.writerow([f"{info}/RECORD", "", ""])
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", (2024, 1, 1, 0, 0, 0)), record.getvalue())
    return f"{name}-{version}-py3-none-any.whl", raw.getvalue()


def with_sdists(backend: bool = True) -> tuple[Project, ...]:
    """The usual projects, docopt and cspeed as sdists only, and setuptools if `backend`."""
    only_sdist = {"wheels": (), "sdist": False}
    extra = [
        Project("docopt", (Release("0.6.2", **only_sdist, given=(docopt_sdist(),)),)),
        Project("cspeed", (Release("1.0", **only_sdist, given=(cspeed_sdist(),)),)),
    ]
    if backend:
        wheel = installed_wheel("setuptools")
        version = importlib.metadata.version("setuptools")
        extra.append(Project("setuptools", (Release(version, **only_sdist, given=(wheel,)),)))
    return (*PROJECTS, *extra)


LEAKY_SETUP = """\
import os
import sys

from setuptools import setup

# a backend that prints the environment it runs in, as a careless (or hostile) one may
line = "the build's environment: " + repr(dict(os.environ))
print(line)
print(line, file=sys.stderr)
if {step!r} in sys.argv:
    sys.exit("this build fails on purpose, at {step}")
setup(name={name!r}, version="1.0", py_modules=[])
"""


def leaky_project(name: str, fails_at: str) -> Project:
    """`name` 1.0, only an sdist, whose setup.py prints its whole environment and then
    fails when run for `fails_at`: "dist_info" (uv reads its metadata, in uv pip compile)
    or "bdist_wheel" (olmirror builds its wheel, with uv build)."""
    top = f"{name}-1.0"
    members = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nSummary: leaks\n",
        "setup.py": LEAKY_SETUP.format(step=fails_at, name=name),
    }
    sdist = (f"{top}.tar.gz", _sdist(top, members))
    return Project(name, (Release("1.0", wheels=(), sdist=False, given=(sdist,)),))
