"""Resolve one requirement set for one target with `uv pip compile`, and say why not.

pip-compile and pip's own resolver evaluate environment markers for the interpreter they
run on, not for the target, so a `python_version < "3.11"` or `sys_platform == "win32"`
dependency would be wrong for any other target. uv's resolver evaluates markers and wheel
tags for a named Python version and platform. uv's failures are sorted here: a set with no
solution (`Unresolvable`, a fault of the set), an sdist whose metadata cannot be built, a
damaged download or a busy upstream (run again), an upstream that cannot be read.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from uv import find_uv_bin

from olmirror.errors import OlmirrorError
from olmirror.lock.requirement_sets import RequirementSet, requirement_name
from olmirror.lock.requirements_txt import read_compiled
from olmirror.lock.targets import Target, uv_platform
from olmirror.lock.upstream_auth import Credentials, redact
from olmirror.lock.uv_env import build_env, index_args, uv_env, uv_refused
from olmirror.remote.upstream_http import Retries

log = logging.getLogger(__name__)

# The box-drawing characters uv decorates its error reports with.
# How long one uv resolution may take, whatever the upstream does.
RESOLVE_SECONDS = 900
_UV_DECORATION = " \u00d7\u2570\u2500\u25b6\u2502"
_NO_SOLUTION = "No solution found"
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?", re.IGNORECASE)
# uv's words for a download that arrived damaged or cut: its hash check, its wheel reader,
# and its HTTP client when the body ends early (seen against tests/upstream.py's faults).
_DAMAGED = (
    "Hash mismatch",
    "invalid package format",
    "error decoding response body",
    "close_notify",
    "unexpected end of file",
    "Failed to extract",
    "invalid zip",
)
# ... and for a failure of the network or a server that uv already retried on its own.
_BUSY = ("429 Too Many Requests", "408 Request Timeout")
_FLAKY = (
    "server error",
    "error sending request",
    "connection error",
    "timed out",
    "dns error",
    "failed to lookup address",
)
# Failures that another run would only repeat: nothing listens, TLS is refused, a 4xx
# (but `_BUSY`).
_LASTING = ("Connection refused", "certificate", "client error (4")
# uv building an sdist to read its metadata, and the build requirement it could not find.
_BUILT = re.compile(r"Failed to (?:download and )?build `([^`]+)`")
_BUILD_NEEDS = re.compile(r"No solution found when resolving: `([^`]+)`")
_URL = re.compile(r"https?://[^\s`'\")]+")


@dataclass(frozen=True)
class Resolution:
    """One set's closure for one target: sorted pins, and who needs each (canonical names)."""

    pins: list[str]
    needed_by: dict[str, list[str]]


def _uv_report(stderr: str) -> tuple[str, str]:
    """(headline, causes) of uv's error report, without decoration or `error:`/`cause:`."""
    lines = [line.strip(_UV_DECORATION) for line in stderr.splitlines()]
    lines = [line.strip() for line in lines if line.strip()]
    headline, causes = "", []
    for line in lines:
        if line.startswith("error:") and not headline:
            headline = line.removeprefix("error:").strip()
        elif line.startswith("warning:"):
            continue
        else:
            causes.append(line.removeprefix("cause:").strip())
    return headline or " ".join(causes), " ".join(causes)


def _mentioned(requirements: RequirementSet, text: str) -> list[str]:
    """The set's requirements whose project the resolver's explanation names."""
    named = {canonicalize_name(word) for word in _NAME.findall(text)}
    lines = requirements.requirements
    return [line for line in lines if canonicalize_name(requirement_name(line)) in named]


class Unresolvable(OlmirrorError):
    """A set's requirements have no solution on the upstream: a fault of the set, not of
    reaching the upstream."""


def _damaged(stderr: str) -> bool:
    """Whether uv failed on a file or page that arrived damaged or cut."""
    return any(sign in stderr for sign in _DAMAGED)


def transient(stderr: str) -> bool:
    """Whether uv failed in a way another run may not meet (see `_DAMAGED`, `_FLAKY`)."""
    if _damaged(stderr) or any(sign in stderr for sign in _BUSY):
        return True  # uv says "no solution" of a wheel that arrived cut, too
    if _NO_SOLUTION in stderr or any(sign in stderr for sign in _LASTING):
        return False
    return any(sign in stderr for sign in _FLAKY)


def _resolve_error(
    requirements: RequirementSet,
    target: Target,
    upstream: str,
    stderr: str,
    tries: int = 1,
    credentials: Credentials | None = None,
) -> OlmirrorError:
    headline, causes = _uv_report(stderr)
    where = f"cannot resolve {requirements.origin} for target {target.key}"
    refused = uv_refused(stderr, upstream, credentials)
    if refused:  # uv says "no solution" then, but no set is at fault
        return OlmirrorError(f"{where}: {refused}")
    runs = f" ({tries} tries)" if tries > 1 else ""
    if _damaged(stderr) and not headline.startswith(_NO_SOLUTION):
        url = _URL.search(stderr)
        return OlmirrorError(
            f"{where}: the upstream sent a damaged or cut file for "
            f"{url[0] if url else upstream}{runs}, a network or proxy fault ({headline}); "
            "try again later, or raise mirror.retries.attempts"
        )
    built = _BUILT.search(stderr)
    if built and not headline.startswith(_NO_SOLUTION):
        return _build_error(where, built[1], stderr, causes)
    if not headline.startswith(_NO_SOLUTION):
        return OlmirrorError(
            f"{where}: the upstream {upstream} could not be read{runs} ({headline}"
            f"{': ' + causes if causes and causes != headline else ''}); check that it is "
            "reachable from this machine and that mirror.upstream and mirror.ca_file are right"
        )
    asked = "; ".join(
        f"{line!r} from {requirements.source_of(line)}" for line in _mentioned(requirements, causes)
    )
    damaged = (
        f" (read{runs}: if that file is whole on the upstream, it arrived damaged, a network "
        "or proxy fault)"
        if _damaged(stderr)
        else ""
    )
    return Unresolvable(
        f"{where}: {causes or headline}{' (asked for by ' + asked + ')' if asked else ''}"
        f"{damaged}; fix the requirement, or add the missing release to the upstream"
    )


