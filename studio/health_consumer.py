"""HealthConsumer: the provider health panel, live (`/ws/providers/health/`).

Only users who may open the panel are accepted (close code 4403 otherwise). On connect and on
every `health.changed` event (a worker published its snapshots, studio/provider_health.py) the
panel is re-rendered from the database, once per event for all open panels of this process.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from dramas.costs import can_see_provider_health
from studio import provider_health
from studio.consumers import render_once

REFUSED = 4403
PANEL = "dramas/provider_health.html#health-live"


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
