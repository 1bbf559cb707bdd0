"""A new producer's whole journey in a real browser, against the real `manage.py studio` (Daphne,
websockets, the embedded job worker) with the offline providers (draft writer, animatic): no
keys, no network.

Log in, create a drama, register two characters from portraits, generate a chapter, render it
and watch it progress live, review the frames and their scores, approve one take, regenerate
another, and read the costs. A screenshot of each step lands in
test-results/browser/journey/NN-step.png.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser_support import (
    assert_not_reloaded,
    collect_console_errors,
    create_studio_user,
    log_in,
    mark_window,
    set_timeouts,
    shot,
    wait_for_live,
)
from tests.factories import FACES_DIR
from tests.studio_process import offline_studio_env, serve_studio

pytestmark = pytest.mark.browser
TIMEOUT_MS = 60_000
USERNAME, PASSWORD = "new-producer", "a-long-journey-password"
CAST = {"Grace Mercer": "grace_hopper.jpg", "Marcus Hale": "obama.jpg"}
VERDICT = re.compile(r"^(Consistent|Inconsistent) · \d+$")
SCORE = re.compile(r"^(Grace Mercer|Marcus Hale) \d+$")
PROMPT = "Marcus waits at the lamp room door, wind in the glass."


@pytest.fixture
def studio(tmp_path):
    env = offline_studio_env(tmp_path)
    with serve_studio(tmp_path, env) as (base, _, _):
        create_studio_user(env, USERNAME, PASSWORD)
        yield base


def step(page: Page, name: str) -> None:
    shot(page, f"journey/{name}")


def assert_fits_the_window(page: Page) -> None:
    """No horizontal scrolling at the studio's 1280 px desktop width."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width


def progress_values(page: Page) -> list[int]:
    """The aria-valuenow of every take progress bar on the board's tiles."""
    return page.evaluate(
        "Array.from(document.querySelectorAll('.scene-tile .take-status [role=progressbar]'))"
        ".map(bar => Number(bar.getAttribute('aria-valuenow')))"
    )


