"""`python manage.py bench ratelimit [--quick] [--json]`: the token bucket under load.

N chat completions (2000; 300 quick) through the real adapter and a 100 req/s bucket
(burst 100) against `provider_sim` in its own process at 40 ms latency. A request is sent right
after its token (the guard takes the concurrency slot first). Any 1 s window of sends may hold
at most burst + rate requests (the bucket's bound), and the exact token-bucket rule (k sends
span at least (k - burst) / rate seconds) must hold; both are checked on the send times, and the
windows are also reported as the simulator received them. After the first second windows hold
about `rate` (reported, not a bound: a client stalled for a moment banks tokens and may spend
them at once, as a bucket allows). Baseline, same run: the same requests with the bucket open.

`--workers N` (N > 1): N worker processes, each driving its share of the requests through its
own Guard against the same simulator, share one limit (100 req/s, burst 100) and one
concurrency cap through Redis (studio/providers/shared_limits.py): REDIS_URL when set, else a
throwaway `redis-server` on loopback. The same windows are checked on every process's sends
together. Baseline, same run: the same N processes with per-process buckets (no Redis), which
send about N times the rate.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from studio.providers.ledger import MemoryLedger
from studio.providers.openai_chat import ChatConfig, OpenAICompatibleChat
from studio.providers.resilience import Guard, RetryPolicy, TokenBucket

LATENCY_MS = 40.0
CONCURRENCY = 16


def _start_sim() -> tuple[subprocess.Popen, str]:
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    process = subprocess.Popen(
        [
            sys.executable,
            str(manage),
            "provider_sim",
            "--port",
            "0",
            "--latency-ms",
            f"{LATENCY_MS:g}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if "listening on" in line:
            return process, line.rsplit(" ", 1)[1].strip()
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("provider_sim did not start")


def _max_in_window(times: list[float], width: float, *, start_after: float = -1e18) -> int:
    best = 0
    for index, start in enumerate(times):
        if start < start_after:
            continue
        best = max(best, bisect.bisect_left(times, start + width) - index)
    return best


def _windows_over(times: list[float], width: float, limit: float) -> int:
    return sum(1 for i, t in enumerate(times) if bisect.bisect_left(times, t + width) - i > limit)


def _bucket_violations(grants: list[float], *, rate: float, burst: int) -> int:
    """Grants a full token bucket (rate, burst) would not have allowed, by the generic cell rate
    algorithm: a grant may come at most (burst - 1) / rate before its theoretical time."""
    violations, theoretical = 0, float("-inf")
    tolerance = (burst - 1) / rate + 1e-3  # 1 ms of clock slack
    for granted in sorted(grants):
        if granted < theoretical - tolerance:
            violations += 1
        theoretical = max(theoretical, granted) + 1.0 / rate
    return violations


def _pct(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000.0, 2)


async def _ratelimit(url: str, total: int, rate: float, burst: int) -> dict:

    bucket = TokenBucket(rate=rate, burst=burst)
    granted: dict[asyncio.Task, float] = {}
    sends: list[float] = []  # wall-clock time of each grant: the request goes out right after
    acquire = bucket.acquire

    async def timed_acquire() -> float:
        waited = await acquire()
        granted[asyncio.current_task()] = time.perf_counter()
        sends.append(time.time())
        return waited

    bucket.acquire = timed_acquire
    # 16 in flight is four times what 100 req/s at 40 ms needs: it drains the initial burst in
    # about 0.3 s and keeps httpx's pool quick (its bookkeeping grows with waiting requests).
    guard = Guard(
        "bench:ratelimit",
        bucket=bucket,
        concurrency=CONCURRENCY,
        retry=RetryPolicy(max_attempts=1),
        register=False,
    )
    chat = OpenAICompatibleChat(
        ChatConfig(name="bench", base_url=f"{url}/v1", model="bench", timeout_s=10),
        guard=guard,
        recorder=MemoryLedger(),
    )
    overheads: list[float] = []
    exchanges: list[float] = []
    failures: list[str] = []
    send = chat.send

    async def timed_send(*args, **kwargs):
        started = time.perf_counter()
        response = await send(*args, **kwargs)
        exchanges.append(time.perf_counter() - started - LATENCY_MS / 1e3)
        return response

    chat.send = timed_send

    async def one(index: int) -> None:
        try:
            await chat.complete([{"role": "user", "content": f"request {index}"}])
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")
            return
        overheads.append(time.perf_counter() - granted[asyncio.current_task()] - LATENCY_MS / 1e3)

    client = await _warm_up(chat, url)
    await client.post(f"{url}/_sim/reset")
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    wall = time.perf_counter() - started
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{url}/_sim/stats", params={"arrivals": "1"})).json()
    await chat.aclose()
    arrivals = sorted(stats["arrivals"].get("chat", []))
    sends.sort()
    bound = burst + rate
    # How much later than its send each request reached the simulator, beyond the quickest.
    delays = [arrived - sent for arrived, sent in zip(arrivals, sends, strict=False)]
    return {
        "requests": total,
        "ok": len(overheads),
        "failed": len(failures),
        "first_error": failures[0] if failures else "",
        "configured_rate": rate,
        "burst": burst,
        # After the banked burst, requests sent per second.
        "achieved_rate": round((len(sends) - burst) / (sends[-1] - sends[0]), 2)
        if len(sends) > burst
        else None,
        "overall_rate": round(total / wall, 2),
        "wall_s": round(wall, 2),
        "window_limit": bound,
        "max_in_any_1s_window": _max_in_window(sends, 1.0),
        "windows_over_limit": _windows_over(sends, 1.0, bound),
        "max_in_any_1s_window_after_first_s": _max_in_window(
            sends, 1.0, start_after=sends[0] + 1.0
        ),
        "bucket_violations": _bucket_violations(sends, rate=rate, burst=burst),
        # The same windows as the simulator saw them: loopback and scheduling jitter can move
        # a request into the next window (about rate x jitter requests at most).
        "sim_received": len(arrivals),
        "sim_max_in_any_1s_window": _max_in_window(arrivals, 1.0),
        "sim_windows_over_limit": _windows_over(arrivals, 1.0, bound),
        "sim_arrival_jitter_ms": round((max(delays) - min(delays)) * 1000, 1) if delays else None,
        # From the token to the result, minus the simulator's latency: HTTP client, loopback,
        # simulator parsing, our parsing.
        "overhead_p50_ms": _pct(overheads, 0.50) if overheads else None,
        "overhead_p99_ms": _pct(overheads, 0.99) if overheads else None,
        # The HTTP exchange alone, minus the simulator's latency.
        "http_overhead_p50_ms": _pct(exchanges, 0.50) if exchanges else None,
        "http_overhead_p99_ms": _pct(exchanges, 0.99) if exchanges else None,
        "concurrency": CONCURRENCY,
        "sim_latency_ms": LATENCY_MS,
    }


async def _warm_up(chat, url: str):
    """Open the pooled connections and load the simulator's code, outside the measurement."""
    client = chat.client()
    await asyncio.gather(
        *(
            client.post(
                f"{url}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "warm"}]},
            )
            for _ in range(CONCURRENCY)
        )
    )
    return client


