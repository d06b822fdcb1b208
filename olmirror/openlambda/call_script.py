"""Run on a worker's host by its python3: call lambdas and read what their calls installed.

    python3 -c <this file> < [{"worker": PATH, "lambdas": {NAME: [ENTRY, ...]}}, ...]

For each worker, POST localhost:<worker_port>/run/<name> for each lambda, as `curl -X
POST localhost:5000/run/<name> -d '{}'` does (go/worker/event/lambdaServer.go:37-41), then
list the dist-info folders in <Pkgs_dir>/<entry>/files for each entry the lambda's
requirements.txt lines install into (packagePuller.go:158), and read the sandbox's
/etc/pip.conf. Prints one line of JSON. Plain standard library: sent to the host as is.
"""

import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 900  # a first call installs every package of the lambda
MAX_BODY = 2000


def _post(port, name):
    request = urllib.request.Request(
        f"http://localhost:{port}/run/{name}", data=b"{}", method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return reply.status, reply.read(MAX_BODY).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(MAX_BODY).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def _dist_infos(folder):
    try:
        return sorted(
            n for n in os.listdir(os.path.join(folder, "files")) if n.endswith(".dist-info")
        )
    except OSError:
        return None


def _config_value(config, key):
    for name, value in config.items():
        if name.lower() == key.lower():
            return value
    return None


def worker(job):
    path = job["worker"]
    try:
        with open(os.path.join(path, "config.json"), "rb") as handle:
            config = json.loads(handle.read())
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read {path}/config.json: {exc}"}
    packages = _config_value(config, "Pkgs_dir") or os.path.join(path, "lambda", "packages")
    sandbox = config.get("sock_base_path") or os.path.join(path, "lambda")
    try:
        with open(os.path.join(sandbox, "etc", "pip.conf"), encoding="utf-8") as handle:
            pip_conf = handle.read()
    except OSError:
        pip_conf = None
    calls = {}
    for name, entries in sorted(job["lambdas"].items()):
        status, body = _post(config.get("worker_port", "5000"), name)
        installed = {entry: _dist_infos(os.path.join(packages, entry)) for entry in entries}
        calls[name] = {"status": status, "body": body, "installed": installed}
    return {"port": config.get("worker_port"), "pip_conf": pip_conf, "calls": calls}


if __name__ == "__main__":
    print(json.dumps([worker(job) for job in json.load(sys.stdin)]))
