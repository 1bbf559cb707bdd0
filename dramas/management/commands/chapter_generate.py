"""`manage.py chapter_generate DRAMA_ID --title "..." [--count N] [--json]`: batch writing.

Creates N chapters and queues their writing jobs through the same service the editor uses
(dramas.generation.chapter_generate_new), waits for them and prints one line per chapter; with
--json the last line is the whole result as JSON. When no worker is running (none holds a live
lease and none claims the first job within a moment), the jobs run here, on the engine's own
worker, one at a time so each chapter continues from the synopses of the ones before it.
Exit status 1 when a chapter failed or the wait timed out.
"""

import asyncio
import json
import time

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError
from django.db.models.functions import Now

from dramas import generation
from dramas.models import Chapter, Drama
from studio.jobs.models import FINISHED, Job, JobStatus
from studio.jobs.worker import Worker, config_from_settings

CLAIM_WAIT_S = 2.0  # how long a running worker gets to claim the first job


class Command(BaseCommand):
    help = "Generate chapters for a drama with the configured writer and wait for them."

    def add_arguments(self, parser) -> None:
        parser.add_argument("drama_id", type=int)
        parser.add_argument("--title", required=True, help="Chapter title (numbered when N > 1).")
        parser.add_argument("--count", type=int, default=1, help="How many chapters (1-100).")
        parser.add_argument("--target-seconds", type=int, default=60)
        parser.add_argument("--plot-turns", type=int, default=3)
        parser.add_argument("--timeout", type=float, default=900.0, help="Seconds to wait.")
        parser.add_argument(
            "--worker",
            choices=["auto", "here", "external"],
            default="auto",
            help="Run the jobs here, leave them to a running worker, or decide (default).",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON last.")

    def handle(self, *args, **options) -> None:
        drama = Drama.objects.filter(id=options["drama_id"]).first()
        if drama is None:
            raise CommandError(f"There is no drama {options['drama_id']}.")
        count = options["count"]
        if not 1 <= count <= 100:
            raise CommandError("--count must be between 1 and 100.")
        started = time.monotonic()
        job_ids = []
        for index in range(1, count + 1):
            title = options["title"] if count == 1 else f"{options['title']} {index}"
            job = generation.chapter_generate_new(
                drama=drama,
                user=drama.created_by,
                title=title,
                target_seconds=options["target_seconds"],
                plot_turns=options["plot_turns"],
            )
            job_ids.append(job.id)
        self.stdout.write(f"Queued {count} chapter{'s' if count != 1 else ''} for “{drama}”.")
        where = asyncio.run(self.wait(job_ids, mode=options["worker"], timeout=options["timeout"]))
        rows = [self.row(job) for job in Job.objects.filter(id__in=job_ids).order_by("id")]
        for row in rows:
            self.stdout.write(self.line(row))
        summary = {
            "drama_id": drama.id,
            "ran": where,
            "elapsed_s": round(time.monotonic() - started, 2),
            "ok": sum(row["status"] == JobStatus.SUCCEEDED for row in rows),
            "failed": sum(row["status"] != JobStatus.SUCCEEDED for row in rows),
            "chapters": rows,
        }
        self.stdout.write(
            f"{summary['ok']} of {count} written in {summary['elapsed_s']} s ({where})."
        )
        if options["json"]:
            self.stdout.write(json.dumps(summary, ensure_ascii=False))
        if summary["failed"]:
            raise SystemExit(1)

    async def wait(self, job_ids: list[int], *, mode: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        if mode == "external" or (mode == "auto" and await self.worker_running(job_ids)):
            await self.until_finished(job_ids, deadline)
            return "worker"
        worker = Worker(
            name="chapter_generate", config=config_from_settings(concurrency=1, poll_s=0.1)
        )
        task = asyncio.create_task(worker.run())
        try:
            await self.until_finished(job_ids, deadline)
        finally:
            await worker.stop(grace_s=2.0)
            await task
        return "here"

    async def worker_running(self, job_ids: list[int]) -> bool:
        """A worker holds a live lease, or one claims our first job within CLAIM_WAIT_S."""
        leased = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__gt=Now())
        if await sync_to_async(leased.exists)():
            return True
        ours = Job.objects.filter(id__in=job_ids).exclude(status=JobStatus.QUEUED)
        until = time.monotonic() + CLAIM_WAIT_S
        while time.monotonic() < until:
            if await sync_to_async(ours.exists)():
                return True
            await asyncio.sleep(0.1)
        return False

    async def until_finished(self, job_ids: list[int], deadline: float) -> None:
        pending = Job.objects.filter(id__in=job_ids).exclude(status__in=FINISHED)
        while time.monotonic() < deadline and await sync_to_async(pending.exists)():
            await asyncio.sleep(0.2)

    def row(self, job: Job) -> dict:
        chapter = Chapter.objects.filter(id=job.payload.get("chapter_id")).first()
        result = job.result if isinstance(job.result, dict) else {}
        return {
            "job_id": job.id,
            "status": job.status,
            "chapter_id": chapter.id if chapter else None,
            "number": chapter.number if chapter else None,
            "title": chapter.title if chapter else "",
            "version": result.get("version"),
            "scenes": result.get("scenes"),
            "duration_s": result.get("duration_s"),
            "model": result.get("model"),
            "input_tokens": result.get("input_tokens"),
            "output_tokens": result.get("output_tokens"),
            "cost_usd": result.get("cost_usd"),
            "warnings": result.get("warnings", []),
            "error": job.last_error if job.status != JobStatus.SUCCEEDED else "",
        }

    def line(self, row: dict) -> str:
        where = f"Chapter {row['number']} “{row['title']}”"
        if row["status"] != JobStatus.SUCCEEDED:
            return f"{where}: {row['status']}{': ' + row['error'] if row['error'] else ''}"
        cost = "cost unknown" if row["cost_usd"] is None else f"${row['cost_usd']}"
        warnings = len(row["warnings"])
        return (
            f"{where}: {row['scenes']} scenes, {row['duration_s']:g} s, version {row['version']}, "
            f"{row['input_tokens']} in / {row['output_tokens']} out tokens, {cost}"
            + (f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else "")
        )
