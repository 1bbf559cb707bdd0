"""ProgressConsumer over the real ASGI stack: origin check, session auth, membership, snapshot,
events rendered as htmx out-of-band swaps, and hostile clients."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator

from dramas import consumers
from dramas.jobs import chapter_check_enqueue
from dramas.models import Role
from studio import events, fanout
from studio.asgi import application
from studio.jobs import services
from studio.jobs.models import Job, JobStatus
from tests.conftest import login
from tests.factories import add_member, create_chapter, create_drama, create_scene, create_user

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://localhost"


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    channel_layers.backends.clear()  # each test's event loop gets its own in-memory layer
    yield
    channel_layers.backends.clear()


def session_cookie(user) -> bytes:
    return f"sessionid={login(user).cookies['sessionid'].value}".encode()


async def connect(path: str, *, user=None, origin: bytes = ORIGIN):
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


@sync_to_async
def make_world() -> dict:
    producer = create_user()
    drama = create_drama(owner=producer)
    chapter = create_chapter(drama=drama)
    scenes = [create_scene(chapter=chapter, location=f"Place {n}") for n in range(2)]
    viewer = add_member(drama=drama, role=Role.VIEWER)
    return {
        "drama": drama,
        "chapter": chapter,
        "scenes": scenes,
        "producer": producer,
        "viewer": viewer,
    }


def board(world) -> str:
    return f"/ws/dramas/{world['drama'].id}/live/?view=board&chapter={world['chapter'].id}"


def queue(world) -> str:
    return f"/ws/dramas/{world['drama'].id}/live/?view=queue"


async def test_it_refuses_anonymous_visitors():
    world = await make_world()
    _, connected, code = await connect(queue(world))
    assert not connected
    assert code == consumers.NOT_FOUND


async def test_it_refuses_non_members_like_a_missing_drama():
    world = await make_world()
    outsider = await sync_to_async(create_user)()

    _, connected, code = await connect(queue(world), user=outsider)
    _, missing_connected, missing_code = await connect(
        "/ws/dramas/999999/live/", user=world["producer"]
    )

    assert (connected, code) == (False, consumers.NOT_FOUND)
    assert (missing_connected, missing_code) == (False, consumers.NOT_FOUND)


async def test_it_refuses_a_foreign_origin():
    world = await make_world()
    _, connected, _ = await connect(
        queue(world), user=world["producer"], origin=b"https://evil.example"
    )
    assert not connected


async def test_it_sends_a_snapshot_of_the_queue_on_connect():
    world = await make_world()
    await sync_to_async(chapter_check_enqueue)(chapter=world["chapter"])

    communicator, connected, _ = await connect(queue(world), user=world["producer"])
    html = await communicator.receive_from()

    assert connected
    assert '<div id="queue-controls" class="actions" hx-swap-oob="true">' in html
    assert '<div id="queue-sections" class="stack" hx-swap-oob="true">' in html
    assert "Check script: chapter 1" in html
    assert "1 queued" in html
    await communicator.disconnect()


async def test_it_sends_the_board_summary_and_scene_bars_on_connect():
    world = await make_world()
    await sync_to_async(chapter_check_enqueue)(chapter=world["chapter"])

    communicator, _, _ = await connect(board(world), user=world["viewer"])
    html = await communicator.receive_from()

    assert 'id="queue-summary" class="queue-summary"' in html
    for scene in world["scenes"]:
        assert f'<div id="scene-job-{scene.id}" class="scene-job" hx-swap-oob="true">' in html
    assert html.count("<span>Check script: chapter 1</span>") == 2  # it works on both scenes
    await communicator.disconnect()


async def test_it_turns_an_event_into_fresh_html():
    world = await make_world()
    communicator, _, _ = await connect(queue(world), user=world["producer"])
    await communicator.receive_from()  # the snapshot

    job = await sync_to_async(chapter_check_enqueue)(chapter=world["chapter"])
    html = await communicator.receive_from(timeout=2)

    assert f'id="job-{job.id}"' in html
    assert "1 queued" in html
    assert "Cancel</button>" in html  # a producer may act on it
    await communicator.disconnect()


async def test_it_sends_progress_as_the_job_row_alone():
    world = await make_world()
    job = await sync_to_async(chapter_check_enqueue)(chapter=world["chapter"])
    await Job.objects.filter(id=job.id).aupdate(status=JobStatus.RUNNING, lease_owner="w")
    communicator, _, _ = await connect(queue(world), user=world["viewer"])
    await communicator.receive_from()

    await sync_to_async(_report_progress)(job_id=job.id, drama_id=world["drama"].id)
    html = await communicator.receive_from(timeout=2)

    assert html.startswith(f'<tr id="job-{job.id}" class="job running" hx-swap-oob="true">')
    assert "40% · scene 2 of 5" in html
    assert "Cancel</button>" not in html  # a viewer only reads
    await communicator.disconnect()


def _report_progress(*, job_id: int, drama_id: int) -> None:
    from studio.jobs import store

    store.save_progress(
        owner="w", job_id=job_id, drama_id=drama_id, progress=0.4, note="scene 2 of 5"
    )


async def test_it_moves_the_scene_bar_on_the_board():
    world = await make_world()
    job = await sync_to_async(chapter_check_enqueue)(chapter=world["chapter"])
    await Job.objects.filter(id=job.id).aupdate(status=JobStatus.RUNNING, lease_owner="w")
    communicator, _, _ = await connect(board(world), user=world["viewer"])
    await communicator.receive_from()

    await sync_to_async(_report_progress)(job_id=job.id, drama_id=world["drama"].id)
    html = await communicator.receive_from(timeout=2)

    scene = world["scenes"][0]
    assert f'<div id="scene-job-{scene.id}" class="scene-job" hx-swap-oob="true">' in html
    assert 'aria-valuenow="40"' in html
    assert "queue-summary" not in html  # progress leaves the counts alone
    await communicator.disconnect()


async def test_it_ignores_junk_and_resyncs_on_request():
    world = await make_world()
    communicator, _, _ = await connect(queue(world), user=world["producer"])
    await communicator.receive_from()

    await communicator.send_to(text_data="not json {")
    await communicator.send_to(text_data='{"type": "drop tables"}')
    await communicator.send_to(text_data="[1, 2, 3]")
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.send_to(text_data='{"type": "resync"}')

    assert 'id="queue-sections"' in await communicator.receive_from()
    await communicator.disconnect()


async def test_it_closes_on_binary_or_oversized_messages():
    world = await make_world()
    for kwargs, code in [({"bytes_data": b"\x00" * 10}, 1003), ({"text_data": "x" * 5000}, 1009)]:
        communicator, _, _ = await connect(queue(world), user=world["producer"])
        await communicator.receive_from()
        await communicator.send_to(**kwargs)
        assert await communicator.receive_output(timeout=1) == {
            "type": "websocket.close",
            "code": code,
        }
        await communicator.disconnect()


async def test_it_stops_a_member_who_was_removed(monkeypatch):
    monkeypatch.setattr(consumers, "RECHECK_S", 0)
    world = await make_world()
    communicator, _, _ = await connect(queue(world), user=world["viewer"])
    await communicator.receive_from()

    await world["drama"].memberships.filter(user=world["viewer"]).adelete()
    await sync_to_async(services.queue_pause)(drama_id=world["drama"].id)

    assert await communicator.receive_output(timeout=1) == {
        "type": "websocket.close",
        "code": consumers.REVOKED,
    }
    await communicator.disconnect()


@pytest.fixture
def snapshots(monkeypatch) -> list[str]:
    """Counts the snapshot renders (once set up)."""
    calls = []
    real = consumers.live.snapshot

    def counting(**kwargs):
        calls.append(kwargs["view"])
        return real(**kwargs)

    monkeypatch.setattr(consumers.live, "snapshot", counting)
    return calls


async def five_pages(world) -> list:
    communicators = [(await connect(queue(world), user=world["producer"]))[0] for _ in range(5)]
    for communicator in communicators:
        await communicator.receive_from()
    return communicators


async def test_it_renders_an_event_once_for_every_page(snapshots):
    world = await make_world()
    communicators = await five_pages(world)
    snapshots.clear()

    await sync_to_async(services.queue_pause)(drama_id=world["drama"].id)
    pages = [await communicator.receive_from() for communicator in communicators]

    assert snapshots == ["queue"]
    assert all("Resume queue" in page for page in pages)
    for communicator in communicators:
        await communicator.disconnect()


async def test_it_coalesces_a_burst_of_events_into_the_latest_state(snapshots):
    world = await make_world()
    communicators = await five_pages(world)
    snapshots.clear()
    await sync_to_async(services.queue_pause)(drama_id=world["drama"].id)
    await asyncio.gather(*(c.receive_from() for c in communicators))
    snapshots.clear()

    layer = get_channel_layer()
    await sync_to_async(services.queue_resume)(drama_id=world["drama"].id)
    for n in range(20):  # queued faster than any page can render them
        message = {"type": "drama.event", "event": "jobs.changed", "ids": [], "id": f"burst-{n}"}
        await layer.group_send(events.group_name(world["drama"].id), message)
    pages = [await _drain(communicator) for communicator in communicators]

    assert len(snapshots) <= 3  # not 21 events x 5 pages
    assert all("Pause queue" in page[-1] for page in pages)  # all end on the last state
    for communicator in communicators:
        await communicator.disconnect()


async def _drain(communicator) -> list[str]:
    pages = []
    while not await communicator.receive_nothing(timeout=0.3):
        pages.append(await communicator.receive_from())
    return pages


async def test_pages_of_one_drama_share_one_subscription_per_process():
    world = await make_world()
    group = events.group_name(world["drama"].id)
    layer = get_channel_layer()
    communicators = await five_pages(world)

    # One channel in the drama's group for the whole process, whatever the number of pages.
    assert len(layer.groups[group]) == 1 and fanout.members(group) == 5
    await sync_to_async(services.queue_pause)(drama_id=world["drama"].id)
    pages = [await communicator.receive_from() for communicator in communicators]
    assert all("Resume queue" in page for page in pages)

    for communicator in communicators[:4]:
        await communicator.disconnect()
    assert len(layer.groups[group]) == 1 and fanout.members(group) == 1
    await communicators[4].disconnect()
    assert not layer.groups.get(group) and fanout.members(group) == 0  # the last one out left


async def test_a_page_connects_again_after_the_layer_refused_a_subscription(monkeypatch):
    world = await make_world()
    layer = get_channel_layer()
    real = layer.group_add

    async def refuse(group, channel):
        raise ConnectionError("the channel layer is down")

    monkeypatch.setattr(layer, "group_add", refuse)
    _, connected, code = await connect(queue(world), user=world["producer"])
    assert (connected, code) == (False, consumers.UNAVAILABLE)
    monkeypatch.setattr(layer, "group_add", real)

    communicator, connected, _ = await connect(queue(world), user=world["producer"])
    assert connected and 'id="queue-sections"' in await communicator.receive_from()
    await communicator.disconnect()


async def test_a_long_lived_subscription_renews_its_group_membership(monkeypatch):
    monkeypatch.setattr(fanout, "GROUP_RENEW_S", 0.05)
    layer = get_channel_layer()
    heard = []

    class Page:
        def hear(self, message):
            heard.append(message["n"])

    page = Page()
    await fanout.join("renewed", page)
    [(channel, joined_at)] = layer.groups["renewed"].items()
    await asyncio.sleep(0.2)
    assert layer.groups["renewed"][channel] > joined_at  # the layer will not expire it
    await layer.group_send("renewed", {"type": "x", "n": 1})
    await asyncio.sleep(0.05)
    assert heard == [1]
    await fanout.leave("renewed", page)
    assert not layer.groups.get("renewed")
