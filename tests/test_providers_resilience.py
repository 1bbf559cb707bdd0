import asyncio
import datetime
import random
import time
from email.utils import format_datetime

import pytest

from studio.providers import resilience
from studio.providers.errors import (
    BadRequest,
    CircuitOpen,
    ProviderTimeout,
    RateLimited,
    ServerError,
    error_for_status,
    parse_retry_after,
)
from studio.providers.resilience import (
    BreakerState,
    CircuitBreaker,
    Guard,
    RetryPolicy,
    TokenBucket,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_it_serves_500_concurrent_waiters_in_order_within_the_bound():
    rate, burst = 2000.0, 50
    bucket = TokenBucket(rate=rate, burst=burst)
    grants: list[tuple[int, float]] = []

    async def waiter(index: int) -> None:
        await bucket.acquire()
        grants.append((index, time.monotonic()))

    tasks = [asyncio.create_task(waiter(i)) for i in range(500)]
    await asyncio.gather(*tasks)
    assert [index for index, _ in grants] == list(range(500))  # first come, first served
    times = [moment for _, moment in grants]
    # Token-bucket rule: any k consecutive grants span at least (k - burst) / rate seconds.
    for first in range(0, 500, 7):
        for last in range(first + burst, 500, 11):
            assert times[last] - times[first] >= (last - first + 1 - burst) / rate - 1e-3
    assert times[-1] - times[0] >= (500 - burst) / rate - 1e-3


async def test_it_refills_at_the_rate_after_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock, sleep=clock.sleep)
    moments = []
    for _ in range(7):
        await bucket.acquire()
        moments.append(clock.now)
    assert moments == pytest.approx([0, 0, 0, 0.5, 1.0, 1.5, 2.0])
    clock.now += 100
    assert bucket.tokens == 3  # never banks more than the burst


async def test_it_lets_a_cancelled_waiter_go_without_a_token():
    bucket = TokenBucket(rate=20, burst=1)
    await bucket.acquire()
    stuck = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.01)
    stuck.cancel()
    started = time.monotonic()
    await bucket.acquire()
    assert time.monotonic() - started < 0.06
    assert bucket.waiting == 0


async def test_it_caps_concurrency():
    guard = Guard("cap", concurrency=3, register=False)
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.gather(*(guard.call(work) for _ in range(12)))
    assert peak == 3


def test_it_walks_the_breaker_through_its_states():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, recovery_s=10, successes=2, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.on_failure()
    breaker.before_call()
    breaker.on_success()  # a success resets the count of consecutive failures
    for _ in range(3):
        breaker.before_call()
        breaker.on_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 4
    with pytest.raises(CircuitOpen) as raised:
        breaker.before_call()
    assert raised.value.retry_after_s == pytest.approx(6)
    clock.now += 6
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the trial call
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # one trial at a time
    breaker.on_success()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()
    breaker.on_success()
    assert breaker.state is BreakerState.CLOSED


def test_it_reopens_the_breaker_when_a_trial_fails():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, recovery_s=5, successes=1, clock=clock)
    breaker.before_call()
    breaker.on_failure()
    clock.now += 5
    breaker.before_call()
    breaker.on_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.9
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN


async def test_it_opens_the_breaker_only_on_service_failures():
    guard = Guard(
        "breaker",
        breaker=CircuitBreaker(failures=2, recovery_s=60),
        retry=RetryPolicy(max_attempts=1),
        register=False,
    )

    async def fails(error):
        raise error

    for error in (BadRequest("bad"), RateLimited("slow down"), BadRequest("bad")):
        with pytest.raises(type(error)):
            await guard.call(lambda error=error: fails(error))
    assert guard.breaker.state is BreakerState.CLOSED
    for error in (ServerError("down"), ProviderTimeout("slow")):
        with pytest.raises(type(error)):
            await guard.call(lambda error=error: fails(error))
    assert guard.breaker.state is BreakerState.OPEN
    called = False

    async def never():
        nonlocal called
        called = True

    with pytest.raises(CircuitOpen):
        await guard.call(never)
    assert not called


def test_it_backs_off_exponentially_with_full_jitter_up_to_the_cap():
    policy = RetryPolicy(base_s=0.5, cap_s=4, rng=random.Random(1))
    for failures, ceiling in [(1, 0.5), (2, 1), (3, 2), (4, 4), (5, 4), (9, 4)]:
        delays = [policy.delay(failures) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.9 and min(delays) < ceiling * 0.1  # the full range


def test_it_prefers_retry_after_but_caps_it():
    policy = RetryPolicy(retry_after_cap_s=30)
    assert policy.delay(1, RateLimited("x", retry_after_s=7)) == 7
    assert policy.delay(1, RateLimited("x", retry_after_s=600)) == 30


async def test_it_retries_retryable_errors_only():
    delays = []

    async def sleep(seconds):
        delays.append(seconds)

    guard = Guard("retry", retry=RetryPolicy(max_attempts=3), sleep=sleep, register=False)
    attempts = 0

    async def flaky():
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ServerError("hiccup", retry_after_s=0.25)
        return "done"

    assert await guard.call(flaky) == "done"
    assert attempts == 3 and delays == [0.25, 0.25]

    async def wrong():
        nonlocal attempts
        attempts += 1
        raise BadRequest("never")

    attempts = 0
    with pytest.raises(BadRequest):
        await guard.call(wrong)
    assert attempts == 1


def test_it_parses_retry_after_headers():
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}, cap_s=60) == 1.5
    assert parse_retry_after({"retry-after": "12"}, cap_s=60) == 12
    assert parse_retry_after({"retry-after": "120"}, cap_s=60) == 60
    now = 1_700_000_000.0
    date = format_datetime(datetime.datetime.fromtimestamp(now + 30, tz=datetime.UTC), usegmt=True)
    assert parse_retry_after({"retry-after": date}, cap_s=60, now=now) == pytest.approx(30)
    assert parse_retry_after({"retry-after": "soon"}, cap_s=60) is None
    assert parse_retry_after({}, cap_s=60) is None


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, "", False),
        (401, "", False),
        (403, "", False),
        (404, "", False),
        (422, "", False),
        (408, "", True),
        (409, "", True),
        (429, "rate_limit_exceeded", True),
        (429, "insufficient_quota", False),
        (500, "", True),
        (503, "", True),
    ],
)
def test_it_maps_statuses_to_retryable_or_not(status, kind, retryable):
    error = error_for_status(status, provider="p", message="m", error_type=kind)
    assert error.retryable is retryable
    assert ("not retryable" in str(error)) is not retryable


async def test_it_reports_live_health_per_provider():
    guard = Guard(
        "health-test",
        bucket=TokenBucket(rate=10, burst=5),
        concurrency=2,
        retry=RetryPolicy(max_attempts=1),
    )
    try:

        async def ok():
            await asyncio.sleep(0.001)

        async def down():
            raise ServerError("the vendor is down")

        for _ in range(3):
            await guard.call(ok)
        with pytest.raises(ServerError):
            await guard.call(down)
        [snapshot] = [s for s in resilience.health() if s["name"] == "health-test"]
        assert snapshot["success_rate"] == 0.75 and snapshot["calls"] == 4
        assert snapshot["p50_ms"] >= 1 and snapshot["p95_ms"] >= snapshot["p50_ms"]
        assert snapshot["breaker"] == "closed" and snapshot["tokens"] <= 5
        assert "the vendor is down" in snapshot["last_error"]
        assert snapshot["in_flight"] == 0 and snapshot["concurrency"] == 2
    finally:
        resilience.forget_guard("health-test")
