"""Fan-out: the same worker convergence on N real sshd hosts, by olmirror, pyinfra, Ansible and
the floor, with or without network latency (relay.py), counting each tool's SSH sessions.

Every host is a real OpenSSH sshd on 127.0.0.1 (tests/sshd.py) with an OpenLambda worker
directory that `ol worker init` wrote (the stand-in `ol`). The convergence: the registry
directory, registry/requirements.in and registry/requirements.txt, and the `pip_mirror` and
`mirror_host` keys merged into the worker's config.json. The mirror is olmirror's nginx on
this machine, applied once before the measurements (`apply --limit local`), so every
measured run touches the worker hosts only.

Each host's sshd logs at VERBOSE, one line per login and per session it starts: what a tool
did on each host is counted from there, not assumed.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from common import (
    BENCH,
    PYINFRA_VENV,
    STANDIN_OL,
    TARGET,
    TARGET_KEY,
    TESTS,
    Timed,
    base_env,
    timed,
    venv_bin,
)

sys.path.insert(0, str(TESTS))
from sshd import SshFarm, SshHost, free_port, keygen

OLMIRROR_ACTIONS = ("apply_fresh", "apply_noop", "plan_noop")
ANSIBLE_ACTIONS = ("first_run", "noop_run", "check_noop")
PYINFRA_ACTIONS = ("first_run", "noop_run", "dry_noop")
PLAYBOOK = BENCH / "ansible" / "playbook.yml"
DEPLOY = BENCH / "pyinfra" / "deploy.py"
# What sshd's VERBOSE log says per login and per session (OpenSSH 9.2's auth.c, session.c).
LOGIN = re.compile(r"^Accepted publickey for ", re.M)
SESSION = re.compile(r"^Starting session: (?P<what>.*?) for ", re.M)
SFTP = "subsystem 'sftp'"


@dataclass
class FanoutSetup:
    """The hosts, the mirror they point at, and the files each tool reads."""

    work: Path
    farm: SshFarm
    hosts: list[SshHost]
    known_hosts: Path
    home: Path
    mirror_dir: Path
    mirror_url: str
    env: dict[str, str]
    specs: dict[int, Path] = field(default_factory=dict)
    inventories: dict[int, Path] = field(default_factory=dict)
    pyinfra_inventories: dict[int, Path] = field(default_factory=dict)
    ansible_cfg: Path | None = None
    nginx_pid_file: Path | None = None
    latency_ms: float = 0.0
    relay: subprocess.Popen[str] | None = None
    relay_ports: dict[str, int] = field(default_factory=dict)

    def port(self, host: SshHost) -> int:
        """The port every tool dials for `host`: the relay's when latency is on, else sshd's."""
        return self.relay_ports.get(host.name, host.port)

    def worker_path(self, host: SshHost) -> Path:
        return host.root / "opt" / "ol" / "w"

    def pristine(self, host: SshHost) -> Path:
        return host.home / "pristine-worker"


def _ol_init(path: Path) -> None:
    subprocess.run(
        [sys.executable, str(STANDIN_OL), "worker", "init", "-p", str(path), "-i", "ol-min"],
        check=True,
        capture_output=True,
    )


def start(work: Path, count: int) -> FanoutSetup:
    """Start `count` sshd hosts, each with a fresh worker, and the mirror they point at."""
    home = work / "home"
    (home / ".ssh").mkdir(parents=True)
    client_key = keygen(work / "client_key")
    farm = SshFarm(work / "hosts", client_key)
    try:
        hosts = farm.many(count)
    except BaseException:
        farm.stop()
        raise
    known = farm.known_hosts(*hosts)
    port = free_port()
    setup = FanoutSetup(
        work=work,
        farm=farm,
        hosts=hosts,
        known_hosts=known,
        home=home,
        mirror_dir=work / "mirror",
        mirror_url=f"http://127.0.0.1:{port}",
        env=base_env(home),
    )
    for host in hosts:
        _ol_init(setup.pristine(host))
    reset(setup, hosts)
    return setup


def reset(setup: FanoutSetup, hosts: list[SshHost]) -> None:
    """Fresh hosts: each worker directory back to what `ol worker init` left."""
    for host in hosts:
        path = setup.worker_path(host)
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The stand-in writes absolute paths into config.json; rebase the pristine copy.
        shutil.copytree(setup.pristine(host), path)
        config = path / "config.json"
        config.write_text(config.read_text().replace(str(setup.pristine(host)), str(path)))


def write_spec(setup: FanoutSetup, count: int) -> Path:
    hosts = setup.hosts[:count]
    listen = setup.mirror_url.removeprefix("http://")
    spec = {
        "version": 1,
        "hosts": {
            "local": {"state_dir": str(setup.work / "local-state")},
            # bench/ol: `ol worker status` as cheap as OpenLambda's Go binary
            **{
                h.name: h.spec(setup.known_hosts, ol=str(BENCH / "ol"), port=setup.port(h))
                for h in hosts
            },
        },
        "mirror": {
            "directory": str(setup.mirror_dir),
            "targets": [TARGET],
            "serve": {"backend": "http", "listen": listen, "url": setup.mirror_url},
        },
        "workers": [
            {
                "name": f"w-{h.name}",
                "host": h.name,
                "path": str(setup.worker_path(h)),
                "requirements": [],
                "state": "stopped",
            }
            for h in hosts
        ],
    }
    folder = setup.work / "specs" / f"n{count}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "olmirror.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    setup.specs[count] = path
    return path


def write_ansible(setup: FanoutSetup, count: int) -> Path:
    hosts = setup.hosts[:count]
    inventory = {
        "all": {
            "children": {
                "workers": {
                    "hosts": {
                        h.name: {
                            "ansible_host": "127.0.0.1",
                            "ansible_port": setup.port(h),
                            "worker_path": str(setup.worker_path(h)),
                        }
                        for h in hosts
                    },
                    "vars": {
                        "ansible_user": getpass.getuser(),
                        "ansible_ssh_private_key_file": str(setup.farm.client_key),
                        "ansible_ssh_common_args": (
                            f"-o UserKnownHostsFile={setup.known_hosts} -o IdentitiesOnly=yes"
                        ),
                        "pip_mirror": setup.mirror_url,
                        "mirror_host": "127.0.0.1",
                        "target": TARGET_KEY,
                    },
                }
            }
        }
    }
    path = setup.work / "ansible" / f"inventory-n{count}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    setup.inventories[count] = path
    if setup.ansible_cfg is None:
        cfg = setup.work / "ansible" / "ansible.cfg"
        cfg.write_text(
            "[defaults]\n"
            "host_key_checking = True\n"
            "gathering = explicit\n"
            "interpreter_python = /usr/bin/python3\n"
            "retry_files_enabled = False\n"
            f"local_tmp = {setup.work / 'ansible' / 'tmp'}\n"
            "nocows = 1\n"
            "\n[ssh_connection]\n"
            "pipelining = True\n"
        )
        setup.ansible_cfg = cfg
    return path


def write_pyinfra(setup: FanoutSetup, count: int) -> Path:
    """A pyinfra inventory with Ansible's SSH settings: user, key, port, the same known_hosts
    checked strictly, no agent and no other keys."""
    hosts = [
        (
            h.name,
            {
                "ssh_hostname": "127.0.0.1",
                "ssh_port": setup.port(h),
                "ssh_user": getpass.getuser(),
                "ssh_key": str(setup.farm.client_key),
                "ssh_known_hosts_file": str(setup.known_hosts),
                "ssh_strict_host_key_checking": "yes",
                "ssh_allow_agent": False,
                "ssh_look_for_keys": False,
                "worker_path": str(setup.worker_path(h)),
                "pip_mirror": setup.mirror_url,
                "mirror_host": "127.0.0.1",
                "target": TARGET_KEY,
            },
        )
        for h in setup.hosts[:count]
    ]
    path = setup.work / "pyinfra" / f"inventory_n{count}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"workers = {hosts!r}\n")
    setup.pyinfra_inventories[count] = path
    return path


def write_configs(setup: FanoutSetup, counts: tuple[int, ...]) -> None:
    """Every tool's spec or inventory, for the ports the tools dial now."""
    for count in counts:
        write_spec(setup, count)
        write_ansible(setup, count)
        write_pyinfra(setup, count)


