"""The drama `bench load` drives (dramas/bench/load.py), seeded through the studio's services
in a child process on the scratch database: a producer with a known password, a cast of three
with real reference portraits (dramas/demo/faces), chapters of scenes with dialog lines, and in
every chapter but the last two finished takes per scene with scored frames, reviews, their
render jobs and booked usage. Media files are named, not written: the pages only link to them.
"""

import contextlib
from decimal import Decimal
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from characters.services import character_create, reference_images_add
from dramas import services
from dramas.bench.page import book_render_usage, book_scored_frames
from dramas.models import (
    Review,
    ReviewAction,
    ReviewState,
    Scene,
    Take,
    TakeStatus,
    TimeOfDay,
    Verdict,
)
from dramas.takes import RENDER
from studio.jobs.models import Job, JobStatus

USERNAME = "bench-producer"
PASSWORD = "load-bench-producer-password"
FACES = Path(__file__).resolve().parents[1] / "demo" / "faces"
CAST = [
    # name, appearance, portraits in dramas/demo/faces
    ("Marcus Hale", "Greying hair, rolled-up white shirt.", ["obama.jpg", "obama2.jpg"]),
    ("Dr. Ada Quinn", "Short white hair, navy uniform jacket.", ["grace_hopper.jpg"]),
    ("Senator Reed", "Silver hair, dark suit, flag pin.", ["biden.jpg"]),
]
LOCATIONS = ["Radio booth", "University lab", "Parking garage", "Diner at 4 a.m.", "Rooftop"]
CAMERAS = ["slow push-in, close-up", "handheld, medium shot", "static wide shot", ""]


def seed_drama(*, chapters: int, scenes: int) -> dict:
    """In the seeding child, on the scratch database: the producer, the drama, its cast,
    chapters, scenes, lines and finished takes. Returns the ids the clients load."""
    with transaction.atomic():
        producer = get_user_model().objects.create_user(username=USERNAME, password=PASSWORD)
        drama = services.drama_create(
            creator=producer,
            title="The Long Night",
            logline="A radio host, a scientist and a senator, one night, ten chapters.",
            budget_usd=Decimal(5000),
        )
        cast = [_character(drama=drama, name=n, notes=a, faces=f) for n, a, f in CAST]
        chapter_rows = []
        for number in range(1, chapters + 1):
            chapter = services.chapter_create(
                drama=drama, title=f"Hour {number}", synopsis=f"What happens in hour {number}."
            )
            rows = [_scene(chapter=chapter, cast=cast, n=n) for n in range(scenes)]
            services.chapter_version_save(chapter=chapter, user=producer, note="Bench script")
            chapter_rows.append((chapter, rows))
        # The last chapter has no takes yet: the one the bench renders.
        rendered = [s for _, rows in chapter_rows[:-1] for s in rows]
        takes = _finished_takes(drama=drama, owner=producer, scenes=rendered)
    return {
        "drama_id": drama.id,
        "chapter_ids": [chapter.id for chapter, _ in chapter_rows],
        "render_chapter_id": chapter_rows[-1][0].id,
        "render_scenes": len(chapter_rows[-1][1]),
        "takes": len(takes),
        # The newest take of each scene: the one a producer opens from the board.
        "take_ids": [take.id for take in takes if take.number == 2],
    }


def _character(*, drama, name: str, notes: str, faces: list[str]):
    character = character_create(drama=drama, name=name, appearance_notes=notes)
    with contextlib.ExitStack() as stack:
        files = [File(stack.enter_context((FACES / n).open("rb")), name=n) for n in faces]
        results = reference_images_add(character=character, files=files)
    refused = [f"{r.filename}: {r.error}" for r in results if r.error]
    if refused:
        raise RuntimeError("The bench's portraits were refused: " + "; ".join(refused))
    return character


def _scene(*, chapter, cast: list, n: int) -> Scene:
    pair = [cast[n % len(cast)], cast[(n + 1) % len(cast)]]
    scene = services.scene_create(
        chapter=chapter,
        characters=pair,
        location=LOCATIONS[n % len(LOCATIONS)],
        time_of_day=list(TimeOfDay)[n % len(TimeOfDay)],
        action=f"Scene {n + 1}: she turns from the window as the rain starts; he waits.",
        camera=CAMERAS[n % len(CAMERAS)],
        duration_s=6 + n % 3,
        mood="tense",
    )
    for k, line in enumerate(("Who gave you this number?", "You did.", "Then hang up.")):
        services.line_create(scene=scene, speaker=pair[k % 2], line=line, emotion="quiet")
    return scene


def _finished_takes(*, drama, owner, scenes: list[Scene]) -> list[Take]:
    """Two finished takes per scene, as a few days of work leave them: the first rejected on
    a frame, the second approved and locked on every other scene; four scored frames each,
    their succeeded render jobs and booked usage. Media files are named, not written: the
    pages only link to them."""
    now = timezone.now()
    takes = Take.objects.bulk_create(
        Take(
            scene=scene,
            number=number,
            status=TakeStatus.DONE,
            progress=1.0,
            note="Done",
            provider="local",
            model="animatic",
            seed=1000 + n * 10 + number,
            prompt=scene.action,
            idempotency_key=f"bench-load-{scene.id}-{number}",
            video=f"takes/{drama.id}/{scene.id}-{number}/video.mp4",
            poster=f"takes/{drama.id}/{scene.id}-{number}/poster.jpg",
            verdict=Verdict.ACCEPT if number == 2 else Verdict.REJECT,
            score=80.0 - n % 10 if number == 2 else 48.0 + n % 10,
            estimate_usd=Decimal("0.25"),
            cost_usd=Decimal("0.25"),
            review_state=ReviewState.REJECTED
            if number == 1
            else ReviewState.APPROVED
            if n % 2 == 0
            else "",
            locked=number == 2 and n % 2 == 0,
            created_by=owner,
            started_at=now,
            finished_at=now,
        )
        for n, scene in enumerate(scenes)
        for number in (1, 2)
    )
    jobs = Job.objects.bulk_create(
        Job(
            kind=RENDER,
            label=f"Render scene {take.scene.order}, take {take.number}",
            payload={"take_id": take.id, "scene_id": take.scene_id},
            drama_id=drama.id,
            status=JobStatus.SUCCEEDED,
            progress=1.0,
            started_at=now,
            finished_at=now,
        )
        for take in takes
    )
    for take, job in zip(takes, jobs, strict=True):
        take.job_id = job.id
    Take.objects.bulk_update(takes, ["job_id"])
    frames = book_scored_frames(drama=drama, takes=takes, scenes=scenes)
    first_frame = {frame.take_id: frame for frame in frames if frame.index == 0}
    Review.objects.bulk_create(
        Review(
            take=take,
            frame=first_frame[take.id] if take.number == 1 else None,
            user=owner,
            action=ReviewAction.REJECT if take.number == 1 else ReviewAction.APPROVE,
            comment="Her face drifts in the second half." if take.number == 1 else "",
        )
        for take in takes
        if take.review_state
    )
    book_render_usage(drama=drama, takes=takes)
    return takes
