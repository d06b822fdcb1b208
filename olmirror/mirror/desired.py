"""The mirror's desired state: its folder, and the engine that fills it with the locked files."""

from __future__ import annotations

import posixpath
from pathlib import Path

from olmirror.errors import OlmirrorError
from olmirror.lock import simple_api
from olmirror.lock.engine_choice import choose_engine
from olmirror.lock.lockfile import Lock, LockedFile
from olmirror.lock.state_folder import made_state_folder
from olmirror.lock.upstream_auth import auth_source, credentials_from
from olmirror.lock.upstream_index import allowed_origins, retries_of, upstream_of
from olmirror.lock.wheel_build import sdist_of
from olmirror.mirror.bandersnatch_config import render
from olmirror.mirror.built_wheel import BuiltWheel
from olmirror.mirror.fetch import FetchFiles
from olmirror.mirror.layout import (
    config_path,
    own_dir,
    project_page,
    simple_dir,
    stored_path,
    web_dir,
)
from olmirror.mirror.prune import PruneMirror
from olmirror.mirror.python_tool import PythonTool
from olmirror.mirror.sync import BandersnatchSync
from olmirror.resources import Directory, File, Resource
from olmirror.spec import LoadedSpec, Spec

BANDERSNATCH = "bandersnatch>=6.5,<7"


def pip_mirror(spec: Spec) -> str:
    """What a worker's `pip_mirror` holds: the mirror's base URL or web folder, never /simple."""
    serve = spec.mirror.serve
    if serve.backend in ("http", "s3") and serve.url:
        return serve.url.rstrip("/")
    return web_dir(spec.mirror.directory)


def _index_pages(directory: str, lock: Lock) -> dict[str, str]:
    """The simple index olmirror writes for `lock`: each page's path on the mirror host."""
    simple = simple_dir(directory)
    return {posixpath.join(simple, path): text for path, text in simple_api.pages(lock).items()}


def _engine_resources(loaded: LoadedSpec, lock: Lock, ca_file: str | None) -> list[Resource]:
    mirror = loaded.spec.mirror
    directory = mirror.directory
    auth = auth_source(mirror.upstream_auth)  # where the credentials are: resources hold this
    retries = retries_of(mirror.retries)
    if mirror.serve.backend == "s3":  # the spec checks refuse engine bandersnatch with it
        engine, why = "simple", "serve.backend s3 publishes what engine simple fetched"
    else:
        with_credentials = credentials_from(auth, lock.upstream)
        engine, why = choose_engine(mirror.engine, lock, mirror.ca_file, retries, with_credentials)
    files = lock.files()
    built = [f for f in files.values() if f.built]
    if built and engine != "simple":
        raise OlmirrorError(
            f"mirror.engine: {engine} serves the upstream's own files, and the lock holds "
            f"{len(built)} wheel(s) olmirror built from source distributions "
            f"({', '.join(f.filename for f in built[:3])}); set mirror.engine to simple "
            "(or auto), which serves them"
        )
    stored = tuple((stored_path(directory, f.url), f.url, f.sha256, f.size) for f in files.values())
    fetched = tuple(entry for entry in stored if not files[entry[1]].built)
    projects = lock.projects()
    # Last on the mirror: what the lock no longer holds goes once the rest is in place.
    prune = PruneMirror(web_dir(directory), tuple(projects), tuple(sorted(p for p, *_ in stored)))
    allowed = allowed_origins(mirror.upstream, list(mirror.file_origins))
    origins = tuple(allowed) if allowed is not None else None
    if engine == "simple":
        pages = _index_pages(directory, lock)
        folders = sorted({posixpath.dirname(path) for path in pages})
        return [
            FetchFiles(
                directory,
                fetched,
                why,
                ca_file,
                mirror.download_timeout,
                origins,
                retries,
                lock.upstream,
                auth,
            ),
            *_built_wheels(loaded, built),
            *(Directory(folder) for folder in folders),
            *(File(path, content) for path, content in pages.items()),
            prune,
        ]
    venv = own_dir(directory, "venv")
    config = config_path(directory)
    return [
        PythonTool("bandersnatch", BANDERSNATCH, venv),
        File(config, render(directory, lock)),
        BandersnatchSync(
            config=config,
            venv_program=posixpath.join(venv, "bin", "bandersnatch"),
            files=stored,
            pages=tuple(project_page(directory, p) for p in projects),
            ca_file=ca_file,
            min_seconds=mirror.download_timeout,
            origins=origins,
            retries=retries,
        ),
        prune,
    ]


def _built_wheels(loaded: LoadedSpec, built: list[LockedFile]) -> list[Resource]:
    """The wheels olmirror built, placed from this machine (built again at apply if neither
    this machine nor the mirror has them)."""
    mirror = loaded.spec.mirror
    state = made_state_folder(Path(loaded.path))
    origins = allowed_origins(mirror.upstream, list(mirror.file_origins))
    resources: list[Resource] = []
    for f in built:
        sdist = sdist_of(f, origins)
        resources.append(
            BuiltWheel(
                stored_path(mirror.directory, f.url),
                f.sha256,
                f.size or 0,
                (sdist.filename, sdist.url, sdist.sha256),
                str(state) if state else None,
                upstream_of(loaded),
                mirror.ca_file,
                mirror.index_timeout,
                retries_of(mirror.retries),
                auth_source(mirror.upstream_auth),
            )
        )
    return resources


def mirror_resources(loaded: LoadedSpec, lock: Lock) -> list[Resource]:
    """The mirror folder and the engine that fills it with the locked files (none: no engine)."""
    mirror = loaded.spec.mirror
    state = own_dir(mirror.directory)
    resources: list[Resource] = [Directory(mirror.directory), Directory(state)]
    if not lock.files():
        # Nothing to mirror yet: an empty index still answers, so workers can point at it.
        resources.append(Directory(simple_dir(mirror.directory)))
        files = [File(path, text) for path, text in _index_pages(mirror.directory, lock).items()]
        return [*resources, *files, PruneMirror(web_dir(mirror.directory), (), ())]
    ca_file = None
    if mirror.ca_file:
        ca_file = posixpath.join(state, "upstream-ca.pem")
        resources.append(File(ca_file, Path(mirror.ca_file).read_text()))
    return resources + _engine_resources(loaded, lock, ca_file)
