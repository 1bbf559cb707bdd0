"""`manage.py chapter_generate`: batch writing through the same service, waiting for the jobs."""

import io
import json
import time

import pytest
from django.core.management import CommandError, call_command

from dramas.models import ChapterSource, Drama
from studio.jobs.models import Job, JobStatus
from tests.factories import create_drama

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args, **options) -> tuple[list[str], dict]:
    out = io.StringIO()
    call_command("chapter_generate", *args, stdout=out, **options)
    lines = out.getvalue().strip().splitlines()
    return lines, json.loads(lines[-1])


def test_it_generates_twenty_chapters_for_the_demo_drama_in_one_call():
    call_command("seed_demo", stdout=io.StringIO())
    drama = Drama.objects.get(title="Midnight Broadcast")
    started = time.monotonic()

    lines, result = run(str(drama.id), title="Night shift", count=20, json=True)

    assert time.monotonic() - started < 60
    assert (result["ok"], result["failed"], result["ran"]) == (20, 0, "here")
    numbers = [row["number"] for row in result["chapters"]]
    assert numbers == list(range(2, 22))  # after the demo's own chapter
    generated = drama.chapters.filter(source=ChapterSource.GENERATED)
    assert generated.count() == 20
    assert all(chapter.scenes.count() >= 4 for chapter in generated)
    # Written one after the other: each chapter continues from the synopses before it.
    assert "After “" in drama.chapters.get(number=21).synopsis
    assert lines[1].startswith("Chapter 2 “Night shift 1”: ")
    writing = Job.objects.filter(kind="chapter.generate", status=JobStatus.SUCCEEDED)
    assert writing.count() == 20  # (the demo's lines are voiced by jobs of their own)


def test_it_prints_one_chapter_and_its_version():
    drama = create_drama()
    lines, result = run(str(drama.id), title="Pilot", json=True, target_seconds=30)
    [row] = result["chapters"]
    assert row["title"] == "Pilot" and row["version"] == 2 and row["model"] == "offline-draft"
    assert row["warnings"] == [] and row["scenes"] >= 4
    assert "1 of 1 written" in lines[-2]


def test_it_refuses_an_unknown_drama_and_a_silly_count():
    with pytest.raises(CommandError, match="no drama 999"):
        run("999", title="x")
    drama = create_drama()
    with pytest.raises(CommandError, match="between 1 and 100"):
        run(str(drama.id), title="x", count=0)
