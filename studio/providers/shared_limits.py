"""Provider limits every worker shares, in Redis: token bucket, concurrency cap, breaker.

Without Redis each process enforces a provider's limits alone (studio/providers/resilience.py),
so N workers send N times the configured rate, and a worker keeps calling a vendor another one
found broken. `share(guard)` (when REDIS_URL is set) moves the three into Redis, keyed by the
guard's name ("video:openai"), each changed only by an atomic Lua script:

- the bucket is one hash (tokens, stamp) refilled by Redis's clock, so every machine agrees;
- the cap is a sorted set of (slot token, expiry): a call renews its slot while it runs, and a
  worker that dies mid-call gives its slot back when the expiry passes (`SLOT_TTL_S`);
- the breaker is one hash (state, failures, opened by whom and when, the half-open trial and
  its expiry, renewed like a slot, so a trial whose worker died does not hold the breaker).

The adapters see the same `Guard`. In one process, waiters queue first come first served
before asking Redis (only the head of the queue polls it). A Redis failure never stops a call:
the guard falls back to its in-process limits for that call, the outage is logged once, and
Redis is tried again `RETRY_REDIS_S` later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from studio.providers.errors import CircuitOpen
from studio.providers.resilience import Guard, _PerLoop

log = logging.getLogger(__name__)

PREFIX = "studio:limits:"
SLOT_TTL_S = 15.0  # a dead worker's slot (or half-open trial) is free again after this
REDIS_TIMEOUT_S = 1.0  # a Redis that does not answer within this is treated as down
RETRY_REDIS_S = 5.0  # after a Redis failure, the in-process limits are used for this long
POLL_MAX_S = 0.05  # the longest pause between two asks for a concurrency slot
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

_NOW = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
"""

# KEYS: bucket. ARGV: rate, burst. -> {granted 0/1, seconds until a token, tokens left, now}
BUCKET_TAKE = (
    _NOW
    + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = now()
local held = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(held[1]), tonumber(held[2])
if tokens == nil or stamp == nil then tokens, stamp = burst, t end
tokens = math.min(burst, tokens + math.max(t - stamp, 0) * rate)
local granted, wait = 0, (1 - tokens) / rate
if tokens >= 1 then tokens, granted, wait = tokens - 1, 1, 0 end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'stamp', fmt(t))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return {granted, fmt(wait), fmt(tokens), fmt(t)}
"""
)

# KEYS: slots. ARGV: cap, ttl, token. -> 1 when the slot is taken
SLOT_TAKE = (
    _NOW
    + """
local t = now()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(t))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], fmt(t + tonumber(ARGV[2])), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 60)
  return 1
end
return 0
"""
)

_BREAKER = (
    _NOW
    + """
local function load(key, recovery, t)
  local h = redis.call('HMGET', key, 'state', 'failures', 'successes', 'opened_at',
                       'opened_by', 'trial', 'trial_until')
  local b = {state = h[1] or 'closed', failures = tonumber(h[2]) or 0,
             successes = tonumber(h[3]) or 0, opened_at = tonumber(h[4]) or 0,
             opened_by = h[5] or '', trial = h[6] or '', trial_until = tonumber(h[7]) or 0}
  if b.state == 'open' and t - b.opened_at >= recovery then
    b.state, b.successes, b.trial = 'half_open', 0, ''
  end
  if b.trial ~= '' and b.trial_until <= t then b.trial = '' end
  return b
end
local function save(key, b)
  redis.call('HSET', key, 'state', b.state, 'failures', b.failures, 'successes', b.successes,
             'opened_at', fmt(b.opened_at), 'opened_by', b.opened_by, 'trial', b.trial,
             'trial_until', fmt(b.trial_until))
  redis.call('EXPIRE', key, 86400)
end
local function open(b, t, who)
  b.state, b.opened_at, b.opened_by, b.trial, b.successes = 'open', t, who, '', 0
end
"""
)

# KEYS: breaker. ARGV: recovery_s, token, ttl. -> {closed | open | busy | trial, retry after}
BREAKER_BEFORE = (
    _BREAKER
    + """
