"""The SSH floor: N parallel paramiko connections that each run one command and close.

Run as its own process, like olmirror, so both wall times include an interpreter start and
paramiko's import. Host keys are checked against the same known_hosts file olmirror uses.

    python floor.py HOSTS.json   # [{"port": 2222, "user": "root", "key": "…", "known_hosts": "…"}]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import paramiko

COMMAND = "true"


def one(host: dict[str, str | int], failures: list[str]) -> None:
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
        _, stdout, _ = client.exec_command(COMMAND)
        status = stdout.channel.recv_exit_status()
        if status != 0:
            failures.append(f"port {host['port']}: `{COMMAND}` exited {status}")
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
