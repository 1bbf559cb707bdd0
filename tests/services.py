"""Throwaway PostgreSQL and Redis servers on loopback for the scale-out tests.

Each is an ordinary child process with its data in a fresh temporary folder, started once per
test session and stopped at its end: no system service, no state left behind. `make test`
installs Debian's `postgresql` and `redis-server` when they are missing (as root); elsewhere the
scale-out tests are skipped with a message saying what to install, unless
STUDIO_REQUIRE_SERVICES=1 (set by `.ci/run`), where a missing server is a failure.

PostgreSQL refuses to run as root, so under root the server runs as the `postgres` account
the Debian package creates.
"""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.studio_process import free_port

START_TIMEOUT_S = 60


def missing(what: str) -> None:
    message = (
        f"{what} is not installed: the scale-out tests need Debian's postgresql and "
        "redis-server (`make test` installs them as root: apt-get install postgresql "
        "redis-server)."
    )
    if os.environ.get("STUDIO_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps them off PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    if found := shutil.which("postgres"):
        return Path(found).parent
    return None


def wait_for(check, *, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not start within {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Postgres:
    host: str
    port: int
    user: str = "postgres"

    def url(self, database: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its DATABASE_URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def postgres_server():
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        missing("PostgreSQL")
    # Not pytest's tmp_path: its folders are private to the current user, and under root the
    # server runs as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="studio-pg-"))
    as_user = {}
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(base, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data, log = base / "data", base / "server.log"
    try:
        initdb = [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust"]
        subprocess.run(
            [*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True,
            capture_output=True,
            cwd=base,
            **as_user,
        )
        port = free_port()
        with open(log, "wb") as log_file:
            # Durability off: the data is thrown away, and fsync only costs test time.
            tuning = ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
            tuning += ["max_connections=200", "listen_addresses=127.0.0.1"]
            options = [value for setting in tuning for value in ("-c", setting)]
            process = subprocess.Popen(
                [bin_dir / "postgres", "-D", data, "-k", base, "-p", str(port), *options],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=base,
                **as_user,
            )
        server = Postgres(host="127.0.0.1", port=port)

        def accepting() -> bool:
            import psycopg

            try:
                psycopg.connect(server.url("postgres"), connect_timeout=2).close()
            except psycopg.OperationalError:
                return False
            return True

        try:
            wait_for(accepting, what="PostgreSQL", process=process, log=log)
            yield server
        finally:
            stop(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def redis_server():
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server")
    base = Path(tempfile.mkdtemp(prefix="studio-redis-"))
    port, log = free_port(), base / "server.log"
    try:
        with open(log, "wb") as log_file:
            # No persistence: the channel layer's data is thrown away.
            options = ["--save", "", "--appendonly", "no", "--dir", str(base)]
            process = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(port), *options],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

        def answering() -> bool:
            import socket

            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        try:
            wait_for(answering, what="redis-server", process=process, log=log)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)