def prepare(setup: FanoutSetup, counts: tuple[int, ...]) -> None:
    """Write every spec and inventory; build and serve the mirror once (not measured)."""
    # nginx's workers (nobody, under root) must reach the web root: run.py makes the
    # temporary work folder searchable by others, and this one is made so too.
    setup.work.chmod(0o755)
    setup.nginx_pid_file = setup.mirror_dir / ".olmirror" / "nginx" / "nginx.pid"
    write_configs(setup, counts)
    for count in counts:
        spec = setup.specs[count]
        olmirror(setup, spec, "apply", ["--limit", "local"], setup.work / "out" / "prep").check()


def route(setup: FanoutSetup, latency_ms: float, counts: tuple[int, ...]) -> None:
    """Send every tool through a relay delaying each direction by `latency_ms` (none at 0).

    known_hosts carries each host key under the relay's port too, so host keys are checked
    as strictly through the relay as without it.
    """
    _stop_relay(setup)
    if latency_ms:
        ports = [str(h.port) for h in setup.hosts]
        argv = [sys.executable, str(BENCH / "relay.py"), "--delay-ms", str(latency_ms), *ports]
        setup.relay = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert setup.relay.stdout is not None
        listening = json.loads(setup.relay.stdout.readline() or "{}")
        if len(listening) != len(ports):
            raise RuntimeError(f"relay.py did not start: {listening}")
        setup.relay_ports = {h.name: listening[str(h.port)] for h in setup.hosts}
    setup.latency_ms = latency_ms
    lines = (
        line
        for h in setup.hosts
        for line in (h.known_hosts_line(), h.known_hosts_line(setup.port(h)))
    )
    setup.known_hosts.write_text("".join(dict.fromkeys(lines)))
    write_configs(setup, counts)


