"""Health checks behind /healthz: database, channel layer, job worker.

The database and the channel layer must work for the studio to be usable; the worker is
reported as it is. Errors are summarised as "error: <class>: <short message>", never with a
traceback or credentials.

Workers report themselves through `worker_heartbeat(name)` / `worker_gone(name)`. The registry
is per process: it sees workers running inside this process (the embedded worker of
`manage.py studio`). Without one, the workers' heartbeat rows (studio.jobs WorkerBeat) tell:
separate `studio_worker` processes, on this machine or others. With neither, "absent".
"""

import asyncio
import re
import secrets
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

CHANNEL_LAYER_TIMEOUT_S = 2.0
# A worker whose last heartbeat is older than this is reported as stale.
WORKER_STALE_AFTER_S = 30.0

# name -> time.monotonic() of the worker's last heartbeat
_workers: dict[str, float] = {}


def worker_heartbeat(name: str) -> None:
    """Called by an in-process worker when it starts and then periodically."""
    _workers[name] = time.monotonic()


def worker_gone(name: str) -> None:
    """Called by an in-process worker when it stops."""
    _workers.pop(name, None)


def worker_state() -> tuple[str, int | None]:
    """("absent" | "ok" | "stale: ...", workers online in any process, None if unknown).

    A worker in this process answers for itself; without one, the heartbeat rows of workers
    elsewhere do (this reads the database)."""
    from studio.jobs.selectors import workers

    try:
        seen = workers(stale_after_s=WORKER_STALE_AFTER_S)
    except Exception:  # the database check reports the cause
        seen = None
    online = seen.online if seen is not None else None
    if _workers:
        now = time.monotonic()
        late = WORKER_STALE_AFTER_S
        stale = sorted(name for name, beat in _workers.items() if now - beat > late)
        return (f"stale: {', '.join(stale)}" if stale else "ok"), online
    if seen is None or not (seen.online or seen.stale):
        return "absent", online
    if seen.online:
        return "ok", online
    return f"stale: no worker heartbeat for {seen.last_seen_s:.0f} s", online


def describe_error(error: BaseException) -> str:
    """One short line: the error's class and message, with any URL credentials masked."""
    message = " ".join(str(error).split())
    message = re.sub(r"(//[^/\s:@]*:)[^@\s/]*@", r"\1***@", message)
    if len(message) > 160:
        message = message[:157] + "..."
    name = type(error).__name__
    return f"error: {name}: {message}" if message else f"error: {name}"


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:  # any failure is reported, not raised
        return describe_error(error)
    return "ok"


async def check_channel_layer(timeout: float = CHANNEL_LAYER_TIMEOUT_S) -> str:
    """Send a message to a fresh channel and read it back."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return "error: no channel layer is configured"
        token = secrets.token_hex(8)
        async with asyncio.timeout(timeout):
            # The default prefix: with channels_redis, a process-local channel of another prefix
            # is starved while the process's websockets wait on theirs (no answer, a false alarm).
            channel = await layer.new_channel()
            await layer.send(channel, {"type": "healthz.ping", "token": token})
            message = await layer.receive(channel)
    except TimeoutError:
        return f"error: no answer within {timeout:g} s"
    except Exception as error:
        return describe_error(error)
    if message.get("token") != token:
        return "error: the message read back was not the one sent"
    return "ok"


@dataclass(frozen=True)
class HealthReport:
    database: str
    channel_layer: str
    worker: str
    workers: int | None = None  # online in any process (heartbeat rows)

    @property
    def healthy(self) -> bool:
        """The studio can serve: database and channel layer work (a worker is optional)."""
        return self.database == "ok" and self.channel_layer == "ok"

    @property
    def status(self) -> str:
        if not self.healthy:
            return "error"
        return "degraded" if self.worker.startswith("stale") else "ok"

    def as_dict(self) -> dict[str, str]:
        return {
            "status": self.status,
            "database": self.database,
            "worker": self.worker,
            "workers": self.workers,
            "channel_layer": self.channel_layer,
        }


async def health_check() -> HealthReport:
    worker, workers = await sync_to_async(worker_state)()
    return HealthReport(
        database=await sync_to_async(check_database)(),
        channel_layer=await check_channel_layer(),
        worker=worker,
        workers=workers,
    )
