"""Queue renders of a chapter's scenes; with --wait, wait for them (running the job engine in
this process when no worker is running), then print every take with its scores.

    python manage.py render_chapter CHAPTER_ID [--wait] [--json] [--priority N]

The JSON last line is {"takes": [{"id", "scene", "status", "verdict", "score", "frames",
"cost_usd"}]}: one take per scene (the approved one, else the latest attempt); `frames` counts
the scored frames.
"""

import asyncio
import json
import sys
import time

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models.functions import Now

from dramas import takes as take_services
from dramas.models import TAKE_ACTIVE, Chapter, Take
from dramas.takes_display import latest_takes
from studio.jobs.models import Job, JobStatus
from studio.jobs.worker import Worker, config_from_settings

CLAIM_WAIT_S = 3.0  # how long a running worker gets to pick the renders up


class Command(BaseCommand):
    help = "Render every scene of a chapter (approved scenes are skipped)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("chapter_id", type=int)
        parser.add_argument("--wait", action="store_true", help="wait until every take is done")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the result as JSON"
        )
        parser.add_argument("--priority", type=int, default=0, choices=[-1, 0, 1, 2])
        parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")

    def handle(self, *args, chapter_id: int, wait: bool, as_json: bool, priority: int, **options):
        chapter = Chapter.objects.select_related("drama").filter(id=chapter_id).first()
        if chapter is None:
            raise CommandError(f"There is no chapter {chapter_id}.")
        scenes = list(chapter.scenes.select_related("chapter").order_by("order"))
        try:
            queued = take_services.takes_render_batch(
                drama=chapter.drama, scenes=scenes, priority=priority
            )
        except ValidationError as error:
            if getattr(error, "code", None) != "nothing":
                raise CommandError(" ".join(error.messages)) from None
            self.note(" ".join(error.messages))
        else:
            self.note(queued.summary())
        if wait:
            started = time.monotonic()
            asyncio.run(self.wait(chapter, timeout=options["timeout"]))
            self.note(f"Finished in {time.monotonic() - started:.1f} s.")
        self.report(chapter, as_json=as_json)

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    async def wait(self, chapter: Chapter, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        worker = None
        task = None
        if not await sync_to_async(_worker_running)(chapter=chapter, wait_s=CLAIM_WAIT_S):
            self.note("No job worker is running: rendering in this process.")
            worker = Worker(name="render_chapter", config=config_from_settings())
            task = asyncio.create_task(worker.run())
        try:
            last = ""
            while True:
                active, line = await sync_to_async(_progress)(chapter=chapter)
                if line != last:
                    self.note(line)
                    last = line
                if not active:
                    return
                if time.monotonic() > deadline:
                    raise CommandError(f"Still rendering after {timeout:.0f} s: {line}")
                if task is not None and task.done():
                    task.result()  # the worker died: say why
                    raise CommandError("The job worker stopped unexpectedly.")
                await asyncio.sleep(0.5)
        finally:
            if worker is not None:
                await worker.stop(grace_s=0)
                await task

    def report(self, chapter: Chapter, *, as_json: bool) -> None:
        rows = _summary(chapter=chapter)
        if as_json:
            self.stdout.write(json.dumps({"takes": rows}))
            return
        for row in rows:
            score = "–" if row["score"] is None else f"{row['score']:.0f}"
            cost = "unknown" if row["cost_usd"] is None else f"${row['cost_usd']:.2f}"
            self.stdout.write(
                f"take {row['id']} scene {row['scene']}: {row['status']} {row['verdict'] or ''} "
                f"score {score}, {row['frames']} frames scored, {cost}"
            )


def _worker_running(*, chapter: Chapter, wait_s: float) -> bool:
    """A worker holds a live lease somewhere, or claims one of our renders within `wait_s`."""
    ours = Job.objects.filter(kind=take_services.RENDER, payload__scene_id__in=_scene_ids(chapter))
    deadline = time.monotonic() + wait_s
    while True:
        leased = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__gt=Now())
        if leased.exists():
            return True
        if not ours.filter(status=JobStatus.QUEUED).exists() or time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _scene_ids(chapter: Chapter) -> list[int]:
    return list(chapter.scenes.values_list("id", flat=True))


def _progress(*, chapter: Chapter) -> tuple[bool, str]:
    takes = Take.objects.filter(scene__chapter=chapter, status__in=TAKE_ACTIVE)
    active = list(takes.select_related("scene").order_by("scene__order"))
    if not active:
        return False, "All takes finished."
    parts = [
        f"scene {t.scene.order}: {t.get_status_display().lower()} {t.progress_percent}%"
        for t in active
    ]
    return True, "; ".join(parts)


def _summary(*, chapter: Chapter) -> list[dict]:
    scenes = latest_takes(list(chapter.scenes.order_by("order")))
    rows = []
    for scene in scenes:
        take = scene.latest_take
        if take is None:
            continue
        frames = [f for f in take.frames.all() if f.scores and not f.scores.get("skipped")]
        rows.append(
            {
                "id": take.id,
                "scene": scene.id,
                "status": take.status,
                "verdict": take.verdict,
                "score": None if take.score is None else round(take.score, 1),
                "frames": len(frames),
                "cost_usd": None if take.cost_usd is None else float(take.cost_usd),
            }
        )
    return rows
