"""Plans and results for people (a terminal, colour only on a TTY) and for programs (JSON)."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from olmirror.apply import HostResult
from olmirror.mirror.verify import Gap
from olmirror.openlambda.findings import Finding
from olmirror.plan import Plan
from olmirror.plan_summary import PackageChange, mirror_generated, writes_lock
from olmirror.resources import Change, File

_COLOURS = {"green": "32", "yellow": "33", "red": "31", "cyan": "36", "bold": "1", "dim": "2"}
MAX_DIFF_LINES = 60
# By default: a file's diff longer than this is one line, and so are the package changes
# past the first MAX_PACKAGE_LINES; --diff shows them all.
MAX_FILE_DIFF = 24
MAX_PACKAGE_LINES = 30
_MARKS = {"create": ("+", "green"), "update": ("~", "yellow"), "run": (">", "cyan")}


# Control characters a host's file name or output may hold: shown escaped, so that
# nothing a host sends moves the cursor or rewrites the terminal. Our own colours (SGR,
# ESC [ ... m) pass.
_CONTROL = re.compile(r"\x1b(?!\[[0-9;]*m)|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]")


def terminal_safe(text: str) -> str:
    """`text` fit for any terminal and any stdout encoding: control characters escaped,
    and the undecodable bytes of a non-UTF-8 file name as \\xNN."""
    text = _CONTROL.sub(lambda m: repr(m[0])[1:-1], text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Painter:
    """Colour only on a terminal, and never when NO_COLOR is set to anything (no-color.org)."""

    def __init__(self, stream: TextIO, colour: bool | None = None) -> None:
        self.stream = stream
        if colour is None:
            colour = stream.isatty() and not os.environ.get("NO_COLOR")
        self.colour = colour

    def __call__(self, text: str, style: str) -> str:
        return f"\033[{_COLOURS[style]}m{text}\033[0m" if self.colour else text

    def line(self, text: str = "") -> None:
        self.stream.write(terminal_safe(text) + "\n")


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _diff_line(paint: Painter, line: str) -> str:
    if line.startswith(("+++", "---")):
        return paint(line, "bold")
    if line.startswith("+"):
        return paint(line, "green")
    if line.startswith("-"):
        return paint(line, "red")
    if line.startswith("~"):
        return paint(line, "yellow")
    if line.startswith("@@"):
        return paint(line, "cyan")
    return line


def _change(paint: Painter, change: Change, limit: int | None) -> None:
    """One change and its diff, cut after `limit` lines (None: the whole diff)."""
    mark, style = _MARKS[change.action]
    paint.line(f"  {paint(mark, style)} {change.summary}")
    shown = change.diff if limit is None else change.diff[:limit]
    for line in shown:
        paint.line(f"      {_diff_line(paint, line)}")
    if len(shown) < len(change.diff):
        hidden = len(change.diff) - len(shown)
        paint.line(
            paint(f"      ... {plural(hidden, 'more line')} (--diff shows them, --json too)", "dim")
        )


def _unified_start(diff: tuple[str, ...]) -> int | None:
    """Where a file's unified diff begins (its "---" line), after lines such as a mode change."""
    return next((i for i, line in enumerate(diff) if line.startswith("---")), None)


def _collapsed(paint: Painter, change: Change, start: int) -> None:
    """A file's change on one line, with the lines its diff adds and removes counted."""
    mark, style = _MARKS[change.action]
    body = change.diff[start + 2 :]  # after the "---" and "+++" lines
    added = sum(1 for line in body if line.startswith("+"))
    removed = sum(1 for line in body if line.startswith("-"))
    size = paint(f"(+{added} -{removed} lines; --diff shows them)", "dim")
    paint.line(f"  {paint(mark, style)} {change.summary} {size}")
    for line in change.diff[:start]:
        paint.line(f"      {_diff_line(paint, line)}")


def _quiet(plan: Plan, host: str, change: Change, packages: bool) -> int | None:
    """Where the unified diff of a file change shown on one line by default begins, else
    None: a mechanical file's (bandersnatch.conf, an index page; the lock, when `packages`
    tell its changes), or one whose diff is long."""
    start = _unified_start(change.diff) if isinstance(change.resource, File) else None
    if start is None:
        return None
    mechanical = mirror_generated(plan, host, change) or (
        packages and writes_lock(plan, host, change)
    )
    return start if mechanical or len(change.diff) > MAX_FILE_DIFF else None


def _packages(packages: Sequence[PackageChange], paint: Painter, limit: int | None) -> None:
    """The plan as package changes, before the per-host changes that make them."""
    if not packages:
        return
    paint.line(paint("Packages", "bold"))
    shown = packages if limit is None else packages[:limit]
    styles = {"+": "green", "-": "red", "~": "yellow"}
    for change in shown:
        paint.line(f"  {paint(change.mark, styles[change.mark])} {change}")
    if len(shown) < len(packages):
        more = plural(len(packages) - len(shown), "more package change")
        paint.line(paint(f"  ... {more} (--diff or --json lists them all)", "dim"))
    paint.line()


