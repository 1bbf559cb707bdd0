"""ProgressConsumer: live HTML for a drama's pages over a websocket (DESIGN §7).

`/ws/dramas/<id>/live/?view=board&chapter=<id>` or `?view=queue`. Only members of the drama are
accepted: anyone else is refused before the handshake completes (close code 4404, the same for
"no such drama" and "not yours", like the pages' 404). On connect the client gets a snapshot of
every live fragment of its view, so a reconnect resyncs; then each `{type, ids}` event from the
drama's group is re-rendered from the database as htmx out-of-band swaps.

All consumers of one process share renders (per view, chapter and role): a progress event is
rendered once for 200 open pages, and a burst of other changes costs at most two snapshot
renders however many events it holds. Membership is re-checked every few seconds: a member who
is removed stops receiving within RECHECK_S.
"""

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import OrderedDict
from functools import partial
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from dramas import live
from dramas.access import membership_for
from dramas.models import Role
from studio.events import EVENT_HANDLER, group_name

log = logging.getLogger(__name__)

RECHECK_S = 5.0
MAX_CLIENT_MESSAGE = 4096
NOT_FOUND = 4404  # refused: not a member (or no such drama)
REVOKED = 4403  # membership ended while connected
RENDER_CACHE_SIZE = 512

_renders: "OrderedDict[tuple, asyncio.Task]" = OrderedDict()


async def render_once(key: tuple, render) -> str:
    """Run `render` (sync, reads the DB) once per key for every consumer waiting on it."""
    task = _renders.get(key)
    if task is None or task.get_loop() is not asyncio.get_running_loop():
        task = asyncio.ensure_future(database_sync_to_async(render)())
        _renders[key] = task
        while len(_renders) > RENDER_CACHE_SIZE:
            _renders.popitem(last=False)
    if task.done():
        return task.result()
    # Shielded: one consumer going away must not cancel the render the others wait for.
    return await asyncio.shield(task)


class _Flight:
    def __init__(self) -> None:
        self.task: asyncio.Future | None = None  # the latest render started
        self.started = -1  # arrival number of the last event seen before it started
        self.next: asyncio.Future | None = None  # a render queued behind it


_flights: dict[tuple, _Flight] = {}
_arrivals: "OrderedDict[str, int]" = OrderedDict()
_arrival_numbers = itertools.count()


def _arrival(event_id: str | None) -> int:
    """The order in which this process first saw an event (any consumer)."""
    if event_id is None:
        return next(_arrival_numbers)
    if event_id not in _arrivals:
        _arrivals[event_id] = next(_arrival_numbers)
        while len(_arrivals) > RENDER_CACHE_SIZE:
            _arrivals.popitem(last=False)
    return _arrivals[event_id]


async def render_latest(key: tuple, seen: int, render) -> str:
    """A render that started after event number `seen` arrived, shared by every consumer.

    However fast events come, each key has at most one render running and one queued: a burst
    of changes costs two renders, and the last one shows the state after the last change.
    """
    flight = _flights.get(key)
    if flight is None or (flight.task and flight.task.get_loop() is not asyncio.get_running_loop()):
        if len(_flights) > RENDER_CACHE_SIZE:
            _flights.clear()
        flight = _flights[key] = _Flight()
    if flight.task is not None and flight.started >= seen:
        task = flight.task  # started after this event arrived: it shows this change
    elif flight.task is None or flight.task.done():
        task = _start(flight, render)
    else:
        if flight.next is None:
            flight.next = asyncio.ensure_future(_after(flight, render))
        task = flight.next
    return await asyncio.shield(task)


def _start(flight: _Flight, render) -> asyncio.Future:
    flight.started = next(_arrival_numbers) - 1
    flight.task = asyncio.ensure_future(database_sync_to_async(render)())
    return flight.task


async def _after(flight: _Flight, render) -> str:
    with contextlib.suppress(Exception):
        await asyncio.shield(flight.task)
    flight.next = None
    return await _start(flight, render)


class ProgressConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.group = None
        self.drama_id = int(self.scope["url_route"]["kwargs"]["drama_id"])
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        view = query.get("view", [""])[0]
        self.view = view if view in live.VIEWS else "board"
        chapter = query.get("chapter", [""])[0]
        self.chapter_id = int(chapter) if chapter.isdigit() and len(chapter) <= 18 else None
        self.last_resync = 0.0
        self.last_sent = None
        self.inbox: list[tuple[int, dict]] = []
        self.has_mail = asyncio.Event()
        self.pump: asyncio.Task | None = None  # runs `deliver` once the first event came
        if not await self.check_membership():
            await self.close(code=NOT_FOUND)
            return
        self.group = group_name(self.drama_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_snapshot()

    async def dispatch(self, message: dict) -> None:
        # Channels checks the thread's database connections before every message (a thread hop
        # per message per client). Events need no connection here: rendering runs through
        # database_sync_to_async, which tidies connections itself.
        if message.get("type") == EVENT_HANDLER:
            await self.drama_event(message)
        else:
            await super().dispatch(message)

    async def disconnect(self, code) -> None:
        if self.pump is not None:
            self.pump.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """Clients only ever ask for a resync; anything else is ignored, oversize is refused."""
        if bytes_data is not None or text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
            await self.close(code=1009 if text_data else 1003)
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to read
            return
        now = time.monotonic()
        # At most one full render a second per client.
        wants_resync = isinstance(message, dict) and message.get("type") == "resync"
        if wants_resync and now - self.last_resync >= 1.0:
            self.last_resync = now
            await self.send_snapshot()

    async def drama_event(self, message: dict) -> None:
        """Queue the event for delivery; the channel layer's queue is never left to fill up."""
        if time.monotonic() - self.checked_at > RECHECK_S and not await self.check_membership():
            await self.close(code=REVOKED)
            return
        self.inbox.append((_arrival(message.get("id")), message))
        if self.pump is None:
            self.pump = asyncio.create_task(self.deliver())
        self.has_mail.set()

    async def deliver(self) -> None:
        """Render and send queued events in order; a batch with any change is one snapshot."""
        while True:
            await self.has_mail.wait()
            self.has_mail.clear()
            batch, self.inbox = self.inbox, []
            view = (self.drama_id, self.view, self.chapter_id, self.can_edit)
            try:
                if all(_is_progress(message) for _, message in batch):
                    for _, message in batch:  # just the rows or bars of the jobs named
                        ids = [value for value in message.get("ids", []) if isinstance(value, int)]
                        render = partial(live.progress, **self.where(), ids=ids)
                        await self.send_html(await render_once((message["id"], *view), render))
                else:  # counts and lists changed: one fresh snapshot covers the whole batch
                    render = partial(live.snapshot, **self.where())
                    seen = max(number for number, _ in batch)
                    await self.send_html(await render_latest(view, seen, render))
            except Exception:
                log.exception("Could not render events for drama %s", self.drama_id)

    async def send_html(self, html: str) -> None:
        if html and html is not self.last_sent:  # a shared snapshot is sent once
            self.last_sent = html
            await self.send(text_data=html)

    def where(self) -> dict:
        return {
            "drama_id": self.drama_id,
            "view": self.view,
            "chapter_id": self.chapter_id,
            "can_edit": self.can_edit,
        }

    async def send_snapshot(self) -> None:
        html = await database_sync_to_async(partial(live.snapshot, **self.where()))()
        self.last_sent = html
        await self.send(text_data=html)

    async def check_membership(self) -> bool:
        membership = await database_sync_to_async(membership_for)(
            self.scope.get("user"), self.drama_id
        )
        self.checked_at = time.monotonic()
        self.can_edit = membership is not None and Role(membership.role).allows(Role.EDITOR)
        return membership is not None


def _is_progress(message: dict) -> bool:
    return message.get("event") == "jobs.progress" and bool(message.get("id"))
