"""The simulator's route table: method, path pattern, route name (the key of faults and stats;
names starting with `sim_` are neither counted nor faulted) and handler."""

from __future__ import annotations

import re

from studio.providers.sim import ark, chat, comfyui, control, fal, images, jobs, speech

# Each video wire format under a prefix named after its VIDEO_API value, so one simulator serves
# them all (`VIDEO_BASE_URL=http://127.0.0.1:PORT/ark`, ...).
OPENAI_VIDEOS = [
    ("POST", r"/videos", "video_create", jobs.video_create),
    ("GET", r"/videos/(?P<video_id>[\w-]+)", "video_get", jobs.video_get),
    ("GET", r"/videos/(?P<video_id>[\w-]+)/content", "video_content", jobs.video_content),
    ("DELETE", r"/videos/(?P<video_id>[\w-]+)", "video_delete", jobs.video_delete),
]
VIDEO_APIS = {
    "openai_videos": OPENAI_VIDEOS,
    "ark": ark.ROUTES,
    "fal": fal.ROUTES,
    "comfyui": comfyui.ROUTES,
}


def routes() -> list:
    mounted = [
        (method, f"/{api}{pattern}", name, handler)
        for api, table in VIDEO_APIS.items()
        for method, pattern, name, handler in table
    ]
    table = [
        # Images first: fal's video submit takes any model id the image routes do not.
        *images.ROUTES,
        *mounted,
        ("POST", r"/v1/chat/completions", "chat", chat.chat),
        # Speech on OpenAI's wire format (SPEECH_BASE_URL=http://127.0.0.1:PORT/v1, or /openai
        # after its SPEECH_API value like the video prefixes; one route name, one count).
        ("POST", r"/v1/audio/speech", "speech", speech.openai_speech),
        ("POST", r"/openai/audio/speech", "speech", speech.openai_speech),
        # ElevenLabs (SPEECH_API=elevenlabs, SPEECH_BASE_URL=http://127.0.0.1:PORT/elevenlabs).
        (
            "POST",
            r"/elevenlabs/v1/text-to-speech/(?P<voice_id>[\w-]+)/with-timestamps",
            "speech_elevenlabs",
            speech.elevenlabs_speech,
        ),
        ("POST", r"/elevenlabs/v1/voices/add", "voice_add_elevenlabs", speech.elevenlabs_voice_add),
        (
            "DELETE",
            r"/elevenlabs/v1/voices/(?P<voice_id>[\w-]+)",
            "voice_delete_elevenlabs",
            speech.elevenlabs_voice_delete,
        ),
        # Also under /v1, as OpenAI serves it (VIDEO_BASE_URL=http://127.0.0.1:PORT/v1).
        *(
            (method, f"/v1{pattern}", name, handler)
            for method, pattern, name, handler in OPENAI_VIDEOS
        ),
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
