"""`olmirror verify --call`: the proof that a worker installs from the mirror is a call.

Each running worker's lambdas (declared, and found in its registry) are called on the
worker's own host with POST localhost:<worker_port>/run/<name>. OpenLambda installs a
lambda's packages on its first call, so afterwards each requirements.txt line has its
folder in Pkgs_dir. A lambda passes when the call answered 200, every pin of its lock
set is installed at exactly the locked version, and its sandbox's pip.conf names the
mirror and no other index, so that nothing was installed from anywhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from olmirror.connection import FactRequest
from olmirror.connection.hosts import Connections, in_parallel
from olmirror.errors import OlmirrorError
from olmirror.lock.lockfile import Lock
from olmirror.lock.requirement_sets import lambda_set_name
from olmirror.openlambda.packages_dir import entry_name, stale_entries
from olmirror.openlambda.pip_conf import config_paths, converge, index_options
from olmirror.openlambda.registry import Registry, worker_dir
from olmirror.openlambda.worker import sandbox_index, worker_target
from olmirror.remote import source
from olmirror.spec import LoadedSpec, Worker

_SCRIPT = source("call_script")


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


def _index_problem(pip_conf: str | None, expected: dict[str, str] | None) -> str | None:
    """Why the sandbox's pip.conf does not point at the mirror alone, or None: its index
    options must be exactly those olmirror writes (`pip_conf.converge` leaves it as it is)."""
    if pip_conf is None:
        return "the sandbox has no /etc/pip.conf, so its pip uses the public index"
    if expected is None or converge(pip_conf, expected).rstrip() != pip_conf.rstrip():
        found = ", ".join(index_options(pip_conf)) or "no index"
        return (
            f"the sandbox's pip.conf does not name the mirror alone as olmirror writes it (it "
            f"sets {found}); run `olmirror apply`"
        )
    return None


def _judge(
    worker: Worker,
    name: str,
    pins: list[str],
    call: tuple[int | None, str],
    installed: dict[str, list[str]],
    index: str | None,
) -> Called:
    status, body = call
    lines = body.strip().splitlines()
    problems = []
    if status != 200:  # a traceback's last line says what went wrong
        answer = f"HTTP {status}" if status else "no answer"
        problems.append(f"{answer}: {lines[-1][:200] if lines else 'empty'}")
    missing = [pin for pin in pins if entry_name(pin) not in installed]
    if missing:
        problems.append(f"not installed: {', '.join(missing)}")
    problems += [f"{s.entry} {s.why}" for s in stale_entries(installed, set(pins))]
    problems += [index] if index else []
    if problems:
        return Called(worker.host, worker.name, name, False, "; ".join(problems))
    names = ", ".join(canonicalize_name(p.partition("==")[0]) for p in pins) or "no packages"
    answer = " ".join(lines)[:80]
    return Called(worker.host, worker.name, name, True, f"HTTP 200 {answer}; as locked: {names}")


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
        """The calls in one command; then, in one gather, what they installed."""
        jobs = [(w, pins(w)) for w in by_host[host]]
        payload = [{"worker": worker_dir(w), "lambdas": sorted(lp)} for w, lp in jobs]
        conn = connections.get(host)
        try:
            done = conn.run(conn.script(_SCRIPT), stdin=json.dumps(payload).encode(),
                            timeout=3600)  # fmt: skip
            answers = json.loads(done.stdout.strip().rsplit("\n", 1)[-1]) if done.ok else None
            why = done.stderr.strip()[-300:]
            sandboxes = {w.name: registries[w.name].sandbox for w, _ in jobs}
            confs = {n: config_paths(s)[0] for n, s in sandboxes.items() if s is not None}
            facts = conn.gather(
                FactRequest(
                    registries=frozenset(worker_dir(w) for w, _ in jobs),
                    content=frozenset(confs.values()),
                )
            )
        except (OlmirrorError, ValueError) as exc:
            answers, why = None, str(exc)
        if not isinstance(answers, list):
            return [
                Called(host, w.name, None, False, f"cannot call lambdas: {why}") for w, _ in jobs
            ]
        results = []
        for (worker, lambda_pins), answer in zip(jobs, answers, strict=True):
            if "error" in answer:
                results.append(Called(host, worker.name, None, False, answer["error"]))
                continue
            conf = facts.paths.get(confs.get(worker.name, ""))
            text = conf.content.decode(errors="replace") if conf and conf.content else None
            sandbox = sandboxes[worker.name]
            expected = dict(sandbox_index(spec, worker, sandbox)) if sandbox else None
            index = _index_problem(text, expected)
            installed = facts.registries[worker_dir(worker)].get("installed", {})
            for name, pinned in lambda_pins.items():
                call = answer["calls"][name]
                results.append(_judge(worker, name, pinned, call, installed, index))
        return results

    found = in_parallel(sorted(by_host), one, forks)
    return [called for host in sorted(found) for called in found[host]]
