#!/usr/bin/env python3
"""olmirror's benchmarks: fan-out against pyinfra, Ansible and the SSH floor (with and without
network latency, with each tool's SSH sessions per host), mirror footprint against plain
bandersnatch, and olmirror's peak memory. Prints a table and writes it as JSON.

    python3 bench/run.py                      # everything; results in bench/results.json
    python3 bench/run.py --hosts 1,10 --runs 3 --out /tmp/results.json
    python3 bench/run.py --only fanout --latency-ms 0,10
    python3 bench/run.py --only mirror

The first run creates bench/.venv with olmirror's dependencies, ansible-core, pyinstrument
and py-spy, and bench/.venv-pyinfra with pyinfra 3 (from the package index); the
measurements never leave 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH, REPO, ensure_venv, in_bench_venv, median

GOAL_PLAN_FLOOR = 1.5
GOAL_PLAN_ANSIBLE = 0.2
GOAL_APPLY_ANSIBLE = 0.25
GOAL_STORED_NEED = 1.05
GOAL_NOOP_MIRROR_SECONDS = 2.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# olmirror's action against each peer's: (name in the JSON, olmirror's, the peer's).
RATIOS = (
    ("apply_fresh/pyinfra_first_run", "olmirror_apply_fresh", "pyinfra_first_run"),
    ("apply_noop/pyinfra_noop_run", "olmirror_apply_noop", "pyinfra_noop_run"),
    ("plan_noop/pyinfra_dry_noop", "olmirror_plan_noop", "pyinfra_dry_noop"),
    ("apply_fresh/ansible_first_run", "olmirror_apply_fresh", "ansible_first_run"),
    ("apply_noop/ansible_noop_run", "olmirror_apply_noop", "ansible_noop_run"),
    ("plan_noop/ansible_check_noop", "olmirror_plan_noop", "ansible_check_noop"),
    ("plan_noop/floor", "olmirror_plan_noop", "floor"),
    ("apply_noop/floor", "olmirror_apply_noop", "floor"),
    ("apply_fresh/floor", "olmirror_apply_fresh", "floor"),
)


def _latency_key(latency_ms: float) -> str:
    return f"{latency_ms:g}"


def summarise_fanout(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians, ratios and SSH sessions per host of one latency's fan-out runs."""
    rows: dict[str, Any] = {}
    for count, data in raw.items():
        med = {name: median(values) for name, values in data["seconds"].items()}
        rows[count] = {
            "median_seconds": med,
            "ratios": {name: _ratio(med[ours], med[theirs]) for name, ours, theirs in RATIOS},
            "sessions_per_host": {
                action: _session_range(per_run)
                for action, per_run in data["sessions_per_host"].items()
            },
            "plan_noop_max_rss_mib": max(data["plan_noop_max_rss_kib"], default=0) / 1024,
        }
    return rows


