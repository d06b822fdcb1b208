"""The command line: thin glue between the spec, the plan, apply and the terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from olmirror import __version__
from olmirror.apply import apply_plan
from olmirror.connection.local import atomic_write
from olmirror.desired import desired_state, host_config
from olmirror.errors import OlmirrorError
from olmirror.hosts import DEFAULT_FORKS, Connections
from olmirror.plan import Plan, build_plan
from olmirror.render import Painter, dump_json, plural, print_plan, print_recap, results_json
from olmirror.schema import spec_schema_text
from olmirror.spec import load_spec

EXIT_ERROR = 1
EXIT_CHANGES = 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    common.add_argument("--no-color", action="store_true", help="never colour the output")
    spec = argparse.ArgumentParser(add_help=False)
    spec.add_argument("-f", "--file", default="olmirror.yaml", help="spec file (./olmirror.yaml)")
    hosts = argparse.ArgumentParser(add_help=False)
    hosts.add_argument("--limit", help="only these hosts, comma-separated")
    hosts.add_argument("--forks", type=int, default=DEFAULT_FORKS, help="hosts worked on at once")
    hosts.add_argument("--json", action="store_true", help="print JSON instead of text")

    parser = argparse.ArgumentParser(
        prog="olmirror",
        description="Provision private pip mirrors and the OpenLambda workers they serve.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"olmirror {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("validate", parents=[common, spec], help="check the spec without touching hosts")
    plan = sub.add_parser("plan", parents=[common, spec, hosts], help="show what would change")
    plan.add_argument("--out", help="save the plan to this file for `olmirror apply FILE`")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing would change, 2 when something would, 1 on errors",
    )
    apply = sub.add_parser("apply", parents=[common, spec, hosts], help="converge the hosts")
    apply.add_argument("plan_file", nargs="?", help="apply exactly this saved plan")
    apply.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    sub.add_parser("schema", parents=[common], help="print the JSON Schema of the spec")
    return parser


def _limit(names: list[str], limit: str | None) -> list[str]:
    if not limit:
        return names
    wanted = [n.strip() for n in limit.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise OlmirrorError(
            f"--limit: {', '.join(map(repr, unknown))} not among the hosts of this plan "
            f"({', '.join(names) or 'none'})"
        )
    return [n for n in names if n in wanted]


def _make_plan(args: argparse.Namespace, connections: Connections | None = None) -> Plan:
    loaded = load_spec(args.file)
    desired = desired_state(loaded)
    names = _limit(list(desired), args.limit)
    inventory = {name: host_config(loaded.spec, name) for name in names}
    connections = connections or Connections(inventory)
    connections.inventory.update(inventory)
    return build_plan(
        args.file, loaded.digest, {n: desired[n] for n in names}, connections, args.forks
    )


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
    if args.out:
        atomic_write(args.out, (json.dumps(plan.to_json(), indent=2) + "\n").encode(), 0o600)
    if args.json:
        dump_json(plan.to_json(), out.stream)
    else:
        print_plan(plan, out)
        if args.out:
            out.line(f"Saved the plan to {args.out}; apply it with `olmirror apply {args.out}`.")
    if plan.failed:
        return EXIT_ERROR
    return EXIT_CHANGES if args.detailed_exitcode and plan.change_count else 0


def _load_plan(path: str) -> Plan:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise OlmirrorError(
            f"{path}: no such plan file; make one with `olmirror plan --out {path}`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OlmirrorError(f"{path}: not a readable plan file ({exc})") from None
    return Plan.from_json(raw, path)


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


def _cmd_apply(args: argparse.Namespace, out: Painter) -> int:
    with Connections({}) as connections:
        if args.plan_file:
            plan = _load_plan(args.plan_file)
            connections.inventory.update(plan.inventory)
            names = _limit([h.host for h in plan.hosts], args.limit)
            plan.hosts = [h for h in plan.hosts if h.host in names]
        else:
            plan = _make_plan(args, connections)
        if not args.json:
            print_plan(plan, out)
        if plan.change_count == 0:
            if not args.json:
                out.line("Nothing to change: every host matches the spec.")
            else:
                dump_json(results_json(plan, []), out.stream)
            return EXIT_ERROR if plan.failed else 0
        _confirm(plan, args)
        progress = Painter(sys.stderr, out.colour)

        def on_change(host: str, summary: str) -> None:
            if not args.json:
                progress.line(f"{progress(host, 'bold')}: {summary}")

        results = apply_plan(plan, connections, args.forks, on_change)
    if args.json:
        dump_json(results_json(plan, results), out.stream)
    else:
        print_recap(results, out)
    return 0 if all(r.outcome in ("ok", "changed") for r in results) else EXIT_ERROR


def _cmd_schema(args: argparse.Namespace, out: Painter) -> int:
    out.stream.write(spec_schema_text())
    return 0


COMMANDS = {
    "validate": _cmd_validate,
    "plan": _cmd_plan,
    "apply": _cmd_apply,
    "schema": _cmd_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
