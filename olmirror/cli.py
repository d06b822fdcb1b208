"""The command line: thin glue between the spec, the plan, apply and the terminal."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from packaging.utils import canonicalize_name

from olmirror.apply import HostResult, apply_plan
from olmirror.cli_args import parse_args
from olmirror.connection import Connection
from olmirror.connection.hosts import DEFAULT_FORKS, Connections
from olmirror.connection.web import WebView
from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import lock_path, read_lock
from olmirror.lock.relock import Upgrade, forget_resolved
from olmirror.lock.requirement_sets import requirement_sets
from olmirror.lock.resolve import current_lock
from olmirror.mirror.desired import pip_mirror
from olmirror.mirror.layout import web_dir
from olmirror.mirror.verify import Gap, verify_mirror
from olmirror.openlambda.call import Called, call_lambdas
from olmirror.openlambda.detect import with_detected_targets
from olmirror.openlambda.registry import recorded_registries
from olmirror.plan import Plan
from olmirror.plan_summary import plan_packages
from olmirror.planner import limit_hosts, plan_spec
from olmirror.remote.host_program import atomic_write
from olmirror.render import (
    Painter,
    Progress,
    dump_json,
    plan_json,
    plural,
    print_plan,
    print_recap,
    results_json,
)
from olmirror.saved_plan import check_saved_plan
from olmirror.schema import spec_schema_text
from olmirror.serve.bucket import location_of
from olmirror.spec import LOCAL, LoadedSpec, host_config, load_spec

EXIT_ERROR = 1
EXIT_CHANGES = 2


def _mirror_of(loaded: LoadedSpec) -> dict[str, str]:
    mirror = loaded.spec.mirror
    base = pip_mirror(loaded.spec)
    index = (base if "://" in base else Path(base).as_uri()) + "/simple/"
    location = location_of(loaded.spec)
    bucket = {"bucket": location.name} if location else {}
    return {
        "host": mirror.host,
        "directory": mirror.directory,
        "lock": str(lock_path(loaded.path)),
        "pip_mirror": base,
        "index_url": index,
        **bucket,
    }


@contextmanager
def _served(mirror: dict[str, str], connections: Connections) -> Iterator[Connection]:
    """The mirror as verify reads it: its folder on the mirror host, or, when a bucket
    serves it, the bucket's HTTP URL, as workers read it."""
    if "bucket" not in mirror:
        yield connections.get(mirror["host"])
        return
    view = WebView(mirror["bucket"], web_dir(mirror["directory"]), mirror["pip_mirror"])
    try:
        yield view
    finally:
        view.close()


def _make_plan(args: argparse.Namespace, connections: Connections) -> Plan:
    loaded = load_spec(args.file)
    spec = loaded.spec
    hosts = {LOCAL, spec.mirror.host, *(w.host for w in spec.workers)}
    connections.inventory.update({name: host_config(spec, name) for name in hosts})
    return plan_spec(args.file, loaded, connections, args.limit, args.forks, _mirror_of(loaded))


def _print_verify(checked: int, gaps: list[Gap], out: Painter) -> None:
    if not gaps:
        out.line(f"Verified: the mirror serves every locked requirement ({checked}).")
        return
    out.line(out(f"Verify found {plural(len(gaps), 'gap')} in the mirror:", "red"))
    for gap in gaps:
        out.line(f"  {gap}")
    out.line("Run `olmirror apply` to sync the mirror again.")


def _print_calls(called: list[Called], out: Painter) -> None:
    failed = [c for c in called if not c.ok]
    if not called:
        out.line("No lambdas to call: no running worker has one.")
        return
    colour = "red" if failed else "green"
    out.line(out(f"Called {plural(len(called), 'lambda')}, {len(failed)} failed:", colour))
    for result in called:
        out.line(f"  {out(result, 'red') if not result.ok else result}")


