"""The worker process, `ol worker up` without -d: event.Main (go/worker/event/server.go:243-).

It refuses to start over a worker.pid, starts from an empty worker_dir, writes
worker.pid, answers /pid on <worker_dir>/ol.sock (the older generation: on the TCP
port, src/worker/commands.go:151 at 63e30bc6) and /status and /run/<name> on
worker_url:worker_port, and removes worker.pid and ol.sock when stopped with SIGINT.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from olstandin.lambdas import LambdaError, Manager, registry_folder


def _handler(manager: Manager, legacy: bool, on_unix: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def address_string(self) -> str:  # a UNIX socket has no (host, port)
            return "uds" if on_unix else super().address_string()

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self) -> None:
            path = self.path.split("?")[0]
            if path == "/pid" and (on_unix or legacy):  # server.go:60-69
                return self._reply(200, f"{os.getpid()}\n".encode())
            if on_unix:
                return self._reply(404, b"404 page not found\n")
            if path == "/status":  # server.go:71-79
                return self._reply(200, b"ready\n")
            if path.startswith("/run/"):  # lambdaServer.go:42-65
                parts = [part for part in path.split("/") if part]
                if len(parts) < 2:
                    return self._reply(500, b"expected invocation format: /run/<lambda-name>")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    return self._reply(*manager.invoke(parts[1], body))
                except Exception as exc:  # the worker answers 500, it does not drop the call
                    return self._reply(500, f"{type(exc).__name__}: {exc}".encode())
            return self._reply(404, b"404 page not found\n")

        do_GET = do_POST = _route

    return Handler


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(config: dict, legacy: bool) -> int:
    worker_dir = Path(config["worker_dir"])
    pid_path = worker_dir / "worker.pid"
    if pid_path.exists():
        print(f"previous worker may be running: {pid_path} already exists", file=sys.stderr)
        return 1
    shutil.rmtree(worker_dir, ignore_errors=True)  # "start with a fresh env"
    worker_dir.mkdir(mode=0o700, parents=True)
    pid_path.write_text(str(os.getpid()))
    manager = Manager(config, legacy)
    # NewLambdaStore / NewHandlerPuller make a file:// store's folder (store.go:59-63,
    # handlerPuller.go:47-52) and open the bucket; a store the stand-in cannot open fails
    # the calls, not the start.
    with contextlib.suppress(LambdaError, OSError):
        if legacy:
            registry_folder(config.get("registry") or "").mkdir(mode=0o755, parents=True,
                                                                exist_ok=True)  # fmt: skip
        else:
            manager.store()
    servers: list[socketserver.BaseServer] = []
    try:
        address = (config.get("worker_url") or "localhost", int(config["worker_port"]))
        servers.append(ThreadingHTTPServer(address, _handler(manager, legacy, False)))
        if not legacy:
            sock = worker_dir / "ol.sock"
            servers.append(_UnixHTTPServer(str(sock), _handler(manager, legacy, True)))
            sock.chmod(0o600)
    except OSError as exc:
        print(f"cannot listen: {exc}", file=sys.stderr)
        pid_path.unlink(missing_ok=True)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    while not stop.wait(0.5):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    (worker_dir / "ol.sock").unlink(missing_ok=True)
    pid_path.unlink(missing_ok=True)
    return 0