local recovery, token, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local t = now()
local b = load(KEYS[1], recovery, t)
local verdict, after = b.state, 0
if b.state == 'open' then
  after = math.max(recovery - (t - b.opened_at), 0)
elseif b.state == 'half_open' then
  if b.trial ~= '' then
    verdict, after = 'busy', 1
  else
    verdict, b.trial, b.trial_until = 'trial', token, t + ttl
  end
end
save(KEYS[1], b)
return {verdict, fmt(after), b.opened_by}
"""
)

# KEYS: breaker. ARGV: outcome, failures, successes, recovery_s, token, who. -> {state, by}
# The same walk as resilience.CircuitBreaker, with only the trial's own outcome ending it.
BREAKER_REPORT = (
    _BREAKER
    + """
local outcome, failures, successes = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local recovery, token, who = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local t = now()
local b = load(KEYS[1], recovery, t)
if outcome == 'success' then
  if b.state == 'half_open' then
    if b.trial == token then
      b.trial, b.successes = '', b.successes + 1
      if b.successes >= successes then b.state, b.failures = 'closed', 0 end
    end
  else
    b.failures = 0
  end
elseif outcome == 'failure' then
  if b.state == 'half_open' then
    open(b, t, who)
  else
    b.failures = b.failures + 1
    if b.failures >= failures then open(b, t, who) end
  end
elseif b.state == 'half_open' and b.trial == token then
  b.trial = ''
end
save(KEYS[1], b)
return {b.state, b.opened_by}
"""
)

# KEYS: slots, breaker. ARGV: token, ttl, trial 0/1. -> 1 while the slot is still held
RENEW = (
    _NOW
    + """
local token, ttl = ARGV[1], tonumber(ARGV[2])
local t = now()
if ARGV[3] == '1' and redis.call('HGET', KEYS[2], 'trial') == token then
  redis.call('HSET', KEYS[2], 'trial_until', fmt(t + ttl))
end
if redis.call('ZSCORE', KEYS[1], token) then
  redis.call('ZADD', KEYS[1], 'XX', fmt(t + ttl), token)
  return 1
end
return 0
"""
)

# KEYS: bucket, slots, breaker. ARGV: rate, burst, recovery_s.
# -> {tokens, in flight, breaker state, failures, opened by, opened at (epoch s)}
PEEK = (
    _BREAKER
    + """
local rate, burst, recovery = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = now()
local held = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = burst
if tonumber(held[1]) and tonumber(held[2]) and rate > 0 then
  tokens = math.min(burst, tonumber(held[1]) + math.max(t - tonumber(held[2]), 0) * rate)
