"""The take lifecycle as a stateful property: hypothesis drives random sequences of what
producers and the machine do (render a scene or a chapter, cancel from the queue page or the
take, retry from the queue page, approve, reject, regenerate, generate the chapter over
itself, restore any version, a worker that runs for a while or dies mid-step), and after
every step checks what the studio
promises:

- no active take without an active job (and `studio_doctor` finds no problem at all);
- no approved take is lost: each is live or archived, still approved, with its video stored;
- at most one active take per scene;
- one bill per vendor job: the vendor made at most one job per take, the ledger booked it once.

Renders go to the loopback vendor simulator, the chapter writer is the offline one, workers
are real job workers on an event loop of the test's own; "dies" cancels the worker and its
jobs without releasing them, so their leases expire and the reaper takes them back.
"""

import asyncio
import contextlib
import contextvars
import os
import random
import threading
import time
from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db.models import Count
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from dramas import doctor, generation, services
from dramas import takes as take_services
from dramas.models import TAKE_ACTIVE, Drama, Scene, Take, TakeStatus
from studio.jobs import registry, store
from studio.jobs.models import ACTIVE, Job
from studio.jobs.services import job_cancel
from studio.jobs.worker import Worker, WorkerConfig
from studio.models import UsageRecord
from studio.providers import registry as providers
from studio.providers.sim.server import Simulator
from studio.providers.sim.state import SimConfig
from tests.factories import create_chapter, create_drama, create_scene, create_take, create_user
from tests.render_support import FAST, remote_video, seed_prices

pytestmark = pytest.mark.django_db(transaction=True)

# make test runs 100; more locally with STUDIO_PROPERTY_SEQUENCES=2000.
SEQUENCES = int(os.environ.get("STUDIO_PROPERTY_SEQUENCES", 100))
STEPS = 8
LEASE_S = 0.4
DRAIN_S = 20.0


