"""Provider limits shared by every worker through Redis (studio/providers/shared_limits.py):
two independent limiters on one Redis (which is what two worker processes are) hold one
combined rate, one concurrency cap and one breaker; a dead holder's slot expires; a Redis
that does not answer leaves each process its own limits."""

import asyncio
import bisect
import logging
import subprocess
import sys
import time
import uuid

import pytest
from django.urls import reverse

from dramas.models import Role
from studio import provider_health
from studio.providers import resilience, shared_limits
from studio.providers.errors import CircuitOpen, ServerError
from studio.providers.resilience import CircuitBreaker, Guard, RetryPolicy, TokenBucket
from tests.conftest import login
from tests.factories import add_member, create_drama
from tests.services import redis_server
from tests.studio_process import REPO, free_port


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture
async def close_clients():
    yield
    await shared_limits.close()


def shared_guard(
    url: str,
    name: str,
    who: str,
    *,
    rate: float = 1000.0,
    burst: int = 1000,
    concurrency: int | None = None,
    failures: int = 3,
    recovery_s: float = 30.0,
    **options,
) -> Guard:
    guard = Guard(
        name,
        bucket=TokenBucket(rate=rate, burst=burst),
        concurrency=concurrency,
        breaker=CircuitBreaker(failures=failures, recovery_s=recovery_s, successes=2, name=name),
        retry=RetryPolicy(max_attempts=1),
        register=False,
    )
    return shared_limits.share(guard, url, who=who, **options)


def fresh(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex[:8]}"  # keys of their own on the module's Redis


def most_in_a_window(times: list[float], width: float) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + width) - i for i, t in enumerate(ordered))


@pytest.mark.scaleout
async def test_two_limiters_on_one_redis_hold_the_combined_rate(redis_url, close_clients):
    name, rate, burst, each = fresh("video:shared"), 50.0, 5, 40
    first, second = (shared_guard(redis_url, name, who, rate=rate, burst=burst) for who in "ab")
    grants: list[float] = []

    async def one(guard: Guard) -> None:
        async with guard.attempt():
            grants.append(time.monotonic())

    await asyncio.gather(*(one(g) for g in (first, second) for _ in range(each)))

    assert len(grants) == 2 * each
    # At most burst + rate x 0.5 s in any half second (one more for the few milliseconds a
    # reply may take to reach its caller); each on its own bucket would send twice that.
    assert most_in_a_window(grants, 0.5) <= burst + rate * 0.5 + 1
    span = max(grants) - min(grants)
    # Alone, each would have sent its 40 in (40 - 5) / 50 = 0.7 s; together they share one rate
    # and need 1.5 s. The first grants' replies also carry each client's connect and script
    # load, which can land them tens of milliseconds late and shorten the measured span.
    assert span >= (2 * each - burst) / rate - 0.05
    assert first.shared.down is second.shared.down is False
    # The in-process buckets were never drawn on.
    assert first.bucket.tokens == pytest.approx(burst)


