"""A durable S3 API server (moto) on loopback, driven by the tests: start, pause
(SIGSTOP), kill, restart, read the bucket, count the requests that reached it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from stacwatchd.testing import wait_until

SERVER = Path(__file__).resolve().parent / "support" / "s3_server.py"
BUCKET = "catalog-bucket"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """One moto server process whose acknowledged writes survive a kill."""

    def __init__(self, folder: Path, *, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.journal = folder / "journal.jsonl"
        self.requests_log = folder / "requests.log"
        self.log = folder / "server.log"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SERVER), "--port", str(self.port), "--journal", str(self.journal), "--requests", str(self.requests_log)],
                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **CREDENTIALS, **self.env),
            )  # fmt: skip
        wait_until(self._listening, timeout=60, message="S3 server listening")
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"S3 server exited: {self.log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return '"listening"' in self.log.read_text(errors="replace")
        except OSError:
            return False

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()

    # -- a client ---------------------------------------------------------------------------

    def client(self):  # noqa: ANN201 - a boto3 S3 client
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )  # fmt: skip

    def create_bucket(self, name: str = BUCKET) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str = BUCKET, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix`` (keys relative to it) with its bytes."""
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
                found[entry["Key"][len(prefix) :]] = body
        return found

    def keys(self, bucket: str = BUCKET, prefix: str = "") -> set[str]:
        client = self.client()
        keys = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.update(entry["Key"][len(prefix) :] for entry in page.get("Contents", []))
        return keys

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path with query, status) of every request that reached the server."""
        if not self.requests_log.exists():
            return []
        out = []
        for line in self.requests_log.read_text(errors="replace").splitlines():
            method, _, rest = line.partition(" ")
            target, _, status = rest.rpartition(" ")
            if status.isdigit():
                out.append((method, target, int(status)))
        return out

    def uploads(self, bucket: str = BUCKET, prefix: str = "") -> Counter[str]:
        """Successful object uploads per key (plain PUTs and completed multipart uploads)."""
        counts: Counter[str] = Counter()
        start = f"/{bucket}/{prefix}"
        for method, target, status in self.requests():
            path, _, query = target.partition("?")
            if not (200 <= status < 300) or not path.startswith(start) or len(path) == len(start):
                continue
            if (method == "PUT" and "partNumber=" not in query) or (method == "POST" and "uploadId=" in query):
                counts[path[len(start) :]] += 1
        return counts


def local_files(catalog: Path) -> dict[str, bytes]:
    """Every file of a local catalog except the state folder, by relative path."""
    out = {}
    for folder, dirs, names in os.walk(catalog):
        dirs[:] = [d for d in dirs if d != ".stacwatchd"]
        for name in names:
            path = Path(folder) / name
            out[path.relative_to(catalog).as_posix()] = path.read_bytes()
    return out
