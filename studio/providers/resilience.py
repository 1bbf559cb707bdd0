"""Per-provider resilience: token bucket, concurrency cap, circuit breaker, retries, live stats.

Every provider call runs inside `Guard.attempt()` (one try) or `Guard.call()` (tries with
retries). Each try takes its own bucket token, so retries count against the vendor's limit like
any other request. `health()` lists every guard's live state for the health panel.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from studio.providers.errors import (
    CircuitOpen,
    MalformedResponse,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ServerError,
    StreamError,
)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Failures that say the service is unwell. Rate limits and our own bad requests do not open the
# breaker: the bucket handles the first, and retrying the second never helps anyway.
BREAKER_FAILURES = (ServerError, ProviderTimeout, ProviderConnectionError, MalformedResponse)


class _PerLoop:
    """An asyncio primitive per event loop: providers outlive a test's (or a command's) loop."""

    def __init__(self, factory: Callable[[], object]) -> None:
        self._factory = factory
        self._loop = None
        self._value = None

    def get(self):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._value = loop, self._factory()
        return self._value


class TokenBucket:
    """`rate` tokens per second, at most `burst` banked; waiters are served first come first.

    Each waiter takes exactly one token, so over any interval of length T at most
    `burst + rate * T` calls start (a 1 s window: burst + rate; once the bank is spent: rate).
    """

    def __init__(
        self, *, rate: float, burst: int, clock: Clock = time.monotonic, sleep: Sleep | None = None
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self._tokens = float(burst)
        self._stamp = clock()
        # asyncio.Lock wakes waiters in arrival order and lets no newcomer jump the queue.
        self._lock = _PerLoop(asyncio.Lock)
        self.waiting = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    async def acquire(self) -> float:
        """Wait for and take one token; returns the seconds waited."""
        started = self._clock()
        self.waiting += 1
        try:
            async with self._lock.get():
                self._refill()
                while self._tokens < 1.0:
                    await self._sleep((1.0 - self._tokens) / self.rate)
                    self._refill()
                self._tokens -= 1.0
        finally:
            self.waiting -= 1
        return self._clock() - started


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """closed -> open after `failures` consecutive failures -> half-open after `recovery_s`
    -> closed after `successes` consecutive trial successes (one trial at a time); a failed
    trial opens it again."""

    def __init__(
        self,
        *,
        failures: int = 5,
        recovery_s: float = 30.0,
        successes: int = 2,
        clock: Clock = time.monotonic,
        name: str = "",
    ) -> None:
        self.failure_threshold = failures
        self.recovery_s = recovery_s
        self.success_threshold = successes
        self.name = name
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.recovery_s:
            self._state = BreakerState.HALF_OPEN
            self._successes = 0
            self._trial_running = False
        return self._state

    def before_call(self) -> None:
        state = self.state
        if state is BreakerState.OPEN:
            remaining = self.recovery_s - (self._clock() - self._opened_at)
            raise CircuitOpen(
                "circuit open after repeated failures; calls resume after a pause",
                provider=self.name,
                retry_after_s=max(remaining, 0.0),
            )
        if state is BreakerState.HALF_OPEN:
            if self._trial_running:
                raise CircuitOpen(
                    "circuit half-open: a trial call is running",
                    provider=self.name,
                    retry_after_s=1.0,
                )
            self._trial_running = True

    def on_success(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._trial_running = False
            self._successes += 1
            if self._successes >= self.success_threshold:
                self._state = BreakerState.CLOSED
                self._failures = 0
        else:
            self._failures = 0

    def on_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open()

    def on_neutral(self) -> None:
        """An outcome that says nothing about the service's health (e.g. a 400)."""
        if self._state is BreakerState.HALF_OPEN:
            self._trial_running = False

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._trial_running = False
        self._successes = 0


@dataclass
class RetryPolicy:
    """Capped exponential backoff with full jitter; a server's Retry-After wins, capped."""

    max_attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 20.0
    retry_after_cap_s: float = 60.0
    rng: random.Random | None = None

    def delay(self, failures: int, error: ProviderError | None = None) -> float:
        if error is not None and error.retry_after_s is not None:
            return min(max(error.retry_after_s, 0.0), self.retry_after_cap_s)
        ceiling = min(self.cap_s, self.base_s * 2 ** max(failures - 1, 0))
        return (self.rng or random).uniform(0.0, ceiling)


