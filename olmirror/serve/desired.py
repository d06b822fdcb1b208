"""Serving the mirror's web folder over HTTP with nginx, for `serve.backend: http`.

olmirror runs its own nginx instance rather than adding a site to the distro's
nginx: master process `nginx -c <directory>/.olmirror/nginx/nginx.conf`, with its
own pid file, logs and temp folders beside that config. Operators get:

- nothing in /etc to fight over: the distro's nginx (and its default site on
  port 80) can run, stop or be upgraded untouched, and a broken mirror config
  cannot take other sites down on reload;
- no root needed: a mirror host reached as an ordinary user (ports >= 1024)
  works as well as one reached with `become`;
- everything about the mirror in one folder, removed with it.

The cost: systemd does not start this instance at boot; the next `olmirror
apply` does (it starts nginx whenever it is not running). Started as root, nginx
runs its workers as `nobody` (Debian's build default), so the web folder and every
folder above it must be readable by others, as they are by default.
"""

from __future__ import annotations

import posixpath

from olmirror.errors import OlmirrorError
from olmirror.mirror.layout import own_dir, web_dir
from olmirror.resources import Directory, File, Resource
from olmirror.serve.http_check import HttpCheck
from olmirror.serve.nginx import Nginx, NginxStopped
from olmirror.spec import Spec

TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_folder(directory: str) -> str:
    """Where olmirror's nginx instance keeps its config, pid file, logs and temp files."""
    return own_dir(directory, "nginx")


def _quoted(path: str) -> str:
    """A path as an nginx string; nginx would read `$` as a variable and has no escape for it."""
    if "$" in path or any(ord(c) < 32 for c in path):
        raise OlmirrorError(
            f"nginx cannot serve from {path!r}: nginx reads '$' as a variable and cannot take "
            "control characters; choose a mirror.directory without them"
        )
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_nginx_conf(nginx: Nginx, web: str) -> str:
    """A complete nginx.conf serving `web` read-only as a PEP 503/691 simple index.

    Simple pages are served as HTML (pip's fallback and every tool's baseline), or as
    PEP 691 JSON when the client asks for it and the engine wrote `index.v1_json`;
    every other file is an opaque download.
    """
    temp = posixpath.join(nginx.folder, "temp")
    paths = "\n".join(
        f"    {kind}_temp_path {_quoted(posixpath.join(temp, kind))};" for kind in TEMP_KINDS
    )
    return f"""\
# Written by olmirror: serves the mirror {web}. Edits are overwritten.
# start:  nginx -c {nginx.conf} -p {nginx.folder}/ -e {nginx.error_log}
# reload: the same with -s reload
worker_processes auto;
pid {_quoted(nginx.pid_file)};
error_log {_quoted(nginx.error_log)} notice;

events {{
    worker_connections 1024;
}}

http {{
    access_log {_quoted(nginx.access_log)};
{paths}

    sendfile on;
    tcp_nopush on;
    server_tokens off;
    types {{
        text/html html;
        application/vnd.pypi.simple.v1+json v1_json;
        application/vnd.pypi.simple.v1+html v1_html;
    }}
    default_type application/octet-stream;
    charset utf-8;

    map $http_accept $olmirror_index {{
        default index.html;
        "~application/vnd\\.pypi\\.simple\\.v1\\+json" index.v1_json;
    }}

    server {{
        listen {nginx.listen};
        root {_quoted(web)};
        autoindex on;
        absolute_redirect off;
        index index.html;

        location /simple/ {{
            index $olmirror_index index.html;
            add_header Vary Accept;
        }}
    }}
}}
"""


def serve_resources(spec: Spec) -> list[Resource]:
    """The resources that make the mirror host serve <directory>/web; for filesystem, only
    that olmirror's nginx (from an earlier http backend) is not left serving it."""
    mirror = spec.mirror
    serve = mirror.serve
    if serve.backend != "http":
        return [NginxStopped(mirror.host, nginx_folder(mirror.directory))]
    if serve.listen is None or serve.url is None:  # the spec checks refuse this first
        raise ValueError("serve.backend http needs serve.listen and serve.url")
    web = web_dir(mirror.directory)
    folder = nginx_folder(mirror.directory)
    nginx = Nginx(host=mirror.host, folder=folder, listen=serve.listen)
    return [
        Directory(folder),
        Directory(posixpath.join(folder, "temp")),
        File(nginx.conf, render_nginx_conf(nginx, web)),
        nginx,
        HttpCheck(
            host=mirror.host,
            url=serve.url.rstrip("/") + "/simple/",
            after=(nginx.conf, nginx.pid_file),
            log=nginx.error_log,
            hint=(
                f"nginx's workers cannot read {web}: started as root they run as `nobody`, "
                "so that folder and every folder above it must be readable and searchable "
                "by others"
            ),
        ),
    ]
