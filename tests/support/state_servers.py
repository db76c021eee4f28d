"""Throw-away PostgreSQL and Redis servers for the tests of several gateways sharing one state
(issue 29): a PostgreSQL cluster made with ``initdb`` in a temporary folder and a
``redis-server``, each on a free loopback port, started once per test session. The fixtures
skip cleanly where the binaries are not installed (``apt-get install postgresql
redis-server``). PostgreSQL refuses to run as root, so as root the cluster runs as the
``postgres`` user (``runuser``); otherwise as the current user."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.servers import free_port


def postgres_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL's server binaries, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class Postgres:
    """A running throw-away cluster; ``url`` reaches its ``postgres`` database."""

    bin: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        """The admin database's URL (trust authentication on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        """A fresh, empty database of its own; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _ctl(self, *args: str) -> None:
        cmd = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", *args]
        subprocess.run(_as_owner(cmd), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start (or start again) the server."""
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._ctl("-o", options, "-l", str(self.data / "server.log"), "start")

    def stop(self) -> None:
        """Stop the server at once (open connections are cut)."""
        self._ctl("-m", "immediate", "stop")


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A new cluster in a temporary folder, started; removed afterwards."""
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # a folder of its own under /tmp: pytest's temporary folders are private to root
    data = Path(tempfile.mkdtemp(prefix="llmserver-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    cmd = [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    subprocess.run(_as_owner(cmd), check=True, capture_output=True, timeout=300)
    server = Postgres(binaries, data, free_port())
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(data, ignore_errors=True)


@dataclass
class Redis:
    """A running throw-away ``redis-server``."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again) the server on the same port, and wait until it answers."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None


@contextlib.contextmanager
def redis_server() -> Iterator[Redis]:
    """A ``redis-server`` on a free port, without persistence; stopped afterwards."""
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.skip("Redis is not installed (apt-get install redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="llmserver-redis-"))
    server = Redis(free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL cluster for the session (each test takes a fresh database from it)."""
    pytest.importorskip("psycopg")
    with postgres_cluster() as server:
        yield server


@pytest.fixture(scope="session")
def redis() -> Iterator[Redis]:
    """One Redis server for the session."""
    with redis_server() as server:
        yield server
