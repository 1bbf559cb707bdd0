"""The simulator's route table: method, path pattern, route name (the key of faults and stats;
names starting with `sim_` are neither counted nor faulted) and handler."""

from __future__ import annotations

import re

from studio.providers.sim import chat, control, jobs


def routes() -> list:
    table = [
        ("POST", r"/v1/chat/completions", "chat", chat.chat),
        ("POST", r"/v1/videos", "video_create", jobs.video_create),
        ("GET", r"/v1/videos/(?P<video_id>[\w-]+)", "video_get", jobs.video_get),
        ("GET", r"/v1/videos/(?P<video_id>[\w-]+)/content", "video_content", jobs.video_content),
        ("DELETE", r"/v1/videos/(?P<video_id>[\w-]+)", "video_delete", jobs.video_delete),
        ("POST", r"/v2/generate", "lipsync_create", jobs.lipsync_create),
        ("GET", r"/v2/generate/(?P<job_id>[\w-]+)", "lipsync_get", jobs.lipsync_get),
        ("GET", r"/_sim/files/(?P<job_id>[\w-]+)\.mp4", "lipsync_output", jobs.lipsync_output),
        ("GET", r"/_sim/redirect/(?P<job_id>[\w-]+)\.mp4", "sim_redirect", jobs.output_redirect),
        ("GET", r"/_sim/stats", "sim_stats", control.sim_stats),
        ("POST", r"/_sim/config", "sim_config", control.sim_config),
        ("POST", r"/_sim/reset", "sim_reset", control.sim_reset),
    ]
    return [
        (method, re.compile(pattern), name, handler) for method, pattern, name, handler in table
    ]
