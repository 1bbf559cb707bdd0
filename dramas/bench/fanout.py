"""`python manage.py bench fanout`: live progress delivery to 200 browsers on one drama.

What is measured: 200 websocket clients (half editors, half viewers, each with a logged-in
session) connect through the real ASGI stack (origin check, session auth, ProgressConsumer)
with Channels' in-process WebsocketCommunicator, on the in-memory channel layer. Then 500
progress events are produced the way the worker produces them (a progress UPDATE of a running
job, committed, then `studio.events.publish`) at a steady rate, and every client must receive the
re-rendered job row. Latency runs from just before the database write to the moment a client
reads the HTML. Not measured: the network, Daphne's websocket framing, the browser.
"""

import asyncio
import contextlib
import os
import re
import time

from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model

from dramas.models import Drama, Membership, Role
from studio.bench.harness import percentile, scratch_database, session_for
from studio.jobs import store
from studio.jobs.models import Job, JobStatus

CLIENTS = 200
EVENTS = 500
RATE_PER_S = 100  # about 40 running jobs reporting 2.5 times a second
TARGET_P95_MS = 100.0
OWNER = "bench-worker"
ROW = re.compile(r'id="job-(\d+)"')


def fanout(options: dict) -> dict:
    clients, events = (20, 50) if options.get("quick") else (CLIENTS, EVENTS)
    say = options["stdout"].write
    load_before = os.getloadavg()[0]
    with scratch_database():
        drama_id, job_ids, cookies = _world(events)
        # The baseline, same run and data: one client, so the cost of the database write, the
        # layer and one render, without the walk through many consumers.
        channel_layers.backends.clear()  # a fresh in-memory layer on each run's event loop
        say(f"baseline: 1 client, {events} events at {RATE_PER_S}/s...")
        alone, _, _, _ = asyncio.run(
            _run(drama_id=drama_id, job_ids=job_ids, cookies=cookies, clients=1)
        )
        channel_layers.backends.clear()
        say(f"{clients} clients, {events} events at {RATE_PER_S}/s...")
        latencies, delivered, connect_s, cpu_s = asyncio.run(
            _run(drama_id=drama_id, job_ids=job_ids, cookies=cookies, clients=clients)
        )
    expected = clients * events
    p95 = percentile(latencies, 0.95)
    return {
        "clients": clients,
        "events": events,
        "rate_per_s": RATE_PER_S,
        "delivered": delivered,
        "lost": expected - delivered,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
        "connect_all_s": round(connect_s, 2),
        # CPU time of the whole process (server and clients) while events flow: what the
        # machine's speed does not change.
        "cpu_s": round(cpu_s, 2),
        "cpu_us_per_delivery": round(cpu_s / max(delivered, 1) * 1e6, 1),
        "baseline_one_client_p50_ms": round(percentile(alone, 0.50) * 1000, 1),
        "baseline_one_client_p95_ms": round(percentile(alone, 0.95) * 1000, 1),
        "load_average_1min_before": round(load_before, 2),
        "measured": "in-process ASGI + in-memory channel layer + rendering; no network",
        "target_p95_ms": TARGET_P95_MS,
        "meets_targets": expected == delivered and p95 * 1000 <= TARGET_P95_MS,
    }


def _world(events: int) -> tuple[int, list[int], list[str]]:
    users = get_user_model().objects
    editor = users.create_user(username="bench-editor")
    viewer = users.create_user(username="bench-viewer")
    drama = Drama.objects.create(title="Fan-out", created_by=editor)
    Membership.objects.create(drama=drama, user=editor, role=Role.EDITOR)
    Membership.objects.create(drama=drama, user=viewer, role=Role.VIEWER)
    jobs = Job.objects.bulk_create(
        Job(
            kind="bench.render",
            label=f"Render scene {n + 1}",
            drama_id=drama.id,
            status=JobStatus.RUNNING,
            lease_owner=OWNER,
        )
        for n in range(events)
    )
    cookies = [session_for(user) for user in (editor, viewer)]
    return drama.id, [job.id for job in jobs], cookies


async def _run(*, drama_id: int, job_ids: list[int], cookies: list[str], clients: int):
    from studio.asgi import application

    started = time.perf_counter()
    communicators = []
    for n in range(clients):
        headers = [
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookies[n % 2]}".encode()),
        ]
        path = f"/ws/dramas/{drama_id}/live/?view=queue"
        communicators.append(WebsocketCommunicator(application, path, headers=headers))
    for batch in range(0, clients, 20):
        group = communicators[batch : batch + 20]
        results = await asyncio.gather(*(c.connect(timeout=30) for c in group))
        if not all(connected for connected, _ in results):
            raise RuntimeError(f"a client was refused: {results}")
        await asyncio.gather(*(c.receive_from(timeout=30) for c in group))  # snapshots
    connect_s = time.perf_counter() - started

    published: dict[int, float] = {}
    latencies: list[float] = []
    received = [0] * clients
    readers = [
        asyncio.create_task(_read(c, published, latencies, received, n, len(job_ids)))
        for n, c in enumerate(communicators)
    ]
    save = sync_to_async(store.save_progress)
    cpu = time.process_time()
    begin = time.perf_counter()
    for n, job_id in enumerate(job_ids):  # a steady rate, as running jobs report
        await asyncio.sleep(max(0.0, begin + n / RATE_PER_S - time.perf_counter()))
        published[job_id] = time.perf_counter()
        await save(owner=OWNER, job_id=job_id, drama_id=drama_id, progress=0.5, note=f"n{n}")
    # Whatever has not arrived 5 s after the last event counts as lost.
    _, late = await asyncio.wait(readers, timeout=5)
    cpu_s = time.process_time() - cpu
    for reader in late:
        reader.cancel()
    for communicator in communicators:
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await communicator.disconnect()
    return latencies, sum(received), connect_s, cpu_s


async def _read(communicator, published, latencies, received, n, expected) -> None:
    """Read job rows until all arrived (or the reader is cancelled), counting them.

    Reads the communicator's output queue directly, without a timer per read: the browsers'
    side should cost the server process as little as possible."""
    while received[n] < expected:
        message = await communicator.output_queue.get()
        now = time.perf_counter()
        match = ROW.search(message.get("text", ""))
        if match and int(match.group(1)) in published:
            latencies.append(now - published[int(match.group(1))])
            received[n] += 1