def missing_build_requirement(output: str) -> str | None:
    """The build requirement uv could not find on the upstream, when that is why building
    an sdist failed (for its metadata, or for a wheel)."""
    missing = _BUILD_NEEDS.search(output)
    return missing[1] if missing and "Failed to resolve requirements from" in output else None


def _build_error(where: str, pin: str, stderr: str, causes: str) -> Unresolvable:
    """uv had to build `pin`'s sdist to read its metadata, and could not: a fault of that
    release on this upstream, so a set found on a host fails alone."""
    missing = missing_build_requirement(stderr)
    if missing:
        return Unresolvable(
            f"{where}: uv cannot read the metadata of {pin}, which the upstream has only as a "
            f"source distribution: building it needs {missing}, one of its build "
            f"requirements, and the upstream does not have it ({causes}). Add its build "
            f"requirements to the upstream, or pin a release of {pin.partition('==')[0]} "
            "that has a wheel"
        )
    return Unresolvable(
        f"{where}: uv cannot read the metadata of {pin}, which the upstream has only as a "
        f"source distribution, because building it failed ({causes}); pin a release that "
        "has a wheel, or fix the sdist's build"
    )


def compile_set(
    requirements: RequirementSet,
    target: Target,
    upstream: str,
    ca: str | None,
    index_timeout: float = 30,
    retries: Retries | None = None,
    prefer: list[str] | None = None,
    upgrade: frozenset[str] = frozenset(),
    credentials: Credentials | None = None,
) -> Resolution:
    """`prefer`: the pins to start from (uv keeps those of its output file, as pip-compile
    does), but for the projects in `upgrade`; `credentials`: the upstream's, for uv's
    environment alone."""
    with tempfile.TemporaryDirectory(prefix="olmirror-resolve-") as folder:
        output = Path(folder, "requirements.txt")
        output.write_text("".join(f"{pin}\n" for pin in prefer or []))
        return _compile_to(
            requirements, target, upstream, ca, index_timeout, retries, output, upgrade,
            credentials,
        )  # fmt: skip


def _compile_to(
    requirements: RequirementSet,
    target: Target,
    upstream: str,
    ca: str | None,
    index_timeout: float,
    retries: Retries | None,
    output: Path,
    upgrade: frozenset[str],
    credentials: Credentials | None,
) -> Resolution:
    platform = uv_platform(target.platform)
    if platform is None:
        raise OlmirrorError(
            f"target {target.key}: cannot resolve for platform {target.platform!r} "
            "(uv knows manylinux, musllinux, linux, macosx and win platforms of x86_64/aarch64)"
        )
    argv = [
        find_uv_bin(), "pip", "compile", "-",
        "--python", sys.executable,  # any interpreter: markers use --python-version
        "--python-version", target.python,
        "--python-platform", platform,
        *index_args(upstream),
        "--no-header", "--annotation-style", "line", "--quiet", "--no-config",
        "--color", "never", "--output-file", str(output),
        *(f"--upgrade-package={name}" for name in sorted(upgrade)),
    ]  # fmt: skip
    retries = retries or Retries()
    # uv builds an sdist to read its metadata, running the upstream's code: as a build
    env = build_env(uv_env(ca, index_timeout, retries, credentials))
    failed: float | None = None  # when the first run failed (mirror.retries.within)
    tries = 0
    while True:
        tries += 1
        try:
            done = subprocess.run(
                argv,
                input="\n".join(requirements.requirements) + "\n",
                capture_output=True,
                text=True,
                env=env,
                timeout=RESOLVE_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise OlmirrorError(
                f"resolving {requirements.origin} for target {target.key} against {upstream} "
                f"took more than {RESOLVE_SECONDS} s and was stopped; the upstream may be silent "
                "or dripping: check that it answers"
            ) from None
        if done.returncode == 0:
            break
        stderr = redact(done.stderr, credentials)  # what a build printed of its environment
        # uv retries each request itself, but not a file that arrives damaged: run it again
        # (what it already read is in its cache), as long as the retries allow.
        failed = failed or time.monotonic()
        pause = retries.pause(tries, failed)
        if pause is None or not transient(stderr):
            raise _resolve_error(requirements, target, upstream, stderr, tries, credentials)
        log.debug("resolving %s for %s again: %s", requirements.origin, target.key, stderr)
        time.sleep(pause)
    pins, needed_by = read_compiled(output.read_text())
    return Resolution(sorted(pins), needed_by)