end
local in_flight = redis.call('ZCOUNT', KEYS[2], '(' .. fmt(t), '+inf')
local b = load(KEYS[3], recovery, t)
return {fmt(tokens), in_flight, b.state, b.failures, b.opened_by, fmt(b.opened_at)}
"""
)

SCRIPTS = {
    "bucket_take": BUCKET_TAKE,
    "slot_take": SLOT_TAKE,
    "breaker_before": BREAKER_BEFORE,
    "breaker_report": BREAKER_REPORT,
    "renew": RENEW,
    "peek": PEEK,
}


class _Connection:
    """One Redis client and its registered scripts (EVALSHA, loaded again on NOSCRIPT)."""

    def __init__(self, url: str) -> None:
        # No retries, short timeouts: a Redis that is down must cost a call little, since the
        # call then goes ahead on the in-process limits anyway.
        self.client = Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self.scripts = {name: self.client.register_script(lua) for name, lua in SCRIPTS.items()}

    async def run(self, name: str, keys: list[str], args: list) -> list:
        return await asyncio.wait_for(
            self.scripts[name](keys=keys, args=args), timeout=REDIS_TIMEOUT_S * 2
        )


# One connection pool per Redis URL and event loop (a client belongs to the loop it ran on).
_connections: dict[str, _PerLoop] = {}


def _connection(url: str) -> _Connection:
    per_loop = _connections.setdefault(url, _PerLoop(lambda: _Connection(url)))
    return per_loop.get()


async def close() -> None:
    """Close this event loop's Redis clients (tests and the benchmark, at their end)."""
    for per_loop in list(_connections.values()):
        if per_loop._loop is asyncio.get_running_loop() and per_loop._value is not None:
            await per_loop._value.client.aclose()
            per_loop._loop = per_loop._value = None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Lease:
    """A call admitted by the shared limits: holds its slot (and trial) until released."""

    def __init__(self, limits: RedisLimits, token: str, *, slot: bool, trial: bool) -> None:
        self.limits = limits
        self.token = token
        self.slot = slot
        self.trial = trial
        self._renewing = asyncio.create_task(self._renew()) if slot or trial else None

    async def _renew(self) -> None:
        limits = self.limits
        while True:
            await asyncio.sleep(limits.slot_ttl_s / 3)
            try:
                await limits._run(
                    "renew",
                    [limits.keys["slots"], limits.keys["breaker"]],
                    [self.token, limits.slot_ttl_s, 1 if self.trial else 0],
                )
            except REDIS_ERRORS as error:
                limits._unavailable(error)

    async def report(self, outcome: str) -> None:
        limits = self.limits
        if outcome == "neutral" and not self.trial:
            return  # says nothing, and this call holds no trial to hand back
        breaker = limits.guard.breaker
        try:
            state, by = await limits._run(
                "breaker_report",
                [limits.keys["breaker"]],
                [
                    outcome,
                    breaker.failure_threshold,
                    breaker.success_threshold,
                    breaker.recovery_s,
                    self.token,
                    limits.who,
                ],
            )
        except REDIS_ERRORS as error:
            limits._unavailable(error)
            return
        limits.seen.update(breaker=_text(state), breaker_opened_by=_text(by))

    async def release(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
        if self.slot:
            await self.limits._drop_slot(self.token)


class RedisLimits:
    """The shared bucket, cap and breaker of one guard (resilience.SharedLimits)."""

    def __init__(
        self,
        guard: Guard,
        url: str,
        *,
        slot_ttl_s: float = SLOT_TTL_S,
        retry_redis_s: float = RETRY_REDIS_S,
        who: str | None = None,
    ) -> None:
        self.guard = guard
        self.url = url
        self.slot_ttl_s = slot_ttl_s
        self.retry_redis_s = retry_redis_s
        self.who = who or f"{socket.gethostname()}:{os.getpid()}"
        self.keys = {
            part: f"{PREFIX}{guard.name}:{part}" for part in ("bucket", "slots", "breaker")
        }
        self.seen: dict = {}  # the shared state as last read
        self.waiting = 0
        self._slot_queue = _PerLoop(asyncio.Lock)
        self._token_queue = _PerLoop(asyncio.Lock)
        self._down_until = 0.0
        self._outage = False

    # --- Redis, and what happens when it fails ----------------------------------------------

    async def _run(self, name: str, keys: list[str], args: list) -> list:
        return await _connection(self.url).run(name, keys, args)

    def _unavailable(self, error: BaseException) -> None:
        self._down_until = time.monotonic() + self.retry_redis_s
        if not self._outage:
            self._outage = True
            log.warning(
                "Redis is unreachable for the shared limits of %s (%s: %s): this process uses "
                "its own limits until Redis answers again",
                self.guard.name,
                type(error).__name__,
                error,
            )

    def _available(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("Redis answers again: %s uses the shared limits", self.guard.name)

    @property
    def down(self) -> bool:
        return self._outage

    # --- one call ----------------------------------------------------------------------------

    async def enter(self) -> _Lease | None:
        """A slot, a token and the breaker's consent from Redis; None when Redis fails (the
        caller then uses its in-process limits). Raises CircuitOpen like the local breaker."""
        if time.monotonic() < self._down_until:
            return None
        guard = self.guard
        token = uuid.uuid4().hex
        slot = False
        try:
            if guard.concurrency:
                await self._take_slot(token)
                slot = True
            if guard.bucket is not None:
                await self._take_token()
            verdict, after, by = await self._run(
                "breaker_before",
                [self.keys["breaker"]],
                [guard.breaker.recovery_s, token, self.slot_ttl_s],
            )
        except REDIS_ERRORS as error:
            self._unavailable(error)
            if slot:
                await self._drop_slot(token)
            return None
        except BaseException:
            if slot:
                await self._drop_slot(token)
            raise
        self._available()
        verdict = _text(verdict)
        self.seen.update(breaker="half_open" if verdict in ("busy", "trial") else verdict)
        if verdict in ("open", "busy"):
            if slot:
                await self._drop_slot(token)
            self.seen.update(breaker_opened_by=_text(by))
            message = (
                "circuit open after repeated failures; calls resume after a pause"
                if verdict == "open"
                else "circuit half-open: a trial call is running"
            )
            raise CircuitOpen(message, provider=guard.name, retry_after_s=float(after))
        return _Lease(self, token, slot=slot, trial=verdict == "trial")

    async def _take_slot(self, token: str) -> None:
        self.waiting += 1
        try:
            async with self._slot_queue.get():
                pause = 0.002
                args = [self.guard.concurrency, self.slot_ttl_s, token]
                while not await self._run("slot_take", [self.keys["slots"]], args):
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, POLL_MAX_S)
        finally:
            self.waiting -= 1

    async def _take_token(self) -> float:
        """Wait for and take one token; returns when Redis granted it (epoch seconds)."""
        bucket = self.guard.bucket
        self.waiting += 1
        try:
            async with self._token_queue.get():
                while True:
                    granted, wait, tokens, now = await self._run(
                        "bucket_take", [self.keys["bucket"]], [bucket.rate, bucket.burst]
                    )
                    self.seen["tokens"] = round(float(tokens), 2)
                    if int(granted):
                        return float(now)
                    # Another worker may take the token first: then ask again after this.
                    await asyncio.sleep(float(wait))
        finally:
            self.waiting -= 1

    async def _drop_slot(self, token: str) -> None:
        try:
            await asyncio.wait_for(
                _connection(self.url).client.zrem(self.keys["slots"], token),
                timeout=REDIS_TIMEOUT_S * 2,
            )
        except REDIS_ERRORS as error:
            self._unavailable(error)  # the slot expires by itself

    # --- the health panel --------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read every worker's state of this provider from Redis into `seen`."""
        if time.monotonic() < self._down_until:
            return
        guard, bucket = self.guard, self.guard.bucket
        try:
            tokens, in_flight, state, failures, by, opened_at = await self._run(
                "peek",
                [self.keys["bucket"], self.keys["slots"], self.keys["breaker"]],
                [
                    bucket.rate if bucket else 0,
                    bucket.burst if bucket else 0,
                    guard.breaker.recovery_s,
                ],
            )
        except REDIS_ERRORS as error:
            self._unavailable(error)
            return
        self._available()
        opened = float(opened_at)
        self.seen = {
            "tokens": round(float(tokens), 2) if bucket else None,
            "in_flight_all": int(in_flight),
            "breaker": _text(state),
            "breaker_failures": int(failures),
            "breaker_opened_by": _text(by),
            "breaker_opened_at": opened if opened > 0 else None,
            "checked_at": time.time(),
        }

    def snapshot(self) -> dict:
        """What the guard's snapshot adds or replaces: the shared state when Redis answers,
        the process's own (left as it is) while it does not."""
        bucket = self.guard.bucket
        shared = {
            "shared": True,
            "shared_down": self._outage,
            "waiting": self.waiting + (bucket.waiting if bucket else 0),
        }
        if self.seen and not self._outage:
            shared.update(self.seen)
        return shared


def share(guard: Guard, url: str | None = None, **options) -> Guard:
    """Give `guard` limits shared by every worker through Redis when REDIS_URL is set (or `url`
    is given); without Redis the guard keeps its in-process limits, unchanged. Returns it."""
    if url is None:
        from django.conf import settings

        url = getattr(settings, "REDIS_URL", "")
    if url:
        guard.shared = RedisLimits(guard, url, **options)
    return guard
