"""Renders shared by every websocket consumer of one process.

A live page re-renders template partials from the database for each event (DESIGN §7). With
200 pages open on one drama, each event would otherwise be rendered 200 times: these helpers
run one render per key and hand its result to every consumer waiting on it.

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
from collections import OrderedDict

from channels.db import database_sync_to_async

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
