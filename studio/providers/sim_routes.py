"""The simulator's route table and its control routes (stats, config, reset)."""

from __future__ import annotations

import re

from studio.providers import sim_chat, sim_jobs
from studio.providers.sim_http import Request, Response, error_response
from studio.providers.simulator import Simulator

# --- control -----------------------------------------------------------------------------------


async def sim_stats(sim: Simulator, request: Request, fault: str) -> Response:
    return Response.of_json(sim.snapshot(arrivals=request.query.get("arrivals") == "1"))


async def sim_config(sim: Simulator, request: Request, fault: str) -> Response:
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


async def sim_reset(sim: Simulator, request: Request, fault: str) -> Response:
    sim.reset()
    return Response.of_json(sim.snapshot())


def routes() -> list:
    table = [
        ("POST", r"/v1/chat/completions", "chat", sim_chat.chat),
        ("POST", r"/v1/videos", "video_create", sim_jobs.video_create),
        ("GET", r"/v1/videos/(?P<video_id>[\w-]+)", "video_get", sim_jobs.video_get),
        (
            "GET",
            r"/v1/videos/(?P<video_id>[\w-]+)/content",
            "video_content",
            sim_jobs.video_content,
        ),
        ("DELETE", r"/v1/videos/(?P<video_id>[\w-]+)", "video_delete", sim_jobs.video_delete),
        ("POST", r"/v2/generate", "lipsync_create", sim_jobs.lipsync_create),
        ("GET", r"/v2/generate/(?P<job_id>[\w-]+)", "lipsync_get", sim_jobs.lipsync_get),
        ("GET", r"/_sim/files/(?P<job_id>[\w-]+)\.mp4", "lipsync_output", sim_jobs.lipsync_output),
        (
            "GET",
            r"/_sim/redirect/(?P<job_id>[\w-]+)\.mp4",
            "sim_redirect",
            sim_jobs.output_redirect,
        ),
        ("GET", r"/_sim/stats", "sim_stats", sim_stats),
        ("POST", r"/_sim/config", "sim_config", sim_config),
        ("POST", r"/_sim/reset", "sim_reset", sim_reset),
    ]
    return [
        (method, re.compile(pattern), name, handler) for method, pattern, name, handler in table
    ]