def ratelimit(options: dict) -> dict:
    total = 300 if options.get("quick") else 2000
    workers = int(options.get("workers") or 1)
    if workers > 1:
        # `rate` (default 100 req/s) lowers the shared limit, so that the baseline's N x rate
        # stays below what a loaded machine can send (the tests use 50).
        rate = float(options.get("rate") or 100.0)
        return _ratelimit_workers(round(total * rate / 100.0), workers, rate=rate)
    load = os.getloadavg()[0]
    process, url = _start_sim()
    try:
        figures = asyncio.run(_ratelimit(url, total, rate=100.0, burst=100))
        # The baseline, same run and simulator: the same requests with the bucket opened wide
        # (only the concurrency cap), i.e. what the client would send without the limiter.
        unlimited = asyncio.run(_ratelimit(url, total, rate=1e9, burst=total))
    finally:
        process.terminate()
        process.wait(10)
    figures.update(
        baseline_unlimited_rate=unlimited["overall_rate"],
        baseline_unlimited_max_in_any_1s_window=unlimited["max_in_any_1s_window"],
        baseline_overhead_p50_ms=unlimited["overhead_p50_ms"],
        baseline_overhead_p99_ms=unlimited["overhead_p99_ms"],
    )
    target = (
        figures["ok"] == total
        and figures["windows_over_limit"] == 0
        and figures["bucket_violations"] == 0
        and (figures["achieved_rate"] or 0) >= 0.99 * figures["configured_rate"]
    )
    return {**figures, "load_average_1min_before": round(load, 2), "meets_target": target}


# --- several worker processes: one limit shared through Redis ---------------------------------

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


