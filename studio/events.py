"""Live events: `{type, ids}` sent to the channel group `drama-<id>` after the data commits.

Events carry ids only; consumers render HTML from the database (DESIGN §7). `publish` hooks into
`transaction.on_commit`, so a rolled-back change sends nothing and a browser never hears of a
row it cannot read yet. Outside a transaction it sends at once.

Types in use:
- `jobs.changed`: jobs were enqueued, claimed, finished, retried, cancelled or bumped;
- `jobs.progress`: a running job reported progress (throttled, see `Throttle`);
- `queue.changed`: a drama's queue was paused or resumed.
"""

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from functools import partial

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

EVENT_HANDLER = "drama.event"
_home = threading.local()  # the consumer method `drama_event` receives these


def group_name(drama_id: int) -> str:
    return f"drama-{drama_id}"


def publish(*, drama_id: int | None, type: str, ids: Iterable[int] = ()) -> None:
    """Send `{type, ids}` to the drama's group once the current transaction commits."""
    if drama_id is None:
        return
    message = {
        "type": EVENT_HANDLER,
        "event": type,
        "ids": sorted(set(ids)),
        # A unique id lets every consumer of one process share one rendering of the event.
        "id": uuid.uuid4().hex,
        "sent_at": time.time(),
    }
    transaction.on_commit(partial(_send, group_name(drama_id), message), robust=True)


def bind_thread_to_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Events published from this thread go out on `loop`, without waiting for them.

    For the job worker's database thread: its events must reach the channel layer on the loop
    the consumers run on (the in-memory layer's queues belong to that loop), and the thread
    should not wait on the loop between two transactions.
    """
    _home.loop = loop


def _send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    # A worker's database thread has a home loop; a thread of asgiref's sync_to_async (a view,
    # a job's database call) has the loop that called it. Either way the send is scheduled
    # there, not waited for: a blocking async_to_sync from such a thread would leave its
    # executor in the caller's context when the caller is cancelled meanwhile, and every later
    # sync_to_async of that task fails with "CurrentThreadExecutor already quit or is broken".
    home = getattr(_home, "loop", None) or getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    try:
        if running is not None:  # on an event loop's thread: schedule, never block it
            running.create_task(_group_send(layer, group, message))
        elif home is not None and not home.is_closed():
            asyncio.run_coroutine_threadsafe(_group_send(layer, group, message), home)
        else:
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # a broken layer must not undo or fail the committed work
        log.exception("Could not publish %s to %s", message["event"], group)


async def _group_send(layer, group: str, message: dict) -> None:
    try:
        await layer.group_send(group, message)
    except Exception:
        log.exception("Could not publish %s to %s", message["event"], group)


class Throttle:
    """At most one write per key every `min_interval_s` (progress: a few per second per job)."""

    def __init__(self, *, min_interval_s: float) -> None:
        self.min_interval_s = min_interval_s
        self._last: dict[object, float] = {}

    def wait_s(self, *, key: object, now: float) -> float:
        """Seconds to wait before the next write for `key` is allowed (0: write now)."""
        last = self._last.get(key)
        return 0.0 if last is None else max(0.0, last + self.min_interval_s - now)

    def mark(self, *, key: object, now: float) -> None:
        self._last[key] = now