def print_plan(
    plan: Plan,
    paint: Painter,
    packages: Sequence[PackageChange] = (),
    *,
    full_diff: bool = False,
) -> None:
    """The plan for a person: the lock, its package changes, then each host's changes;
    `full_diff` shows every diff whole, else the mechanical and long ones are one line."""
    if plan.lock_note:
        paint.line(f"{paint('Lock', 'bold')}: {plan.lock_note}")
    _packages(packages, paint, None if full_diff else MAX_PACKAGE_LINES)
    for host in plan.hosts:
        if host.error:
            label = "unreachable" if host.unreachable else "error"
            paint.line(f"{paint(host.host, 'bold')}: {paint(label, 'red')}: {host.error}")
            continue
        counts = f"{len(host.pending)} to change, {len(host.unchanged)} unchanged"
        paint.line(f"{paint(host.host, 'bold')}: {counts}")
        for change in host.pending:
            start = None if full_diff else _quiet(plan, host.host, change, bool(packages))
            if start is not None:
                _collapsed(paint, change, start)
            else:
                _change(paint, change, None if full_diff else MAX_DIFF_LINES)
    _findings(plan.findings, paint)
    hosts = len(plan.hosts)
    unchanged = sum(len(h.unchanged) for h in plan.hosts)
    summary = (
        f"Plan: {plan.change_count} to change on {plural(hosts, 'host')}, {unchanged} unchanged"
    )
    if plan.failed:
        summary += f", {plural(len(plan.failed), 'host')} failed"
    paint.line()
    paint.line(paint(summary + ".", "bold"))


def _findings(findings: list[Finding], paint: Painter) -> None:
    """Per worker, then per lambda: what the mirror lacks yet and what a worker would trip on."""
    workers: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        workers.setdefault((finding.worker, finding.host), []).append(finding)
    if workers:
        paint.line()
        paint.line(paint("Lambdas", "bold"))
    for (worker, host), found in workers.items():
        paint.line(f"  worker {paint(worker, 'bold')} (host {host}):")
        for finding in found:
            mark = paint("!", "yellow") if finding.level == "warning" else paint("·", "cyan")
            about = f"lambda {finding.lambda_name}" if finding.lambda_name else "worker"
            paint.line(f"    {mark} {about}: {finding}")


class Progress:
    """Apply's running account on stderr: lasting lines for what was done, and on a
    terminal one transient line, rewritten in place, for a long step's progress."""

    def __init__(self, stream: TextIO, colour: bool, *, quiet: bool = False) -> None:
        self.paint = Painter(stream, colour)
        self.quiet = quiet
        self.live = stream.isatty()
        self._lock = threading.Lock()
        self._transient = False

    def event(self, host: str, text: str, final: bool) -> None:
        if self.quiet or not (final or self.live):
            return
        with self._lock:
            line = f"{self.paint(host, 'bold')}: {text}"
            if final:
                self._clear()
                self.paint.line(line)
            else:
                self.paint.stream.write(f"\r\033[K{terminal_safe(line)}")
                self.paint.stream.flush()
                self._transient = True

    def _clear(self) -> None:
        if self._transient:
            self.paint.stream.write("\r\033[K")
            self._transient = False

    def close(self) -> None:
        with self._lock:
            self._clear()


def print_recap(results: list[HostResult], paint: Painter) -> None:
    paint.line()
    paint.line(paint("Recap", "bold"))
    width = max((len(r.host) for r in results), default=0)
    styles = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}
    for r in results:
        status = paint(f"{r.outcome:<11}", styles[r.outcome])
        line = f"  {r.host:<{width}}  {status} changed={len(r.applied)} unchanged={r.unchanged}"
        if r.retries:
            line += f" retried={r.retries}"
        paint.line(line)
        if r.error:
            paint.line(f"  {'':<{width}}  {paint(r.error, 'red')}")


def plan_json(plan: Plan, packages: Sequence[PackageChange]) -> dict[str, Any]:
    """The plan as JSON, with its package changes (`plan_summary.py`)."""
    return plan.to_json() | {"packages": [p.to_json() for p in packages]}


def results_json(
    plan: Plan,
    results: list[HostResult],
    gaps: list[Gap],
    packages: Sequence[PackageChange] = (),
) -> dict[str, Any]:
    return {
        "plan": plan_json(plan, packages),
        "verify_gaps": [str(gap) for gap in gaps],
        "results": [
            {
                "host": r.host,
                "outcome": r.outcome,
                "applied": r.applied,
                "unchanged": r.unchanged,
                "error": r.error,
                "retried": r.retries,
            }
            for r in results
        ],
    }


def dump_json(data: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    json.dump(data, stream, indent=2)
    stream.write("\n")
