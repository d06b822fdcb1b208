"""`target: detect`: find the mirror target a worker host's own python3 can install.

One command on the worker's host reads its Python version, machine and C library;
the worker gets the first of the mirror's targets with that Python version whose
platform tag the host accepts (a manylinux_2_28 wheel on glibc 2.36, say).
"""

from __future__ import annotations

import json

from olmirror.errors import OlmirrorError
from olmirror.hosts import Connections, in_parallel
from olmirror.spec import LoadedSpec, Target, Worker
from olmirror.targets import compatible_platforms

# Run by the worker host's python3, without a shell.
_FACTS = (
    "import json, platform, sys\n"
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], "
    "'machine': platform.machine(), 'libc': platform.libc_ver()}))\n"
)


def _host_platforms(machine: str, libc: list[str]) -> list[str]:
    name, version = libc
    if name == "glibc" and version.count(".") >= 1:
        major, minor = version.split(".")[:2]
        return [*compatible_platforms(f"manylinux_{major}_{minor}_{machine}"), f"linux_{machine}"]
    return [f"linux_{machine}"]


def detect_target(worker: Worker, targets: list[Target], connections: Connections) -> Target:
    result = connections.get(worker.host).run(("python3", "-c", _FACTS), timeout=60)
    if not result.ok:
        raise OlmirrorError(
            f"worker {worker.name!r}: cannot detect its target on host {worker.host!r} "
            f"(python3 said: {result.stderr.strip()[-300:] or result.returncode}); install "
            "python3 there or name the worker's target in the spec"
        )
    try:
        # One line of JSON last; a chatty login shell may print before it.
        facts = json.loads(result.stdout.strip().rsplit("\n", 1)[-1])
        platforms = _host_platforms(facts["machine"], facts["libc"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OlmirrorError(
            f"worker {worker.name!r}: cannot detect its target on host {worker.host!r}: "
            f"python3 printed something unexpected ({exc}): {result.stdout.strip()[-300:]!r}"
        ) from None
    for target in targets:
        if target.python == facts["python"] and target.platform in platforms:
            return target
    listed = ", ".join(f"{t.python} {t.platform}" for t in targets)
    raise OlmirrorError(
        f"worker {worker.name!r}: host {worker.host!r} has Python {facts['python']} on "
        f"{facts['machine']} ({' '.join(facts['libc']) or 'no glibc'}), which none of the mirror's "
        f"targets ({listed}) fits; add a target for it to mirror.targets or name one"
    )


def with_detected_targets(
    loaded: LoadedSpec, connections: Connections, hosts: list[str], forks: int
) -> tuple[LoadedSpec, dict[str, OlmirrorError]]:
    """The spec with every `target: detect` replaced by the target found on its host, and
    the hosts where detection failed, with why: the plan reports those hosts and goes on.

    Only `hosts` (those the plan covers) are asked, in parallel; workers elsewhere, which
    the plan leaves out too, keep the first target, as do those whose detection failed.
    """
    spec = loaded.spec
    if not any(w.target == "detect" for w in spec.workers):
        return loaded, {}
    asked = {w.name: w for w in spec.workers if w.target == "detect" and w.host in hosts}

    def detect(name: str) -> Target | OlmirrorError:
        try:
            return detect_target(asked[name], spec.mirror.targets, connections)
        except OlmirrorError as exc:
            return exc

    found = in_parallel(asked, detect, forks)
    failed = {
        asked[n].host: result for n, result in found.items() if not isinstance(result, Target)
    }

    def settled(worker: Worker) -> Worker:
        if worker.target != "detect":
            return worker
        target = found.get(worker.name)
        return worker.model_copy(update={"target": target if isinstance(target, Target) else None})

    detected = spec.model_copy(update={"workers": [settled(w) for w in spec.workers]})
    return LoadedSpec(detected, loaded.path, loaded.digest), failed
