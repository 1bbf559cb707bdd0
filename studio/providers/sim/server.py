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
Configuration and state are in `state.py`, the route table in `routes.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time

from studio.providers.sim import routes, websocket
from studio.providers.sim.http import (
    Request,
    Response,
    error_response,
    read_request,
    write_response,
)
from studio.providers.sim.state import SimConfig, SimState


class Simulator(SimState):
    """The state (SimState) served over HTTP: `start()` listens, `dispatch()` routes a request
    through the key check, latency and faults to its handler."""

    def __init__(self, config: SimConfig | None = None) -> None:
        super().__init__(config)
        self.routes = routes.routes()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

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
                if response.upgrade is not None:
                    writer.write(websocket.handshake(request))
                    await writer.drain()
                    await response.upgrade(reader, writer)
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
        status = "dropped" if response.abort else "101" if response.upgrade else response.status
        self.stats.statuses[name][str(status)] += 1
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
        # Bearer (OpenAI, Ark), Key (fal), x-api-key (sync.so) or xi-api-key (ElevenLabs).
        if request.path.startswith("/elevenlabs/"):
            if request.headers.get("xi-api-key") == key:
                return None
            # ElevenLabs reads only its own header, and answers in its own error shape.
            return Response.of_json(
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}, 401
            )
        authorization = request.headers.get("authorization", "")
        given = request.headers.get("x-api-key") or authorization.removeprefix(
            "Bearer "
        ).removeprefix("Key ")
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
