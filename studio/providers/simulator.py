"""provider_sim: a loopback HTTP/1.1 server that speaks the vendors' wire formats, with faults.

Chat completions (JSON and SSE), video jobs (multipart submit, poll, MP4 content, delete) and
lip sync (generate, poll, output), plus `/_sim/stats` (requests per route, submissions and jobs
per idempotency key, arrival times), `/_sim/config` and `/_sim/reset`. Faults per route, by
rate or scripted one request at a time: 5xx, 429 with Retry-After, 429 insufficient_quota, any
status, hangs past the client's timeout, malformed JSON, dropped connections (before the work,
or after it: a lost response), errors inside a stream, cut streams, streams without an end,
slow streams; jobs that fail or are rejected; and identity drift (a share of videos shows
another person's face). Dependency-free asyncio.

In tests: `sim = Simulator(SimConfig()); await sim.start()` (port 0) or, from sync code,
`with simulator_thread(SimConfig()) as sim:`. From a shell: `manage.py provider_sim --port P`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field, fields

from studio.providers.sim_http import (
    Request,
    Response,
    error_response,
    read_request,
    write_response,
)

FAULTS = (
    "5xx",
    "429",
    "quota",
    "hang",
    "malformed",
    "drop",
    "lost_response",
    "stream_error",
    "cut_stream",
    "no_done",
    "slow_stream",
    "fail",
    "reject",
)


@dataclass
class RouteFaults:
    """Rates (0..1) of each fault on a route; checked in this order, one draw each."""

    error_5xx: float = 0.0
    rate_429: float = 0.0
    quota: float = 0.0
    hang: float = 0.0
    malformed: float = 0.0
    drop: float = 0.0
    stream_error: float = 0.0
    cut_stream: float = 0.0
    slow_stream: float = 0.0
    fail: float = 0.0
    reject: float = 0.0

    def pick(self, rng: random.Random) -> str:
        for name, fault in (
            ("error_5xx", "5xx"),
            ("rate_429", "429"),
            ("quota", "quota"),
            ("hang", "hang"),
            ("malformed", "malformed"),
            ("drop", "drop"),
            ("stream_error", "stream_error"),
            ("cut_stream", "cut_stream"),
            ("slow_stream", "slow_stream"),
            ("fail", "fail"),
            ("reject", "reject"),
        ):
            rate = getattr(self, name)
            if rate and rng.random() < rate:
                return fault
        return "ok"


@dataclass
class SimConfig:
    seed: int = 0
    latency_ms: float = 0.0
    latency_sigma: float = 0.0  # lognormal spread around latency_ms; 0 = fixed
    retry_after_s: float = 1.0
    hang_s: float = 30.0
    slow_stream_s: float = 0.3  # pause between stream pieces on a slow stream
    keepalive: bool = True  # ": keep-alive" comments and blank lines inside streams
    usage_style: str = "openai"  # or "deepseek" (prompt_cache_hit_tokens)
    api_key: str = field(default="", repr=False)  # when set, requests must carry it
    job_s: float = 0.5  # a video or lip-sync job's time from queued to done
    # Lip-sync outputs behind a redirect to another host name (as storage links are).
    redirect_outputs: bool = False
    drift_rate: float = 0.0  # share of videos that show the drift face
    drift_face: str = ""  # image path; default: the bundled stranger portrait
    video_max_side: int = 640
    video_fps: int = 12
    faults: dict[str, RouteFaults] = field(default_factory=dict)  # route or "*" -> rates

    def faults_for(self, route: str) -> RouteFaults:
        return self.faults.get(route) or self.faults.get("*") or RouteFaults()

    def update(self, values: dict) -> None:
        names = {f.name for f in fields(self)}
        for key, value in values.items():
            if key == "faults":
                self.faults = {r: RouteFaults(**rates) for r, rates in value.items()}
            elif key in names:
                setattr(self, key, value)


class Stats:
    def __init__(self) -> None:
        self.requests: Counter = Counter()
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.submissions: Counter = Counter()  # POSTs per idempotency key
        self.jobs_per_key: Counter = Counter()  # jobs actually created per key
        self.arrivals: dict[str, deque] = defaultdict(lambda: deque(maxlen=50_000))
        self.keyed_downloads = 0  # output downloads that carried an API key

    def as_dict(self, *, arrivals: bool) -> dict:
        data = {
            "requests": dict(self.requests),
            "statuses": {route: dict(c) for route, c in self.statuses.items()},
            "submissions": dict(self.submissions),
            "jobs_per_key": dict(self.jobs_per_key),
            "keyed_downloads": self.keyed_downloads,
        }
        if arrivals:
            data["arrivals"] = {route: list(times) for route, times in self.arrivals.items()}
        return data


class Simulator:
    def __init__(self, config: SimConfig | None = None) -> None:
        from studio.providers import sim_routes  # late: the routes import this module

        self.config = config or SimConfig()
        self.stats = Stats()
        self.rng = random.Random(self.config.seed)
        self.script: dict[str, deque] = defaultdict(deque)
        self.jobs: dict[str, dict] = {}
        self.jobs_by_key: dict[tuple[str, str], str] = {}
        self.seen_prompts: set[str] = set()
        # Scripted chat answers, one per request, before the default answers (see queue_replies).
        self.replies: deque[dict] = deque()
        self.routes = sim_routes.routes()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.url = ""

    # --- control ---------------------------------------------------------------------------

    def queue_faults(self, route: str, *faults: str) -> None:
        """The next requests on `route` get these faults, in order ("ok" for none)."""
        for fault in faults:
            if fault != "ok" and fault not in FAULTS and not fault.startswith("status:"):
                raise ValueError(f"unknown fault {fault!r}")
            self.script[route].append(fault)

    def queue_replies(self, *replies: str | dict) -> None:
        """The next chat requests answer with these bodies, in order: a string is the content
        (finish reason "stop"); a dict may set `content` and `finish_reason` (e.g. "length", a
        reply cut at max_tokens). Faults still apply on top."""
        for reply in replies:
            value = {"content": reply} if isinstance(reply, str) else dict(reply)
            if not isinstance(value.get("content", ""), str):
                raise ValueError("a reply's content must be text")
            self.replies.append(
                {
                    "content": value.get("content", ""),
                    "finish_reason": value.get("finish_reason") or "stop",
                }
            )

    def reset(self) -> None:
        self.stats = Stats()
        self.script.clear()
        self.replies.clear()
        self.jobs.clear()
        self.jobs_by_key.clear()
        self.seen_prompts.clear()
        self.rng = random.Random(self.config.seed)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = await asyncio.start_server(self._connection, host, port, limit=2**20)
        bound = self._server.sockets[0].getsockname()
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    # --- HTTP ------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    break
                response = await self.dispatch(request)
                if response.abort:
                    writer.transport.abort()
                    return
                keep = await write_response(writer, response)
                if not keep or request.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels a connection; ending quietly keeps asyncio's stream callback
            # from reporting the cancellation as an error.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    def _route(self, request: Request):
        for method, pattern, name, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return name, handler, match
        return None

    async def dispatch(self, request: Request) -> Response:
        found = self._route(request)
        if found is None:
            return error_response(404, "no such route")
        name, handler, match = found
        if name.startswith("sim_"):
            return await handler(self, request, "ok", **match.groupdict())
        self.stats.requests[name] += 1
        self.stats.arrivals[name].append(time.time())
        key = request.headers.get("idempotency-key", "")
        if key and name.endswith("_create"):
            self.stats.submissions[key] += 1  # every try counts, whatever its fate
        denied = self._check_key(request)
        fault = (
            self.script[name].popleft()
            if self.script[name]
            else (self.config.faults_for(name).pick(self.rng))
        )
        await self._latency()
        response = denied or await self._fault_response(fault, request, name, match, handler)
        self.stats.statuses[name][str(response.status if not response.abort else "dropped")] += 1
        return response

    async def _fault_response(self, fault, request, name, match, handler) -> Response:
        error = {"type": "server_error", "message": "simulated outage"}
        if fault == "drop":
            return Response(abort=True)
        if fault == "hang":
            await asyncio.sleep(self.config.hang_s)
            return Response(abort=True)
        if fault == "5xx":
            return Response.of_json({"error": error}, 503)
        if fault in ("429", "quota"):
            kind = "insufficient_quota" if fault == "quota" else "rate_limit_exceeded"
            wait = self.config.retry_after_s
            return Response.of_json(
                {"error": {"type": kind, "message": f"simulated {kind}"}},
                429,
                **{"retry-after": f"{math.ceil(wait)}", "retry-after-ms": f"{wait * 1000:.0f}"},
            )
        if fault.startswith("status:"):
            status = int(fault.split(":", 1)[1])
            return Response.of_json(
                {"error": {"type": "invalid_request_error", "message": f"simulated {status}"}},
                status,
            )
        if fault == "lost_response":
            await handler(self, request, "ok", **match.groupdict())  # the work is done...
            return Response(abort=True)  # ...but its answer never arrives
        if fault == "malformed":
            return Response(
                200, b'{"id": "broken", "choices": [', {"content-type": "application/json"}
            )
        return await handler(self, request, fault, **match.groupdict())

    def _check_key(self, request: Request) -> Response | None:
        key = self.config.api_key
        if not key:
            return None
        given = request.headers.get("x-api-key") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        if given == key:
            return None
        # Like real vendors, echo what was sent: the client must not pass it on.
        return Response.of_json(
            {
                "error": {
                    "type": "invalid_api_key",
                    "message": f"Incorrect API key provided: {given}",
                }
            },
            401,
        )

    async def _latency(self) -> None:
        base = self.config.latency_ms / 1000.0
        if base <= 0:
            return
        if self.config.latency_sigma > 0:
            base *= math.exp(self.rng.gauss(0.0, self.config.latency_sigma))
        await asyncio.sleep(base)

    def snapshot(self, *, arrivals: bool = False) -> dict:
        return {**self.stats.as_dict(arrivals=arrivals), "config": _config_dict(self.config)}


def _config_dict(config: SimConfig) -> dict:
    data = asdict(config)
    data["api_key"] = "set" if config.api_key else ""
    return data


@contextlib.contextmanager
def simulator_thread(config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0):
    """Run a simulator on its own event loop in a background thread (for sync callers)."""
    simulator = Simulator(config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(simulator.start(host, port))
        ready.set()
        loop.run_forever()
        loop.run_until_complete(simulator.stop())
        loop.close()

    thread = threading.Thread(target=run, name="provider-sim", daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield simulator
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
