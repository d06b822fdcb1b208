"""A real S3 API server on loopback for the tests: moto's standalone server.

The server logs every request it answers, so a test can count the PUTs and DELETEs
an apply made. Credentials are fake (moto accepts any) and come from the environment,
as the AWS chain reads them; instance metadata is off so nothing leaves this machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
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


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A fresh S3 server with the mirror's bucket, and the AWS chain pointed at it."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = start_s3(tmp_path)
    try:
        server.make_bucket()
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