HOLDER = """
import asyncio, sys
from studio.providers import shared_limits
from studio.providers.resilience import Guard

async def main():
    guard = shared_limits.share(
        Guard(sys.argv[2], concurrency=2, register=False), sys.argv[1], who="doomed",
        slot_ttl_s=float(sys.argv[3]),
    )
    async with guard.attempt():
        print("held", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.scaleout
async def test_the_concurrency_cap_is_shared_and_a_dead_holders_slot_expires(
    redis_url, close_clients
):
    name, ttl = fresh("video:cap"), 0.6
    here = shared_guard(redis_url, name, "here", concurrency=2, slot_ttl_s=ttl)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url, name, str(ttl)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert await asyncio.to_thread(holder.stdout.readline) == "held\n"
        release_mine = asyncio.Event()
        admitted = asyncio.Event()

        async def mine() -> None:
            async with here.attempt():
                await release_mine.wait()

        async def third() -> None:
            async with here.attempt():
                admitted.set()

        running = asyncio.create_task(mine())
        waiting = asyncio.create_task(third())
        # Two slots, one per holder: the third call waits, also well past the slot's expiry,
        # since the live holder renews its slot while its call runs.
        await asyncio.sleep(3 * ttl)
        assert not admitted.is_set() and here.shared.waiting == 1
        await here.shared.refresh()
        assert here.snapshot()["in_flight_all"] == 2
        holder.kill()  # dies mid-call: its slot is never released, only expires
        holder.wait(10)
        died = time.monotonic()
        await asyncio.wait_for(admitted.wait(), timeout=5)
        assert time.monotonic() - died <= ttl + 0.5
        await waiting
        release_mine.set()
        await running
        await here.shared.refresh()
        assert here.snapshot()["in_flight_all"] == 0
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.scaleout
async def test_a_breaker_opened_by_one_worker_is_open_for_the_other(redis_url, close_clients):
    name = fresh("video:breaker")
    broken, other = (
        shared_guard(redis_url, name, who, failures=2, recovery_s=0.4) for who in ("a", "b")
    )

    async def fail(guard: Guard) -> None:
        async def call():
            raise ServerError("HTTP 503", provider=name)

        with pytest.raises(ServerError):
            await guard.call(call, retry=False)

    async def succeed(guard: Guard) -> None:
        async def call():
            return "ok"

        assert await guard.call(call) == "ok"

    await fail(broken)
    await succeed(other)  # a success between them: not two in a row yet
    await fail(broken)
    await fail(broken)
    with pytest.raises(CircuitOpen) as refused:
        await succeed(other)
    assert 0 < refused.value.retry_after_s <= 0.4
    await other.shared.refresh()
    snapshot = other.snapshot()
    assert snapshot["breaker"] == "open" and snapshot["breaker_opened_by"] == "a"
    assert snapshot["breaker_opened_at"] == pytest.approx(time.time(), abs=5)
    # Its own in-process breaker never saw a failure.
    assert other.breaker.state.value == "closed"

    await asyncio.sleep(0.45)
    release = asyncio.Event()

    async def trial() -> None:
        async def call():
            await release.wait()
            return "ok"

        await other.call(call)

    running = asyncio.create_task(trial())
    await asyncio.sleep(0.1)
    with pytest.raises(CircuitOpen, match="trial"):
        await succeed(broken)  # one trial at a time, across workers
    release.set()
    await running
    await succeed(other)  # the second trial success closes it, for both
    await succeed(broken)
    await broken.shared.refresh()
    assert broken.snapshot()["breaker"] == "closed"


async def test_an_unreachable_redis_falls_back_to_the_process_limits_and_logs_once(
    caplog, close_clients
):
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    guard = shared_guard(down, fresh("video:down"), "a", rate=0.5, burst=10, concurrency=2)
    caplog.set_level(logging.WARNING, logger="studio.providers.shared_limits")

    async def call():
        return "rendered"

    started = time.monotonic()
    results = [await guard.call(call) for _ in range(5)]

    assert results == ["rendered"] * 5
    assert time.monotonic() - started < 3  # one failed connect, then straight to local
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "video:down" in warnings[0].getMessage()
    assert guard.bucket.tokens == pytest.approx(5, abs=0.1)  # the process's own bucket
    assert guard.stats.calls == 5
    snapshot = guard.snapshot()
    assert snapshot["shared"] is True and snapshot["shared_down"] is True
    assert snapshot["tokens"] == pytest.approx(5, abs=0.1)


@pytest.mark.scaleout
async def test_a_redis_that_dies_mid_run_leaves_calls_to_the_process_limits(close_clients, caplog):
    caplog.set_level(logging.WARNING, logger="studio.providers.shared_limits")
    name = fresh("video:flaky")

    async def call():
        return "ok"

    with redis_server() as url:
        guard = shared_guard(url, name, "a", concurrency=2, retry_redis_s=0.2)
        await guard.call(call)
        await guard.shared.refresh()
        assert guard.snapshot()["shared_down"] is False
    await shared_limits.close()  # the old connections point at the server that stopped
    assert await guard.call(call) == "ok"  # Redis gone: served by the in-process limits
    assert guard.shared.down
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


def test_the_guard_shares_its_limits_when_redis_url_is_set(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    guard = shared_limits.share(Guard("video:openai", register=False))
    assert guard.shared.url == settings.REDIS_URL
    assert guard.shared.keys["slots"] == "studio:limits:video:openai:slots"


def test_the_guard_stays_in_process_without_redis(settings):
    settings.REDIS_URL = ""
    guard = shared_limits.share(Guard("video:local", register=False))
    assert guard.shared is None
    assert "shared" not in guard.snapshot()


@pytest.mark.scaleout
async def test_health_refresh_reads_every_guards_shared_state(redis_url, close_clients):
    name = fresh("video:health")
    guard = shared_guard(redis_url, name, "a", rate=10, burst=4, concurrency=3)
    resilience._guards[name] = guard
    try:
        async with guard.attempt():
            await resilience.refresh_shared()
            snapshot = next(s for s in resilience.health() if s["name"] == name)
        assert snapshot["in_flight_all"] == 1 and snapshot["in_flight"] == 1
        assert snapshot["tokens"] == pytest.approx(3, abs=0.2)
        assert snapshot["breaker"] == "closed" and snapshot["shared_down"] is False
    finally:
        resilience.forget_guard(name)


def test_the_panel_shows_the_shared_state(db):
    editor = add_member(drama=create_drama(), role=Role.EDITOR)
    base = {"tokens": 7.5, "burst": 10, "rate_per_s": 2.0, "in_flight": 1, "calls": 3}
    provider_health.save_snapshots(
        process="worker-1",
        snapshots=[
            {
                **base,
                "name": "video:openai",
                "breaker": "open",
                "shared": True,
                "shared_down": False,
                "in_flight_all": 5,
                "breaker_opened_by": "host-2:4242",
                "breaker_opened_at": time.time() - 3,
            },
            {**base, "name": "lipsync:sync", "breaker": "closed", "shared": True},
        ],
    )
    provider_health.save_snapshots(
        process="worker-2",
        snapshots=[{**base, "name": "writer:deepseek", "breaker": "closed"}],
    )
    page = login(editor).get(reverse("provider_health")).content.decode()
    assert "opened by host-2:4242" in page
    assert "5 across workers" in page
    assert page.count("shared by every worker") == 2  # not the in-process writer
    panel = {p["name"]: p for p in provider_health.panel()["providers"]}
    assert panel["video:openai"]["in_flight_all"] == 5
    assert panel["writer:deepseek"]["shared"] is False


@pytest.mark.scaleout
def test_the_ratelimit_bench_shares_one_limit_across_worker_processes(redis_url, monkeypatch):
    from studio.bench.ratelimit import ratelimit

    monkeypatch.setenv("REDIS_URL", redis_url)
    # 50 req/s shared: the baseline's two buckets (100 req/s together) stay within what this
    # machine sends beside a loaded test run (at 100 req/s each, CI reached only 106 of 200).
    figures = ratelimit({"workers": 2, "quick": True, "rate": 50})
    assert figures["workers"] == 2 and figures["failed"] == 0
    assert figures["requests"] == figures["ok"] == 150
    assert figures["configured_rate"] == 50 and figures["window_limit"] == 100
    assert figures["windows_over_limit"] == 0 and figures["bucket_violations"] == 0
    assert figures["redis_fell_back"] is False
    assert figures["achieved_rate"] <= 1.05 * figures["configured_rate"]
    # The baseline, same run: each process with its own bucket sends up to twice the rate, and
    # well over what the shared limit let through.
    assert figures["baseline_achieved_rate"] > 1.3 * figures["configured_rate"]
    assert figures["baseline_windows_over_limit"] > 0
