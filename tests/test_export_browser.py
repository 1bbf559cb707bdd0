"""Deliver an episode in a real browser against the real `manage.py studio`: render the demo
chapter, approve its takes, open the Cut page, export, watch the export panel fill in live, and
download the package's files, which are decoded and parsed as a producer's tools would."""

import io
import json
import re

import av
import opentimelineio as otio
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
EXPORT_TIMEOUT_MS = 240_000  # both 1080x1920 masters on a loaded 2-core machine


@pytest.fixture
def studio(tmp_path):
    with serve_studio(tmp_path, offline_studio_env(tmp_path)) as (base, _, _):
        yield base


def download(page: Page, base: str, name: str) -> bytes:
    href = page.locator("#export-panel .downloads a", has_text=re.compile(f"^{name}$"))
    response = page.request.get(base + href.get_attribute("href"))
    assert response.ok, (name, response.status)
    return response.body()


def test_a_producer_exports_the_approved_chapter_from_the_cut_page(studio, page: Page):
    errors = collect_console_errors(page)
    set_timeouts(page, TIMEOUT_MS)
    log_in(page, studio)
    page.get_by_role("link", name="Midnight Broadcast").first.click()
    drama_id = drama_id_of(page)
    wait_for_live(page)

    page.get_by_role("button", name=re.compile(r"^Render chapter · ")).click()
    tiles = page.locator(".scene-tile")
    expect(tiles.locator(".take-status .badge", has_text="Done")).to_have_count(3)
    for index in range(3):
        page.goto(f"{studio}/dramas/{drama_id}/")
        page.locator(".scene-tile").nth(index).locator(".take-thumb").click()
        page.locator("h1").click()
        page.keyboard.press("a")
        expect(page.locator(".message.success")).to_contain_text("approved")

    page.goto(f"{studio}/dramas/{drama_id}/")
    page.get_by_role("link", name="Cut and export").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Cut: chapter 1"))).to_be_visible()
    expect(page.locator("#export-panel")).to_contain_text("Not exported yet.")
    wait_for_live(page)

    page.get_by_role("button", name="Export the episode").click()
    expect(page.locator(".message.success")).to_contain_text("Exporting")
    wait_for_live(page)
    mark_window(page)  # from here the panel fills in live, without a reload
    panel = page.locator("#export-panel")
    expect(panel.locator(".downloads a", has_text=re.compile("^episode.mp4$"))).to_be_visible(
        timeout=EXPORT_TIMEOUT_MS
    )
    expect(panel.locator(".badge.green", has_text="current")).to_be_visible()
    expect(panel).to_contain_text("1080x1920")
    expect(panel).to_contain_text(re.compile(r"-1[34]\.\d LUFS"))

    with av.open(io.BytesIO(download(page, studio, "episode.mp4"))) as episode:
        video, audio = episode.streams.video[0], episode.streams.audio[0]
        assert (video.codec_context.width, video.codec_context.height) == (1080, 1920)
        assert audio.codec_context.sample_rate == 48_000
        frames = sum(1 for _ in episode.decode(video))
    assert frames > 24 * 20  # the demo chapter's three scenes, minus nothing

    manifest = json.loads(download(page, studio, "manifest.json"))
    assert manifest["files"]["episode.mp4"]["sha256"]
    timeline = otio.adapters.read_from_string(
        download(page, studio, "episode.otio").decode(), adapter_name="otio_json"
    )
    assert len(timeline.video_tracks()[0].find_clips()) == 3
    subtitles = download(page, studio, "episode.srt").decode()
    assert "-->" in subtitles
    assert_not_reloaded(page)
    assert errors == [], errors
