"""`ol worker init|up|down|status -p PATH`, as go/worker/commands.go and helpers.go do them.

Every init, up and down that succeeds is appended to <PATH>/standin-journal (one word a
line) so that tests can count starts and stops; `up` itself empties <PATH>/worker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from olstandin import image
from olstandin.server import serve

HERE = Path(__file__).resolve().parent.parent
TEMPLATE_ROOT = "/opt/ol/default-ol"
JOURNAL = "standin-journal"


def _journal(path: Path, action: str) -> None:
    with open(path / JOURNAL, "a") as journal:
        journal.write(action + "\n")


def _defaults(path: Path, legacy: bool) -> dict:
    """getDefaultConfigForPatching (config.go:257-343); LoadDefaults at 63e30bc6."""
    template = json.loads((HERE / ("config-legacy.json" if legacy else "config.json")).read_text())
    return {
        key: value.replace(TEMPLATE_ROOT, str(path)) if isinstance(value, str) else value
        for key, value in template.items()
    }


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def _pid(config: dict) -> int | None:
    try:
        return int((Path(config["worker_dir"]) / "worker.pid").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers signal 0.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def stopped_clean(config: dict) -> None:
    """bringToStoppedClean (helpers.go:391-): SIGINT a running worker and wait up to 60 s;
    a pid file without a process (StoppedDirty) is removed."""
    pid = _pid(config)
    if pid is None:
        return
    if _alive(pid):
        print("Attempting to gracefully shut down the worker process by sending SIGINT.")
        os.kill(pid, signal.SIGINT)
        for _ in range(600):
            if not _alive(pid):
                return
            time.sleep(0.1)
        raise SystemExit("worker process did not stop within 60 seconds")
    (Path(config["worker_dir"]) / "worker.pid").unlink(missing_ok=True)


def init_dir(path: Path, image_name: str, legacy: bool) -> None:
    """initOLDir, helpers.go:92-167: only a folder with ol.init is re-initialised, keeping
    its base image; a new one is made with mode 0700."""
    config = _defaults(path, legacy)
    base = Path(config["sock_base_path"])
    if path.exists():
        if not (path / "ol.init").exists():
            raise SystemExit(
                f"Directory {path} already exists but does not contain a previous OL deployment"
            )
        print(f"Previous deployment found at {path}.")
        stopped_clean(_config(path) if (path / "config.json").exists() else config)
        for item in path.iterdir():
            if item == base:
                print(f"\tKeep {item}")
            elif item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()
    else:
        path.mkdir(mode=0o700)
    print(f"Init OL directory at {path}")
    (path / "ol.init").write_text(f"{datetime.now()}\n")
    (path / "ol.init").chmod(0o400)
    zygotes = path / "default-zygotes-40.json"
    shutil.copyfile(HERE / "default-zygotes-40.json", zygotes)
    zygotes.chmod(0o400)
    (path / "config.json").write_text(json.dumps(config, indent="\t" if legacy else "  "))
    Path(config["worker_dir"]).mkdir(mode=0o700)
    if not base.exists():
        try:
            image.build(base, image_name)
        except (image.ImageError, OSError):
            shutil.rmtree(base, ignore_errors=True)
            raise
    _journal(path, "init")


def _status(config: dict) -> tuple[bool, str]:
    """statusCmd, commands.go:215-240: GET localhost:<worker_port>/status."""
    url = f"http://localhost:{config['worker_port']}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return True, f"  {url} => {reply.read().decode()} [{reply.status}]"
    except (urllib.error.URLError, OSError):
        return False, f"could not send GET to {url}"


def _ping(config: dict, legacy: bool) -> int | None:
    """The PID the worker answers on /pid: over ol.sock (commands.go:184), or on the TCP
    port at 63e30bc6."""
    if legacy:
        url = f"http://localhost:{config['worker_port']}/pid"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return int(reply.read())
        except (OSError, ValueError):
            return None
    import http.client
    import socket

    connection = http.client.HTTPConnection("unix", timeout=2)
    try:
        connection.sock = socket.socket(socket.AF_UNIX)
        connection.sock.connect(str(Path(config["worker_dir"]) / "ol.sock"))
        connection.request("GET", "/pid")
        return int(connection.getresponse().read())
    except (OSError, ValueError):
        return None
    finally:
        connection.close()


def up(path: Path, image_name: str, detach: bool, legacy: bool) -> int:
    """upCmd, commands.go:74-212."""
    if not path.exists():
        print(f"Did not find OL directory at {path}")
        init_dir(path, image_name, legacy)
    config = _config(path)
    stopped_clean(config)
    if not detach:
        return serve(config, legacy)
    log = open(path / "worker.out", "w")  # noqa: SIM115 - the worker's own stdout
    program = HERE / ("ol-legacy" if legacy else "ol")
    argv = [sys.executable, str(program), "worker", "up", "-p", str(path)]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    print(f"Starting worker in {path} and waiting until it's ready.")
    print(f"\tPID: {proc.pid}\n\tPort: {config['worker_port']}\n\tLog File: {path / 'worker.out'}")
    for _ in range(300):
        if proc.poll() is not None:
            print(f"worker process {proc.pid} does not appear to be running; check worker.out",
                  file=sys.stderr)  # fmt: skip
            return 1
        pid = _ping(config, legacy)
        if pid == proc.pid:
            print("Ready!")
            _journal(path, "up")
            return 0
        if pid is not None:
            print(f"pid mismatch: expected {proc.pid} but found {pid}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print("worker still not reachable after 30 seconds", file=sys.stderr)
    return 1


def main(legacy: bool, args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ol-legacy" if legacy else "ol")
    parser.add_argument("group", choices=["worker"])
    parser.add_argument("action", choices=["init", "up", "down", "status"])
    parser.add_argument("-p", "--path", default="default-ol")
    parser.add_argument("-i", "--image", default="ol-min")
    parser.add_argument("-d", "--detach", action="store_true")
    parsed = parser.parse_args(args)
    path = Path(parsed.path).absolute()  # GetOlPath, config.go:509-515
    try:
        if parsed.action == "init":
            if os.getuid() != 0 and not legacy:  # commands.go:43-45
                raise SystemExit("'ol worker init' must be run with sudo")
            try:
                init_dir(path, parsed.image, legacy)
            except OSError as exc:  # os.Mkdir(olPath, 0700): no parents (helpers.go:132)
                print(f"init failed to create OL directory: {exc}", file=sys.stderr)
                return 1
            return 0
        if parsed.action == "up":
            return up(path, parsed.image, parsed.detach, legacy)
        config = _config(path)
        if parsed.action == "status":
            ok, message = _status(config)
            print(message, file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        stopped_clean(config)
        _journal(path, "down")
        return 0
    except image.ImageError as exc:
        print(f"init failed: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"could not open config ({exc.filename})", file=sys.stderr)
        return 1
