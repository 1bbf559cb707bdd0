import shutil

import pytest
from django.test import Client

from tests.factories import PASSWORD, create_drama, create_user


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher is deliberately slow; hundreds of test logins do not need that.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """On SQLite, test against a file, as the studio runs: the job worker's database thread
    needs WAL and busy waits, which an in-memory database (shared cache) does not give: there a
    concurrent reader fails at once with "database table is locked"."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
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
