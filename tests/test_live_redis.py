"""The live path on a real Redis channel layer, in one process: the shared subscription, the
pages' own channels and the health check all receive while the others wait (channels_redis
serves every process-local channel of one prefix through one list; another prefix starved)."""

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

from studio import fanout, health
from tests.services import redis_server

pytestmark = pytest.mark.scaleout


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


class Page:
    def __init__(self) -> None:
        self.heard: asyncio.Queue = asyncio.Queue()

    def hear(self, message: dict) -> None:
        self.heard.put_nowait(message)


async def test_everything_local_receives_on_redis_while_pages_wait(redis_url, monkeypatch):
    layer = RedisChannelLayer(hosts=[redis_url])
    monkeypatch.setattr(fanout, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(health, "get_channel_layer", lambda: layer)
    # An open page waits on its own channel, as every websocket consumer does.
    own = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(own))
    page = Page()
    await fanout.join("drama-redis", page)
    try:
        for n in range(3):
            await layer.group_send("drama-redis", {"type": "drama.event", "n": n})
            heard = await asyncio.wait_for(page.heard.get(), timeout=5)
            assert heard["n"] == n
            assert await health.check_channel_layer(timeout=5) == "ok"
        await layer.send(own, {"type": "direct"})
        assert (await asyncio.wait_for(waiting, timeout=5))["type"] == "direct"
    finally:
        waiting.cancel()
        await fanout.leave("drama-redis", page)
        await layer.flush()
