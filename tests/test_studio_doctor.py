"""`manage.py studio_doctor`: every broken invariant counted, the safe ones repaired."""

import io
import json
import os
import time
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from dramas import services
from dramas import takes as take_services
from dramas.doctor import INVARIANTS, ORPHAN_GRACE_S
from dramas.models import Scene, TakeStatus
from studio.jobs import registry
from studio.jobs.models import Job, JobStatus
from tests.factories import create_chapter, create_scene, create_take
from tests.render_support import offline_video

pytestmark = pytest.mark.django_db


def doctor(*args) -> dict:
    out = io.StringIO()
    call_command("studio_doctor", "--json", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    for line in lines:
        json.loads(line)  # every line is JSON
    return json.loads(lines[-1])


@pytest.fixture
def scenes(settings, tmp_path, drama):
    offline_video(settings, tmp_path)
    registry.load()
    chapter = create_chapter(drama=drama)
    return [create_scene(chapter=chapter, location=f"Place {n}") for n in range(3)]


def old_file(name: str) -> str:
    saved = default_storage.save(name, ContentFile(b"left behind"))
    past = time.time() - ORPHAN_GRACE_S - 60
    os.utime(default_storage.path(saved), (past, past))
    return saved


def test_a_healthy_studio_has_no_problems(scenes, producer):
    take_services.take_approve(take=create_take(scene=scenes[0]), user=producer)
    take_services.take_enqueue(drama=scenes[0].chapter.drama, scenes=[scenes[1]])

    summary = doctor()

    assert summary == {**dict.fromkeys(INVARIANTS, 0), "problems": 0}


def test_it_counts_every_broken_invariant_and_fix_repairs_the_safe_ones(
    scenes, producer, django_capture_on_commit_callbacks
):
    drama = scenes[0].chapter.drama
    # An active take whose job ended behind its back (an older studio, a manual edit).
    [stuck] = take_services.take_enqueue(drama=drama, scenes=[scenes[0]])
    Job.objects.filter(id=stuck.job_id).update(status=JobStatus.FAILED, last_error="Boom")
    # A running job whose worker died.
    [leased] = take_services.take_enqueue(drama=drama, scenes=[scenes[1]])
    Job.objects.filter(id=leased.job_id).update(
        status=JobStatus.RUNNING,
        attempts=1,
        lease_owner="gone",
        lease_expires_at=timezone.now() - timedelta(minutes=5),
    )
    # An archived scene still rendering (archived behind the services' back).
    [archived] = take_services.take_enqueue(drama=drama, scenes=[scenes[2]])
    Scene.objects.filter(id=scenes[2].id).update(archived_at=timezone.now())
    # A file nobody names, an old one; a fresh one is a render about to name it.
    orphan = old_file("takes/999/1/lost.mp4")
    fresh = default_storage.save("takes/999/2/writing.mp4", ContentFile(b"new"))
    # A row whose file is gone.
    done = create_take(scene=create_scene(chapter=scenes[0].chapter))
    default_storage.delete(done.poster.name)

    before = doctor()

    assert before == {
        "takes_without_job": 1,
        "expired_leases": 1,
        "orphan_files": 1,
        "missing_files": 1,
        "archived_rendering": 1,
        "problems": 5,
    }

    with django_capture_on_commit_callbacks(execute=True):  # files go after commit
        doctor("--fix")
    after = doctor()

    assert after["problems"] == 1 and after["missing_files"] == 1, after  # a re-render fixes it
    stuck.refresh_from_db()
    assert stuck.status == TakeStatus.FAILED and "Boom" in stuck.error
    assert Job.objects.get(id=leased.job_id).status == JobStatus.QUEUED  # requeued
    archived.refresh_from_db()
    assert archived.status == TakeStatus.CANCELLED
    assert not default_storage.exists(orphan) and default_storage.exists(fresh)


def test_plain_output_names_each_invariant(scenes):
    out = io.StringIO()
    call_command("studio_doctor", stdout=out)
    text = out.getvalue()
    assert all(f"ok  {name}: 0" in text for name in INVARIANTS)
    assert text.strip().endswith("0 problem(s).")


def test_a_restored_chapter_leaves_nothing_for_the_doctor(scenes, producer):
    chapter = scenes[0].chapter
    take_services.take_approve(take=create_take(scene=scenes[0]), user=producer)
    version = services.chapter_version_save(chapter=chapter)
    services.chapter_version_restore(version=version)

    assert doctor()["problems"] == 0
