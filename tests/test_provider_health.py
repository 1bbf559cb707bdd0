"""The provider health panel: what workers publish, breaker states, staleness, permissions."""

import asyncio
import contextlib
import datetime

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.urls import reverse
from django.utils import timezone

from dramas.models import Role
from studio import provider_health
from studio.asgi import application
from studio.models import ProviderHealth
from studio.providers.resilience import CircuitBreaker, Guard, TokenBucket
from tests.conftest import login
from tests.factories import add_member, create_drama, create_user

URL = "provider_health"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(name: str, clock: Clock) -> Guard:
    return Guard(
        name,
        bucket=TokenBucket(rate=2, burst=5, clock=clock),
        breaker=CircuitBreaker(failures=2, recovery_s=30, clock=clock, name=name),
        clock=clock,
        register=False,
    )


def snapshots() -> list[dict]:
    """Three guards: closed (healthy), open (two failures), half-open (open, then waited)."""
    clock = Clock()
    healthy, failing, recovering = (
        guard(n, clock) for n in ("writer:ok", "video:down", "lipsync:x")
    )
    healthy.stats.record(ok=True, latency_s=0.120)
    for broken in (failing, recovering):
        for _ in range(2):
            broken.stats.record(ok=False, latency_s=2.0, error=RuntimeError("HTTP 503 upstream"))
            broken.breaker.on_failure()
    clock.now += 31  # every breaker opened at 1000 is due a trial now
    snaps = [healthy.snapshot(), recovering.snapshot()]
    clock.now -= 31
    snaps.insert(1, failing.snapshot())
    return snaps


@pytest.fixture
def editor(db):
    drama = create_drama()
    return add_member(drama=drama, role=Role.EDITOR)


def test_the_panel_shows_closed_open_and_half_open_breakers(editor):
    snaps = snapshots()
    assert [s["breaker"] for s in snaps] == ["closed", "open", "half_open"]
    provider_health.save_snapshots(process="worker@host:1", snapshots=snaps)
    html = login(editor).get(reverse(URL)).content.decode()
    assert '<span class="badge green">closed</span>' in html
    assert '<span class="badge red">open</span>' in html
    assert '<span class="badge amber">half-open</span>' in html
    assert "100.0 %" in html and "0.0 %" in html  # success rates
    assert "120 ms" in html  # p50 of the healthy one
    assert "HTTP 503 upstream" in html  # last error
    assert "5.0 / 5" in html  # a full bucket
    assert "stale" not in html


def test_the_panel_says_no_data_truthfully_and_marks_stale_reports(editor):
    client = login(editor)
    assert "No data" in client.get(reverse(URL)).content.decode()
    old = timezone.now() - datetime.timedelta(minutes=5)
    provider_health.save_snapshots(process="gone", snapshots=snapshots()[:1], now=old)
    html = client.get(reverse(URL)).content.decode()
    assert "stale · 300 s ago" in html


def test_a_worker_updates_its_own_rows_and_old_ones_are_forgotten(db):
    snaps = snapshots()
    provider_health.save_snapshots(process="w1", snapshots=snaps)
    provider_health.save_snapshots(process="w1", snapshots=snaps)
    provider_health.save_snapshots(process="w2", snapshots=snaps[:1])
    assert ProviderHealth.objects.count() == 4
    later = timezone.now() + datetime.timedelta(days=2)
    provider_health.save_snapshots(process="w3", snapshots=snaps[:1], now=later)
    assert list(ProviderHealth.objects.values_list("process", flat=True)) == ["w3"]


def test_the_panel_shows_queue_depth_per_kind(editor):
    from studio.jobs.models import Job, JobStatus

    Job.objects.create(kind="take.render", status=JobStatus.QUEUED)
    Job.objects.create(kind="take.render", status=JobStatus.QUEUED)
    Job.objects.create(kind="take.render", status=JobStatus.RUNNING)
    Job.objects.create(kind="chapter.check", status=JobStatus.SUCCEEDED)
    assert provider_health.queue_depth() == [{"kind": "take.render", "queued": 2, "running": 1}]


def test_only_editors_producers_and_staff_open_the_panel(editor):
    url = reverse(URL)
    drama = create_drama()
    viewer = add_member(drama=drama, role=Role.VIEWER)
    assert login(viewer).get(url).status_code == 403
    assert login(create_user()).get(url).status_code == 403
    assert login(create_user(is_staff=True)).get(url).status_code == 200
    assert login(editor).get(url).status_code == 200
    producer = drama.memberships.get(role=Role.PRODUCER).user
    assert login(producer).get(url).status_code == 200
    anonymous = login(editor).__class__().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    assert "Providers" in login(editor).get(reverse("dashboard")).content.decode()
    assert ">Providers<" not in login(viewer).get(reverse("dashboard")).content.decode()


# --- Publishing and the websocket ------------------------------------------------------------


@pytest.fixture
def fresh_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def _db(function, **kwargs):
    return await sync_to_async(function)(**kwargs)


async def connect(user):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        cookie = await sync_to_async(lambda: login(user).cookies["sessionid"].value)()
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/providers/health/", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


@pytest.mark.django_db(transaction=True)
async def test_the_panel_updates_live_when_a_worker_publishes(fresh_layer, monkeypatch):
    editor = await sync_to_async(lambda: add_member(drama=create_drama(), role=Role.EDITOR))()
    communicator, connected, _ = await connect(editor)
    assert connected
    first = await communicator.receive_from()
    assert 'id="health-live"' in first and 'hx-swap-oob="true"' in first and "No data" in first
    monkeypatch.setattr(provider_health.registry, "health", snapshots)
    assert await provider_health.publish_once(process="w1", db=_db) == 3
    update = await communicator.receive_from(timeout=5)
    assert "half-open" in update and "video:down" in update
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_refuses_viewers_and_anonymous_visitors(fresh_layer):
    viewer = await sync_to_async(lambda: add_member(drama=create_drama(), role=Role.VIEWER))()
    for user in (None, viewer):
        _, connected, code = await connect(user)
        assert not connected and code == 4403


@pytest.mark.django_db(transaction=True)
async def test_nothing_is_published_without_remote_providers(fresh_layer, monkeypatch):
    monkeypatch.setattr(provider_health.registry, "health", lambda: [])
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(provider_health.GROUP, channel)
    assert await provider_health.publish_once(process="w1", db=_db) == 0
    assert await sync_to_async(ProviderHealth.objects.count)() == 0


@pytest.mark.django_db(transaction=True)
async def test_the_worker_loop_publishes_every_interval(fresh_layer, monkeypatch, settings):
    settings.PROVIDER_HEALTH_PUBLISH_S = 0.02
    monkeypatch.setattr(provider_health.registry, "health", snapshots)
    loop = asyncio.create_task(provider_health.publish_loop(process="w9", db=_db))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if await sync_to_async(ProviderHealth.objects.filter(process="w9").count)() == 3:
            break
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    assert await sync_to_async(ProviderHealth.objects.filter(process="w9").count)() == 3