def _cmd_verify(args: argparse.Namespace, out: Painter) -> int:
    loaded = load_spec(args.file)
    spec = loaded.spec
    lock = current_lock(loaded, recorded_registries(loaded, read_lock(lock_path(loaded.path))))
    hosts = {spec.mirror.host, *(w.host for w in spec.workers)} if args.call else {spec.mirror.host}
    with Connections({name: host_config(spec, name) for name in hosts}) as connections:
        with _served(_mirror_of(loaded), connections) as served:
            checked, gaps = verify_mirror(served, spec.mirror.directory, lock)
        _print_verify(checked, gaps, out)
        if not args.call:
            return EXIT_ERROR if gaps else 0
        detected, undetected = with_detected_targets(
            loaded, connections, sorted(hosts), DEFAULT_FORKS
        )
        for host, exc in undetected.items():
            out.line(out(f"host {host}: {exc}", "red"))
        registries = recorded_registries(loaded, lock)
        called = call_lambdas(detected, lock, registries, connections, DEFAULT_FORKS)
    _print_calls(called, out)
    return EXIT_ERROR if gaps or undetected or any(not c.ok for c in called) else 0


def _cmd_validate(args: argparse.Namespace, out: Painter) -> int:
    loaded = load_spec(args.file)
    spec = loaded.spec
    out.line(
        f"{args.file}: valid ({plural(len(spec.hosts | {'local': None}), 'host')}, "
        f"{plural(len(spec.workers), 'worker')}, {plural(len(spec.mirror.targets), 'target')})"
    )
    return 0


def _cmd_plan(args: argparse.Namespace, out: Painter) -> int:
    with Connections({}) as connections:
        plan = _make_plan(args, connections)
    packages = plan_packages(plan)
    if args.out:
        text = json.dumps(plan_json(plan, packages), indent=2) + "\n"
        atomic_write(args.out, text.encode(), 0o600)
    if args.json:
        dump_json(plan_json(plan, packages), out.stream)
    else:
        print_plan(plan, out, packages, full_diff=args.diff)
        if args.out:
            out.line(f"Saved the plan to {args.out}; apply it with `olmirror apply {args.out}`.")
    if plan.failed:
        return EXIT_ERROR
    return EXIT_CHANGES if args.detailed_exitcode and plan.change_count else 0