def _stop_relay(setup: FanoutSetup) -> None:
    if setup.relay is not None:
        setup.relay.terminate()
        setup.relay.wait(10)
    setup.relay, setup.relay_ports, setup.latency_ms = None, {}, 0.0


def stop(setup: FanoutSetup) -> None:
    """Stop the relay, the sshds and olmirror's nginx, each by its own pid."""
    _stop_relay(setup)
    setup.farm.stop()
    pid_file = setup.nginx_pid_file
    if pid_file is not None and pid_file.exists():
        pid = int(pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # nginx's graceful shutdown


def versions() -> dict[str, str]:
    """The peers' versions and each venv's paramiko: pyinfra's pins an older one."""
    from importlib.metadata import version

    ask = "import importlib.metadata as m; print(m.version('pyinfra'), m.version('paramiko'))"
    python = PYINFRA_VENV / "bin" / "python"
    pyinfra, paramiko = subprocess.run(
        [str(python), "-c", ask], check=True, capture_output=True, text=True
    ).stdout.split()
    return {
        "paramiko (bench/.venv: olmirror, the floor)": version("paramiko"),
        "ansible-core": version("ansible-core"),
        "pyinfra": pyinfra,
        "paramiko (pyinfra's venv)": paramiko,
    }


def olmirror(setup: FanoutSetup, spec: Path, command: str, extra: list[str], out: Path) -> Timed:
    argv = [sys.executable, "-m", "olmirror", command, "-f", str(spec), "--no-color", *extra]
    if command == "apply":
        argv.append("--yes")
    return timed(argv, setup.env, spec.parent, out)


def _names(setup: FanoutSetup, count: int) -> str:
    return ",".join(h.name for h in setup.hosts[:count])


def olmirror_action(setup: FanoutSetup, count: int, action: str, out: Path) -> Timed:
    spec = setup.specs[count]
    hosts = ["--limit", _names(setup, count), "--forks", str(count)]
    if action == "plan_noop":
        done = olmirror(setup, spec, "plan", [*hosts, "--detailed-exitcode"], out).check(0)
    else:
        done = olmirror(setup, spec, "apply", hosts, out).check(0)
        if action == "apply_noop":
            if "Nothing to change" not in done.out:
                raise RuntimeError(f"olmirror {action}: not a no-op:\n{done.out}")
        elif sorted(_olmirror_recap(done.out).values()) != ["changed"] * count:
            raise RuntimeError(f"olmirror {action}: not changed on every host:\n{done.out}")
    return done


def _olmirror_recap(out: str) -> dict[str, str]:
    lines = out[out.rindex("Recap") :].splitlines()[1:] if "Recap" in out else []
    return {
        line.split()[0]: line.split()[1]
        for line in lines
        if line.startswith("  ") and not line.startswith("   ") and "changed=" in line
    }


def ansible_action(setup: FanoutSetup, count: int, action: str, out: Path) -> Timed:
    control = Path(tempfile.mkdtemp(prefix="olb-cp-"))  # short: sockets have a length limit
    env = {
        **setup.env,
        "ANSIBLE_CONFIG": str(setup.ansible_cfg),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    argv = [venv_bin("ansible-playbook"), "-i", str(setup.inventories[count]),
            "-f", str(count), str(PLAYBOOK)]  # fmt: skip
    if action == "check_noop":
        argv.append("--check")
    try:
        done = timed(argv, env, setup.work, out).check()
    finally:
        _close_masters(control)
    changed = _ansible_changed(done.out)
    if len(changed) != count:
        raise RuntimeError(f"ansible {action}: recap lists {len(changed)} hosts:\n{done.out}")
    fresh = action == "first_run"
    if any((c > 0) != fresh for c in changed.values()):
        raise RuntimeError(f"ansible {action}: unexpected changed counts {changed}")
    return done


def _ansible_changed(out: str) -> dict[str, int]:
    return {
        m["host"]: int(m["changed"])
        for m in re.finditer(r"^(?P<host>\S+)\s+: ok=\d+\s+changed=(?P<changed>\d+)", out, re.M)
    }


def _close_masters(control: Path) -> None:
    """End the SSH ControlPersist masters of one Ansible run, so every run starts cold."""
    for sock in control.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
            capture_output=True,
            check=False,
        )
    shutil.rmtree(control, ignore_errors=True)


def pyinfra_action(setup: FanoutSetup, count: int, action: str, out: Path) -> Timed:
    """pyinfra with parallelism N: `-y` runs without its change-detecting pass first, as
    Ansible and olmirror's apply run; `--dry` only reports."""
    argv = [venv_bin("pyinfra", PYINFRA_VENV), "--parallel", str(count),
            "--dry" if action == "dry_noop" else "-y",
            str(setup.pyinfra_inventories[count]), str(DEPLOY)]  # fmt: skip
    done = timed(argv, setup.env, setup.work, out).check()
    report = done.err  # pyinfra logs to stderr
    hosts = set(re.findall(r"^\s+\[(\S+)\] +Ready: ", report, re.M))
    if len(hosts) != count:
        raise RuntimeError(f"pyinfra {action}: {len(hosts)} hosts ready:\n{report}")
    if action == "dry_noop":
        planned = _pyinfra_planned(report)
        if not planned or any(planned.values()):
            raise RuntimeError(f"pyinfra {action}: detected changes {planned}:\n{report}")
        return done
    changed = _pyinfra_changed(report, hosts)
    fresh = action == "first_run"
    if any((c > 0) != fresh for c in changed.values()):
        raise RuntimeError(f"pyinfra {action}: unexpected changed counts {changed}:\n{report}")
    return done


def _pyinfra_changed(report: str, hosts: set[str]) -> dict[str, int]:
    """Operations that changed each host: its `[host] Success` lines (unchanged ones say
    `No changes`; names are padded to the longest), once the run reached its results."""
    if "--> Results:" not in report:
        raise RuntimeError(f"pyinfra: no results:\n{report}")
    done = re.findall(r"^\s+\[(\S+)\] +Success$", report, re.M)
    return {host: done.count(host) for host in hosts}


def _pyinfra_planned(report: str) -> dict[str, int]:
    """Hosts each operation would change, from `--dry`'s "Detected changes" table (the
    Change and Conditional Change columns)."""
    table = report.partition("--> Detected changes:\n")[2].split("\n\n")[0].splitlines()[1:]
    rows = (re.match(r"^\s+(?P<op>.*?)\s+(?P<now>-|\d+)\s+(?P<maybe>-|\d+)\s*$", r) for r in table)
    return {m["op"]: sum(int(n) for n in (m["now"], m["maybe"]) if n != "-") for m in rows if m}


def floor_action(setup: FanoutSetup, count: int, out: Path) -> Timed:
    hosts = [
        {
            "port": setup.port(h),
            "user": getpass.getuser(),
            "key": str(setup.farm.client_key),
            "known_hosts": str(setup.known_hosts),
        }
        for h in setup.hosts[:count]
    ]
    listing = setup.work / f"floor-n{count}.json"
    listing.write_text(json.dumps(hosts))
    argv = [sys.executable, str(BENCH / "floor.py"), str(listing)]
    return timed(argv, setup.env, setup.work, out).check()


def verify_converged(setup: FanoutSetup, count: int, who: str) -> None:
    """Both tools must leave the same keys and files: the comparison is only fair then."""
    for host in setup.hosts[:count]:
        path = setup.worker_path(host)
        config = json.loads((path / "config.json").read_text())
        assert config.get("pip_mirror") == setup.mirror_url, (who, host.name, config)
        assert config.get("mirror_host") == "127.0.0.1", (who, host.name, config)
        assert "registry" in config and "docker" in config, (who, host.name, "keys kept")
        for name in ("requirements.in", "requirements.txt"):
            assert (path / "registry" / name).is_file(), (who, host.name, name)


Runner = Callable[[FanoutSetup, int, str, Path], Timed]
# Each tool's actions, the first on freshly reset hosts and checked for convergence.
CONVERGERS: tuple[tuple[str, tuple[str, ...], Runner], ...] = (
    ("olmirror", OLMIRROR_ACTIONS, olmirror_action),
    ("pyinfra", PYINFRA_ACTIONS, pyinfra_action),
    ("ansible", ANSIBLE_ACTIONS, ansible_action),
)


def log_sizes(hosts: list[SshHost]) -> list[int]:
    return [h.log.stat().st_size for h in hosts]


def sessions(hosts: list[SshHost], since: list[int]) -> dict[str, list[int]]:
    """Per host, from its sshd log after `since`: logins, commands run and sftp sessions.

    A session's line is logged when sshd starts it, before the tool can see its result, so
    every session of a finished run is in the log when the run ends.
    """
    found: dict[str, list[int]] = {"logins": [], "commands": [], "sftp": []}
    for host, size in zip(hosts, since, strict=True):
        with host.log.open(errors="replace") as log:
            log.seek(size)
            text = log.read()
        started = [m["what"] for m in SESSION.finditer(text)]
        found["logins"].append(len(LOGIN.findall(text)))
        found["sftp"].append(started.count(SFTP))
        found["commands"].append(len(started) - started.count(SFTP))
    return found


def measure(
    setup: FanoutSetup,
    counts: tuple[int, ...],
    runs: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Seconds and SSH sessions per host of every action, `runs` times each, per host count."""
    results: dict[str, Any] = {}
    for count in counts:
        hosts = setup.hosts[:count]
        seconds: dict[str, list[float]] = {}
        counted: dict[str, list[dict[str, list[int]]]] = {}
        rss: list[int] = []
        load: list[float] = []
        for run in range(runs):
            out = setup.work / "out" / f"lat{setup.latency_ms:g}" / f"n{count}" / f"run{run}"
            load.append(os.getloadavg()[0])
            for tool, actions, runner in CONVERGERS:
                reset(setup, hosts)
                for action in actions:
                    since = log_sizes(hosts)
                    done = runner(setup, count, action, out / f"{tool}-{action}")
                    counted.setdefault(f"{tool}_{action}", []).append(sessions(hosts, since))
                    seconds.setdefault(f"{tool}_{action}", []).append(done.seconds)
                    if action == actions[0]:
                        verify_converged(setup, count, tool)
                    if (tool, action) == ("olmirror", "plan_noop"):
                        rss.append(done.max_rss_kib)
            since = log_sizes(hosts)
            done = floor_action(setup, count, out / "floor")
            counted.setdefault("floor", []).append(sessions(hosts, since))
            seconds.setdefault("floor", []).append(done.seconds)
            log(
                f"  latency {setup.latency_ms:g} ms, n={count} run {run + 1}/{runs}: "
                + ", ".join(f"{k}={v[-1]:.2f}s" for k, v in seconds.items())
            )
        results[str(count)] = {
            "seconds": seconds,
            "sessions_per_host": counted,
            "plan_noop_max_rss_kib": rss,
            "load_average_1min_at_start": load,
        }
    return results
