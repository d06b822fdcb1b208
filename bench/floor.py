"""The SSH floor: N parallel paramiko connections that each run one command and close.

Run as its own process, like olmirror, so both wall times include an interpreter start and
paramiko's import. Host keys are checked against the same known_hosts file olmirror uses.

    python floor.py HOSTS.json   # [{"port": 2222, "user": "root", "key": "…", "known_hosts": "…"}]

A host entry may also name the `command` to run instead of `true`, a `stdin` file to feed it
and the exit codes that are fine (`ok_status`, default [0]): the profiles use that to time
olmirror's own one command per host at the floor.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paramiko

COMMAND = "true"


def one(host: dict[str, Any], failures: list[str]) -> None:
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(host["known_hosts"]))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1",
            port=int(host["port"]),
            username=str(host["user"]),
            key_filename=str(host["key"]),
            look_for_keys=False,
            allow_agent=False,
            timeout=30,
        )
        command = str(host.get("command", COMMAND))
        stdin, stdout, _ = client.exec_command(command)
        if "stdin" in host:
            stdin.write(Path(str(host["stdin"])).read_bytes())
        stdin.channel.shutdown_write()
        stdout.read()
        status = stdout.channel.recv_exit_status()
        if status not in host.get("ok_status", [0]):
            failures.append(f"port {host['port']}: `{command[:60]}` exited {status}")
    except Exception as exc:
        failures.append(f"port {host['port']}: {type(exc).__name__}: {exc}")
    finally:
        client.close()


def main(path: str) -> int:
    hosts = json.loads(Path(path).read_text())
    failures: list[str] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(h, failures)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"hosts": len(hosts), "seconds": time.perf_counter() - start}))
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