def _load_plan(path: str) -> Plan:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise OlmirrorError(
            f"{path}: no such plan file; make one with `olmirror plan --out {path}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OlmirrorError(f"{path}: not a readable plan file ({exc})") from None
    return Plan.from_text(text, path)


def _confirm(plan: Plan, args: argparse.Namespace) -> None:
    if args.yes or args.plan_file:
        return
    hosts = len({h.host for h in plan.hosts if h.pending})
    if not sys.stdin.isatty():
        raise OlmirrorError(
            f"refusing to apply {plural(plan.change_count, 'change')} on {plural(hosts, 'host')} "
            "without confirmation: "
            "standard input is not a terminal; review the plan and pass --yes"
        )
    question = f"Apply {plural(plan.change_count, 'change')} on {plural(hosts, 'host')}?"
    answer = input(f"{question} Type 'yes' to go on: ")
    if answer.strip() != "yes":
        raise OlmirrorError("apply cancelled; nothing was changed")


def _verify_after_apply(
    plan: Plan, failed: set[str], connections: Connections
) -> tuple[int, list[Gap]] | None:
    """A quick verify (pages and sizes, no hashing) of the mirror the plan converged."""
    applied = {h.host for h in plan.hosts} - failed
    if not plan.mirror or not {LOCAL, plan.mirror["host"]} <= applied:
        return None  # without `local` (the lock's host) the lock on disk is not this plan's
    mirror_hosts = (plan.mirror["host"], plan.mirror.get("bucket"))
    if "bucket" in plan.mirror and not any(h.pending for h in plan.hosts if h.host in mirror_hosts):
        # the plan compared every object's sha256 already, and over HTTP each file would
        # cost a request: `olmirror verify` reads them as workers do
        return None
    lock = read_lock(Path(plan.mirror["lock"]))
    if lock is None:
        return None
    try:
        with _served(plan.mirror, connections) as served:
            return verify_mirror(served, plan.mirror["directory"], lock, deep=False)
    except OlmirrorError as exc:
        return 0, [Gap(plan.mirror["host"], "verify", f"the mirror could not be read: {exc}")]


def _cmd_apply(args: argparse.Namespace, out: Painter) -> int:
    with Connections({}, hold_locks=True) as connections:
        if args.plan_file:
            plan = _load_plan(args.plan_file)
            check_saved_plan(plan, args.plan_file)
            connections.inventory.update(plan.inventory)
            names = limit_hosts([h.host for h in plan.hosts], args.limit)
            plan.complete = plan.complete and len(names) == len(plan.hosts)
            plan.hosts = [h for h in plan.hosts if h.host in names]
        else:
            plan = _make_plan(args, connections)
        packages = plan_packages(plan)  # before the apply writes the lock they compare with
        if not args.json:
            print_plan(plan, out, packages, full_diff=args.diff)
        results: list[HostResult] = []
        if plan.change_count:
            _confirm(plan, args)
            progress = Progress(sys.stderr, out.colour, quiet=args.json)
            recheck = bool(args.plan_file)  # else planned in this run, under the locks
            results = apply_plan(plan, connections, args.forks, progress.event, recheck)
            progress.close()
            failed = {r.host for r in results if r.outcome in ("failed", "unreachable")}
        else:
            failed = {h.host for h in plan.failed}
        verified = _verify_after_apply(plan, failed, connections)
    gaps = verified[1] if verified else []
    if args.json:
        dump_json(results_json(plan, results, gaps, packages), out.stream)
    else:
        if results:
            print_recap(results, out)
        elif failed:
            out.line(f"Nothing to change on the other hosts; {plural(len(failed), 'host')} failed.")
        else:
            out.line("Nothing to change: every host matches the spec.")
        if verified:
            _print_verify(*verified, out)
        if verified and not verified[1] and plan.mirror:
            out.line(
                f"The mirror is at {plan.mirror['pip_mirror']} (on {plan.mirror['host']}); "
                f"install from it with: pip install --no-deps --index-url "
                f"{plan.mirror['index_url']} PACKAGE==VERSION"
            )
    return EXIT_ERROR if failed or gaps else 0


def _upgrade(args: argparse.Namespace, loaded: LoadedSpec) -> Upgrade:
    """What `olmirror lock` resolves afresh: everything, or the sets and projects named."""
    if not args.sets and not args.packages:
        return Upgrade(everything=True)
    recorded = recorded_registries(loaded, read_lock(lock_path(loaded.path)))
    known = {s.name for s in requirement_sets(loaded, recorded)}
    unknown = sorted(set(args.sets) - known)
    if unknown:
        raise OlmirrorError(
            f"--set: no requirement set named {', '.join(map(repr, unknown))}; the sets of "
            f"{args.file} are {', '.join(sorted(known)) or 'none'}"
        )
    return Upgrade(
        sets=frozenset(args.sets), packages=frozenset(map(canonicalize_name, args.packages))
    )


def _cmd_lock(args: argparse.Namespace, out: Painter) -> int:
    loaded = load_spec(args.file)
    recorded = recorded_registries(loaded, read_lock(lock_path(loaded.path)))
    lock = current_lock(loaded, recorded, upgrade=_upgrade(args, loaded))
    forget_resolved(Path(loaded.path))
    path = lock_path(loaded.path)
    text = lock.to_text()
    old = path.read_text() if path.exists() else None
    if old != text:
        atomic_write(str(path), text.encode(), None)
    pins = {pin for t in lock.targets.values() for pins in t.sets.values() for pin in pins}
    verb = "unchanged" if old == text else "written"
    out.line(
        f"{path}: {verb} ({plural(len(pins), 'pinned requirement')}, "
        f"{plural(len(lock.files()), 'file')}, {plural(len(lock.targets), 'target')})"
    )
    return 0


def _cmd_schema(args: argparse.Namespace, out: Painter) -> int:
    out.stream.write(spec_schema_text())
    return 0


COMMANDS = {
    "validate": _cmd_validate,
    "plan": _cmd_plan,
    "apply": _cmd_apply,
    "lock": _cmd_lock,
    "verify": _cmd_verify,
    "schema": _cmd_schema,
}


@contextmanager
def _debug_log(enabled: bool) -> Iterator[None]:
    """With --debug, olmirror's own log on stderr: each retry, and what each network
    client did (requests, connections, retries)."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("olmirror")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("debug: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with _debug_log(args.debug):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    out = Painter(sys.stdout, False if args.no_color else None)
    try:
        return COMMANDS[args.command](args, out)
    except OlmirrorError as exc:
        if args.debug:
            raise
        err = Painter(sys.stderr, False if args.no_color else None)
        err.line(f"{err('error:', 'red')} {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader (a pager, `head`) went away: say nothing more, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # a bug or an unforeseen failure: one line, the rest on --debug
        if args.debug:
            raise
        sys.stderr.write(
            f"error: {type(exc).__name__}: {exc} (olmirror did not expect this; run again "
            "with --debug for the traceback, and report it)\n"
        )
        return EXIT_ERROR
