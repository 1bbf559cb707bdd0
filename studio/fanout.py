"""Live fan-out inside one process: what every websocket consumer of a group shares.

With 200 pages open on one drama, each event would otherwise cross the channel layer 200
times (a copy, a receive and a dispatch per page) and be rendered 200 times. Here:

- `join(group, member)` / `leave(group, member)`: the process subscribes to a channel-layer
  group once, whatever the number of its local members, and hands each message to every
  member's `hear(message)` (a plain function that queues it; it must not block). With the
  Redis layer, that is one message per web process instead of one per browser.
- `render_once(key, render)`: one render per key (an event id, a view), cached for a while;
- `render_latest(key, seen, render)`: a render that started after event number `seen`
  arrived; a burst of events costs at most two renders, the last showing the final state;
- `arrival(event_id)`: the order in which this process first saw an event.

Nothing here knows what is rendered: callers pass a synchronous function that reads the
database (run through `database_sync_to_async`).
"""

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

GROUP_RENEW_S = 3600.0

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


def arrival(event_id: str | None) -> int:
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


class _Subscription:
    """This process's one membership of a channel-layer group, and its local members."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.loop = asyncio.get_running_loop()
        self.layer = get_channel_layer()
        self.members: set = set()
        self.channel = ""
        self.joined = asyncio.ensure_future(self._join())
        self.tasks: list[asyncio.Task] = []

    async def _join(self) -> None:
        # The layer's default prefix: channels_redis receives every process-local channel through
        # one shared list per prefix, and a receiver waiting on another prefix starves the rest.
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        self.tasks = [asyncio.ensure_future(self._deliver()), asyncio.ensure_future(self._renew())]

    async def _renew(self) -> None:
        """Layers forget a group membership after `group_expiry` (a day by default); pages
        come and go under one subscription for longer than that, so it is renewed."""
        while True:
            await asyncio.sleep(GROUP_RENEW_S)
            try:
                await self.layer.group_add(self.group, self.channel)
            except Exception:
                log.exception("Could not renew the subscription to %s", self.group)

    async def _deliver(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # a layer outage: log it, keep the subscription, try again
                log.exception("Could not receive the events of %s", self.group)
                await asyncio.sleep(1.0)
                continue
            for member in list(self.members):
                try:
                    member.hear(message)
                except Exception:
                    log.exception("A member of %s could not take an event", self.group)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(self.joined)
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.channel:
            with contextlib.suppress(Exception):  # the layer may be gone at shutdown
                await self.layer.group_discard(self.group, self.channel)


_subscriptions: dict[str, _Subscription] = {}


async def join(group: str, member) -> None:
    """Hand every message of `group` to `member.hear(message)` from now on (returns once the
    process is subscribed, so nothing sent after it is missed)."""
    subscription = _subscriptions.get(group)
    if subscription is None or subscription.loop is not asyncio.get_running_loop():
        subscription = _subscriptions[group] = _Subscription(group)
    subscription.members.add(member)
    try:
        await asyncio.shield(subscription.joined)
    except Exception:
        # The layer refused the subscription: forget it, so the next page tries afresh.
        subscription.members.discard(member)
        if _subscriptions.get(group) is subscription:
            del _subscriptions[group]
        raise


async def leave(group: str, member) -> None:
    """Stop handing `group`'s messages to `member`; the last member out unsubscribes."""
    subscription = _subscriptions.get(group)
    if subscription is None or member not in subscription.members:
        return
    subscription.members.discard(member)
    if not subscription.members:
        del _subscriptions[group]
        await subscription.close()


def members(group: str) -> int:
    """How many local members `group` has in this process (for tests and health)."""
    subscription = _subscriptions.get(group)
    return len(subscription.members) if subscription else 0
