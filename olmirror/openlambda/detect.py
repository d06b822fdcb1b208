"""`target: detect`: find the mirror target that a worker's sandbox can install.

A worker's packages are installed and imported by the Python of its sandbox, the base
image in `<worker>/lambda`, not by its host's python3 (see
`olmirror.remote.sandbox_facts`). One command on the worker's host reads that image's
Python version, machine and C library; the worker gets the first of the mirror's targets
with that Python version whose platform tag the image accepts (a manylinux_2_28 wheel on
glibc 2.35, say). Before `ol worker init` has made the sandbox, `ol-min` is known: Ubuntu
22.04 (open-lambda min-image/Dockerfile:1,5), so CPython 3.10 on glibc 2.35.
"""

from __future__ import annotations

import json

from olmirror.connection.hosts import Connections, in_parallel
from olmirror.errors import OlmirrorError
from olmirror.lock.targets import compatible_platforms
from olmirror.openlambda.registry import worker_dir
from olmirror.remote import source
from olmirror.spec import LoadedSpec, TargetSetting, Worker

_FACTS = source("sandbox_facts")

# Images whose Python and C library are known before they are dumped: name -> (python, libc).
KNOWN_IMAGES = {"ol-min": ("3.10", ["glibc", "2.35"])}


def _host_platforms(machine: str, libc: list[str]) -> list[str]:
    name, version = libc
    if name == "glibc" and version.count(".") >= 1:
        major, minor = version.split(".")[:2]
        return [*compatible_platforms(f"manylinux_{major}_{minor}_{machine}"), f"linux_{machine}"]
    return [f"linux_{machine}"]


def _sandbox(worker: Worker, connections: Connections) -> dict:
    """The sandbox's facts: python, machine, libc (see sandbox_facts.py)."""
    path = worker_dir(worker)
    conn = connections.get(worker.host)
    result = conn.run(conn.script(_FACTS, path), timeout=60)
    where = f"worker {worker.name!r}: cannot detect its target on host {worker.host!r}"
    if not result.ok:
        raise OlmirrorError(
            f"{where} (python3 said: {result.stderr.strip()[-300:] or result.returncode}); "
            "install python3 there or name the worker's target in the spec"
        )
    try:
        # One line of JSON last; a chatty login shell may print before it.
        facts = json.loads(result.stdout.strip().rsplit("\n", 1)[-1])
        base, exists = facts["base"], facts["exists"]
    except (ValueError, KeyError, TypeError) as exc:
        raise OlmirrorError(
            f"{where}: python3 printed something unexpected ({exc}): "
            f"{result.stdout.strip()[-300:]!r}"
        ) from None
    if not exists:
        if worker.image not in KNOWN_IMAGES:
            raise OlmirrorError(
                f"{where}: its sandbox {base} does not exist yet, and olmirror does not know "
                f"what image {worker.image!r} holds; name the worker's target in the spec, or "
                "run `ol worker init` first"
            )
        python, libc = KNOWN_IMAGES[worker.image]
        return {"python": python, "machine": facts["host_machine"], "libc": libc}
    if not facts.get("python") or not facts.get("libc"):
        raise OlmirrorError(
            f"{where}: cannot tell the Python or C library of its sandbox {base} (no "
            "usr/bin/python3 -> python3.X, or no libc.so.6 with a version); name the "
            "worker's target in the spec"
        )
    return facts


def detect_target(
    worker: Worker, targets: list[TargetSetting], connections: Connections
) -> TargetSetting:
    facts = _sandbox(worker, connections)
    platforms = _host_platforms(facts["machine"], facts["libc"])
    for target in targets:
        if target.python == facts["python"] and target.platform in platforms:
            return target
    listed = ", ".join(f"{t.python} {t.platform}" for t in targets)
    raise OlmirrorError(
        f"worker {worker.name!r}: its sandbox on host {worker.host!r} has Python "
        f"{facts['python']} on {facts['machine']} ({' '.join(facts['libc']) or 'no glibc'}), "
        f"which none of the mirror's targets ({listed}) fits; add a target for it to "
        "mirror.targets or name one"
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

    def detect(name: str) -> TargetSetting | OlmirrorError:
        try:
            return detect_target(asked[name], spec.mirror.targets, connections)
        except OlmirrorError as exc:
            return exc

    found = in_parallel(asked, detect, forks)
    failed = {
        asked[n].host: result
        for n, result in found.items()
        if not isinstance(result, TargetSetting)
    }

    def settled(worker: Worker) -> Worker:
        if worker.target != "detect":
            return worker
        target = found.get(worker.name)
        return worker.model_copy(
            update={"target": target if isinstance(target, TargetSetting) else None}
        )

    detected = spec.model_copy(update={"workers": [settled(w) for w in spec.workers]})
    return LoadedSpec(detected, loaded.path, loaded.digest), failed
