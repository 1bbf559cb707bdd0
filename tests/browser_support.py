"""Helpers shared by the browser tests (Debian's Chromium through Playwright; launch settings in
conftest): logging in, screenshots under test-results/browser/, console errors, a marker that
proves a page was not reloaded, and a user made inside a running studio's own database."""

import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.studio_process import REPO

SHOTS = REPO / "test-results" / "browser"
DEMO_USERNAME, DEMO_PASSWORD = "producer", "drama-studio"  # seeded by `manage.py studio`


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot at test-results/browser/<name>.png (`name` may hold folders)."""
    path = SHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    return path


def set_timeouts(page: Page, timeout_ms: int) -> None:
    page.set_default_timeout(timeout_ms)
    expect.set_options(timeout=timeout_ms)


def collect_console_errors(page: Page, errors: list[str] | None = None) -> list[str]:
    """Console messages of type "error" and uncaught exceptions of `page`, as they happen."""
    errors = [] if errors is None else errors
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    return errors


def log_in(
    page: Page,
    base_url: str,
    username: str = DEMO_USERNAME,
    password: str = DEMO_PASSWORD,
) -> None:
    """Through the login page; lands on the dashboard."""
    page.goto(f"{base_url}/accounts/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your dramas")).to_be_visible()


def drama_id_of(page: Page) -> str:
    return re.search(r"/dramas/(\d+)/", page.url).group(1)


def wait_for_live(page: Page) -> None:
    """Until the page's live region (htmx ws extension) is in the document."""
    page.wait_for_function("document.querySelector('[data-live]') !== null")


def mark_window(page: Page) -> None:
    """A marker that only survives while no full page load happens."""
    page.evaluate("window.__noReload = 'still here'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload") == "still here", "the page was fully reloaded"


# The first job bar of the queue page's Running section. Progress swaps the row in place (out
# of band), so the bar is looked up afresh each time.
QUEUE_PROGRESS = (
    "() => Number(document.querySelector('#queue-running [role=progressbar]')"
    "?.getAttribute('aria-valuenow') || 0)"
)


def wait_for_queue_progress_to_move(page: Page) -> None:
    """Until a running job's bar on the queue page shows progress, then moves further."""
    page.wait_for_function(f"({QUEUE_PROGRESS})() > 0")
    first = page.evaluate(QUEUE_PROGRESS)
    page.wait_for_function(f"({QUEUE_PROGRESS})() > {first}")


CREATE_USER = """
import sys
import django
django.setup()
from django.contrib.auth import get_user_model
get_user_model().objects.create_user(username=sys.argv[1], password=sys.argv[2])
"""


def create_studio_user(env: dict[str, str], username: str, password: str) -> None:
    """A plain (non-staff) user in the database of the studio that runs with `env`."""
    subprocess.run(
        [sys.executable, "-c", CREATE_USER, username, password], cwd=REPO, env=env, check=True
    )
