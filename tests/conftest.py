import os
import secrets
import shutil
import sys
import time
from typing import NamedTuple

import pytest
from django.test import Client

from tests.factories import PASSWORD, create_drama, create_user

# Every process this test session starts inherits this variable, and keeps it when orphaned
# and reparented to init: at the end, the session fails if any such process is still alive.
SESSION_MARKER = "STUDIO_TEST_SESSION"
os.environ[SESSION_MARKER] = f"{os.getpid()}-{secrets.token_hex(8)}"
LEFTOVER_WAIT_S = 10.0


class Proc(NamedTuple):
    pid: int
    ppid: int
    cmdline: str


def processes_marked(name: str, value: str) -> list[Proc]:
    """Every live process whose environment, as it started, held `name=value` (from /proc;
    zombies have ended, and show no environment anyway)."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                if wanted not in handle.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                # "pid (comm) state ppid ...": the command name may hold spaces and parentheses.
                state, ppid = handle.read().rpartition(b")")[2].split()[:2]
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
        if state not in (b"Z", b"X"):
            found.append(Proc(int(entry.name), int(ppid), cmdline))
    return found


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher is deliberately slow; hundreds of test logins do not need that.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def quick_export_preset(settings):
    """Episode masters with x264's quickest preset that is still H.264 High (the tests assert
    the masters' properties, not veryfast's file sizes)."""
    settings.EXPORT_X264_PRESET = "superfast"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Uploads of each test land in its own folder, never in var/media."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def producer(db):
    return create_user(username="producer-1")


@pytest.fixture
def drama(producer):
    return create_drama(owner=producer)


def login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def producer_client(producer):
    return login(producer)


@pytest.fixture
def published_prices(request):
    """The prices the migrations seed (idempotent), for tests with the database: a
    transactional test that ran earlier in this process emptied the tables the migrations
    filled, and the suite runs in any order (in parallel, one file after another per worker)."""
    import importlib

    from django.apps import apps

    uses_database = request.node.get_closest_marker("django_db") or {
        "db",
        "transactional_db",
    } & set(request.fixturenames)
    if not uses_database:
        return
    for name in ("0002_seed_prices", "0007_seed_speech_prices", "0008_image_prices"):
        importlib.import_module(f"studio.migrations.{name}").seed(apps, None)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """On SQLite, test against a file, as the studio runs: the job worker's database thread
    needs WAL and busy waits, which an in-memory database (shared cache) does not give: there a
    concurrent reader fails at once with "database table is locked"."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] in ("django.db.backends.sqlite3", "studio.sqlite"):
        database.setdefault("TEST", {})["NAME"] = str(
            tmp_path_factory.mktemp("db") / "test.sqlite3"
        )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Browser tests run last: Playwright's sync API leaves an event loop running in the test
    thread, after which pytest-asyncio cannot run async tests (websocket and job engine tests)."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


# Browser tests drive Debian's Chromium (never a downloaded browser); a missing one is a
# failure that names the install command, not a skip.
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "Chromium was not found on PATH; install Debian's chromium: "
            "apt-get install -y chromium",
            pytrace=False,
        )
    return {
        **browser_type_launch_args,
        "executable_path": executable,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


def session_leftovers() -> list[Proc]:
    """The processes this session started that are still running, but for this process's own
    multiprocessing resource tracker: it lives as long as this process and ends with it (it
    exits when its pipe closes)."""
    own = os.getpid()
    return [
        process
        for process in processes_marked(SESSION_MARKER, os.environ[SESSION_MARKER])
        if process.pid != own
        and not (process.ppid == own and "multiprocessing.resource_tracker" in process.cmdline)
    ]


def pytest_sessionfinish(session):
    """Fail the session if a process it started outlives it (waiting a little for the ones
    still exiting): an orphaned pool process or server holds its memory until someone notices."""
    from studio.cpu import shutdown_cpu_pool

    shutdown_cpu_pool()  # this process's own pool: its processes exit within the wait below
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while (leftovers := session_leftovers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not leftovers:
        return
    lines = [f"{len(leftovers)} process(es) started by this test session outlived it:"]
    lines += [f"  pid {p.pid} (parent {p.ppid}): {p.cmdline[:300]}" for p in leftovers]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


EXIT_HANG_S = 60


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Once pytest is done, the interpreter must exit: a thread or pool that keeps it alive is a
    bug. After EXIT_HANG_S every thread's stack is printed and the process exits (status 1)."""
    import faulthandler

    faulthandler.dump_traceback_later(EXIT_HANG_S, exit=True, file=sys.__stderr__)
