"""Profiles of a run that missed its goal: py-spy over every thread, summarised as text.

py-spy samples all threads (olmirror works on hosts in a thread pool, which pyinstrument,
following the main thread only, would not see) and, with --idle, the time threads spend
waiting too, so the summary attributes wall time, not just CPU time.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

from common import venv_bin

RATE = 250
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`; package paths keep one folder."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    parts = match["file"].split("/")
    where = "/".join(parts[-2:]) if len(parts) > 1 else parts[-1]
    return f"{match['func']} ({where})"


def record(argv: list[str], env: dict[str, str], cwd: Path, out: Path) -> Path | None:
    """Run `argv` under py-spy; the collapsed stacks file, or None when py-spy cannot attach."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = [venv_bin("py-spy"), "record", "--format", "raw", "--rate", str(RATE), "--threads",
           "--idle", "--subprocesses", "--nonblocking", "-o", str(out), "--", *argv]  # fmt: skip
    done = subprocess.run(spy, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if not out.exists():
        (out.with_suffix(".err")).write_text(done.stdout + done.stderr)
        return None
    return out


def summarise(stacks: Path, top: int = 25) -> str:
    """Inclusive samples per function and per thread kind, from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        thread = "?"
        if frames and frames[0].startswith("thread ("):
            label = frames.pop(0).partition(")")[2].lstrip(": ").strip()
            thread = label or "worker thread"
        threads[thread] += count
        total += count
        names = [_short(f) for f in frames]
        for name in dict.fromkeys(names):
            inclusive[name] += count
        if names:
            leaves[names[-1]] += count
    seconds = 1 / RATE
    lines = [f"samples: {total} at {RATE}/s across all threads (wall, idle included)", ""]
    lines.append("threads (samples):")
    lines += [f"  {n:7d}  {name}" for name, n in threads.most_common(10)]
    lines.append("")
    lines.append("inclusive (thread-seconds, function):")
    lines += [f"  {n * seconds:7.2f}  {name}" for name, n in inclusive.most_common(top)]
    lines.append("")
    lines.append("self (thread-seconds, leaf function):")
    lines += [f"  {n * seconds:7.2f}  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(lines) + "\n"


def pyinstrument(argv: list[str], env: dict[str, str], cwd: Path, out: Path) -> Path | None:
    """The main thread alone with pyinstrument (imports, spec loading, waiting on the pool)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    python, module_args = argv[0], argv[1:]
    run = [python, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(out), *module_args]
    subprocess.run(run, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    return out if out.exists() else None
