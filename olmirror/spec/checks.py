"""Rules that relate one part of a valid-shaped spec to another.

Each problem comes back with the location of the field at fault, so the loader
can name its file, line and column like any other error.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from olmirror.spec.models import LOCAL, Host, Spec, TargetSetting

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


def _is_remote(spec: Spec, host: str) -> bool:
    return host != LOCAL and host in spec.hosts


def _absolute_on(spec: Spec, host: str, path: str, loc: Loc, what: str) -> Iterator[Problem]:
    if _is_remote(spec, host) and not path.startswith("/"):
        yield (
            loc,
            (
                f"{what} {path!r} on remote host {host!r} must be an absolute path; "
                "relative paths are only resolved for the local host"
            ),
        )


def _check_hosts(spec: Spec) -> Iterator[Problem]:
    for name, host in spec.hosts.items():
        if name == LOCAL:
            defaults = Host()
            for field in (
                "address", "ssh_alias", "user", "identity_file", "port", "known_hosts",
                "host_key_policy", "become", "become_password_env",
            ):  # fmt: skip
                if getattr(host, field) != getattr(defaults, field):
                    yield (
                        ("hosts", name, field),
                        (
                            f"the 'local' host is this machine and takes no {field}; "
                            "give the remote machine another name"
                        ),
                    )
        elif host.address is None and host.ssh_alias is None:
            yield (
                ("hosts", name),
                (f"host {name!r} needs an 'address' or an 'ssh_alias' to be reached over SSH"),
            )
        if host.become_password_env is not None and not host.become:
            yield (
                ("hosts", name, "become_password_env"),
                ("become_password_env is only used with 'become: true'; set both or remove it"),
            )
        if "/" in host.ol:
            yield from _absolute_on(spec, name, host.ol, ("hosts", name, "ol"), "ol program")
        if host.state_dir is not None:
            yield from _absolute_on(
                spec, name, host.state_dir, ("hosts", name, "state_dir"), "state_dir"
            )


def _undefined_host(spec: Spec, name: str, loc: Loc) -> Iterator[Problem]:
    if name != LOCAL and name not in spec.hosts:
        defined = ", ".join(sorted({LOCAL, *spec.hosts}))
        yield loc, f"{name!r} is not a defined host (defined: {defined}); add it under 'hosts'"


def _check_mirror(spec: Spec) -> Iterator[Problem]:
    mirror = spec.mirror
    yield from _undefined_host(spec, mirror.host, ("mirror", "host"))
    yield from _absolute_on(
        spec, mirror.host, mirror.directory, ("mirror", "directory"), "mirror directory"
    )
    yield from _check_serve(spec)
    yield from _check_upstream_auth(spec)
    seen: dict[tuple[str, str], int] = {}
    for i, target in enumerate(mirror.targets):
        key = (target.python, target.platform)
        if key in seen:
            yield ("mirror", "targets", i), f"same target as targets[{seen[key]}]; remove one"
        seen.setdefault(key, i)


# The fields each serve backend takes, and those it needs, with an example of each.
SERVE_FIELDS = {
    "filesystem": (),
    "http": ("listen", "url"),
    "s3": ("bucket", "url", "prefix", "endpoint_url", "region"),
}
SERVE_NEEDS = {
    "listen": "'0.0.0.0:8080'",
    "url": "'http://10.0.0.5:8080'",
    "bucket": "'ol-mirror'",
}


def _check_serve(spec: Spec) -> Iterator[Problem]:
    serve = spec.mirror.serve
    for field in SERVE_FIELDS[serve.backend]:
        if field in SERVE_NEEDS and getattr(serve, field) is None:
            yield (
                ("mirror", "serve"),
                f"backend '{serve.backend}' needs '{field}'; add it, like "
                f"{field}: {SERVE_NEEDS[field]}",
            )
    for field in sorted({f for fields in SERVE_FIELDS.values() for f in fields}):
        used_by = [b for b, fields in SERVE_FIELDS.items() if field in fields]
        if serve.backend not in used_by and getattr(serve, field) not in (None, ""):
            yield (
                ("mirror", "serve", field),
                f"'{field}' is only used with backend {' or '.join(map(repr, used_by))}; "
                f"remove it or set backend: {used_by[0]}",
            )
    if serve.url is not None and serve.url.rstrip("/").endswith("/simple"):
        yield (
            ("mirror", "serve", "url"),
            f"{serve.url!r} ends in /simple; give the mirror's base URL, "
            "workers add /simple/ themselves",
        )
    if serve.backend == "s3":
        if spec.mirror.host != LOCAL:
            yield (
                ("mirror", "host"),
                "serve.backend 's3' publishes the mirror folder from the machine that runs "
                "olmirror, with its AWS credentials; set mirror.host to local (the bucket is "
                "what workers read)",
            )
        if spec.mirror.engine == "bandersnatch":
            yield (
                ("mirror", "engine"),
                "serve.backend 's3' is filled by engine 'simple': bandersnatch's own S3 "
                "storage keeps a project's page only at simple/<project>/index.html, which a "
                "plain S3 endpoint does not answer for pip's simple/<project>/, and it reads "
                "every object back to hash it; set engine: simple (or auto)",
            )


def _check_upstream_auth(spec: Spec) -> Iterator[Problem]:
    auth = spec.mirror.upstream_auth
    if auth is None:
        return
    loc = ("mirror", "upstream_auth")
    pair = (auth.username_env, auth.password_env)
    if auth.token_env is not None and any(pair):
        yield loc, "give either token_env, or username_env and password_env, not both"
    elif auth.token_env is None and not all(pair):
        yield (
            loc,
            "give username_env and password_env (the names of the variables that hold them), "
            "or token_env for an access token",
        )
    if spec.mirror.upstream is None:
        yield (
            loc,
            "credentials are for a private upstream; set mirror.upstream to its index URL, "
            "or remove upstream_auth",
        )


def _check_allowlist(spec: Spec) -> Iterator[Problem]:
    blocked = {canonicalize_name(name) for name in spec.allowlist.block}
    for i, text in enumerate(spec.allowlist.packages):
        if canonicalize_name(Requirement(text).name) in blocked:
            yield (
                ("allowlist", "packages", i),
                (f"{text!r} is also in allowlist.block; remove it from one of the two"),
            )


def _check_worker_target(spec: Spec, i: int) -> Iterator[Problem]:
    targets = spec.mirror.targets
    listed = ", ".join(f"{{python: {t.python!r}, platform: {t.platform}}}" for t in targets)
    target = spec.workers[i].target
    if target is None and len(targets) > 1:
        yield (
            ("workers", i),
            f"the mirror has {len(targets)} targets, so this worker needs a 'target' naming "
            f"the one its Python matches: {listed}",
        )
    elif isinstance(target, TargetSetting) and target not in targets:
        yield (
            ("workers", i, "target"),
            f"this target is not one of mirror.targets ({listed}); add it there or pick one",
        )


# OpenLambda's worker_port when config.json does not change it (go/common/config.go:297).
DEFAULT_WORKER_PORT = 5000


def _check_ports(spec: Spec) -> Iterator[Problem]:
    """Workers on one host listen on different ports: `ol worker status` asks
    localhost:<worker_port>, so a shared port answers for the wrong worker."""
    first: dict[tuple[str, int], int] = {}
    names = [w.name for w in spec.workers]
    for i, worker in enumerate(spec.workers):
        if names.count(worker.name) > 1:
            continue  # told as a duplicate name
        key = (worker.host, worker.port or DEFAULT_WORKER_PORT)
        if key in first:
            other = first[key]
            yield (
                ("workers", i, "port") if worker.port else ("workers", i, "name"),
                f"worker {worker.name!r} would listen on port {key[1]} of host {worker.host!r}, "
                f"as workers[{other}] ({spec.workers[other].name!r}) does; give each worker on "
                "a host its own port (workers[].port)",
            )
        first.setdefault(key, i)


def _check_workers(spec: Spec) -> Iterator[Problem]:
    first: dict[str, int] = {}
    places: dict[tuple[str, str], int] = {}
    yield from _check_ports(spec)
    for i, worker in enumerate(spec.workers):
        if worker.name in first:
            yield (
                ("workers", i, "name"),
                (
                    f"worker name {worker.name!r} is already used by "
                    f"workers[{first[worker.name]}]; give each worker its own name"
                ),
            )
        first.setdefault(worker.name, i)
        yield from _undefined_host(spec, worker.host, ("workers", i, "host"))
        yield from _absolute_on(spec, worker.host, worker.path, ("workers", i, "path"), "path")
        place = (worker.host, posixpath.normpath(worker.path))
        if place in places:
            other = places[place]
            yield (
                ("workers", i, "path"),
                (
                    f"{worker.path!r} is the same folder as workers[{other}].path "
                    f"({spec.workers[other].path!r}) on host {worker.host!r}; "
                    "give each worker its own path"
                ),
            )
        places.setdefault(place, i)
        yield from _check_worker_target(spec, i)
        yield from _check_lambdas(spec, i)
        yield from _blocked(spec, worker.requirements, ("workers", i, "requirements"))


def _check_lambdas(spec: Spec, i: int) -> Iterator[Problem]:
    for name, item in spec.workers[i].lambdas.items():
        loc: Loc = ("workers", i, "lambdas", name)
        if item.source is not None and item.requirements:
            yield (
                (*loc, "requirements"),
                f"lambda {name!r} has both a source folder and requirements; its requirements "
                "come from the folder's requirements.in, so remove 'requirements'",
            )
        elif item.source is None and not item.requirements:
            yield (
                loc,
                f"lambda {name!r} needs 'requirements' (its requirements.in lines) or 'source' "
                "(a lambda folder with f.py and requirements.in)",
            )
        yield from _blocked(spec, item.requirements, (*loc, "requirements"))


def _blocked(spec: Spec, requirements: list[str], loc: Loc) -> Iterator[Problem]:
    blocked = {canonicalize_name(name) for name in spec.allowlist.block}
    for j, text in enumerate(requirements):
        if canonicalize_name(Requirement(text).name) in blocked:
            yield (
                (*loc, j),
                (
                    f"{text!r} is in allowlist.block, so the mirror will not hold it; "
                    "remove it or unblock it"
                ),
            )


def problems(spec: Spec) -> list[Problem]:
    """Every cross-field problem in `spec`, in file order of the sections."""
    return [
        *_check_hosts(spec),
        *_check_mirror(spec),
        *_check_allowlist(spec),
        *_check_workers(spec),
    ]
