"""The job worker: one asyncio coroutine, hosted by Daphne (`manage.py studio`) or on its own
(`manage.py studio_worker`).

- One loop claims and settles in batches (store.cycle), up to `concurrency` jobs at once, each
  job an asyncio task running its handler.
- A watch loop renews leases (heartbeat) and polls for cancel requests every `watch_s`, so a
  cancelled job's task is cancelled within a second; a job whose lease was taken back is
  cancelled too, so it never runs twice at once.
- A reap loop requeues jobs whose lease expired (their worker died) and, a batch at a time,
  deletes jobs that finished more than STUDIO_JOB_RETENTION_DAYS ago.
- Companions registered by other parts of the studio (registry.register_companion) run beside
  the jobs for as long as the worker does.
- Times that outlive this process (leases, retry times) are counted on the database's clock
  (studio.jobs.store), never this machine's; its own timers use time.monotonic.
- Errors retry with capped exponential backoff and full jitter, honouring `retry_after_s`;
  errors with `retryable = False` fail at once; exhausted attempts fail with the last error.
- `stop()` (SIGTERM) stops claiming, lets running jobs finish or checkpoint for `grace_s`
  (`ctx.stopping` is true), then cancels them and releases them to the queue.

Database calls run on one thread of the worker's own, so the event loop never blocks on them.
"""

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import socket
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import partial

from django.conf import settings
from django.db import connection

from studio import events, health
from studio.jobs import registry, store
from studio.jobs.registry import JobContext, LeaseLost, Release
from studio.jobs.store import Claimed, Outcome

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 3600.0
# How often a worker records that it is alive (WorkerBeat); health calls it stale after
# studio.health.WORKER_STALE_AFTER_S.
BEAT_S = 5.0
_live: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 8
    lease_s: float = 30.0
    poll_s: float = 0.5  # how often an idle worker looks for new or due jobs
    watch_s: float = 0.25  # cancel requests are seen within this
    reap_s: float = 5.0  # at most this often; never less often than once per lease
    grace_s: float = 8.0  # on stop: time for running jobs to finish or checkpoint
    cancel_timeout_s: float = 5.0  # time a cancelled handler gets to clean up
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0
    progress_interval_s: float = 0.4
    # Finished jobs past their retention: looked for this often, deleted `prune_batch` rows
    # per reap pass while more are left (so pruning never holds the database for long).
    prune_every_s: float = 3600.0
    prune_batch: int = 500

    @property
    def heartbeat_s(self) -> float:
        return self.lease_s / 3


def config_from_settings(**overrides) -> WorkerConfig:
    """WorkerConfig from settings.STUDIO_WORKER (keys as the fields), then `overrides`."""
    values = dict(getattr(settings, "STUDIO_WORKER", {}))
    values.update({key: value for key, value in overrides.items() if value is not None})
    known = {f.name for f in fields(WorkerConfig)}
    return WorkerConfig(**{key: value for key, value in values.items() if key in known})


def retry_delay(
    *, attempt: int, base_s: float, cap_s: float, rng: random.Random, error: BaseException
) -> float:
    """Full jitter over a capped exponential ceiling; never sooner than the error's Retry-After."""
    delay = rng.uniform(0, min(cap_s, base_s * 2 ** min(max(0, attempt - 1), 60)))
    retry_after = getattr(error, "retry_after_s", None)
    if isinstance(retry_after, int | float) and retry_after > 0:
        delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S))
    return delay


def error_text(error: BaseException) -> str:
    return health.describe_error(error).removeprefix("error: ")


def notify() -> None:
    """Wake this process's workers: new jobs were committed (called from job_enqueue)."""
    for worker in list(_live):
        worker.poke_threadsafe()


