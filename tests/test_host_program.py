"""The host program (olmirror/remote/host_program.py), run here as SSH runs it on a host:
its sources joined, `python3 -I -S -c`, requests on stdin."""

from __future__ import annotations

import ast
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from olmirror.connection.ssh import HOST_PROGRAM
from olmirror.remote import apply_lock, host_program, probe, url_check
from olmirror.remote.host_program import ANSWER


def test_the_joined_sources_define_each_name_once() -> None:
    """Joined into one program, a name defined twice would silently replace the first."""
    seen: dict[str, str] = {}
    twice = []
    for module in (probe, apply_lock, host_program):
        for node in ast.parse(Path(module.__file__).read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            else:
                continue
            twice += [f"{n} ({seen[n]}, {module.__name__})" for n in names if n in seen]
            seen |= dict.fromkeys(names, module.__name__)
    assert not twice


class Program:
    """One host program, spoken to as the SSH client speaks to it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", HOST_PROGRAM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.hello = self.answer()

    def send(self, request: dict[str, Any], data: bytes = b"") -> None:
        assert self.process.stdin
        self.process.stdin.write(json.dumps(request).encode() + b"\n" + data)
        self.process.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.process.stdout
        line = self.process.stdout.readline().decode()
        assert line.startswith(ANSWER), line
        answer = json.loads(line.removeprefix(ANSWER))
        if "size" in answer:
            answer["data"] = self.process.stdout.read(answer["size"])
        return answer

    def call(self, request: dict[str, Any], data: bytes = b"") -> dict[str, Any]:
        self.send(request, data)
        return self.answer()

    def end(self) -> int:
        assert self.process.stdin
        self.process.stdin.close()
        return self.process.wait(10)


def test_one_program_answers_facts_reads_batches_and_holds_the_lock(tmp_path: Path) -> None:
    first = Program()
    assert first.hello["python"] == sys.executable
    state = str(tmp_path / "state")
    assert first.call({"op": "lock", "folder": state, "holder": "pid 1 on a"})["locked"]
    second = Program()
    busy = second.call({"op": "lock", "folder": state, "holder": "pid 2 on b"})
    assert busy["who"] == "pid 1 on a" and busy["busy"].endswith("apply.lock")

    # a batch runs in order and stops at the first change that fails
    new, deep, lost = tmp_path / "new.txt", tmp_path / "a" / "b", tmp_path / "no" / "file"
    ops = [
        {"op": "write", "path": str(new), "mode": 0o600, "size": 5},
        {"op": "mkdir", "path": str(deep), "mode": 0o750},
        {"op": "write", "path": str(lost), "mode": None, "size": 3},
        {"op": "mkdir", "path": str(tmp_path / "never"), "mode": 0o755},
    ]
    done = first.call({"op": "changes", "ops": ops}, b"hello" + b"\x00\xffx")
    assert done["done"] == 2 and done["failed"]["errno"] == 2
    assert done["failed"]["filename"].startswith(str(tmp_path / "no"))
    assert new.read_bytes() == b"hello" and new.stat().st_mode & 0o777 == 0o600
    assert deep.is_dir() and deep.stat().st_mode & 0o777 == 0o750
    assert not (tmp_path / "never").exists()

    facts = first.call({"op": "facts", "request": {"content": [str(new)], "paths": [str(deep)]}})
    assert facts["facts"]["paths"][str(deep)]["kind"] == "dir"
    assert facts["facts"]["paths"][str(new)]["size"] == 5
    assert first.call({"op": "read", "path": str(new)})["data"] == b"hello"
    assert first.call({"op": "read", "path": str(lost)})["error"]["errno"] == 2
    assert first.call({"op": "stat", "path": str(deep)})["fact"]["kind"] == "dir"

    # a request cut short writes nothing, and the program ends
    first.send({"op": "changes", "ops": [{**ops[0], "size": 100}]}, b"only part")
    assert first.end() == 0
    assert new.read_bytes() == b"hello"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".olmirror-tmp")]
    # with it, its lock: the other program may take it now
    assert second.call({"op": "lock", "folder": state, "holder": "pid 2 on b"})["locked"]
    assert second.end() == 0


class _Redirecting(http.server.BaseHTTPRequestHandler):
    busy = 0  # how many more GETs of /busy/ are answered 503

    def do_GET(self) -> None:
        if self.path == "/old/":
            self.send_response(301)
            self.send_header("Location", "/simple/")
        elif self.path == "/busy/":
            _Redirecting.busy -= 1
            self.send_response(503 if _Redirecting.busy >= 0 else 200)
        else:
            self.send_response(200 if self.path == "/simple/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


def _garbage_server() -> int:
    """A port whose one connection is answered with something other than HTTP."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"SSH-2.0-not-http\r\n\r\n")
        conn.close()
        listener.close()

    threading.Thread(target=answer, daemon=True).start()
    return listener.getsockname()[1]


def test_a_url_check_follows_redirects_and_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
            monkeypatch.delenv(name)
        assert url_check.url_problem(f"{base}/old/") is None
        assert url_check.url_problem(f"{base}/gone/") == "it answered HTTP 404 Not Found"
        _Redirecting.busy = 2  # a 503 may pass: asked again, three times in all
        assert url_check.url_problem(f"{base}/busy/") is None
        _Redirecting.busy = 3
        assert url_check.url_problem(f"{base}/busy/") == (
            "it answered HTTP 503 Service Unavailable (after 3 tries)"
        )
        assert url_check.url_problem("http://127.0.0.1:1/simple/").startswith(
            "ConnectionRefusedError"
        )
        assert url_check.url_problem("https://127.0.0.1:1/simple/").startswith(
            "ConnectionRefusedError"
        )
        assert url_check.url_problem(f"http://127.0.0.1:{_garbage_server()}/").startswith(
            "BadStatusLine"
        )
        # a proxy in the environment is used as urllib uses it: this one is closed
        monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
        assert "Connection refused" in (url_check.url_problem(f"{base}/simple/") or "")
    finally:
        server.shutdown()
