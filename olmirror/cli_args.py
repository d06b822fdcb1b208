"""The command line's words: every command, its options and their help."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from olmirror import __version__
from olmirror.connection.hosts import DEFAULT_FORKS


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # given before or after the command (see `_args`)
        help="show tracebacks of errors, each retry, and what each network client did",
    )
    common.add_argument(
        "--no-color",
        action="store_true",
        default=argparse.SUPPRESS,
        help="never colour the output (as a non-empty NO_COLOR does)",
    )
    spec = argparse.ArgumentParser(add_help=False)
    spec.add_argument("-f", "--file", default="olmirror.yaml", help="spec file (./olmirror.yaml)")
    hosts = argparse.ArgumentParser(add_help=False)
    hosts.add_argument("--limit", help="only these hosts, comma-separated")
    hosts.add_argument("--forks", type=int, default=DEFAULT_FORKS, help="hosts worked on at once")
    hosts.add_argument("--json", action="store_true", help="print JSON instead of text")
    hosts.add_argument(
        "--diff",
        action="store_true",
        help="show every diff in full, the lock's and the index pages' too, and every "
        "package change (by default those and other long file diffs are one line each)",
    )

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
    verify = sub.add_parser(
        "verify", parents=[common, spec], help="check the mirror serves every locked file"
    )
    verify.add_argument(
        "--call",
        action="store_true",
        help="also call every lambda of every running worker, and check that what the call "
        "installed is the locked version, from the mirror",
    )
    lock = sub.add_parser(
        "lock",
        parents=[common, spec],
        help="resolve the requirements again and write the lock (all sets, or those named)",
    )
    lock.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME",
        help="resolve only this set afresh (worker:W, lambda:W/L or allowlist; repeatable); "
        "the others keep their pins where their inputs are unchanged",
    )
    lock.add_argument(
        "-P",
        "--upgrade-package",
        dest="packages",
        action="append",
        default=[],
        metavar="PROJECT",
        help="let this project move to its newest allowed version in every set that pins "
        "it, every other pin staying where it can, as pip-compile's -P (repeatable)",
    )
    sub.add_parser("schema", parents=[common], help="print the JSON Schema of the spec")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; --debug and --no-color count before the command as after it
    (argparse would let the command's own default, False, override the first)."""
    args = _parser().parse_args(argv)
    args.debug = getattr(args, "debug", False)
    args.no_color = getattr(args, "no_color", False)
    return args