class ProviderStats:
    """Outcomes of the last `window` calls, for success rate and latency percentiles."""

    def __init__(self, window: int = 200) -> None:
        self._recent: deque[tuple[bool, float]] = deque(maxlen=window)
        self.calls = 0
        self.failures = 0
        self.last_error = ""
        self.last_error_at: float | None = None

    def record(self, *, ok: bool, latency_s: float, error: BaseException | None = None) -> None:
        self._recent.append((ok, latency_s))
        self.calls += 1
        if not ok:
            self.failures += 1
            self.last_error = str(error)[:300] if error is not None else "failed"
            self.last_error_at = time.time()

    def snapshot(self) -> dict:
        latencies = sorted(latency for _, latency in self._recent)
        successes = sum(1 for ok, _ in self._recent if ok)
        return {
            "calls": self.calls,
            "failures": self.failures,
            "success_rate": round(successes / len(self._recent), 4) if self._recent else None,
            "p50_ms": _percentile_ms(latencies, 0.50),
            "p95_ms": _percentile_ms(latencies, 0.95),
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


def _percentile_ms(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return round(sorted_values[index] * 1000.0, 1)


class Lease(Protocol):
    """A call admitted by shared limits: its slot is held until `release()`."""

    async def report(self, outcome: str) -> None: ...

    async def release(self) -> None: ...


class SharedLimits(Protocol):
    """Limits every worker shares (studio/providers/shared_limits.py implements them)."""

    async def enter(self) -> Lease | None:
        """Slot, token and breaker consent (raises CircuitOpen); None when unreachable."""

    async def refresh(self) -> None: ...

    def snapshot(self) -> dict: ...


_guards: dict[str, Guard] = {}


class Guard:
    """Bucket, concurrency cap, breaker, retry policy and stats of one provider."""

    def __init__(
        self,
        name: str,
        *,
        bucket: TokenBucket | None = None,
        concurrency: int | None = None,
        breaker: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep | None = None,
        register: bool = True,
    ) -> None:
        self.name = name
        self.bucket = bucket
        self.concurrency = concurrency
        self.breaker = breaker or CircuitBreaker(name=name, clock=clock)
        self.retry = retry or RetryPolicy()
        self.stats = ProviderStats()
        self.in_flight = 0
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self._cap = _PerLoop(lambda: asyncio.Semaphore(concurrency)) if concurrency else None
        # Set by `shared_limits.share()` when REDIS_URL is set: limits every worker shares.
        self.shared: SharedLimits | None = None
        if register:
            _guards[name] = self

    @asynccontextmanager
    async def attempt(self):
        """One try: a concurrency slot, a token, the breaker's consent; the outcome recorded.

        The slot comes first so the token is taken just before the call goes out: the vendor
        then sees the bucket's pattern, not a burst that queued for slots and arrives late,
        on top of the next second's tokens.

        With shared limits (`self.shared`, studio/providers/shared_limits.py) the slot, the
        token and the breaker are every worker's, in Redis. When Redis fails, `enter()` gives
        None and this call uses the in-process ones below instead: a Redis outage must never
        stop renders (the shared side logs the outage once, and retries Redis a little later).
        """
        lease = await self.shared.enter() if self.shared is not None else None
        if lease is not None:
            try:
                async with self._measured(lease.report):
                    yield
            finally:
                await lease.release()
            return
        cap = self._cap.get() if self._cap else None
        if cap is not None:
            await cap.acquire()
        try:
            if self.bucket is not None:
                await self.bucket.acquire()
            self.breaker.before_call()
            async with self._measured(self._report_local):
                yield
        finally:
            if cap is not None:
                cap.release()

    async def _report_local(self, outcome: str) -> None:
        {"success": self.breaker.on_success, "failure": self.breaker.on_failure}.get(
            outcome, self.breaker.on_neutral
        )()

    @asynccontextmanager
    async def _measured(self, report: Callable[[str], Awaitable[None]]):
        """Count the call in flight, record its outcome in the stats and tell the breaker
        (`report("success" | "failure" | "neutral")`)."""
        self.in_flight += 1
        started = self._clock()
        try:
            yield
        except ProviderError as error:
            self.stats.record(ok=False, latency_s=self._clock() - started, error=error)
            if isinstance(error, BREAKER_FAILURES) or (
                isinstance(error, StreamError) and error.retryable
            ):
                await report("failure")
            else:
                await report("neutral")
            raise
        except BaseException as error:
            # Cancellation or a bug on our side: says nothing about the vendor.
            if not isinstance(error, asyncio.CancelledError):
                self.stats.record(ok=False, latency_s=self._clock() - started, error=error)
            await report("neutral")
            raise
        else:
            self.stats.record(ok=True, latency_s=self._clock() - started)
            await report("success")
        finally:
            self.in_flight -= 1

    async def call(self, function: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """`await function()` inside attempts, retrying retryable errors per the policy.

        An open breaker fails at once (its error says when to come back) instead of waiting.
        """
        failures = 0
        while True:
            try:
                async with self.attempt():
                    return await function()
            except CircuitOpen:
                raise
            except ProviderError as error:
                failures += 1
                if not retry or not error.retryable or failures >= self.retry.max_attempts:
                    raise
                await self._sleep(self.retry.delay(failures, error))

    def snapshot(self) -> dict:
        bucket = self.bucket
        snapshot = {
            "name": self.name,
            "breaker": self.breaker.state.value,
            "tokens": round(bucket.tokens, 2) if bucket else None,
            "rate_per_s": bucket.rate if bucket else None,
            "burst": bucket.burst if bucket else None,
            "waiting": bucket.waiting if bucket else 0,
            "in_flight": self.in_flight,
            "concurrency": self.concurrency,
            **self.stats.snapshot(),
        }
        if self.shared is not None:
            # Every worker's breaker, tokens and calls in flight, as last read from Redis.
            snapshot.update(self.shared.snapshot())
        return snapshot


def health() -> list[dict]:
    """Live state of every provider guard in this process, by name."""
    return [guard.snapshot() for _, guard in sorted(_guards.items())]


async def refresh_shared() -> None:
    """Read the shared state (Redis) of every guard that has one, for `health()`."""
    for _, guard in sorted(_guards.items()):
        if guard.shared is not None:
            await guard.shared.refresh()


def forget_guard(name: str) -> None:
    _guards.pop(name, None)
