"""Render and review in a real browser against the real `manage.py studio` (Daphne, websockets,
embedded worker, offline animatic): render the demo chapter from the board, watch the tiles
progress live, review frames with their scores, approve one take, regenerate another."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser_support import (
    assert_not_reloaded,
    collect_console_errors,
    drama_id_of,
    log_in,
    mark_window,
    set_timeouts,
    wait_for_live,
)
from tests.studio_process import offline_studio_env, serve_studio

pytestmark = pytest.mark.browser
TIMEOUT_MS = 60_000


@pytest.fixture
def studio(tmp_path):
    with serve_studio(tmp_path, offline_studio_env(tmp_path)) as (base, _, _):
        yield base


def test_it_renders_the_demo_chapter_and_reviews_it_live(studio, page: Page):
    errors = collect_console_errors(page)
    set_timeouts(page, TIMEOUT_MS)

    log_in(page, studio)
    page.get_by_role("link", name="Midnight Broadcast").first.click()
    drama_id = drama_id_of(page)
    wait_for_live(page)

    page.get_by_role("button", name=re.compile(r"^Render chapter · ")).click()
    expect(page.locator(".message.success")).to_contain_text("Queued 3 renders")
    mark_window(page)
    # The tiles follow the renders live: a moving bar, then three finished, scored takes.
    tiles = page.locator(".scene-tile")
    expect(tiles.locator(".take-status [role=progressbar]").first).to_be_visible()
    expect(tiles.locator(".take-status .badge", has_text="Done")).to_have_count(3)
    expect(tiles.locator(".take-status .badge", has_text="Consistent")).to_have_count(3)
    expect(tiles.locator(".take-thumb img")).to_have_count(3)
    assert_not_reloaded(page)

    # Take review: frames with per-character scores; arrows move; A approves.
    tiles.first.locator(".take-thumb").click()
    expect(page.get_by_role("heading", name="Scene 1, take 1")).to_be_visible()
    expect(page.locator(".frame-thumb .badge.green", has_text="Marcus Hale").first).to_be_visible()
    expect(page.locator("video.take-video")).to_be_visible()
    page.locator(".frame-thumb").nth(4).click()  # after the 1.2 s title card
    expect(page.locator(".frame-large.selected .face-box.green")).to_contain_text(
        re.compile(r"Marcus Hale \d+")
    )
    page.keyboard.press("ArrowRight")
    expect(page.locator(".frame-thumb.selected")).to_have_attribute("data-frame", "5")
    page.keyboard.press("a")
    expect(page.locator(".message.success")).to_contain_text("Take 1: approved")
    expect(page.locator(".take-status").first).to_contain_text("Approved")
    expect(page.locator(".reviews")).to_contain_text("producer approved the take")

    # Another scene: edit the prompt and regenerate with G; the new take renders live.
    page.goto(f"{studio}/dramas/{drama_id}/")
    page.locator(".scene-tile").nth(1).locator(".take-thumb").click()
    page.locator("#regen-prompt").fill("Ada reads the numbers aloud, rain on the windows.")
    page.locator("h1").click()  # leave the text box so the key is a shortcut
    page.keyboard.press("g")
    expect(page.get_by_role("heading", name="Scene 2, take 2")).to_be_visible()
    expect(page.locator(".frame-thumb").first).to_be_visible()  # frames arrive when scored
    expect(page.locator(".take-status").first).to_contain_text("Done")
    expect(page.locator(".attempts")).to_contain_text("Take 1")
    expect(page.locator("#regen-prompt")).to_have_value(
        "Ada reads the numbers aloud, rain on the windows."
    )
    assert errors == [], errors
