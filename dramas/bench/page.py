"""`python manage.py bench page`: the drama board's queries and render time as the drama grows.

On a scratch database, two dramas are built the way a producer's would look after a few days of
work (`build_board`): a baseline of 10 scenes / 30 takes and a large one of 100 scenes / 300
takes (5 / 15 and 50 / 150 with --quick), all in the chapter the board shows, with five
characters (four with reference images, one flagged, one without any), dialog lines, and three
takes per scene: done takes with four scored frames each, reviews (rejected, approved and
locked), takes rendering and queued with their jobs, failed takes, a scene rewrite in progress,
and booked usage. Media files are named, not written: the board only links to them.

Logged in as the drama's producer (who sees the most: spend bar, estimates, every button), each
page is loaded through the studio's request stack and the real view (studio.bench.harness),
`RUNS` times after one warm-up load: the drama board, the board's live snapshot (the first
message its websocket receives on connect: queue summary and every tile's take and job bar),
and, for comparison, the chapter editor and the queue page. Figures: SQL statements per load
and wall time p50 / p95 / max in ms, for both sizes.

Target: the board in at most 20 queries, the same number for both sizes.
"""

import os
import statistics
import time
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from characters.models import Character, ReferenceImage, ReferenceQuality
from dramas import live, services
from dramas.generation import REWRITE
from dramas.models import (
    DialogLine,
    Drama,
    Frame,
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
from studio.bench.harness import Browser, count_queries, percentile, scratch_database
from studio.jobs.models import Job, JobStatus
from studio.models import UsageRecord

SIZES = {"baseline": 10, "large": 100}  # scenes; three takes each
QUICK_SIZES = {"baseline": 5, "large": 50}
TAKES_PER_SCENE = 3
FRAMES_PER_TAKE = 4
RUNS = 40
QUICK_RUNS = 5
TARGET_QUERIES = 20

LOCATIONS = ["Rooftop bar", "Hospital corridor", "Penthouse", "Night market", "Rain-soaked alley"]
CAMERAS = ["slow push-in, close-up", "handheld, medium shot", "", "wide establishing shot"]
CAST = [
    # name, qualities of its reference images (an empty list: no reference yet)
    ("Lin Yue", ["good", "good", "good"]),
    ("Chen Mo", ["good", "good", "outlier"]),
    ("Aunt Mei", ["good", "no_face"]),
    ("Detective Zhao", ["good"]),
    ("The Stranger", []),
]


def page(options: dict) -> dict:
    quick = options.get("quick")
    sizes = QUICK_SIZES if quick else SIZES
    runs = QUICK_RUNS if quick else RUNS
    say = options["stdout"].write
    load_before = os.getloadavg()[0]
    figures: dict = {"load_average_1min_before": round(load_before, 2)}
    with scratch_database() as vendor:
        figures["database"] = vendor
        figures["runs"] = runs
        for label, scenes in sizes.items():
            user = get_user_model().objects.create_user(username=f"bench-{label}")
            world = build_board(owner=user, scenes=scenes)
            figures[f"{label}_scenes"] = scenes
            figures[f"{label}_takes"] = world["takes"]
            drama, chapter = world["drama"], world["chapter"]
            for name, load in _pages(Browser(user), drama=drama, chapter=chapter).items():
                queries, times = _measure(load, runs=runs)
                figures[f"{label}_{name}_queries"] = queries
                figures[f"{label}_{name}_p50_ms"] = round(statistics.median(times) * 1000, 1)
                figures[f"{label}_{name}_p95_ms"] = round(percentile(times, 0.95) * 1000, 1)
                figures[f"{label}_{name}_max_ms"] = round(max(times) * 1000, 1)
                say(
                    f"{label} ({scenes} scenes, {world['takes']} takes) {name}: "
                    f"{queries} queries, p50 {figures[f'{label}_{name}_p50_ms']} ms, "
                    f"p95 {figures[f'{label}_{name}_p95_ms']} ms"
                )
    board = figures["large_board_queries"]
    figures["target_queries"] = TARGET_QUERIES
    figures["board_queries_constant"] = board == figures["baseline_board_queries"]
    figures["meets_targets"] = board <= TARGET_QUERIES and figures["board_queries_constant"]
    figures["measured"] = "WSGI request stack + real views + template rendering; no network"
    return figures


def _pages(browser: Browser, *, drama: Drama, chapter) -> dict:
    """Each measured load: a function returning the HTML (raises on anything but a 200)."""

    def get(url: str):
        def load() -> str:
            page = browser.get(url)
            if page.status != 200:
                raise RuntimeError(f"{url} answered {page.status}")
            return page.body.decode()

        return load

    def snapshot() -> str:
        # What ProgressConsumer sends a board first, on (re)connect.
        return live.snapshot(drama_id=drama.id, view="board", chapter_id=chapter.id, can_edit=True)

    return {
        "board": get(reverse("drama_board", args=[drama.id]) + f"?chapter={chapter.id}"),
        "board_live": snapshot,
        "editor": get(reverse("chapter_editor", args=[drama.id, chapter.id])),
        "queue": get(reverse("drama_queue", args=[drama.id])),
    }


def _measure(load, *, runs: int) -> tuple[int, list[float]]:
    load()  # warm-up: template loading, first-use imports
    times, counts = [], set()
    for _ in range(runs):
        with count_queries() as counted:
            started = time.perf_counter()
            load()
            times.append(time.perf_counter() - started)
        counts.add(counted.queries)
    if len(counts) != 1:
        raise RuntimeError(f"the query count changed between loads: {sorted(counts)}")
    return counts.pop(), times


def build_board(*, owner, scenes: int, takes_per_scene: int = TAKES_PER_SCENE) -> dict:
    """A drama owned by `owner` with one chapter of `scenes` scenes, cast, takes, frames,
    reviews, jobs and usage (bulk inserts: seconds, not minutes). Returns the drama, the
    chapter and counts."""
    drama = services.drama_create(
        creator=owner, title=f"Board of {scenes}", logline="Bench.", budget_usd=Decimal(500)
    )
    chapter = services.chapter_create(drama=drama, title="The Contract", synopsis="Bench data.")
    cast = _cast(drama)
    speaking = [character for character in cast if character.name != "The Stranger"]
    scene_rows = Scene.objects.bulk_create(
        Scene(
            chapter=chapter,
            order=n + 1,
            location=LOCATIONS[n % len(LOCATIONS)],
            time_of_day=list(TimeOfDay)[n % len(TimeOfDay)],
            action=f"Scene {n + 1}: she turns away from the window as the rain starts. " * 3,
            camera=CAMERAS[n % len(CAMERAS)],
            duration_s=4 + n % 5,
            mood="tense",
        )
        for n in range(scenes)
    )
    Through = Scene.characters.through
    in_scene = {
        scene.id: [speaking[n % len(speaking)], speaking[(n + 1) % len(speaking)]]
        + ([cast[-1]] if n % 7 == 0 else [])
        for n, scene in enumerate(scene_rows)
    }
    Through.objects.bulk_create(
        Through(scene_id=scene_id, character_id=character.id)
        for scene_id, characters in in_scene.items()
        for character in characters
    )
    DialogLine.objects.bulk_create(
        DialogLine(
            scene=scene,
            order=k,
            speaker=in_scene[scene.id][k % 2] if k < 2 else None,
            speaker_name="" if k < 2 else "Narrator",
            line=f"Line {k + 1} of scene {scene.order}.",
            emotion="quiet",
        )
        for scene in scene_rows
        for k in range(3)
    )
    takes = _takes(drama=drama, owner=owner, scenes=scene_rows, per_scene=takes_per_scene)
    return {"drama": drama, "chapter": chapter, "scenes": len(scene_rows), "takes": takes}


def _cast(drama: Drama) -> list[Character]:
    characters = Character.objects.bulk_create(
        Character(drama=drama, name=name, appearance_notes="Dark coat.") for name, _ in CAST
    )
    ReferenceImage.objects.bulk_create(
        ReferenceImage(
            character=character,
            image=f"references/{character.id}/{n:016x}.jpg",
            original_name=f"{character.name} {n + 1}.jpg",
            sha256=f"{character.id:032x}{n:032x}",
            original_bytes=120_000,
            width=800,
            height=1000,
            face_box=[300, 250, 500, 500] if quality != ReferenceQuality.NO_FACE else None,
            quality=quality,
        )
        for character, (_, qualities) in zip(characters, CAST, strict=True)
        for n, quality in enumerate(qualities)
    )
    return characters


def frame_scores(characters: list[Character], score: float) -> dict:
    """A scored frame's `scores` as the face engine stores them: every character matched."""
    return {
        "width": 720,
        "height": 1280,
        "face_count": len(characters),
        "characters": [
            {"name": c.name, "score": score - 3 * k, "verdict": "match", "box": [80, 90, 300, 360]}
            for k, c in enumerate(characters)
        ],
        "unknown_faces": [],
    }


def _takes(*, drama: Drama, owner, scenes: list[Scene], per_scene: int) -> int:
    """Per scene: earlier attempts done (the first rejected), the last one in a state that
    cycles through approved, rendering, queued, failed and done."""
    now = timezone.now()
    takes, jobs = [], {}
    for n, scene in enumerate(scenes):
        for number in range(1, per_scene + 1):
            last = number == per_scene
            state = n % 10 if last else None
            status = {1: TakeStatus.RENDERING, 2: TakeStatus.QUEUED, 3: TakeStatus.FAILED}.get(
                state, TakeStatus.DONE
            )
            done = status == TakeStatus.DONE
            score = 40.0 + (n * 7 + number * 13) % 55 if done else None
            take = Take(
                scene=scene,
                number=number,
                status=status,
                progress=1.0 if done else 0.4 if status == TakeStatus.RENDERING else 0.0,
                note="Done" if done else "Rendering" if state == 1 else "Waiting for a worker",
                provider="local",
                model="animatic",
                seed=1000 + n * 10 + number,
                prompt=scene.action,
                idempotency_key=f"bench-{scene.id}-{number}",
                video=f"takes/{drama.id}/{scene.id}-{number}/video.mp4" if done else "",
                poster=f"takes/{drama.id}/{scene.id}-{number}/poster.jpg" if done else "",
                verdict=(Verdict.ACCEPT if score >= 65 else Verdict.REJECT) if done else "",
                score=score,
                estimate_usd=Decimal("0.25"),
                cost_usd=Decimal("0.25") if done else None,
                error="Provider timed out after 3 attempts." if status == TakeStatus.FAILED else "",
                review_state=ReviewState.REJECTED
                if number == 1 and per_scene > 1
                else ReviewState.APPROVED
                if last and state in (0, 5)
                else "",
                locked=bool(last and state in (0, 5)),
                created_by=owner,
                started_at=now,
                finished_at=now if done or status == TakeStatus.FAILED else None,
            )
            takes.append(take)
            if status in (TakeStatus.RENDERING, TakeStatus.QUEUED):
                jobs[len(takes) - 1] = Job(
                    kind=RENDER,
                    label=f"Render scene {scene.order}, take {number}",
                    payload={"take_id": None, "scene_id": scene.id},
                    drama_id=drama.id,
                    status=JobStatus.RUNNING if state == 1 else JobStatus.QUEUED,
                    progress=take.progress,
                    progress_note=take.note,
                    started_at=now if state == 1 else None,
                )
    takes = Take.objects.bulk_create(takes)
    for index, job in jobs.items():
        job.payload["take_id"] = takes[index].id
    saved = Job.objects.bulk_create(jobs.values())
    for index, job in zip(jobs, saved, strict=True):
        takes[index].job_id = job.id
    Take.objects.bulk_update([takes[index] for index in jobs], ["job_id"])
    # A scene rewrite running on every 20th scene (its tile shows the job bar), finished jobs.
    Job.objects.bulk_create(
        [
            Job(
                kind=REWRITE,
                label=f"Rewrite scene {scene.order}",
                payload={"chapter_id": scene.chapter_id, "scene_id": scene.id},
                drama_id=drama.id,
                status=JobStatus.RUNNING,
                progress=0.5,
                started_at=now,
            )
            for scene in scenes[::20]
        ]
        + [
            Job(
                kind=RENDER,
                label=f"Render scene {take.scene.order}, take {take.number}",
                payload={"take_id": take.id, "scene_id": take.scene_id},
                drama_id=drama.id,
                status=JobStatus.FAILED
                if take.status == TakeStatus.FAILED
                else JobStatus.SUCCEEDED,
                progress=1.0,
                finished_at=now,
            )
            for take in takes
            if take.status in (TakeStatus.DONE, TakeStatus.FAILED)
        ]
    )
    frames = book_scored_frames(drama=drama, takes=takes, scenes=scenes)
    first_frame = {frame.take_id: frame for frame in frames if frame.index == 0}
    Review.objects.bulk_create(
        Review(
            take=take,
            frame=first_frame.get(take.id) if take.review_state == ReviewState.REJECTED else None,
            user=owner,
            action=ReviewAction.REJECT
            if take.review_state == ReviewState.REJECTED
            else ReviewAction.APPROVE,
            comment="Her face drifts in the second half." if take.locked is False else "",
        )
        for take in takes
        if take.review_state
    )
    book_render_usage(drama=drama, takes=takes)
    return len(takes)


def _with_cast(scenes: list[Scene]) -> list[Scene]:
    return list(Scene.objects.filter(id__in=[s.id for s in scenes]).prefetch_related("characters"))


def book_render_usage(*, drama: Drama, takes: list[Take]) -> None:
    """The usage ledger's rows for the takes that cost something (offline animatic renders)."""
    UsageRecord.objects.bulk_create(
        UsageRecord(
            provider="local",
            model="animatic",
            operation="video.render",
            drama_id=drama.id,
            take_id=take.id,
            units=take.scene.duration_s,
            cost_usd=take.cost_usd,
            ok=True,
        )
        for take in takes
        if take.cost_usd is not None
    )


def book_scored_frames(*, drama: Drama, takes: list[Take], scenes: list[Scene]) -> list[Frame]:
    """FRAMES_PER_TAKE scored frames for each done take, every character of its scene matched
    a little below the take's score (named, not written: the pages only link to them)."""
    cast = {scene.id: list(scene.characters.all()) for scene in _with_cast(scenes)}
    return Frame.objects.bulk_create(
        Frame(
            take=take,
            index=k,
            time_s=k * 1.5,
            image=f"takes/{drama.id}/{take.id}/frames/{k:03d}.jpg",
            width=720,
            height=1280,
            scores=frame_scores(cast[take.scene_id], take.score + 2 * k),
            verdict=take.verdict,
            score=take.score + 2 * k - 3 * (len(cast[take.scene_id]) - 1),
        )
        for take in takes
        if take.status == TakeStatus.DONE
        for k in range(FRAMES_PER_TAKE)
    )
