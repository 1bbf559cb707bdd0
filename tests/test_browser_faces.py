"""In a real browser: a reference without a face shows its warning; a portrait gets its box.

Run with `pytest -m browser` (Debian's Chromium through Playwright, as test_browser_journey).
"""

import re

import pytest
from playwright.sync_api import Page, expect

from tests import test_browser_journey as journey
from tests.browser_support import shot
from tests.factories import FACES_DIR, create_character, create_drama, create_user, image_bytes

# The journey's console-error fixture and log-in, shared as is (Chromium comes from conftest).
console_errors = journey.console_errors
log_in = journey.log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_warns_about_a_reference_without_a_face(
    live_server, page: Page, console_errors, tmp_path
):
    user = create_user(username="faces-producer")
    drama = create_drama(owner=user, title="Harbour Lights")
    character = create_character(drama=drama, name="Grace")
    sky = tmp_path / "sky.png"
    sky.write_bytes(image_bytes(size=(400, 300), color=(90, 140, 200)))
    log_in(page, live_server.url, user)
    page.goto(f"{live_server.url}/dramas/{drama.id}/characters/{character.id}/")
    gallery = page.locator("#gallery")

    page.get_by_label("Reference images").set_input_files(sky)
    gallery.get_by_role("button", name="Upload").click()

    expect(gallery.locator(".results .added")).to_contain_text(
        "No face found: see the image below."
    )
    figure = gallery.locator("figure.ref")
    expect(figure).to_have_count(1)
    expect(figure.locator(".badge.quality")).to_have_text("No face found")
    expect(figure.locator(".badge.quality")).to_have_class(re.compile(r"\bred\b"))
    expect(figure).to_contain_text("No face found. Use a clear, front-facing portrait")
    expect(gallery.locator("#profile-status")).to_contain_text("No profile")
    shot(page, "faces-01-no-face-warning")

    page.get_by_label("Reference images").set_input_files(FACES_DIR / "grace_hopper.jpg")
    gallery.get_by_role("button", name="Upload").click()

    portrait = gallery.locator("figure.ref[data-quality=good]")
    expect(portrait).to_have_count(1)
    expect(portrait.locator(".badge.quality")).to_have_text("Good")
    box = portrait.locator("rect.face-box.chosen")
    expect(box).to_have_count(1)
    image_box = portrait.locator("img").bounding_box()
    face_box = box.bounding_box()
    # The box sits on the face: inside the picture, in its upper middle.
    assert (
        image_box["x"]
        < face_box["x"]
        < face_box["x"] + face_box["width"]
        < (image_box["x"] + image_box["width"])
    )
    assert 0.15 < face_box["width"] / image_box["width"] < 0.6
    expect(gallery.locator("#profile-status")).to_contain_text("Profile ready")
    shot(page, "faces-02-portrait-with-face-box")

    page.goto(f"{live_server.url}/dramas/{drama.id}/")
    strip = page.get_by_role("region", name="Characters").locator("a.char")
    expect(strip).to_contain_text("1 reference to check: no face found")

    assert console_errors == [], "\n".join(console_errors)
