"""Live progress in a real browser, served by the real `manage.py studio` (Daphne, websockets,
the embedded worker on Daphne's loop, the in-memory channel layer): a job's progress bar moves
and its row changes section without a reload, on the queue page and on the board."""

import subprocess
import sys

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
    wait_for_queue_progress_to_move,
)
from tests.studio_process import REPO, serve_studio, studio_env

pytestmark = pytest.mark.browser
TIMEOUT_MS = 15_000

ENQUEUE = """
import sys
import django
django.setup()
from dramas.models import Scene
from studio.jobs.services import job_enqueue
drama_id = int(sys.argv[1])
scenes = list(Scene.objects.filter(chapter__drama_id=drama_id).values_list("id", flat=True))
job_enqueue(kind="test.crash.steps", drama_id=drama_id, label="Live test job",
            payload={"steps": 12, "step_s": 0.25, "scene_ids": scenes})
"""


@pytest.fixture
def studio(tmp_path):
    env = studio_env(tmp_path)
    env.update(STUDIO_JOB_MODULES="tests.jobs_handlers", STUDIO_TEST_JOB_LOG=str(tmp_path / "log"))
    with serve_studio(tmp_path, env) as (base, _, _):
        yield base, env


def test_it_moves_progress_live_on_the_queue_page_and_the_board(studio, page: Page):
    base, env = studio
    errors = collect_console_errors(page)
    set_timeouts(page, TIMEOUT_MS)

    log_in(page, base)
    page.get_by_role("link", name="Midnight Broadcast").first.click()
    drama_id = drama_id_of(page)
    board = page.context.new_page()
    collect_console_errors(board, errors)
    board.goto(page.url)
    page.goto(f"{base}/dramas/{drama_id}/queue/")
    expect(page.locator("#queue-running")).to_contain_text("Nothing running.")
    wait_for_live(page)
    mark_window(page)
    mark_window(board)

    # A job enqueued by another process: the studio's worker picks it up by polling.
    subprocess.run([sys.executable, "-c", ENQUEUE, drama_id], cwd=REPO, env=env, check=True)

    row = page.locator("#queue-running tr.job", has_text="Live test job")
    expect(row).to_be_visible()
    wait_for_queue_progress_to_move(page)
    expect(page.locator("#queue-controls")).to_contain_text("1 running")
    # The board's scene tiles show the same job while it runs.
    tile_bar = board.locator(".scene-tile .scene-job [role=progressbar]").first
    expect(tile_bar).to_be_visible()
    expect(board.locator("#queue-summary")).to_contain_text("1 running")

    # It finishes: the row moves to Done, the tiles' bars go, the counts follow.
    expect(page.locator("#queue-done tr.job", has_text="Live test job")).to_be_visible()
    expect(page.locator("#queue-controls")).to_contain_text("0 running")
    expect(board.locator(".scene-tile .scene-job [role=progressbar]")).to_have_count(0)
    expect(board.locator("#queue-summary")).to_contain_text("0 running")

    # The demo job kind, from the board's button, without leaving the board.
    board.get_by_role("button", name="Check script").click()
    expect(board.get_by_text("Checking the script of chapter 1")).to_be_visible()
    expect(page.locator("#queue-done tr.job", has_text="Check script: chapter 1")).to_be_visible()

    assert_not_reloaded(page)
    assert_not_reloaded(board)
    assert errors == [], errors
