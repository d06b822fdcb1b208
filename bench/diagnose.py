"""Where a no-op plan's time goes: olmirror's own one command per host, timed at the floor.

`python diagnose.py requests SPEC OUT_DIR HOST...` (run with the checkout on PYTHONPATH)
writes, per host, the command olmirror runs to read that host's facts and the JSON request
it feeds it, and the same request without its read-only commands. `breakdown()` then times
over SSH, like the floor: the bare probe, the full probe, and each of those commands alone;
and on this machine, the CPU each costs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import REPO, Timed, median, timed


def write_requests(spec: str, out_dir: str, hosts: list[str]) -> None:
    sys.path.insert(0, str(REPO))
    from olmirror.connection.ssh import HOST_PROGRAM
    from olmirror.desired import desired_state
    from olmirror.lock.lockfile import lock_path, read_lock
    from olmirror.lock.resolve import current_lock
    from olmirror.openlambda.registry import recorded_registries
    from olmirror.plan import fact_request
    from olmirror.spec import load_spec

    loaded = load_spec(spec)
    registries = recorded_registries(loaded, read_lock(lock_path(loaded.path)))
    every = {w.host for w in loaded.spec.workers}
    desired = desired_state(loaded, current_lock(loaded, registries), registries, every)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe-command").write_text(shlex.join(["python3", "-I", "-S", "-c", HOST_PROGRAM]))
    (folder / "probe.py").write_text(HOST_PROGRAM)

    def facts(request: dict[str, Any]) -> str:  # the host program's one request of a plan
        return json.dumps({"op": "facts", "request": request}) + "\n"

    for host in hosts:
        request = fact_request(desired[host]).as_json()
        (folder / f"{host}.json").write_text(facts(request))
        (folder / f"{host}.paths-only.json").write_text(facts({**request, "commands": []}))
        (folder / f"{host}.commands.json").write_text(json.dumps(request["commands"]))


def breakdown(setup: Any, fanout_mod: Any, count: int, runs: int, out: Path) -> dict[str, Any]:
    """Seconds (median of `runs`) of `count` parallel SSH sessions running each piece of
    olmirror's fact gathering, and the CPU seconds one host's piece costs on this machine."""
    hosts = setup.hosts[:count]
    folder = out / "requests"
    argv = [sys.executable, str(Path(__file__).resolve()), "requests", str(setup.specs[count]),
            str(folder), *(h.name for h in hosts)]  # fmt: skip
    timed(argv, setup.env, REPO, out / "write-requests").check()
    probe = (folder / "probe-command").read_text()
    commands = json.loads((folder / f"{hosts[0].name}.commands.json").read_text())

    def entries(
        command: str | None, request: str | None, ok: tuple[int, ...] = (0,)
    ) -> list[dict[str, Any]]:
        listed = []
        for h in hosts:
            entry: dict[str, Any] = {
                "port": h.port,
                "user": setup.hosts[0].spec(setup.known_hosts)["user"],
                "key": str(setup.farm.client_key),
                "known_hosts": str(setup.known_hosts),
                "ok_status": list(ok),
            }
            if command is not None:
                entry["command"] = command
            if request is not None:
                entry["stdin"] = str(folder / f"{h.name}.{request}json")
            listed.append(entry)
        return listed

    variants: dict[str, list[dict[str, Any]]] = {
        "ssh + `true` (the floor)": entries(None, None),
        "ssh + probe, paths only": entries(probe, "paths-only."),
        "ssh + probe, full request (olmirror's one command)": entries(probe, ""),
    }
    for command in commands:
        label = _label(command)
        # `ol worker status` answers 1 for a stopped worker.
        variants[f"ssh + {label} alone"] = entries(shlex.join(command), None, (0, 1))
    wall: dict[str, float] = {}
    for label, listed in variants.items():
        listing = out / f"floor-{len(wall)}.json"
        listing.write_text(json.dumps(listed))
        seconds = []
        for run in range(runs):
            argv = [sys.executable, str(Path(__file__).with_name("floor.py")), str(listing)]
            done = timed(argv, setup.env, out, out / f"floor-{len(wall)}-{run}").check()
            seconds.append(done.seconds)
        wall[label] = median(seconds)

    # CPU of one host's piece, run here (the simulated hosts share this machine's cores).
    cpu: dict[str, float] = {}
    host = hosts[0].name
    local = {
        "probe, paths only": (["/usr/bin/python3", str(folder / "probe.py")], "paths-only."),
        "probe, full request": (["/usr/bin/python3", str(folder / "probe.py")], ""),
        **{_label(c): (c, None) for c in commands},
    }
    for label, (argv, request) in local.items():
        samples = []
        for run in range(max(runs, 5)):
            stdin = folder / f"{host}.{request}json" if request is not None else None
            # As sshd starts them: its default PATH, not this bench's venv.
            env = {**setup.env, "PATH": "/usr/local/bin:/usr/bin:/bin"}
            done = _cpu(argv, env, out / f"cpu-{len(cpu)}-{run}", stdin)
            samples.append(done)
        cpu[label] = median(samples)
    return {"hosts": count, "wall_seconds": wall, "cpu_seconds_one_host": cpu}


def _label(command: list[str]) -> str:
    if "-c" in command:
        return f"{command[0]} -c <GET {command[-1]}>"
    return f"{Path(command[0]).name} {' '.join(command[1:3])}"


def _cpu(argv: list[str], env: dict[str, str], out: Path, stdin: Path | None) -> float:
    out.mkdir(parents=True, exist_ok=True)
    with stdin.open("rb") if stdin else open(os.devnull, "rb") as feed:
        proc = subprocess.Popen(
            argv, env=env, stdin=feed, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_utime + usage.ru_stime


def import_times(env: dict[str, str], out: Path, runs: int = 5) -> dict[str, float]:
    """Wall seconds of starting Python and importing what each client needs."""
    found: dict[str, float] = {}
    for label, code in (
        ("python startup", "pass"),
        ("import paramiko (the floor)", "import paramiko"),
        ("import olmirror.cli", "import olmirror.cli"),
        ("import olmirror.cli and .connection.ssh", "import olmirror.cli, olmirror.connection.ssh"),
    ):
        samples: list[Timed] = [
            timed([sys.executable, "-c", code], env, REPO, out / f"import-{len(found)}-{i}")
            for i in range(runs)
        ]
        found[label] = median([t.seconds for t in samples])
    return found


if __name__ == "__main__":
    if sys.argv[1] == "requests":
        write_requests(sys.argv[2], sys.argv[3], sys.argv[4:])