def _session_range(per_run: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    """[fewest, most] of each kind of session on one host, over hosts and runs."""
    kinds = per_run[0].keys()
    every = {kind: [n for run in per_run for n in run[kind]] for kind in kinds}
    return {kind: [min(values), max(values)] for kind, values in every.items()}


def goals(fanout: dict[str, Any] | None, mirror: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def goal(name: str, value: float, limit: float, unit: str = "x") -> None:
        out.append(
            {"goal": name, "value": value, "limit": limit, "unit": unit, "pass": value <= limit}
        )

    if fanout and "30" in fanout:  # the loopback figures: the goals predate the relay
        r = fanout["30"]["ratios"]
        goal("no-op plan, 30 hosts / floor", r["plan_noop/floor"], GOAL_PLAN_FLOOR)
        goal(
            "no-op plan, 30 hosts / Ansible --check",
            r["plan_noop/ansible_check_noop"],
            GOAL_PLAN_ANSIBLE,
        )
        goal(
            "first apply, 30 fresh hosts / Ansible first run",
            r["apply_fresh/ansible_first_run"],
            GOAL_APPLY_ANSIBLE,
        )
    if mirror:
        need = mirror["need"]["bytes"]
        for engine in ("bandersnatch", "simple"):
            data = mirror[f"olmirror_{engine}"]
            goal(
                f"mirror bytes stored / exact need (engine {engine})",
                _ratio(data["stored"]["bytes"], need),
                GOAL_STORED_NEED,
            )
            goal(
                f"no-op mirror re-apply, package files fetched (engine {engine})",
                max(data["noop_apply_files_fetched"]),
                0,
                "files",
            )
            goal(
                f"no-op mirror re-apply, one host (engine {engine})",
                median(data["noop_apply_seconds"]),
                GOAL_NOOP_MIRROR_SECONDS,
                "s",
            )
    return out


SECONDS_COLUMNS = (
    ("olm apply", "olmirror_apply_fresh"), ("olm no-op", "olmirror_apply_noop"),
    ("olm plan", "olmirror_plan_noop"), ("pyi first", "pyinfra_first_run"),
    ("pyi no-op", "pyinfra_noop_run"), ("pyi dry", "pyinfra_dry_noop"),
    ("ans first", "ansible_first_run"), ("ans no-op", "ansible_noop_run"),
    ("ans check", "ansible_check_noop"), ("floor", "floor"),
)  # fmt: skip
RATIO_COLUMNS = (
    ("apply/pyi", "apply_fresh/pyinfra_first_run"), ("no-op/pyi", "apply_noop/pyinfra_noop_run"),
    ("plan/dry", "plan_noop/pyinfra_dry_noop"), ("apply/ans", "apply_fresh/ansible_first_run"),
    ("no-op/ans", "apply_noop/ansible_noop_run"), ("plan/chk", "plan_noop/ansible_check_noop"),
    ("plan/floor", "plan_noop/floor"),
)  # fmt: skip


def _row(cells: list[str] | tuple[str, ...], first: int = 10) -> str:
    return f"{cells[0]:>{first}} " + " ".join(f"{c:>10}" for c in cells[1:])


def _span(low_high: list[int]) -> str:
    low, high = low_high
    return str(low) if low == high else f"{low}-{high}"


def fanout_table(
    summary: dict[str, Any], raw: dict[str, Any], latency_ms: float, runs: int
) -> list[str]:
    """One latency's fan-out: seconds, ratios to the peers, and SSH sessions per host."""
    where = (
        f"latency {latency_ms:g} ms each way ({2 * latency_ms:g} ms round trip, bench/relay.py)"
        if latency_ms
        else "no added latency (loopback)"
    )
    lines = [f"Fan-out, {where}: median of {runs} runs, seconds, wall clock"]
    lines.append(_row(("hosts", *(label for label, _ in SECONDS_COLUMNS), "RSS MiB")))
    for count, row in summary.items():
        m = row["median_seconds"]
        seconds = (f"{m[key]:.2f}" for _, key in SECONDS_COLUMNS)
        lines.append(_row((count, *seconds, f"{row['plan_noop_max_rss_mib']:.0f}")))
    lines.append("olmirror / peer (olmirror's apply fresh, apply no-op, no-op plan)")
    lines.append(_row(("hosts", *(label for label, _ in RATIO_COLUMNS))))
    for count, row in summary.items():
        lines.append(_row((count, *(f"{row['ratios'][key]:.3f}" for _, key in RATIO_COLUMNS))))
    lines.append(
        "SSH per host, from sshd's logs: commands + sftp sessions / logins "
        "(a-b: fewest-most over hosts and runs)"
    )
    lines.append(_row(("action", *(f"n={count}" for count in summary)), first=22))
    for action in next(iter(summary.values()))["sessions_per_host"]:
        cells = [
            "{}+{}/{}".format(*(_span(s[kind]) for kind in ("commands", "sftp", "logins")))
            for s in (row["sessions_per_host"][action] for row in summary.values())
        ]
        lines.append(_row((action.replace("_", " "), *cells), first=22))
    loads = {
        count: ", ".join(f"{x:.1f}" for x in data["load_average_1min_at_start"])
        for count, data in raw.items()
    }
    lines.append(
        f"load average (1 min) at the start of each run, {os.cpu_count()} CPUs: "
        + "; ".join(f"n={count}: {text}" for count, text in loads.items())
    )
    lines.append("")
    return lines


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for latency, summary in results.get("fanout_summary", {}).items():
        raw = results["fanout"][latency]
        lines += fanout_table(summary, raw, float(latency), results["runs"])
    mirror = results.get("mirror")
    if mirror:
        need = mirror["need"]
        lines.append(
            f"Mirror: allowlist {', '.join(mirror['allowlist'])}; target "
            f"{mirror['target']['python']} {mirror['target']['platform']}"
        )
        head = ("who", "stored files", "stored bytes", "x need", "fetched files",
                "fetched bytes", "first s", "no-op s", "no-op fetched", "add one s")  # fmt: skip
        lines.append(f"{head[0]:<26}" + " ".join(f"{h:>13}" for h in head[1:]))
        lines.append(f"{'exact need (lock)':<26}{need['files']:>13} {need['bytes']:>13} {1:>13.2f}")
        for key, label in (
            ("olmirror_bandersnatch", "olmirror engine bandersn."),
            ("olmirror_simple", "olmirror engine simple"),
        ):
            d = mirror[key]
            cells = [
                d["stored"]["files"], d["stored"]["bytes"],
                f"{d['stored']['bytes'] / need['bytes']:.2f}",
                d["fetched"]["files"], d["fetched"]["file_bytes"],
                f"{d['first_apply_seconds']:.2f}", f"{median(d['noop_apply_seconds']):.2f}",
                max(d["noop_apply_files_fetched"]), f"{d['add_one_seconds']:.2f}",
            ]  # fmt: skip
            lines.append(f"{label:<26}" + " ".join(f"{c!s:>13}" for c in cells))
        b = mirror["bandersnatch_names_only"]
        cells = [
            b["stored"]["files"], b["stored"]["bytes"],
            f"{b['stored']['bytes'] / need['bytes']:.2f}",
            b["fetched"]["files"], b["fetched"]["file_bytes"],
            f"{b['seconds']:.2f}", f"{b['noop_seconds']:.2f}", b["noop_files_fetched"], "-",
        ]  # fmt: skip
        lines.append(f"{'bandersnatch, names only':<26}" + " ".join(f"{c!s:>13}" for c in cells))
        lines.append("")
    profiles = results.get("profiles") or {}
    if "plan_noop_breakdown" in profiles:
        b = profiles["plan_noop_breakdown"]
        lines.append(f"No-op plan, its pieces on {b['hosts']} hosts (median wall s, paramiko)")
        lines += [f"  {s:8.2f}  {label}" for label, s in b["wall_seconds"].items()]
        lines.append("CPU of one host's piece, run on this machine (s)")
        lines += [f"  {s:8.3f}  {label}" for label, s in b["cpu_seconds_one_host"].items()]
        lines.append("Client start-up (median wall s)")
        lines += [f"  {s:8.2f}  {label}" for label, s in profiles["import_seconds"].items()]
        lines.append("")
    if results.get("goals"):
        lines.append("Goals")
        for g in results["goals"]:
            value = f"{g['value']:.3f}" if isinstance(g["value"], float) else str(g["value"])
            verdict = "pass" if g["pass"] else "MISS"
            lines.append(f"  {verdict:<5} {g['goal']}: {value} (goal <= {g['limit']}{g['unit']})")
    return "\n".join(lines)


def profile_misses(
    results: dict[str, Any],
    setup: Any,
    out_dir: Path,
    fanout_mod: Any,
    profiling: Any,
    force: bool = False,
) -> dict[str, Any]:
    """py-spy (all threads) and pyinstrument (main thread) of each fan-out action that missed;
    for a missed no-op plan, also its pieces timed at the floor and the clients' import times."""
    import diagnose

    missed = {g["goal"] for g in results["goals"] if not g["pass"]}
    todo: list[str] = []
    if force or any(name.startswith("no-op plan") for name in missed):
        todo.append("plan_noop")
    if force or any(name.startswith("first apply") for name in missed):
        todo.append("apply_fresh")
    found: dict[str, Any] = {}
    if "plan_noop" in todo:
        log("profile: the pieces of a no-op plan, timed at the floor")
        found["plan_noop_breakdown"] = diagnose.breakdown(
            setup, fanout_mod, 30, results["runs"], out_dir / "breakdown"
        )
        found["import_seconds"] = diagnose.import_times(setup.env, out_dir / "imports")
    spec = setup.specs[30]
    limit = ["--limit", ",".join(h.name for h in setup.hosts[:30]), "--forks", "30"]
    for action in todo:
        if action == "apply_fresh":
            fanout_mod.reset(setup, setup.hosts[:30])
            argv = [sys.executable, "-m", "olmirror", "apply", "-f", str(spec), "--no-color",
                    *limit, "--yes"]  # fmt: skip
        else:
            argv = [sys.executable, "-m", "olmirror", "plan", "-f", str(spec), "--no-color",
                    *limit]  # fmt: skip
        log(f"profile: olmirror {action} on 30 hosts (py-spy, pyinstrument)")
        stacks = profiling.record(argv, setup.env, spec.parent, out_dir / f"{action}.pyspy.txt")
        if stacks is not None:
            summary = profiling.summarise(stacks)
            (out_dir / f"{action}.pyspy-summary.txt").write_text(summary)
            found[f"{action} (py-spy)"] = str(out_dir / f"{action}.pyspy-summary.txt")
        if action == "apply_fresh":
            fanout_mod.reset(setup, setup.hosts[:30])
        main_thread = profiling.pyinstrument(
            argv, setup.env, spec.parent, out_dir / f"{action}.pyinstrument.txt"
        )
        if main_thread is not None:
            found[f"{action} (pyinstrument)"] = str(main_thread)
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(BENCH / "results.json"), help="JSON results file")
    parser.add_argument("--hosts", default="1,10,30", help="host counts for the fan-out")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--only",
        choices=("fanout", "mirror", "profile"),
        help="one part only; profile: no measurements, profiles of the 30-host plan and apply",
    )
    parser.add_argument("--no-profile", action="store_true", help="no profiles of missed goals")
    parser.add_argument(
        "--profiles", default=str(BENCH / "profiles"), help="folder for profiles of misses"
    )
    parser.add_argument(
        "--latency-ms",
        default="0",
        help="fan-out latency each way through bench/relay.py, one run per value: 0,10 "
        "(default 0: no relay)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args(argv)

    import fanout
    import mirror
    import profiling

    counts = tuple(int(n) for n in args.hosts.split(","))
    latencies = tuple(float(ms) for ms in args.latency_ms.split(","))
    work = Path(tempfile.mkdtemp(prefix="olbench-"))
    work.chmod(0o755)  # olmirror's nginx, started as root, serves through `nobody`
    started = time.time()
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "command": "python3 bench/run.py " + " ".join(argv),
        "runs": args.runs,
    }
    setup = None
    try:
        if args.only in (None, "mirror"):
            log("mirror: olmirror (engines bandersnatch and simple) and plain bandersnatch")
            results["mirror"] = mirror.measure(work / "mirror", args.runs, log)
        if args.only in (None, "fanout"):
            log(f"fan-out: starting {max(counts)} sshd hosts")
            setup = fanout.start(work / "fanout", max(counts))
            fanout.prepare(setup, counts)
            results["fanout_versions"] = fanout.versions()
            results["fanout"], results["fanout_summary"] = {}, {}
            for latency in latencies:
                log(f"fan-out: latency {latency:g} ms each way")
                fanout.route(setup, latency, counts)
                raw = fanout.measure(setup, counts, args.runs, log)
                results["fanout"][_latency_key(latency)] = raw
                results["fanout_summary"][_latency_key(latency)] = summarise_fanout(raw)
        if args.only == "profile":
            log("profile: starting 30 sshd hosts")
            setup = fanout.start(work / "fanout", 30)
            fanout.prepare(setup, (30,))
            fanout.olmirror_action(setup, 30, "apply_fresh", work / "converge")
            counts = (30,)
        loopback = results.get("fanout_summary", {}).get(_latency_key(0))
        results["goals"] = goals(loopback, results.get("mirror"))
        if setup is not None and 30 in counts and not args.no_profile:
            fanout.route(setup, 0, counts)  # profiles and their pieces: straight to sshd
            profiles = profile_misses(
                results, setup, Path(args.profiles), fanout, profiling, args.only == "profile"
            )
            results["profiles"] = profiles
    finally:
        if setup is not None:
            fanout.stop(setup)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work folder kept: {work}")
    results["total_seconds"] = time.time() - started
    print(table(results))
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    log(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    if not in_bench_venv():
        os.chdir(REPO)
    ensure_venv([str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.exit(main(sys.argv[1:]))
