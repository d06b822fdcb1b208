"""A real S3 API server on loopback for the tests: moto's standalone server.

The server logs every request it answers, so a test can count the PUTs and DELETEs
an apply made. Credentials are fake (moto accepts any) and come from the environment,
as the AWS chain reads them; instance metadata is off so nothing leaves this machine.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sshd import free_port

REGION = "us-east-1"
BUCKET = "ol-mirror"
ENV = {
    "AWS_ACCESS_KEY_ID": "olmirror-test",
    "AWS_SECRET_ACCESS_KEY": "olmirror-test-secret",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/olmirror-test/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/olmirror-test/credentials",
}
REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3})')


@dataclass
class S3Server:
    endpoint: str
    log: Path
    process: subprocess.Popen[bytes]
    _seen: int = field(default=0)

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION)

    def make_bucket(self, name: str = BUCKET) -> str:
        """A bucket anyone may read, as a mirror's bucket is (a public-read policy)."""
        client = self.client()
        client.create_bucket(Bucket=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{name}/*",
                }
            ],
        }
        client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        return name

    def objects(self, bucket: str = BUCKET, prefix: str = "") -> set[str]:
        """The keys in `bucket` under `prefix`."""
        listing = self.client().get_paginator("list_objects_v2")
        pages = listing.paginate(Bucket=bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def mark(self) -> None:
        """Count requests from here on."""
        self._seen = len(self.log.read_text().splitlines())

    def requested(self) -> list[tuple[str, str]]:
        """(method, path) of each request since `mark`, in order."""
        found = (REQUEST.search(line) for line in self.log.read_text().splitlines()[self._seen :])
        return [(m.group(1), m.group(2)) for m in found if m]

    def requests(self) -> Counter[str]:
        """Requests since `mark`, by method; a batch delete (POST ...?delete) as DELETE."""
        counted: Counter[str] = Counter()
        for line in self.log.read_text().splitlines()[self._seen :]:
            found = REQUEST.search(line)
            if found:
                method, path = found.group(1), found.group(2)
                counted["DELETE" if method == "POST" and "delete" in path else method] += 1
        return counted


def start_s3(folder: Path) -> S3Server:
    port = free_port()
    log = folder / "moto.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"moto's server did not start: {log.read_text()[-2000:]}"
                ) from exc
            time.sleep(0.1)
    return S3Server(endpoint, log, process)


@contextlib.contextmanager
def running_s3(folder: Path) -> Iterator[S3Server]:
    """An S3 server with the mirror's bucket, stopped at the end (ENV must be set)."""
    server = start_s3(folder)
    try:
        server.make_bucket()
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A fresh S3 server with the mirror's bucket, and the AWS chain pointed at it."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with running_s3(tmp_path) as server:
        yield server


class _Flaky(BaseHTTPRequestHandler):
    """Forwards each request to the S3 server, but answers every `every`-th with 503
    SlowDown, as a store under load does."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        server: FlakyRelay = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with server.lock:
            server.seen += 1
            fail = server.seen % server.every == 0
        if fail:
            server.failed += 1
            error = b"<Error><Code>SlowDown</Code><Message>Reduce your rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", server.target_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        reply = upstream.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class FlakyRelay(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, target_port: int, every: int) -> None:
        super().__init__(("127.0.0.1", 0), _Flaky)
        self.target_port, self.every = target_port, every
        self.seen = self.failed = 0
        self.errors: list[str] = []  # what went wrong relaying
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that closed its kept-alive connection is no error; anything else is."""
        if not isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            self.errors.append(traceback.format_exc())

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"
