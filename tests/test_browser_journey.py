"""End-to-end journeys through the studio in a real browser (Debian's Chromium via Playwright).

Run with `pytest -m browser`. Screenshots of the key steps are kept in test-results/browser/
(git-ignored) as artefacts. The browser is never downloaded: the system Chromium is used and
its absence is a failure with the install command, not a skip.
"""

import os
import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser_support import assert_not_reloaded, mark_window, set_timeouts, shot
from tests.browser_support import log_in as log_in_as
from tests.factories import FACES_DIR, PASSWORD, create_chapter, create_drama, create_user

# Playwright's sync API keeps an asyncio loop running in the test thread once it has started,
# so Django's async-safety guard would reject every ORM call made by the test process (the
# factories, pytest-django's database setup and flush). The live server thread is unaffected.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PORTRAIT = FACES_DIR / "grace_hopper.jpg"
TIMEOUT_MS = 10_000

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """Console messages of type "error" and uncaught exceptions logged by the page."""
    errors: list[str] = []

    def on_console(message) -> None:
        # The studio ships no favicon: Chromium's own request for it is not the page's doing.
        if message.type != "error" or live_socket_on_wsgi(message):
            return
        if not message.location.get("url", "").endswith("/favicon.ico"):
            errors.append(f"console: {message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    set_timeouts(page, TIMEOUT_MS)
    return errors


def live_socket_on_wsgi(message) -> bool:
    """Django's live_server speaks WSGI, so the live views' websocket (/ws/...) cannot connect
    there; htmx's ws extension logs that, and htmx logs its wsError event ("[object Event]").
    Live updates are tested against Daphne in test_live_browser.py."""
    url = message.location.get("url", "")
    if url.endswith("/hx-ws-2.min.js") and "/ws/dramas/" in message.text:
        return True
    return url.endswith("/htmx-2.min.js") and message.text == "[object Event]"


def log_in(page: Page, base_url: str, user) -> None:
    log_in_as(page, base_url, user.username, PASSWORD)


def test_it_builds_a_drama_in_the_browser(live_server, page: Page, console_errors):
    base = live_server.url
    user = create_user(username="journey-producer")

    # Log in through the login page.
    log_in(page, base, user)
    shot(page, "01-dashboard")

    # A new drama through the "New drama" form lands on its board.
    page.get_by_role("link", name="New drama").click()
    expect(page.get_by_role("heading", name="New drama")).to_be_visible()
    page.get_by_label("Title").fill("Glass Harbour")
    page.get_by_label("Logline").fill("A compiler pioneer returns to the harbour town.")
    page.get_by_role("button", name="Create drama").click()
    expect(page.get_by_role("heading", name="Glass Harbour", level=1)).to_be_visible()
    expect(page.get_by_text("“Glass Harbour” is ready.")).to_be_visible()
    board_url = page.url
    assert re.search(r"/dramas/\d+/$", board_url), board_url
    shot(page, "02-board-new-drama")

    # A character through "Add character" lands on the character page.
    page.get_by_role("link", name="Add character").click()
    page.get_by_label("Name").fill("Grace")
    page.get_by_label("Appearance notes").fill("Silver hair, naval uniform.")
    page.get_by_role("button", name="Add character").click()
    expect(page.get_by_role("heading", name="Grace", level=1)).to_be_visible()
    gallery = page.locator("#gallery")
    expect(gallery.get_by_text("No reference images yet.")).to_be_visible()

    # Upload a portrait with the file input: the gallery is swapped in place by htmx.
    mark_window(page)
    page.get_by_label("Reference images").set_input_files(PORTRAIT)
    gallery.get_by_role("button", name="Upload").click()
    expect(page.locator("#gallery .results .added")).to_contain_text("grace_hopper.jpg added.")
    image = page.locator("#gallery figure.ref img")
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("alt", "Reference of Grace: grace_hopper.jpg")
    expect(page.locator("#gallery")).to_contain_text("1 image")
    # The stored copy is streamed back and decodes as an image.
    image.scroll_into_view_if_needed()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert_not_reloaded(page)
    shot(page, "03-character-gallery")

    # A chapter through "New chapter" lands in its editor.
    page.goto(board_url)
    page.get_by_role("link", name="New chapter").first.click()
    page.get_by_label("Title").fill("Fog on the Pier")
    page.get_by_role("button", name="Create chapter").click()
    expect(page.get_by_role("heading", name="Chapter 1: Fog on the Pier")).to_be_visible()
    editor_url = page.url

    # A scene through "Add a scene" (htmx): the scenes panel is swapped, no reload.
    mark_window(page)
    add_scene = page.locator("#scenes-panel details")
    expect(add_scene).to_have_attribute("open", "")  # open while the chapter has no scenes
    add_scene.get_by_label("Location").fill("Harbour pier")
    add_scene.get_by_label("Action / visual prompt").fill("Fog rolls over the water.")
    add_scene.get_by_label("Grace").check()
    add_scene.get_by_role("button", name="Add scene").click()
    scene = page.locator("#scene-list article.scene-card")
    expect(scene).to_have_count(1)
    expect(scene.get_by_role("heading", name="1. Harbour pier")).to_be_visible()
    expect(scene.locator(".chip")).to_have_text(["Grace"])
    assert_not_reloaded(page)

    # A dialog line with the character as speaker (htmx): the scene card is swapped.
    scene.get_by_label("Speaker").select_option(label="Grace")
    scene.get_by_label("Line").fill("The ship sails at dawn.")
    scene.get_by_label("Emotion").fill("resolute")
    scene.get_by_role("button", name="Add line").click()
    line = scene.locator("ul.lines li[id^=line-]")
    expect(line).to_have_count(1)
    expect(line.locator(".speaker")).to_have_text("Grace")
    expect(line.locator(".text")).to_contain_text("The ship sails at dawn.")
    assert_not_reloaded(page)
    shot(page, "04-editor-scene-and-line")

    # After a reload the scene, the line and the speaker are still there.
    page.reload()
    assert page.url == editor_url
    scene = page.locator("#scene-list article.scene-card")
    expect(scene).to_have_count(1)
    expect(scene.get_by_role("heading", name="1. Harbour pier")).to_be_visible()
    line = scene.locator("ul.lines li[id^=line-]")
    expect(line).to_have_count(1)
    expect(line.locator(".speaker")).to_have_text("Grace")
    expect(line.locator(".text")).to_contain_text("The ship sails at dawn. (resolute)")
    shot(page, "05-editor-after-reload")

    # Back on the board: the character with its reference and the scene tile.
    page.get_by_role("navigation").get_by_role("link", name="Glass Harbour").click()
    characters = page.get_by_role("region", name="Characters")
    character = characters.locator("a.char")
    expect(character).to_have_count(1)
    expect(character).to_contain_text("Grace")
    expect(character).to_contain_text("1 reference")
    expect(character.locator("img.avatar")).to_have_count(1)
    tile = page.locator("#board-body article.scene-tile")
    expect(tile).to_have_count(1)
    expect(tile).to_contain_text("1. Harbour pier")
    expect(tile.locator(".chip")).to_have_text(["Grace"])
    expect(tile).to_contain_text("1 line of dialog")
    shot(page, "06-board-final")

    assert console_errors == [], "\n".join(console_errors)


def test_it_shows_scene_errors_inline_without_a_reload(live_server, page: Page, console_errors):
    user = create_user(username="inline-producer")
    drama = create_drama(owner=user, title="Quiet Lanterns")
    chapter = create_chapter(drama=drama, title="First Light")
    log_in(page, live_server.url, user)
    page.goto(f"{live_server.url}/dramas/{drama.id}/chapters/{chapter.id}/")
    expect(page.get_by_role("heading", name="Chapter 1: First Light")).to_be_visible()

    mark_window(page)
    form = page.locator("#scenes-panel form").filter(has=page.get_by_label("Location"))
    form.get_by_label("Action / visual prompt").fill("Lanterns flicker in the rain.")
    with page.expect_response(re.compile(r"/scenes/new/$")) as answer:
        form.get_by_role("button", name="Add scene").click()
    assert answer.value.status == 422

    location = page.locator("#scenes-panel .field.invalid").filter(
        has=page.get_by_label("Location")
    )
    expect(location.locator("p.error")).to_have_text("This field is required.")
    expect(page.locator("#scenes-panel details")).to_have_attribute("open", "")
    # The rest of what was typed is kept, and nothing was created.
    expect(page.get_by_label("Action / visual prompt")).to_have_value(
        "Lanterns flicker in the rain."
    )
    expect(page.locator("#scene-list")).to_contain_text("No scenes yet.")
    assert_not_reloaded(page)
    expect(page.locator("#htmx-error")).to_be_hidden()
    shot(page, "07-scene-inline-error")

    # Chromium reports the 422 of the validation answer as a failed resource load; that one
    # is expected, anything else is not.
    unexpected = [e for e in console_errors if "status of 422" not in e]
    assert unexpected == [], "\n".join(unexpected)
