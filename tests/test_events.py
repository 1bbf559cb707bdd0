"""Events go out after commit, never before the data is visible, and never for rolled-back work."""

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.db import transaction

from studio import events
from studio.jobs import services
from studio.jobs.models import Job
from tests import jobs_handlers  # noqa: F401  (registers test.noop)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def listen(*, drama_id: int) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.group_name(drama_id), channel)
    return channel


async def next_message(channel: str, *, timeout: float = 0.3) -> dict | None:
    try:
        return await asyncio.wait_for(get_channel_layer().receive(channel), timeout)
    except TimeoutError:
        return None


async def test_it_publishes_type_and_ids_once_the_transaction_commits():
    channel = await listen(drama_id=7)

    def enqueue_and_peek() -> tuple[Job, dict | None]:
        with transaction.atomic():
            job = services.job_enqueue(kind="test.noop", drama_id=7)
            early = async_to_sync(next_message)(channel, timeout=0.2)
        return job, early

    job, early = await sync_to_async(enqueue_and_peek)()
    message = await next_message(channel, timeout=1)

    assert early is None  # nothing while the row was invisible to others
    assert message["type"] == "drama.event"
    assert message["event"] == "jobs.changed"
    assert message["ids"] == [job.id]
    # The receiver can already read what the event names.
    assert await Job.objects.filter(id=job.id).aexists()


async def test_it_sends_nothing_for_rolled_back_work():
    channel = await listen(drama_id=7)

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            services.job_enqueue(kind="test.noop", drama_id=7)
            services.queue_pause(drama_id=7)
            raise RuntimeError("the rest of the change failed")

    with pytest.raises(RuntimeError):
        await sync_to_async(enqueue_then_fail)()

    assert await next_message(channel) is None
    assert not await Job.objects.aexists()


async def test_it_sends_only_to_the_drama_concerned():
    mine, other = await listen(drama_id=1), await listen(drama_id=2)

    await sync_to_async(services.queue_pause)(drama_id=1)

    assert (await next_message(mine, timeout=1))["event"] == "queue.changed"
    assert await next_message(other) is None


def test_it_keeps_a_broken_channel_layer_from_failing_the_work(monkeypatch, db):
    class Down:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(events, "get_channel_layer", Down)

    services.queue_pause(drama_id=3)  # committed; the event is lost, the change is not

    assert services.queue_is_paused(drama_id=3)


def test_it_throttles_per_key():
    throttle = events.Throttle(min_interval_s=0.5)

    assert throttle.wait_s(key=1, now=10.0) == 0
    throttle.mark(key=1, now=10.0)
    assert throttle.wait_s(key=1, now=10.2) == pytest.approx(0.3)
    assert throttle.wait_s(key=2, now=10.2) == 0
    assert throttle.wait_s(key=1, now=10.6) == 0


async def test_a_sync_call_publishing_hands_the_send_to_its_callers_loop(monkeypatch):
    """From a sync_to_async thread the send is scheduled on the calling loop, not waited for:
    a task cancelled meanwhile (a cancelled job) can still make its next database call."""
    channel = await listen(drama_id=9)
    layer = get_channel_layer()
    real_group_send = layer.group_send

    async def slow_group_send(group, message):
        await asyncio.sleep(0.5)
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", slow_group_send)

    def publish_then_work():
        events.publish(drama_id=9, type="takes.changed", ids=[1])
        time.sleep(0.3)  # still in the call when the task is cancelled

    async def job():
        try:
            await sync_to_async(publish_then_work)()
        except asyncio.CancelledError:
            return await sync_to_async(lambda: "the next call runs")()

    task = asyncio.create_task(job())
    await asyncio.sleep(0.1)
    task.cancel()

    assert await task == "the next call runs"
    message = await next_message(channel, timeout=2)
    assert message["event"] == "takes.changed" and message["ids"] == [1]
