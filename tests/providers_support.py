"""Fixtures and builders for the provider tests: a simulator per test, adapters pointed at it.

A test module declares its `sim` fixture with `running_sim()`. Retries wait only milliseconds
here, and the client timeout is short, so faults cost little time.
"""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from studio.providers.base import CastMember, ImageRequest
from studio.providers.ledger import MemoryLedger
from studio.providers.lipsync_http import LipSyncConfig, LipSyncHTTP
from studio.providers.openai_chat import ChatConfig, OpenAICompatibleChat
from studio.providers.resilience import CircuitBreaker, Guard, RetryPolicy
from studio.providers.sim.server import Simulator
from studio.providers.sim.state import SimConfig
from studio.providers.video_http import VideoConfig, VideoJobsHTTP
from studio.providers.writer import BRIEF_MARKER, ChapterBrief

API_KEY = "sk-test-7f3a9c1e5b2d4f6a8c0e"
TIMEOUT_S = 0.5


def fast_guard(name: str = "test", *, attempts: int = 4, **fields) -> Guard:
    return Guard(
        name,
        retry=RetryPolicy(max_attempts=attempts, base_s=0.001, cap_s=0.01, retry_after_cap_s=0.05),
        breaker=CircuitBreaker(failures=50, name=name),
        register=False,
        **fields,
    )


def chat_for(sim: Simulator, *, ledger: MemoryLedger | None = None, guard=None, **config):
    fields = dict(
        name="openai",
        base_url=f"{sim.url}/v1",
        model="gpt-4.1",
        api_key=API_KEY,
        timeout_s=TIMEOUT_S,
        retry_after_cap_s=0.05,
    )
    return OpenAICompatibleChat(
        ChatConfig(**(fields | config)),
        guard=guard or fast_guard(),
        recorder=ledger if ledger is not None else MemoryLedger(),
    )


def remote_video_for(
    adapter, config_class, *, ledger: MemoryLedger | None = None, guard=None, **config
):
    """A video adapter with quick timeouts and polls, a fast guard and a memory ledger (each
    adapter's test file passes its base URL, model and key)."""
    fields = dict(timeout_s=TIMEOUT_S, retry_after_cap_s=0.05, poll_s=0.02)
    return adapter(
        config_class(**(fields | config)),
        guard=guard or fast_guard(),
        recorder=ledger if ledger is not None else MemoryLedger(),
    )


def video_for(sim: Simulator, **config):
    defaults = dict(name="openai", base_url=f"{sim.url}/v1", model="sora-2", api_key=API_KEY)
    return remote_video_for(VideoJobsHTTP, VideoConfig, **(defaults | config))


def lipsync_for(sim: Simulator, *, ledger: MemoryLedger | None = None, guard=None, **config):
    fields = dict(
        name="sync",
        base_url=f"{sim.url}/v2",
        model="lipsync-2",
        api_key=API_KEY,
        timeout_s=TIMEOUT_S,
        retry_after_cap_s=0.05,
        poll_s=0.02,
    )
    return LipSyncHTTP(
        LipSyncConfig(**(fields | config)),
        guard=guard or fast_guard(),
        recorder=ledger if ledger is not None else MemoryLedger(),
    )


def remote_image_for(
    adapter, config_class, *, ledger: MemoryLedger | None = None, guard=None, **config
):
    """An image adapter with a fast guard and a memory ledger (each adapter's test file passes
    its base URL, model and key)."""
    fields = dict(timeout_s=2.0, retry_after_cap_s=0.05)
    return adapter(
        config_class(**(fields | config)),
        guard=guard or fast_guard(),
        recorder=ledger if ledger is not None else MemoryLedger(),
    )


PORTRAIT = str(
    Path(__file__).resolve().parent.parent / "dramas" / "demo" / "faces" / "grace_hopper.jpg"
)


def image_request(*, cast: tuple[str, ...] = (PORTRAIT,), **fields) -> ImageRequest:
    """A keyframe request of a vertical scene with these portraits (paths) as its cast."""
    values = dict(
        prompt="Ada waits at the rainy window, neon light on her face.",
        aspect="9:16",
        cast=tuple(CastMember(f"person-{n}", image_path=path) for n, path in enumerate(cast)),
        seed=7,
    )
    return ImageRequest(**(values | fields))


def only_image(sim: Simulator) -> dict:
    """The one still the simulator made."""
    [record] = sim.images.values()
    return record


def looks_closer_to(still: bytes, near: str, far: str) -> bool:
    """The still's mean colour is nearer the picture at `near` than the one at `far` (the
    simulator's stills are crops of the face they were made from)."""

    def mean_colour(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB").resize((16, 16)), dtype=float).mean(axis=(0, 1))

    picture = mean_colour(Image.open(io.BytesIO(still)))
    return bool(
        np.abs(picture - mean_colour(Image.open(near))).sum()
        < np.abs(picture - mean_colour(Image.open(far))).sum()
    )


@contextlib.asynccontextmanager
async def running_sim(**config):
    """A simulator on this test's event loop: quick jobs, short hangs, short Retry-After."""
    values = dict(job_s=0.05, hang_s=2.0, retry_after_s=0.01)
    simulator = Simulator(SimConfig(**(values | config)))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def brief_messages(brief: ChapterBrief) -> list[dict]:
    """Chat messages carrying `brief` the way the studio's prompts do (dramas/prompts.py ends
    its user prompt with the marker and the brief as fenced JSON), without a database."""
    brief_json = json.dumps(brief.to_dict(), ensure_ascii=False, indent=1)
    return [
        {"role": "system", "content": "You write chapters of vertical short dramas."},
        {"role": "user", "content": f"Write it.\n{BRIEF_MARKER}\n```json\n{brief_json}\n```"},
    ]
