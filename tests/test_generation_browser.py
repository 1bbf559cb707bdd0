"""Chapter generation in a real browser against the real `manage.py studio` (websockets, the
embedded worker) with the provider simulator as the writer, streaming slowly: the producer
generates a chapter, watches it appear scene by scene, opens it, edits it, and restores the
previous version."""

import re
import subprocess
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from tests.browser_support import (
    assert_not_reloaded,
    collect_console_errors,
    log_in,
    mark_window,
    set_timeouts,
    wait_for_live,
)
from tests.studio_process import REPO, free_port, serve_studio, studio_env

pytestmark = pytest.mark.browser
TIMEOUT_MS = 20_000


@pytest.fixture
def studio(tmp_path):
    env = studio_env(tmp_path)
    sim_port = free_port()
    sim_log = (tmp_path / "sim.log").open("wb")
    # Every answer streams in 24-character pieces, 40 ms apart: a chapter takes a few seconds.
    simulator = subprocess.Popen(
        [sys.executable, "manage.py", "provider_sim", "--port", str(sim_port),
         "--fault-slow-stream", "1", "--slow-stream-s", "0.04"],
        cwd=REPO, env=env, stdout=sim_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    env.update(
        WRITER_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
        WRITER_MODEL="gpt-4.1",
        WRITER_PROVIDER="openai",
        WRITER_API_KEY="sk-test",
    )
    try:
        _wait_for(f"http://127.0.0.1:{sim_port}/_sim/stats")
        with serve_studio(tmp_path, env) as (base, _, _):
            yield base
    finally:
        simulator.kill()
        simulator.wait(timeout=10)
        sim_log.close()


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_producer_watches_a_chapter_being_written_then_restores_the_old_one(studio, page: Page):
    base = studio
    errors = collect_console_errors(page)
    page.on("dialog", lambda dialog: dialog.accept())
    set_timeouts(page, TIMEOUT_MS)

    log_in(page, base)
    page.get_by_role("link", name="Midnight Broadcast").first.click()
    page.get_by_role("link", name="Open editor").click()
    first_scene = page.locator("#scene-list .scene-card h3").first
    original = first_scene.inner_text()
    wait_for_live(page)
    mark_window(page)

    page.locator("#generate-panel summary").click()
    page.get_by_label("Target length (s)").fill("45")
    button = page.get_by_role("button", name=re.compile(r"^Generate chapter · "))
    expect(button).to_contain_text("$")  # gpt-4.1 has a price: the estimate is in dollars
    button.click()

    # Scenes appear one by one while the answer streams in.
    live = page.locator("#generation-live")
    expect(live.locator(".preview-scene")).to_have_count(1)
    expect(live).to_contain_text("Writing scene")
    page.wait_for_function(
        "document.querySelectorAll('#generation-live .preview-scene').length >= 2"
    )
    expect(live).to_contain_text("Written")
    expect(live).to_contain_text("gpt-4.1")
    assert_not_reloaded(page)

    # The new script replaces the old one in place, then is edited by hand.
    expect(first_scene).not_to_have_text(original)
    assert_not_reloaded(page)
    page.get_by_role("link", name="Edit title").click()
    page.get_by_label("Title", exact=True).fill("Written by the machine, titled by me")
    page.get_by_role("button", name="Save").first.click()
    expect(page.locator("#chapter-header h1")).to_contain_text("titled by me")

    # Versions show the writer's usage; the producer restores the handwritten version.
    page.get_by_role("link", name=re.compile(r"^Versions")).click()
    expect(page.locator("table").first).to_contain_text("gpt-4.1")
    # The generated script archived the handwritten scenes: listed, with the version that has them.
    expect(page.locator("#archive + p + table")).to_contain_text("v1")
    page.locator("tr", has_text="v1").get_by_role("link", name="Compare with current").click()
    page.get_by_role("button", name="Restore version 1").click()
    expect(page.locator("#scene-list .scene-card h3").first).to_have_text(original)
    assert errors == [], errors