class Loop:
    """An event loop on a thread of its own: the simulator and the workers live there while
    hypothesis calls the rules from the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 60.0):
        # In a context of its own: nothing of the calling thread's asgiref state leaks in.
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def run_worker(seconds: float, *, dies: bool, seed: int, drain: bool = False) -> None:
    """A worker for `seconds` (with `drain`: until no job is left to run, at most that long)."""
    config = WorkerConfig(**{**FAST, "lease_s": LEASE_S, "concurrency": 4})
    worker = Worker(name="property", config=config, rng=random.Random(seed))
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if drain and not await Job.objects.filter(status__in=ACTIVE).aexists():
            break
    if not dies:
        await worker.stop(grace_s=0)
        await task
        return
    # Death: the worker and its jobs stop where they are, nothing is released or settled.
    jobs = [job_task for _, job_task in list(worker._running.values())]
    for job_task in [*jobs, task]:
        job_task.cancel()
    await asyncio.gather(task, *jobs, return_exceptions=True)


class TakeLifecycle(RuleBasedStateMachine):
    loop: Loop
    sim: Simulator
    producer = None
    sequences = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).sequences += 1
        self.drama = create_drama(owner=self.producer, budget_usd=1000)
        self.chapter = create_chapter(drama=self.drama)
        scenes = [
            create_scene(chapter=self.chapter, location=location, duration_s=1.0)
            for location in ("Office", "Rooftop", "Street")
        ]
        services.chapter_version_save(chapter=self.chapter, user=self.producer)
        # Every sequence starts with approved work to lose: a finished take, approved.
        approved = take_services.take_approve(take=create_take(scene=scenes[0]), user=self.producer)
        self.approved: set[int] = {approved.id}
        self.seed = 0

    seen: Counter = Counter()

    def teardown(self) -> None:
        seen = type(self).seen
        seen.update(f"take {s}" for s in Take.objects.values_list("status", flat=True))
        seen["approved kept"] += len(self.approved)
        seen["approved in the archive"] += Take.objects.filter(
            id__in=self.approved, scene__archived_at__isnull=False
        ).count()
        seen["archived scenes"] += Scene.all_objects.filter(archived_at__isnull=False).count()
        seen["versions"] += self.chapter.versions.count()
        Drama.objects.all().delete()
        Job.objects.all().delete()
        UsageRecord.objects.all().delete()

    # --- helpers --------------------------------------------------------------------------
    def pick(self, items: list, index: int):
        return items[index % len(items)] if items else None

    def done_takes(self) -> list[Take]:
        return list(
            Take.objects.filter(scene__chapter=self.chapter, status=TakeStatus.DONE)
            .select_related("scene__chapter__drama")
            .order_by("id")
        )

    def refused(self, call, **kwargs) -> None:
        # A refusal (busy, budget, nothing to do, already ended, not confirmed) stores nothing.
        with contextlib.suppress(ValidationError):
            call(**kwargs)

    # --- what producers do ----------------------------------------------------------------
    @rule(index=st.integers(0, 5))
    def render_scene(self, index):
        scene = self.pick(list(self.chapter.scenes.select_related("chapter")), index)
        if scene is not None:
            self.refused(take_services.take_enqueue, drama=self.drama, scenes=[scene])

    @rule()
    def render_chapter(self):
        scenes = list(self.chapter.scenes.select_related("chapter"))
        self.refused(take_services.takes_render_batch, drama=self.drama, scenes=scenes)

    @rule(index=st.integers(0, 5))
    def cancel_from_the_queue_page(self, index):
        jobs = list(Job.objects.filter(kind=take_services.RENDER, status__in=ACTIVE).order_by("id"))
        job = self.pick(jobs, index)
        if job is not None:
            self.refused(job_cancel, job=job)

    @rule(index=st.integers(0, 5))
    def retry_from_the_queue_page(self, index):
        ended = Job.objects.filter(kind=take_services.RENDER, status__in=["failed", "cancelled"])
        job = self.pick(list(ended.order_by("id")), index)
        if job is not None:
            self.refused(take_services.take_render_retry, job=job)

    @rule(index=st.integers(0, 5))
    def cancel_from_the_take(self, index):
        takes = list(Take.objects.filter(status__in=TAKE_ACTIVE).order_by("id"))
        take = self.pick(takes, index)
        if take is not None:
            self.refused(take_services.take_cancel, take=take)

    @rule(index=st.integers(0, 5))
    def approve(self, index):
        take = self.pick(self.done_takes(), index)
        if take is not None:
            take_services.take_approve(take=take, user=self.producer)
            self.approved.add(take.id)

    @rule(index=st.integers(0, 5))
    def reject(self, index):
        take = self.pick(self.done_takes(), index)
        if take is not None:
            take_services.take_reject(take=take, user=self.producer)
            self.approved.discard(take.id)  # the producer's own choice, not a loss

    @rule(index=st.integers(0, 5))
    def regenerate(self, index):
        take = self.pick(self.done_takes(), index)
        if take is not None:
            self.refused(take_services.take_regenerate, take=take, user=self.producer)

    @rule(confirmed=st.booleans())
    def generate_chapter_over_itself(self, confirmed):
        self.refused(
            generation.chapter_generate,
            chapter=self.chapter,
            user=self.producer,
            target_seconds=15,
            plot_turns=1,
            archive_approved=confirmed,
        )

    @rule(index=st.integers(0, 9), confirmed=st.booleans())
    def restore_a_version(self, index, confirmed):
        version = self.pick(list(self.chapter.versions.order_by("number")), index)
        self.refused(
            services.chapter_version_restore,
            version=version,
            user=self.producer,
            archive_approved=confirmed,
        )

    # --- what the machine does ------------------------------------------------------------
    @rule(seconds=st.sampled_from([0.05, 0.2, 0.5]))
    def a_worker_runs(self, seconds):
        self.seed += 1
        self.loop.run(run_worker(seconds, dies=False, seed=self.seed))

    @rule()
    def the_queue_drains(self):
        self.seed += 1
        self.loop.run(run_worker(DRAIN_S, dies=False, seed=self.seed, drain=True))

    @rule(seconds=st.sampled_from([0.05, 0.2]))
    def a_worker_dies_mid_step(self, seconds):
        self.seed += 1
        self.loop.run(run_worker(seconds, dies=True, seed=self.seed))
        time.sleep(LEASE_S + 0.05)
        store.reap()  # what the next worker's reaper does first

    # --- what must always hold ------------------------------------------------------------
    @invariant()
    def every_active_take_has_an_active_job(self):
        for take in Take.objects.filter(status__in=TAKE_ACTIVE):
            job = Job.objects.filter(id=take.job_id).first()
            assert job is not None and job.status in ACTIVE, (take.id, take.status, job)

    @invariant()
    def no_approved_take_is_lost(self):
        for take_id in self.approved:
            take = Take.objects.filter(id=take_id).select_related("scene").first()
            assert take is not None, f"approved take {take_id} was deleted"
            assert take.locked and take.status == TakeStatus.DONE
            assert default_storage.exists(take.video.name), f"take {take_id} lost its video"
            assert Scene.all_objects.filter(id=take.scene_id).exists()

    @invariant()
    def at_most_one_active_take_per_scene(self):
        busy = (
            Take.objects.filter(status__in=TAKE_ACTIVE)
            .values("scene_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        assert not busy.exists()

    @invariant()
    def one_bill_per_vendor_job(self):
        assert all(n <= 1 for n in self.sim.stats.jobs_per_key.values())
        bills = Counter(
            UsageRecord.objects.filter(operation="video.generate").values_list("take_id", flat=True)
        )
        assert all(n <= 1 for n in bills.values()), bills

    @invariant()
    def the_doctor_finds_nothing(self):
        assert doctor.examine().summary()["problems"] == 0, doctor.examine().examples


def test_random_sequences_never_lose_or_strand_a_take(vendor_and_writer):
    TakeLifecycle.sequences = 0
    run_state_machine_as_test(
        TakeLifecycle,
        settings=hypothesis_settings(
            max_examples=SEQUENCES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,  # nothing written into the checkout
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert TakeLifecycle.sequences >= SEQUENCES
    print(f"\n{TakeLifecycle.sequences} random sequences of up to {STEPS} steps:")
    print(dict(TakeLifecycle.seen))


@pytest.fixture
def vendor_and_writer(settings, tmp_path, transactional_db):
    """The simulator as the video vendor, the offline writer, seeded prices, one producer."""
    seed_prices()
    loop = Loop()
    sim = Simulator(SimConfig(job_s=0.05, video_max_side=96, retry_after_s=0.01))
    url = loop.run(sim.start())
    remote_video(settings, url)
    settings.PROVIDER_WRITER = {**settings.PROVIDER_WRITER, "base_url": ""}
    providers.forget()
    registry.load()
    TakeLifecycle.loop, TakeLifecycle.sim = loop, sim
    TakeLifecycle.producer = create_user(username="property-producer")
    try:
        yield
    finally:
        loop.run(sim.stop())
        loop.close()
        providers.forget()