class Worker:
    def __init__(
        self, *, name: str = "worker", config: WorkerConfig | None = None, rng=None
    ) -> None:
        self.name = name
        self.config = config or config_from_settings()
        self.owner = f"{name}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.rng = rng or random.Random()
        self.settled_count = 0
        self._running: dict[int, tuple[Claimed, asyncio.Task]] = {}
        self._settled: list[tuple[Claimed, Outcome]] = []
        self._reasons: dict[int, str] = {}  # why the worker cancelled a job's task
        self._wake = asyncio.Event()
        # Set once the first heartbeat row is written: other processes see this worker.
        self.visible = asyncio.Event()
        self._done = asyncio.Event()
        self._claim_now = True
        self._stopping = False
        self._stop_at = 0.0
        self._cancelled_all = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        registry.load()
        self._loop = asyncio.get_running_loop()
        # One database thread of its own; its events go out on this loop (studio.events).
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"jobs-db-{self.name}",
            initializer=events.bind_thread_to_loop,
            initargs=(self._loop,),
        )
        _live.add(self)
        health.worker_heartbeat(self.name)
        helpers = [
            asyncio.create_task(self._beat_loop()),
            asyncio.create_task(self._watch_loop()),
            asyncio.create_task(self._reap_loop()),
            # What other parts of the studio run beside the jobs (registry.register_companion).
            *(
                asyncio.create_task(companion(process=self.owner, db=self._db), name=name)
                for name, companion in registry.companions().items()
            ),
        ]
        log.info("Job worker %s started (concurrency %d)", self.owner, self.config.concurrency)
        try:
            await self._main_loop()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            _live.discard(self)
            health.worker_gone(self.name)
            try:
                with contextlib.suppress(Exception):  # a dead database: the row goes stale
                    await self._db(store.forget_beat, owner=self.owner)
                await self._loop.run_in_executor(self._executor, _close_connection)
            finally:
                self._executor.shutdown(wait=False)
                self._done.set()
            log.info("Job worker %s stopped", self.owner)

    def request_stop(self, *, grace_s: float | None = None) -> None:
        """Stop claiming; running jobs get `grace_s`. Asking again can only shorten the grace."""
        deadline = time.monotonic() + (self.config.grace_s if grace_s is None else grace_s)
        self._stop_at = min(self._stop_at, deadline) if self._stopping else deadline
        self._stopping = True
        self._wake.set()

    async def stop(self, *, grace_s: float | None = None) -> None:
        """Stop claiming, give running jobs the grace period, release the rest; then return."""
        self.request_stop(grace_s=grace_s)
        if self._loop is not None:
            await self._done.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running_ids(self) -> list[int]:
        return list(self._running)

    def poke_threadsafe(self) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._poke)

    def _poke(self) -> None:
        self._claim_now = True
        self._wake.set()

    # --- loops -------------------------------------------------------------------------------
    async def _main_loop(self) -> None:
        next_claim = 0.0
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._stopping:
                if not self._running and not self._settled:
                    return
                if now >= self._stop_at and not self._cancelled_all:
                    self._cancelled_all = True
                    for job_id in list(self._running):
                        self._cancel(job_id, "shutdown")
                if now >= self._stop_at + self.config.cancel_timeout_s:
                    log.error("Abandoning jobs that ignored cancellation: %s", self.running_ids)
                    return
            if self._claim_now:
                self._claim_now, next_claim = False, 0.0
            free = 0 if self._stopping else self.config.concurrency - len(self._running)
            claim = free if free > 0 and now >= next_claim else 0
            if self._settled or claim:
                settled, self._settled = self._settled, []
                try:
                    claimed = await self._db(
                        store.cycle,
                        owner=self.owner,
                        settled=settled,
                        claim_limit=claim,
                        lease_s=self.config.lease_s,
                    )
                except Exception:
                    log.exception("Job worker %s: database cycle failed; retrying", self.owner)
                    self._settled[:0] = settled
                    await self._sleep(1.0)
                    continue
                self.settled_count += len(settled)
                for job in claimed:
                    self._start(job)
                if claim:
                    # A short batch means the queue is drained: look again at the next poll.
                    next_claim = now if len(claimed) == claim else now + self.config.poll_s
                continue
            timeout = self.config.poll_s
            if free > 0:
                timeout = min(timeout, max(0.0, next_claim - now))
            if self._stopping:
                timeout = min(timeout, max(0.01, self._stop_at - now))
            await self._sleep(timeout)

    async def _sleep(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _beat_loop(self) -> None:
        """Tell other processes this worker is alive (web processes show it, /healthz too)."""
        while True:
            try:
                await self._db(
                    store.beat,
                    owner=self.owner,
                    name=self.name,
                    concurrency=self.config.concurrency,
                    running=len(self._running),
                )
            except Exception:
                log.exception("Job worker %s: heartbeat failed", self.owner)
            else:
                self.visible.set()
            await asyncio.sleep(BEAT_S)

    async def _watch_loop(self) -> None:
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(self.config.watch_s)
            health.worker_heartbeat(self.name)
            ids = [job_id for job_id in self._running if job_id not in self._reasons]
            if not ids:
                continue
            now = time.monotonic()
            renew = now - last_renewal >= self.config.heartbeat_s
            try:
                lost, cancel = await self._db(
                    store.watch,
                    owner=self.owner,
                    job_ids=ids,
                    lease_s=self.config.lease_s if renew else None,
                )
            except Exception:
                log.exception("Job worker %s: lease renewal failed", self.owner)
                continue
            if renew:
                last_renewal = now
            for job_id in lost:
                log.warning("Job %s was taken back from %s (lease expired)", job_id, self.owner)
                self._cancel(job_id, "lost")
            for job_id in cancel:
                self._cancel(job_id, "cancel")

    async def _reap_loop(self) -> None:
        next_prune = time.monotonic()  # once soon after start: workers may restart often
        while True:
            try:
                if count := await self._db(store.reap):
                    log.warning("Requeued %d job(s) whose worker stopped responding", count)
                    self._poke()
            except Exception:
                log.exception("Job worker %s: reaping failed", self.owner)
            if time.monotonic() >= next_prune:
                more = await self._prune()
                next_prune = time.monotonic() + (0 if more else self.config.prune_every_s)
            await asyncio.sleep(min(self.config.reap_s, self.config.lease_s))

    async def _prune(self) -> bool:
        """Delete one batch of jobs past STUDIO_JOB_RETENTION_DAYS; True when more are left."""
        days = settings.STUDIO_JOB_RETENTION_DAYS
        if days <= 0:  # kept forever
            return False
        try:
            deleted = await self._db(
                store.prune_finished, retention_days=days, limit=self.config.prune_batch
            )
        except Exception:
            log.exception("Job worker %s: pruning finished jobs failed", self.owner)
            return False
        if deleted:
            log.info("Deleted %d job(s) finished more than %g days ago", deleted, days)
        return deleted >= self.config.prune_batch

    # --- one job -----------------------------------------------------------------------------
    def _start(self, job: Claimed) -> None:
        task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        self._running[job.id] = (job, task)

    def _cancel(self, job_id: int, reason: str) -> None:
        entry = self._running.get(job_id)
        if entry is not None and job_id not in self._reasons:
            self._reasons[job_id] = reason
            entry[1].cancel()

    async def _run_job(self, job: Claimed) -> None:
        handler = registry.get(job.kind)
        context = JobContext(
            job_id=job.id,
            kind=job.kind,
            payload=job.payload,
            drama_id=job.drama_id,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            checkpoint=job.checkpoint,
            store=_ContextStore(self),
            progress_interval_s=self.config.progress_interval_s,
            stopping=lambda: self._stopping,
        )
        try:
            if handler is None:
                outcome = Outcome(
                    "failed",
                    error=f"No handler is registered for job kind {job.kind!r} in this worker. "
                    "Check that the worker runs the same code version as the web server.",
                )
            else:
                async with asyncio.timeout(handler.timeout_s):
                    result = await handler.fn(context)
                outcome = Outcome("succeeded", result=_json_or_repr(result))
        except asyncio.CancelledError:
            reason = self._reasons.get(job.id)
            if reason is None:  # the worker itself is being torn down
                self._running.pop(job.id, None)
                raise
            asyncio.current_task().uncancel()
            outcome = {
                "cancel": Outcome("cancelled", error="Cancelled by a user."),
                "shutdown": Outcome("released"),
                "lost": Outcome("lost"),
            }[reason]
        except Release as release:
            outcome = Outcome("released", error=release.note, retry_after_s=release.after_s)
        except LeaseLost:
            outcome = Outcome("lost")
        except Exception as error:
            outcome = self._after_error(job, error)
        finally:
            await context.close()
        self._running.pop(job.id, None)
        self._reasons.pop(job.id, None)
        self._settled.append((job, outcome))
        self._wake.set()

    def _after_error(self, job: Claimed, error: Exception) -> Outcome:
        text = error_text(error)
        log.warning("Job %s (%s) attempt %d failed: %s", job.id, job.kind, job.attempts, text)
        if not getattr(error, "retryable", True):
            return Outcome("failed", error=f"Failed and not worth retrying: {text}")
        if job.attempts >= job.max_attempts:
            return Outcome("failed", error=f"Gave up after {job.attempts} attempts. Last: {text}")
        delay = retry_delay(
            attempt=job.attempts,
            base_s=self.config.backoff_base_s,
            cap_s=self.config.backoff_cap_s,
            rng=self.rng,
            error=error,
        )
        return Outcome(
            "retry",
            error=f"Attempt {job.attempts} of {job.max_attempts} failed: {text}. "
            f"Retrying in {delay:.0f} s.",
            retry_after_s=delay,
        )

    # --- database ----------------------------------------------------------------------------
    async def _db(self, function, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, partial(_call_db, function, kwargs)
        )


def _json_or_repr(value):
    """A handler's result as stored: JSON as is, anything else as a short repr (never an error)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        log.warning("A job handler returned a value that is not JSON: %r", value)
        return {"repr": repr(value)[:500]}
    return value


def _close_connection() -> None:
    connection.close()  # looked up here: each thread has its own connection


def _call_db(function, kwargs: dict):
    try:
        return function(**kwargs)
    except Exception:
        # A broken connection (server restart, network) is reopened on the next call.
        connection.close()
        raise


class _ContextStore:
    """The job context's view of the store: async, bound to this worker's lease."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self.owner = worker.owner

    async def save_checkpoint(self, *, job_id: int, data) -> bool:
        return await self._worker._db(
            store.save_checkpoint, owner=self._worker.owner, job_id=job_id, data=data
        )

    async def save_progress(self, **values) -> None:
        try:
            await self._worker._db(store.save_progress, owner=self._worker.owner, **values)
        except Exception:  # progress is cosmetic: never fail a job over it
            log.exception("Could not save progress of job %s", values.get("job_id"))
