"""Job handlers, registered by name, and the context each one runs with.

A handler is `async def handler(ctx: JobContext) -> result` (a JSON value or None):

    @register("chapter.check", max_attempts=3)
    async def chapter_check(ctx):
        for step in range(ctx.checkpoint or 0, 10):
            ...                                   # one unit of work
            await ctx.save_checkpoint(step + 1)   # durable: a restart resumes here
            await ctx.progress((step + 1) / 10, note=f"step {step + 1} of 10")

Exceptions decide what happens next: an error with `retryable = False` (or `PermanentError`)
fails the job at once; any other error retries with backoff (honouring `retry_after_s`) until
the attempts run out. `asyncio.CancelledError` arrives when a user cancels the job or the worker
shuts down: cancel remote work there if the provider allows, then re-raise.

The domain learns that a job ended through its settle hook, `on_settled(job, settled)`: a
synchronous function the engine calls inside the transaction that marks the job succeeded,
failed or cancelled, whoever settles it (the worker after an attempt, the reaper for a job
whose worker died, a user cancelling a queued job, the retry limit), so what the job worked on
is never left behind. It must not raise; if it does, the job settles anyway and the error is
logged and added to the job's last error.

Companions are coroutines every worker runs beside its jobs while it lives (for example the
providers' health publisher): `async def companion(*, process: str, db)`, where `db(fn, **kw)`
runs a synchronous database function on the worker's database thread.
"""

import asyncio
import importlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import autodiscover_modules

from studio.events import Throttle

if TYPE_CHECKING:
    from studio.jobs.models import Job

log = logging.getLogger(__name__)

HandlerFn = Callable[["JobContext"], Awaitable[Any]]
SettleHook = Callable[["Job", "Settled"], None]
Companion = Callable[..., Awaitable[None]]


class PermanentError(Exception):
    """Raise from a handler to fail the job without retrying (bad input, refused request)."""

    retryable = False


class Release(Exception):
    """Raise from a handler that noticed `ctx.stopping`: requeue without spending an attempt.

    `after_s` > 0 defers the job instead: it waits for something outside it (a provider whose
    circuit breaker is open), which is not a failure of its own, so no attempt is spent. The
    handler bounds how long it lets itself be deferred; `note` says what it waits for."""

    def __init__(self, note: str = "", *, after_s: float = 0.0) -> None:
        super().__init__(note)
        self.note = note
        self.after_s = after_s


class LeaseLost(Exception):
    """The job is no longer this worker's (its lease expired and it was requeued)."""


@dataclass(frozen=True)
class Settled:
    """How a job ended, as its settle hook hears it."""

    status: str  # succeeded, failed or cancelled (JobStatus values)
    by: str  # worker, reaper or user
    error: str = ""  # why it failed or was cancelled, as the queue page shows it
    result: Any = None


@dataclass(frozen=True)
class Handler:
    name: str
    fn: HandlerFn
    max_attempts: int | None = None
    timeout_s: float | None = None
    on_settled: SettleHook | None = None


_handlers: dict[str, Handler] = {}
_companions: dict[str, Companion] = {}
_loaded = False


def register(
    name: str,
    *,
    max_attempts: int | None = None,
    timeout_s: float | None = None,
    on_settled: SettleHook | None = None,
) -> Callable[[HandlerFn], HandlerFn]:
    def decorate(fn: HandlerFn) -> HandlerFn:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"Job handler {name!r} must be an async function.")
        known = _handlers.get(name)
        # A module imported twice re-registers the same function; two functions is a mistake.
        if known and (known.fn.__module__, known.fn.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise ValueError(f"Job kind {name!r} is already registered by {known.fn.__module__}.")
        _handlers[name] = Handler(name, fn, max_attempts, timeout_s, on_settled)
        return fn

    return decorate


def get(name: str) -> Handler | None:
    return _handlers.get(name)


def has_settle_hook(kind: str) -> bool:
    handler = _handlers.get(kind)
    return handler is not None and handler.on_settled is not None


def settle_hook(job: "Job", settled: Settled) -> str:
    """Run the job kind's settle hook, if it has one, in a savepoint of the caller's
    transaction. Returns "" or what went wrong (the hook's writes are then rolled back)."""
    if not has_settle_hook(job.kind):
        return ""
    try:
        with transaction.atomic():
            _handlers[job.kind].on_settled(job, settled)
    except Exception as error:
        log.exception("The settle hook of %s #%s failed", job.kind, job.id)
        return f"Settling what it worked on failed: {type(error).__name__}: {error}"[:500]
    return ""


def register_companion(name: str, companion: Companion) -> None:
    """Run `companion(process=..., db=...)` beside the jobs of every worker of this process
    (registering the same name again replaces it)."""
    if not inspect.iscoroutinefunction(companion):
        raise TypeError(f"Worker companion {name!r} must be an async function.")
    _companions[name] = companion


def companions() -> dict[str, Companion]:
    return dict(_companions)


def kinds() -> list[str]:
    return sorted(_handlers)


def load() -> None:
    """Import every app's `jobs` module and the modules in settings.STUDIO_JOB_MODULES."""
    global _loaded
    if _loaded:
        return
    autodiscover_modules("jobs")
    for module in getattr(settings, "STUDIO_JOB_MODULES", []):
        importlib.import_module(module)
    _loaded = True


class JobContext:
    """What a running handler may see and do. Created by the worker, one per attempt."""

    def __init__(
        self,
        *,
        job_id: int,
        kind: str,
        payload: dict,
        drama_id: int | None,
        attempt: int,
        max_attempts: int,
        checkpoint: Any,
        store,
        progress_interval_s: float,
        stopping: Callable[[], bool],
    ) -> None:
        self.job_id = job_id
        self.worker = store.owner
        self.kind = kind
        self.payload = payload
        self.drama_id = drama_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.checkpoint = checkpoint
        self._store = store
        self._stopping = stopping
        self._throttle = Throttle(min_interval_s=progress_interval_s)
        self._pending: tuple[float, str] | None = None
        self._flush: asyncio.Task | None = None

    @property
    def stopping(self) -> bool:
        """The worker is shutting down: reach a checkpoint, then `raise Release`."""
        return self._stopping()

    async def save_checkpoint(self, data: Any) -> None:
        """Store `data` durably now; the next attempt starts with `ctx.checkpoint == data`."""
        if not await self._store.save_checkpoint(job_id=self.job_id, data=data):
            raise LeaseLost(f"job {self.job_id} was taken back from this worker")
        self.checkpoint = data

    async def progress(self, fraction: float, *, note: str = "") -> None:
        """Report progress (0 to 1). Writes and events are throttled; the last value is kept."""
        self._pending = (max(0.0, min(1.0, float(fraction))), note[:200])
        wait = self._throttle.wait_s(key=self.job_id, now=time.monotonic())
        if wait <= 0:
            await self._write_progress()
        elif self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._write_later(wait))

    async def run_cpu(self, function, *args):
        """Run a CPU-heavy, picklable top-level function in the shared process pool."""
        from studio.cpu import run_cpu

        return await run_cpu(function, *args)

    async def close(self) -> None:
        if self._flush is not None and not self._flush.done():
            self._flush.cancel()

    async def _write_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        await self._write_progress()

    async def _write_progress(self) -> None:
        if self._pending is None:
            return
        fraction, note = self._pending
        self._pending = None
        self._throttle.mark(key=self.job_id, now=time.monotonic())
        await self._store.save_progress(
            job_id=self.job_id, drama_id=self.drama_id, progress=fraction, note=note
        )
