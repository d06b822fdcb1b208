"""Run on a worker's host by its python3: call lambdas as a user would.

    python3 -c <this file> < [{"worker": PATH, "lambdas": [NAME, ...]}, ...]

For each worker, POST localhost:<worker_port>/run/<name> for each lambda, as `curl -X POST
localhost:5000/run/<name> -d '{}'` does (go/worker/event/lambdaServer.go:37-41), with the
port from the worker's config.json. Prints one line of JSON: per worker, per lambda, the
status (None when nothing answered) and the start of the body. Plain standard library:
sent to the host as it is.
"""

import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 900  # a first call installs every package of the lambda
MAX_BODY = 2000
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post(port, name):
    url = f"http://localhost:{port}/run/{name}"
    request = urllib.request.Request(url, data=b"{}", method="POST")
    try:
        with DIRECT.open(request, timeout=TIMEOUT) as reply:
            return reply.status, reply.read(MAX_BODY).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(MAX_BODY).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def worker(job):
    config_path = os.path.join(job["worker"], "config.json")
    try:
        with open(config_path, "rb") as handle:
            port = json.loads(handle.read()).get("worker_port") or "5000"
    except (OSError, ValueError, AttributeError) as exc:
        return {"error": f"cannot read {config_path}: {exc}"}
    return {"calls": {name: _post(port, name) for name in job["lambdas"]}}


if __name__ == "__main__":
    print(json.dumps([worker(job) for job in json.load(sys.stdin)]))
