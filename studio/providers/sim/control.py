"""The simulator's control routes: `/_sim/stats`, `/_sim/config` and `/_sim/reset`."""

from __future__ import annotations

from studio.providers.sim.http import Request, Response, error_response
from studio.providers.sim.state import SimState


async def sim_stats(sim: SimState, request: Request, fault: str) -> Response:
    return Response.of_json(sim.snapshot(arrivals=request.query.get("arrivals") == "1"))


async def sim_config(sim: SimState, request: Request, fault: str) -> Response:
    try:
        values = request.json() or {}
        script = values.pop("script", {})
        replies = values.pop("replies", [])
        sim.config.update(values)
        for route, faults in script.items():
            sim.queue_faults(route, *faults)
        sim.queue_replies(*replies)
    except (ValueError, TypeError) as error:
        return error_response(400, f"bad config: {error}")
    return Response.of_json(sim.snapshot())


async def sim_reset(sim: SimState, request: Request, fault: str) -> Response:
    sim.reset()
    return Response.of_json(sim.snapshot())
