"""The live websockets of the studio's pages (DESIGN §7): drama pages and the provider panel.

ProgressConsumer: live HTML for a drama's pages.

`/ws/dramas/<id>/live/?view=board&chapter=<id>` or `?view=queue`. Only members of the drama are
accepted: anyone else is refused before the handshake completes (close code 4404, the same for
"no such drama" and "not yours", like the pages' 404). On connect the client gets a snapshot of
every live fragment of its view, so a reconnect resyncs; then each `{type, ids}` event from the
drama's group is re-rendered from the database as htmx out-of-band swaps.

All consumers of one process share one subscription to the drama's group and its renders (per
view, chapter and role, studio/fanout.py): an event crosses the channel layer once per process
and a progress event is rendered once for 200 open pages; a burst of other changes costs at most
two snapshot renders however many events it holds. Membership is re-checked every few seconds:
a member who is removed stops receiving within RECHECK_S.

HealthConsumer: the provider health panel, live (`/ws/providers/health/`).

Only users who may open the panel are accepted (close code 4403 otherwise). On connect and on
every `health.changed` event (a worker published its snapshots, studio/provider_health.py) the
panel is re-rendered from the database, once per event for all open panels of this process.
"""

import asyncio
import json
import logging
import time
from functools import partial
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from dramas import live
from dramas.access import membership_for
from dramas.costs import can_see_provider_health
from dramas.models import Role
from studio import fanout, provider_health
from studio.events import EVENT_HANDLER, group_name
from studio.fanout import arrival, render_latest, render_once

log = logging.getLogger(__name__)

RECHECK_S = 5.0
MAX_CLIENT_MESSAGE = 4096
NOT_FOUND = 4404  # refused: not a member (or no such drama)
REVOKED = 4403  # membership ended while connected
UNAVAILABLE = 1011  # the server cannot follow the drama now (its channel layer failed)
REFUSED = 4403  # the provider panel: not staff, nor an editor or producer of any drama
PANEL = "dramas/provider_health.html#health-live"


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
        self.pump: asyncio.Task | None = None  # runs `deliver` once the snapshot is sent
        if not await self.check_membership():
            await self.close(code=NOT_FOUND)
            return
        # One subscription per process, not per page: the drama's events reach this page
        # through `hear`, never through its own channel (studio/fanout.py).
        try:
            await fanout.join(group_name(self.drama_id), self)
        except Exception:
            log.exception("Could not follow drama %s: the channel layer failed", self.drama_id)
            await self.close(code=UNAVAILABLE)  # the page reconnects with backoff
            return
        self.group = group_name(self.drama_id)
        await self.accept()
        await self.send_snapshot()
        self.start_delivering()  # events heard meanwhile go out after the snapshot

    async def disconnect(self, code) -> None:
        if self.pump is not None:
            self.pump.cancel()
        if self.group:
            await fanout.leave(self.group, self)
            self.group = None

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

    def hear(self, message: dict) -> None:
        """An event of the drama (from studio.fanout): queue it for `deliver`."""
        if message.get("type") != EVENT_HANDLER:
            return
        self.inbox.append((arrival(message.get("id")), message))
        self.has_mail.set()

    def start_delivering(self) -> None:
        if self.pump is None:
            self.pump = asyncio.create_task(self.deliver())

    async def deliver(self) -> None:
        """Render and send queued events in order; a batch with any change is one snapshot.
        A member whose membership ended is closed before anything more is sent."""
        while True:
            await self.has_mail.wait()
            self.has_mail.clear()
            batch, self.inbox = self.inbox, []
            try:
                stale = time.monotonic() - self.checked_at > RECHECK_S
                if stale and not await self.check_membership():
                    await self.revoke()
                    return
                view = (self.drama_id, self.view, self.chapter_id, self.can_edit)
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

    async def revoke(self) -> None:
        if self.group:
            await fanout.leave(self.group, self)
            self.group = None
        await self.close(code=REVOKED)

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


def render_panel() -> str:
    return render_to_string(PANEL, {**provider_health.panel(), "oob": True}).strip()


class HealthConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.joined = False
        user = self.scope.get("user")
        allowed = user is not None and await database_sync_to_async(can_see_provider_health)(
            user=user
        )
        if not allowed:
            await self.close(code=REFUSED)
            return
        await self.channel_layer.group_add(provider_health.GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        await self.send(text_data=await database_sync_to_async(render_panel)())

    async def disconnect(self, code) -> None:
        if self.joined:
            await self.channel_layer.group_discard(provider_health.GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """The panel sends nothing; the htmx ws extension's messages are ignored."""

    async def health_changed(self, message: dict) -> None:
        html = await render_once(("health", message.get("id")), render_panel)
        await self.send(text_data=html)
