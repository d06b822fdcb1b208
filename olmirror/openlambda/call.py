"""`olmirror verify --call`: the proof that a worker installs from the mirror is a call.

Each running worker's lambdas (declared, and found in its registry) are called on the
worker's own host with POST localhost:<worker_port>/run/<name>. OpenLambda installs a
lambda's packages on its first call, so afterwards each requirements.txt line has its
folder in Pkgs_dir. A lambda passes when the call answered 200, every pin of its lock
set is installed at exactly the locked version, and its sandbox's pip.conf names the
mirror and no other index, so that nothing was installed from anywhere else.
"""

from __future__ import annotations

import configparser
import json
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from olmirror.errors import OlmirrorError
from olmirror.hosts import Connections, in_parallel
from olmirror.lockfile import Lock
from olmirror.openlambda.packages_dir import entry_name, stale_entries
from olmirror.openlambda.pip_conf import index_options
from olmirror.openlambda.registry import Registry, worker_dir
from olmirror.openlambda.worker import sandbox_index, worker_target
from olmirror.requirement_sets import lambda_set_name
from olmirror.spec import LoadedSpec, Worker

_SCRIPT = (Path(__file__).parent / "call_script.py").read_text()


@dataclass(frozen=True)
class Called:
    host: str
    worker: str
    lambda_name: str | None  # None: the worker could not be asked at all
    ok: bool
    detail: str

    def __str__(self) -> str:
        name = f"{self.worker}/{self.lambda_name}" if self.lambda_name else self.worker
        return f"{name} (host {self.host}): {'ok' if self.ok else 'FAILED'}: {self.detail}"


def _index_problem(pip_conf: str | None, expected: dict[str, str]) -> str | None:
    """Why the sandbox's pip.conf does not point at the mirror alone, or None."""
    if pip_conf is None:
        return "the sandbox has no /etc/pip.conf, so its pip uses the public index"
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read_string(pip_conf)
    except configparser.Error as exc:
        return f"the sandbox's pip.conf cannot be read ({exc.message})"
    found = parser.get("global", "index-url", fallback=None)
    if found != expected["index-url"]:
        return f"the sandbox's pip.conf names index {found!r}, not the mirror's"
    extra = [
        o for o in index_options(pip_conf) if o not in ("global.index-url", "global.trusted-host")
    ]
    return f"the sandbox's pip.conf also sets {', '.join(extra)}" if extra else None


def _judge(worker: Worker, name: str, pins: list[str], call: dict, index: str | None) -> Called:
    status, body = call["status"], call["body"].strip().replace("\n", " ")[:300]
    if status != 200:
        answer = f"HTTP {status}" if status else "no answer"
        return Called(worker.host, worker.name, name, False, f"{answer}: {body}")
    missing = [pin for pin in pins if call["installed"].get(entry_name(pin)) is None]
    installed = {entry: infos for entry, infos in call["installed"].items() if infos is not None}
    wrong = [f"{s.entry} {s.why}" for s in stale_entries(installed, set(pins))]
    problems = [f"not installed: {', '.join(missing)}"] if missing else []
    problems += wrong + ([index] if index else [])
    if problems:
        return Called(worker.host, worker.name, name, False, "; ".join(problems))
    names = ", ".join(canonicalize_name(p.partition("==")[0]) for p in pins) or "no packages"
    return Called(worker.host, worker.name, name, True, f"HTTP 200 {body[:80]}; as locked: {names}")


def call_lambdas(
    loaded: LoadedSpec,
    lock: Lock,
    registries: dict[str, Registry],
    connections: Connections,
    forks: int,
) -> list[Called]:
    """Call every lambda of every running worker, hosts in parallel; one result a lambda."""
    spec = loaded.spec
    workers = [w for w in spec.workers if w.state == "running"]
    by_host: dict[str, list[Worker]] = {}
    for worker in workers:
        by_host.setdefault(worker.host, []).append(worker)

    def pins(worker: Worker) -> dict[str, list[str]]:
        locked = lock.targets[worker_target(spec, worker).key]
        names = sorted({*worker.lambdas, *(f.name for f in registries[worker.name].found)})
        return {n: locked.sets.get(lambda_set_name(worker.name, n), []) for n in names}

    def one(host: str) -> list[Called]:
        jobs = [(w, pins(w)) for w in by_host[host]]
        payload = [
            {
                "worker": worker_dir(w),
                "lambdas": {n: [entry_name(p) for p in ps] for n, ps in lp.items()},
            }
            for w, lp in jobs
        ]
        try:
            done = connections.get(host).run(
                ("python3", "-c", _SCRIPT), stdin=json.dumps(payload).encode(), timeout=3600
            )
            answers = json.loads(done.stdout.strip().rsplit("\n", 1)[-1]) if done.ok else None
        except (OlmirrorError, ValueError) as exc:
            done, answers = None, str(exc)
        if not isinstance(answers, list):
            why = (
                answers
                if isinstance(answers, str)
                else (done.stderr.strip()[-300:] if done else "")
            )
            return [
                Called(host, w.name, None, False, f"cannot call lambdas: {why}") for w, _ in jobs
            ]
        results = []
        for (worker, lambda_pins), answer in zip(jobs, answers, strict=True):
            if "error" in answer:
                results.append(Called(host, worker.name, None, False, answer["error"]))
                continue
            sandbox = registries[worker.name].sandbox
            expected = dict(sandbox_index(spec, worker, sandbox)) if sandbox else {"index-url": ""}
            index = _index_problem(answer["pip_conf"], expected)
            for name, pinned in lambda_pins.items():
                results.append(_judge(worker, name, pinned, answer["calls"][name], index))
        return results

    found = in_parallel(sorted(by_host), one, forks)
    return [called for host in sorted(found) for called in found[host]]