def test_a_new_producer_goes_from_an_empty_account_to_reviewed_takes(studio, page: Page):
    base = studio
    errors = collect_console_errors(page)
    page.on("dialog", lambda dialog: dialog.accept())
    set_timeouts(page, TIMEOUT_MS)

    # 1. Log in through the login page: a new account has no dramas yet.
    log_in(page, base, USERNAME, PASSWORD)
    expect(page.get_by_text("No dramas yet.")).to_be_visible()
    expect(page.get_by_role("link", name="Midnight Broadcast")).to_have_count(0)
    step(page, "01-dashboard")

    # 2. A drama through the form: genre, style and budget show on its board.
    page.get_by_role("link", name="New drama").first.click()
    expect(page.get_by_role("heading", name="New drama")).to_be_visible()
    page.get_by_label("Title").fill("Harbour of Glass")
    page.get_by_label("Logline").fill("Two rivals share one lighthouse and one secret.")
    page.get_by_label("Genre").select_option(label="Mystery")
    page.get_by_label("Style").fill("photoreal, cold harbour dusk")
    page.get_by_label("Aspect").select_option(value="16:9")
    page.get_by_label("Budget (USD)").fill("40")
    page.get_by_role("button", name="Create drama").click()
    expect(page.get_by_role("heading", name="Harbour of Glass", level=1)).to_be_visible()
    expect(page.get_by_text("“Harbour of Glass” is ready.")).to_be_visible()
    header = page.locator(".pagehead").first
    expect(header).to_contain_text("Mystery · 16:9 horizontal · photoreal, cold harbour dusk")
    expect(header).to_contain_text("budget $40")
    board_url = page.url
    step(page, "02-drama-board")

    # 3. Two characters, each with a portrait through the character page's file input; the
    # analysis boxes one good face and builds the profile.
    for number, (name, portrait) in enumerate(CAST.items(), start=3):
        page.goto(board_url)
        page.get_by_role("link", name="Add character").click()
        page.get_by_label("Name").fill(name)
        page.get_by_label("Appearance notes").fill(f"{name.split()[0]}'s own face, dark coat.")
        page.get_by_role("button", name="Add character").click()
        expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
        gallery = page.locator("#gallery")
        expect(gallery.locator("#profile-status")).to_contain_text("No profile")
        mark_window(page)
        page.get_by_label("Reference images").set_input_files(FACES_DIR / portrait)
        gallery.get_by_role("button", name="Upload").click()
        expect(gallery.locator(".results .added")).to_contain_text(f"{portrait} added.")
        figure = gallery.locator("figure.ref")
        expect(figure).to_have_count(1)
        expect(figure.locator(".badge.quality")).to_have_text("Good")
        expect(figure).to_have_attribute("data-quality", "good")
        expect(figure.locator("rect.face-box.chosen")).to_have_count(1)
        expect(gallery.locator("#profile-status")).to_contain_text("Profile ready")
        image = figure.locator("img")
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        assert_not_reloaded(page)
        step(page, f"0{number}-character-{name.split()[0].lower()}")
    page.goto(board_url)
    strip = page.get_by_role("region", name="Characters").locator("a.char")
    expect(strip).to_have_count(2)
    expect(strip.filter(has_text="1 reference")).to_have_count(2)
    expect(page.locator(".char-warning")).to_have_count(0)

    # 4. A chapter from the offline writer: the generation form prices it (free offline), the
    # editor follows the job live, and the written scenes land in the editor.
    page.get_by_role("link", name="Generate chapter").click()
    expect(page.get_by_role("heading", name="Generate a chapter")).to_be_visible()
    page.get_by_label("Chapter title").fill("The Lamp Goes Dark")
    page.get_by_label("Target length (s)").fill("15")
    generate = page.get_by_role("button", name=re.compile(r"^Generate chapter · "))
    expect(generate).to_contain_text("free")
    generate.click()
    expect(page.get_by_text("Writing chapter 1: watch it appear here.")).to_be_visible()
    mark_window(page)
    live = page.locator("#generation-live")
    expect(live.locator(".badge", has_text="Written")).to_be_visible()
    expect(live).to_contain_text("offline-draft")
    written = int(re.search(r"\((\d+) scenes?\)", live.inner_text()).group(1))
    assert written >= 4, live.inner_text()
    # The new scenes and the header's counts arrive in place, without a reload.
    cards = page.locator("#scene-list article.scene-card")
    expect(cards).to_have_count(written)
    expect(page.locator("#chapter-header")).to_contain_text(f"{written} scenes")
    assert_not_reloaded(page)
    # The writer cast the registered characters and gave them lines.
    expect(cards.locator(".chip", has_text="Grace Mercer").first).to_be_visible()
    expect(cards.locator(".chip", has_text="Marcus Hale").first).to_be_visible()
    expect(cards.locator("ul.lines li[id^=line-]").first).to_be_visible()
    step(page, "05-chapter-generated")

    # 5. Render the chapter from the board and watch the tiles move over the websocket.
    page.locator("nav.crumbs").get_by_role("link", name="Harbour of Glass").click()
    expect(page.get_by_role("heading", name="1. The Lamp Goes Dark")).to_be_visible()
    tiles = page.locator(".scene-tile")
    expect(tiles).to_have_count(written)
    expect(tiles.locator(".badge", has_text="Not rendered")).to_have_count(written)
    wait_for_live(page)
    render_chapter = page.get_by_role("button", name=re.compile(r"^Render chapter · "))
    render_chapter.click()
    expect(page.locator(".message.success")).to_contain_text(f"Queued {written} renders")
    expect(render_chapter).to_be_disabled()  # every scene is rendering: nothing left to queue
    wait_for_live(page)
    mark_window(page)
    # A bar moves past 0 %, then further, without a reload; the take statuses follow.
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.scene-tile .take-status [role=progressbar]'))"
        ".some(bar => Number(bar.getAttribute('aria-valuenow')) > 0)"
    )
    first = max(progress_values(page), default=0)
    step(page, "06-render-progress")
    page.wait_for_function(
        "first => Array.from(document.querySelectorAll('.scene-tile .take-status'))"
        ".some(s => s.dataset.status === 'done' || Number(s.querySelector('[role=progressbar]')"
        "?.getAttribute('aria-valuenow') || 0) > first)",
        arg=first,
    )
    expect(tiles.locator(".take-status .badge", has_text="Done")).to_have_count(written)
    # Each take has a verdict with its worst character score (exact text: "Inconsistent"
    # contains "Consistent").
    verdicts = tiles.locator(".take-status .badge").filter(has_text=VERDICT)
    expect(verdicts).to_have_count(written)
    expect(tiles.locator(".take-thumb img")).to_have_count(written)
    expect(tiles.locator(".take-status [role=progressbar]")).to_have_count(0)
    expect(render_chapter).to_be_enabled()  # the live update gave the buttons back
    assert_not_reloaded(page)
    step(page, "07-render-done")
    labels = verdicts.all_inner_texts()
    for badge, label in zip(verdicts.all(), labels, strict=True):
        colour = "green" if label.startswith("Consistent") else "red"
        expect(badge).to_have_class(re.compile(rf"\b{colour}\b"))
    consistent = [n for n, label in enumerate(labels) if label.startswith("Consistent")]
    assert consistent, labels
    approve = consistent[0]
    # Regenerate an inconsistent take if there is one, else another scene.
    others = [n for n in range(written) if n != approve]
    regenerate = next((n for n in others if n not in consistent), others[0])

    # 6. Take review of a consistent take: the frame strip with a score per character next to
    # each scored frame, face boxes labelled "name score" on the selected frame.
    tiles.nth(approve).locator(".take-thumb").click()
    expect(page.get_by_role("heading", name=f"Scene {approve + 1}, take 1")).to_be_visible()
    expect(page.locator("video.take-video")).to_be_visible()
    thumbs = page.locator(".frame-thumb")
    expect(thumbs.first).to_be_visible()
    scored = thumbs.filter(has=page.locator(".badge.green", has_text=SCORE))
    assert thumbs.count() >= 6, thumbs.count()
    assert scored.count() >= thumbs.count() // 2, (scored.count(), thumbs.count())
    for name in CAST:  # both speak in a consistent scene of the offline animatic
        expect(scored.locator(".badge.green", has_text=name).first).to_be_visible()
    scored.first.click()  # the title card before it is shown but not scored
    expect(page.locator(".frame-large.selected .face-box.green").first).to_contain_text(
        re.compile(r"(Grace Mercer|Marcus Hale) \d+")
    )
    consistency = page.get_by_role("region", name="Consistency")
    for name in CAST:
        expect(consistency).to_contain_text(re.compile(rf"{name}: worst \d+"))
    assert_fits_the_window(page)
    step(page, "08-take-review")

    # 7a. Approve this take: it is locked.
    page.get_by_role("button", name=re.compile(r"^Approve take")).click()
    expect(page.locator(".message.success")).to_contain_text("Take 1: approved")
    expect(page.locator(".take-status").first).to_contain_text("Approved · locked")
    expect(page.locator(".reviews")).to_contain_text(f"{USERNAME} approved the take")
    step(page, "09-take-approved")

    # 7b. Regenerate another scene's take with an edited prompt: take 2 is queued, then its
    # row in the attempt history progresses live, and its frames arrive when it is scored.
    page.goto(board_url)
    tiles.nth(regenerate).locator(".take-thumb").click()
    expect(page.get_by_role("heading", name=f"Scene {regenerate + 1}, take 1")).to_be_visible()
    page.locator("#regen-prompt").fill(PROMPT)
    page.get_by_role("button", name=re.compile(r"^Regenerate · ")).click()
    expect(page.get_by_role("heading", name=f"Scene {regenerate + 1}, take 2")).to_be_visible()
    expect(page.locator(".message.success")).to_contain_text("Take 2 queued with a new seed.")
    mark_window(page)
    take_id = re.search(r"/takes/(\d+)/", page.url).group(1)
    attempts = page.get_by_role("region", name="Attempt history")
    expect(attempts.locator("tbody tr")).to_have_count(2)
    new_take = attempts.locator(f"#take-row-{take_id}")
    expect(new_take).to_contain_text("Take 2")
    expect(new_take).to_contain_text("edited prompt")
    expect(new_take.locator("[role=progressbar]")).to_be_visible()
    page.wait_for_function(
        "id => ['rendering', 'scoring'].includes("
        "document.getElementById('take-status-' + id)?.dataset.status)",
        arg=take_id,
    )
    assert_not_reloaded(page)
    # The page head's status follows the live row, not the "Queued" it was loaded with.
    expect(page.locator(f"[data-mirror-of='take-status-{take_id}']")).not_to_have_attribute(
        "data-status", "queued"
    )
    step(page, "10-regenerate-progress")
    # When it is scored the page fetches its frames by itself.
    expect(page.locator(".frame-thumb").first).to_be_visible()
    expect(attempts.locator(f"#take-status-{take_id}")).to_have_attribute("data-status", "done")
    expect(
        attempts.locator(f"#take-status-{take_id} .badge").filter(has_text=VERDICT)
    ).to_be_visible()
    expect(page.locator("#regen-prompt")).to_have_value(PROMPT)
    assert_fits_the_window(page)
    step(page, "11-regenerated-take")

    # 8. The cost summary: every call of the journey is booked, offline ones at $0.
    page.goto(board_url)
    page.get_by_role("link", name="Costs").click()
    expect(page.get_by_role("heading", name="Costs", level=1)).to_be_visible()
    by_model = page.get_by_role("region", name="By model")
    expect(by_model).to_contain_text("offline-draft")
    expect(by_model).to_contain_text("animatic")
    totals = page.get_by_role("region", name="Totals").locator("tbody tr td")
    calls = int(totals.first.inner_text())
    assert calls >= written + 2, calls  # a writer call, a render per scene and the regenerate
    expect(page.get_by_role("region", name="Totals")).to_contain_text("$0.0000")
    expect(page.get_by_role("region", name="Recent calls").locator("tbody tr")).to_have_count(
        min(calls, 25)
    )
    step(page, "12-costs")

    assert errors == [], errors
