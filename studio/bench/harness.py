"""What benchmarks share: a throwaway database, percentiles, logged-in page loads.

A benchmark never touches the studio's own data: it creates a fresh database the way the test
runner does (an SQLite file in a temporary folder, or `test_<name>` on PostgreSQL), migrates
it, and drops it afterwards.

Pages are loaded through the studio's own WSGI handler (every middleware, the real view and
template rendering; no network), as a user logged in with a real session, and the SQL they run
is counted with a connection wrapper: benchmarks are product code and use no test utilities.
"""

import contextlib
import importlib
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import login
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.http import HttpRequest


@contextlib.contextmanager
def scratch_database():
    """Point the default connection at a new, migrated database for the duration."""
    old_name = connection.settings_dict["NAME"]
    test = connection.settings_dict.setdefault("TEST", {})
    old_test_name = test.get("NAME")
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as folder:
        if connection.vendor == "sqlite":
            test["NAME"] = str(Path(folder) / "bench.sqlite3")
        # Not serialized: nothing restores this database's contents, it is dropped.
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            yield connection.vendor
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
            test["NAME"] = old_test_name


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` fall (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def children_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) so far of each live child process of this one (the process
    pool's workers), from /proc; empty where there is no /proc."""
    found = {}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == os.getpid():
                found[int(name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


@dataclass
class CpuSplit:
    """Where the CPU time of a block went: this process (every thread) and its children."""

    wall_s: float = 0.0
    main_s: float = 0.0
    children_s: float = 0.0


@contextlib.contextmanager
def cpu_split():
    split = CpuSplit()
    wall, main, children = time.perf_counter(), time.process_time(), children_cpu_s()
    try:
        yield split
    finally:
        after = children_cpu_s()
        split.wall_s = time.perf_counter() - wall
        split.main_s = time.process_time() - main
        split.children_s = sum(after[pid] - children.get(pid, 0.0) for pid in after)


class QueryCount:
    queries = 0


@contextlib.contextmanager
def count_queries():
    """Count the SQL statements this thread's connection runs inside the block."""
    counted = QueryCount()

    def count(execute, sql, params, many, context):
        counted.queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        yield counted


def session_for(user) -> str:
    """The key of a new session in which `user` is logged in (as a login form leaves it)."""
    request = HttpRequest()
    request.session = importlib.import_module(settings.SESSION_ENGINE).SessionStore()
    login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    request.session.save()
    return request.session.session_key


@dataclass(frozen=True)
class Page:
    status: int
    body: bytes
    queries: int  # SQL statements run while serving it


class Browser:
    """GET pages as one logged-in user, through the full request stack (for benchmarks)."""

    def __init__(self, user) -> None:
        self.cookie = f"{settings.SESSION_COOKIE_NAME}={session_for(user)}"
        self.handler = WSGIHandler()
        hosts = [h for h in settings.ALLOWED_HOSTS if h not in ("*",) and not h.startswith(".")]
        self.host = hosts[0] if hosts else "localhost"

    def get(self, path: str) -> Page:
        url, _, query = path.partition("?")
        https = bool(getattr(settings, "SECURE_SSL_REDIRECT", False))
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": url,
            "QUERY_STRING": query,
            "SERVER_NAME": self.host,
            "SERVER_PORT": "443" if https else "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": self.host,
            "HTTP_COOKIE": self.cookie,
            "wsgi.input": io.BytesIO(),
            "wsgi.url_scheme": "https" if https else "http",
            "wsgi.errors": io.StringIO(),
        }
        status: list[str] = []
        # Like a long-lived server process, keep the connection between requests: a benchmark
        # measures the page, not a reconnect per load.
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            with count_queries() as counted:
                response = self.handler(environ, lambda line, headers, *_: status.append(line))
                try:
                    body = b"".join(response)  # streaming responses are produced here
                finally:
                    response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return Page(status=int(status[0].split()[0]), body=body, queries=counted.queries)