@contextlib.contextmanager
def _redis():
    """REDIS_URL when set, else a throwaway redis-server on a free loopback port."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("bench ratelimit --workers needs redis-server (or REDIS_URL)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="studio-bench-redis-") as folder:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


async def _worker(config: dict) -> dict:
    """One worker process: its share of the requests through its own Guard (shared limits
    when `config["redis_url"]`), sent once the parent says go; every send's wall-clock time."""
    from studio.providers import shared_limits

    url, rate, burst = config["url"], config["rate"], config["burst"]
    guard = Guard(
        config["name"],
        bucket=TokenBucket(rate=rate, burst=burst),
        concurrency=CONCURRENCY,
        retry=RetryPolicy(max_attempts=1),
        register=False,
    )
    grants: list[float] = []  # when Redis granted each token, by its clock
    if config["redis_url"]:
        shared = shared_limits.share(guard, config["redis_url"]).shared
        take_token = shared._take_token

        async def timed_take_token() -> float:
            granted = await take_token()
            grants.append(granted)
            return granted

        shared._take_token = timed_take_token
    chat = OpenAICompatibleChat(
        ChatConfig(name="bench", base_url=f"{url}/v1", model="bench", timeout_s=10),
        guard=guard,
        recorder=MemoryLedger(),
    )
    sends: list[float] = []
    failures: list[str] = []
    send = chat.send

    async def timed_send(*args, **kwargs):
        sends.append(time.time())  # slot, token and breaker granted: the request goes out
        return await send(*args, **kwargs)

    chat.send = timed_send

    async def one(index: int) -> None:
        try:
            await chat.complete([{"role": "user", "content": f"request {index}"}])
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")

    await _warm_up(chat, url)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await asyncio.gather(*(one(i) for i in range(config["requests"])))
    await chat.aclose()
    await shared_limits.close()
    return {
        "requests": config["requests"],
        "sends": sends,
        "grants": grants,
        "failures": failures,
        "shared_down": bool(guard.shared and guard.shared.down),
    }


def _run_workers(config: dict, workers: int, total: int) -> list[dict]:
    """Start the worker processes, let them warm up, start them together, collect them."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "studio.settings"}
    shares = [total // workers + (1 if n < total % workers else 0) for n in range(workers)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "studio.bench.ratelimit", json.dumps({**config, "requests": n})],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in shares
    ]
    try:
        for process in processes:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a bench worker failed to start ({process.wait(10)})")
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            output, _ = process.communicate(timeout=600)
            if process.returncode != 0:
                raise RuntimeError(f"a bench worker exited with {process.returncode}")
            results.append(json.loads(output.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def _merged(results: list[dict], *, rate: float, burst: int, banked: int) -> dict:
    sends = sorted(t for result in results for t in result["sends"])
    grants = sorted(t for result in results for t in result["grants"])
    failed = sum(len(result["failures"]) for result in results)
    bound = burst + rate
    span = sends[-1] - sends[0] if len(sends) > 1 else 0.0
    return {
        "ok": sum(result["requests"] for result in results) - failed,
        "failed": failed,
        "first_error": next((r["failures"][0] for r in results if r["failures"]), ""),
        # After what the buckets had banked, requests sent per second by all workers together.
        "achieved_rate": round((len(sends) - banked) / span, 2)
        if len(sends) > banked and span > 0
        else None,
        "max_in_any_1s_window": _max_in_window(sends, 1.0),
        "windows_over_limit": _windows_over(sends, 1.0, bound),
        "max_in_any_1s_window_after_first_s": _max_in_window(
            sends, 1.0, start_after=sends[0] + 1.0
        ),
        # The exact token-bucket rule on the grants (Redis's clock, the machine's), or on the
        # sends where each process has its own bucket. Sends from several processes reach the
        # HTTP client a few milliseconds after their grant, each a different few: the rule,
        # which has 1 ms of slack once the bank is spent, is not checked on them.
        "bucket_violations": _bucket_violations(grants or sends, rate=rate, burst=burst),
        "wall_s": round(span, 2),
        "redis_fell_back": any(r["shared_down"] for r in results),
    }


def _ratelimit_workers(total: int, workers: int, *, rate: float) -> dict:
    burst = int(rate)
    load = os.getloadavg()[0]
    process, url = _start_sim()
    try:
        with _redis() as redis_url:
            config = {"url": url, "rate": rate, "burst": burst}
            # A fresh name each run: a REDIS_URL in use keeps no state from an earlier one.
            name = f"bench:ratelimit:{uuid.uuid4().hex[:8]}"
            shared = _merged(
                _run_workers({**config, "name": name, "redis_url": redis_url}, workers, total),
                rate=rate,
                burst=burst,
                banked=burst,
            )
        # The baseline, same run and simulator: the same processes, each with its own bucket
        # (today's behaviour without Redis).
        alone = _merged(
            _run_workers({**config, "name": name, "redis_url": ""}, workers, total),
            rate=rate,
            burst=burst,
            banked=burst * workers,
        )
    finally:
        process.terminate()
        process.wait(10)
    figures = {
        "workers": workers,
        "requests": total,
        "configured_rate": rate,
        "burst": burst,
        "window_limit": burst + rate,
        **shared,
        "concurrency_shared": CONCURRENCY,
        "sim_latency_ms": LATENCY_MS,
        **{f"baseline_{key}": value for key, value in alone.items()},
    }
    target = (
        figures["ok"] == total
        and figures["windows_over_limit"] == 0
        and figures["bucket_violations"] == 0
        and not figures["redis_fell_back"]
        and 0.95 * rate <= (figures["achieved_rate"] or 0) <= 1.05 * rate
    )
    return {**figures, "load_average_1min_before": round(load, 2), "meets_target": target}


if __name__ == "__main__":
    import django

    django.setup()
    print(json.dumps(asyncio.run(_worker(json.loads(sys.argv[1])))), flush=True)
