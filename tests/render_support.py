"""Helpers for the render tests: a job worker beside the test, a small two-person drama."""

import asyncio
import contextlib
import random
import time

from asgiref.sync import sync_to_async

from dramas.models import Take
from dramas.takes import take_enqueue
from studio.jobs.worker import Worker, WorkerConfig
from studio.providers import registry
from tests.factories import (
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
)

FAST = dict(
    poll_s=0.05,
    watch_s=0.05,
    reap_s=0.2,
    lease_s=5.0,
    backoff_base_s=0.05,
    backoff_cap_s=0.2,
    progress_interval_s=0.05,
    grace_s=0.5,
    cancel_timeout_s=1.0,
)


@contextlib.asynccontextmanager
async def running(**config):
    """A job worker on this test's loop; stopped (no grace) when the block ends."""
    worker = Worker(name="test", config=WorkerConfig(**{**FAST, **config}), rng=random.Random(7))
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop(grace_s=0)
        await task


async def wait_for(check, *, timeout: float = 30.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s")
        await asyncio.sleep(step)


async def jobs_settled(job_ids: list[int], *, timeout: float = 60.0) -> list:
    """The jobs, once none of them is queued or running any more."""
    from studio.jobs.models import Job

    async def done():
        jobs = [job async for job in Job.objects.filter(id__in=job_ids).order_by("id")]
        return jobs if all(job.status not in ("queued", "running") for job in jobs) else None

    return await wait_for(done, timeout=timeout)


def offline_video(settings, tmp_path) -> None:
    """The offline animatic, rendering fast into the test's folder."""
    settings.PROVIDER_VIDEO = {**settings.PROVIDER_VIDEO, "base_url": ""}
    settings.ANIMATIC_DIR = tmp_path / "animatics"
    settings.ANIMATIC_PRESET = "ultrafast"
    registry.forget()


def two_person_drama(*, owner=None, seconds: float = 2.5, **fields):
    """Marcus (two portraits of one man) and Ada (another person), one short scene each."""
    drama = create_drama(owner=owner, **fields)
    marcus = create_character(drama=drama, name="Marcus", portrait="obama.jpg")
    ada = create_character(drama=drama, name="Ada", portrait="grace_hopper.jpg")
    chapter = create_chapter(drama=drama)
    first = create_scene(
        chapter=chapter,
        location="Radio booth",
        characters=[marcus],
        duration_s=seconds,
        camera="static",
    )
    create_line(scene=first, speaker=marcus, line="You are on the air.")
    second = create_scene(
        chapter=chapter, location="Lab", characters=[ada], duration_s=seconds, camera="static"
    )
    return drama, chapter, {"marcus": marcus, "ada": ada, "first": first, "second": second}


def take_page(drama, take) -> str:
    """The take's review page as its drama's creator sees it."""
    from django.urls import reverse

    from tests.conftest import login

    client = login(drama.created_by)
    response = client.get(reverse("take_review", kwargs={"drama_id": drama.id, "take_id": take.id}))
    assert response.status_code == 200
    return response.content.decode()


def seed_prices() -> None:
    """The seeded prices (a transactional test empties the tables the migrations filled)."""
    from decimal import Decimal

    from studio.models import Price

    rows = [("local", "animatic", "0"), ("openai", "sora-2", "0.10")]
    for provider, model, per_second in rows:
        Price.objects.get_or_create(
            provider=provider,
            model=model,
            kind="video",
            defaults={"per_second": Decimal(per_second), "effective_date": "2000-01-01"},
        )
    Price.objects.get_or_create(
        provider="local",
        model="espeak-ng",
        kind="speech",
        defaults={"per_mchar": Decimal(0), "effective_date": "2000-01-01"},
    )


def remote_video(settings, url: str, **overrides) -> None:
    """A remote video API on the simulator at `url` (by default its `/v1/videos` look-alike;
    `overrides` choose another wire format), with a quick breaker and retries."""
    settings.PROVIDER_VIDEO = {
        **settings.PROVIDER_VIDEO,
        "base_url": f"{url}/v1",
        "provider": "openai",
        "api": "openai_videos",
        "model": "sora-2",
        "api_key": "",
        "timeout_s": 3.0,
        "poll_s": 0.05,
        "durations_s": [2.0],
        "max_reference_images": 1,
        "rate_per_s": 100.0,
        "burst": 100,
        "concurrency": 8,
        **overrides,
    }
    settings.PROVIDER_BREAKER = {"failures": 2, "recovery_s": 0.6, "successes": 1}
    settings.PROVIDER_RETRY = {
        "max_attempts": 2,
        "base_s": 0.001,
        "cap_s": 0.01,
        "retry_after_cap_s": 0.05,
    }
    registry.forget()


async def render_first_scene(*, timeout: float = 60.0):
    """Render the first scene of a two-person drama (2 s scenes) with the configured video
    service and a running worker; the take once it settled."""
    drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])

    async def finished():
        current = await Take.objects.aget(id=take.id)
        return None if current.active else current

    async with running():
        return await wait_for(finished, timeout=timeout)
