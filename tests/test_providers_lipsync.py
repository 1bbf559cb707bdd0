import asyncio
import io

import av
import numpy as np
import pytest

from studio.providers.audio import decode_mono, wav_bytes
from studio.providers.base import JobHandle, JobState, LipSyncRequest
from studio.providers.errors import BadRequest
from studio.providers.ledger import MemoryLedger
from studio.providers.video_http import wait_for
from tests.providers_support import API_KEY, lipsync_for, running_sim


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def clip() -> bytes:
    """A real one-second MP4, made by the animatic renderer."""
    import tempfile
    from pathlib import Path

    from studio.providers.animatic import RenderOptions, render_animatic
    from studio.providers.base import VideoRequest

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/clip.mp4"
        options = RenderOptions(fps=12, preset="ultrafast", size=(160, 288), title_card=False)
        render_animatic(VideoRequest(prompt="A face.", duration_s=1.0), path, options=options)
        return Path(path).read_bytes()


CLIP = clip()
# One second of a 220 Hz tone: what the sync should carry back as the video's sound.
SPEECH = wav_bytes(0.3 * np.sin(2 * np.pi * 220 * np.arange(16_000) / 16_000), 16_000)


def decoded(data: bytes) -> tuple[int, np.ndarray]:
    """The video's frame count and its sound (mono, 16 kHz)."""
    return decoded_frames(data), decode_mono(data, sample_rate=16_000)[0]


async def test_it_uploads_files_polls_and_downloads_the_output(sim):
    ledger = MemoryLedger()
    lipsync = lipsync_for(sim, ledger=ledger)
    handle = await lipsync.submit(LipSyncRequest(video=CLIP, audio=SPEECH), "sync-1")
    assert handle.kind == "lipsync" and sim.jobs[handle.id]["seconds"] == pytest.approx(1.0)
    status = await wait_for(lipsync, handle, timeout_s=5)
    assert status.state is JobState.SUCCEEDED and status.vendor_status == "COMPLETED"
    frames, sound = decoded(await lipsync.fetch(handle))
    # The video it was sent, with the audio it was sent as its sound track.
    assert frames == decoded_frames(CLIP)
    assert len(sound) == pytest.approx(16_000, abs=800)
    tone = decode_mono(SPEECH, sample_rate=16_000)[0]
    assert np.corrcoef(sound[2000:12000], tone[2000:12000])[0, 1] > 0.9
    [billed] = [e for e in ledger.entries if e.operation == "lipsync.generate"]
    assert billed.units == pytest.approx(1.0) and billed.kind == "lipsync"


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_audio_that_is_not_audio_is_refused_at_submit(sim):
    lipsync = lipsync_for(sim)
    with pytest.raises(BadRequest, match="the audio could not be read"):
        await lipsync.submit(LipSyncRequest(video=CLIP, audio=b"RIFF\x24\x00\x00\x00WAVEfmt "), "x")


async def test_it_sends_urls_as_json_inputs(sim):
    lipsync = lipsync_for(sim)
    request = LipSyncRequest(video_url="https://cdn.example/v.mp4", audio_url="https://cdn/a.wav")
    handle = await lipsync.submit(request, "sync-2")
    await wait_for(lipsync, handle, timeout_s=5)
    data = await lipsync.fetch(handle)
    assert data[4:8] == b"ftyp"


async def test_it_goes_through_pending_and_processing(sim):
    sim.config.job_s = 0.3
    lipsync = lipsync_for(sim)
    handle = await lipsync.submit(LipSyncRequest(video=CLIP, audio=SPEECH), "sync-1")
    seen = []
    while not (status := await lipsync.poll(handle)).state.finished:
        seen.append(status.vendor_status)
        await asyncio.sleep(0.02)
    assert seen[0] == "PENDING" and "PROCESSING" in seen


@pytest.mark.parametrize(
    ("fault", "vendor", "retryable"), [("fail", "FAILED", True), ("reject", "REJECTED", False)]
)
async def test_it_maps_failures_and_rejections(sim, fault, vendor, retryable):
    sim.queue_faults("lipsync_create", fault)
    lipsync = lipsync_for(sim)
    handle = await lipsync.submit(LipSyncRequest(video=CLIP, audio=SPEECH), "sync-1")
    status = await wait_for(lipsync, handle, timeout_s=5)
    assert status.state is JobState.FAILED and status.vendor_status == vendor
    assert status.retryable is retryable and status.error


@pytest.mark.parametrize("route", ["lipsync_create", "lipsync_get", "lipsync_output"])
@pytest.mark.parametrize("fault", ["5xx", "429", "drop", "hang", "malformed", "lost_response"])
async def test_it_rides_out_every_fault_on_every_route(sim, route, fault):
    sim.queue_faults(route, fault)
    lipsync = lipsync_for(sim)
    handle = await lipsync.submit(LipSyncRequest(video=CLIP, audio=SPEECH), "sync-1")
    await wait_for(lipsync, handle, timeout_s=5)
    frames, sound = decoded(await lipsync.fetch(handle))
    # The video it was sent, with the audio it was sent as its sound track.
    assert frames == decoded_frames(CLIP)
    assert len(sound) == pytest.approx(16_000, abs=800)
    tone = decode_mono(SPEECH, sample_rate=16_000)[0]
    assert np.corrcoef(sound[2000:12000], tone[2000:12000])[0, 1] > 0.9
    assert sim.stats.jobs_per_key["sync-1"] == 1


async def test_it_needs_both_inputs_before_calling(sim):
    with pytest.raises(BadRequest):
        await lipsync_for(sim).submit(LipSyncRequest(video=CLIP), "sync-1")
    assert sim.stats.requests["lipsync_create"] == 0


async def test_it_cannot_cancel_and_says_so(sim):
    lipsync = lipsync_for(sim)
    assert lipsync.capabilities.can_cancel is False
    handle = await lipsync.submit(LipSyncRequest(video=CLIP, audio=SPEECH), "sync-1")
    assert await lipsync.cancel(handle) is False
    with pytest.raises(BadRequest):
        await lipsync.cancel(JobHandle(provider="other", id="x", kind="lipsync"))


def test_it_sends_the_key_only_to_its_own_host():
    lipsync = lipsync_for(type("Sim", (), {"url": "http://127.0.0.1:9"})())
    assert lipsync.headers("http://127.0.0.1:9/v2/generate")["x-api-key"] == API_KEY
    foreign = lipsync.headers("https://bucket.example/output.mp4")
    assert API_KEY not in str(foreign) and "authorization" not in {k.lower() for k in foreign}


async def test_it_follows_an_output_redirect_without_the_key(sim):
    sim.config.redirect_outputs = True
    lipsync = lipsync_for(sim)
    handle = await lipsync.submit(LipSyncRequest(video=CLIP, audio=SPEECH), "sync-1")
    await wait_for(lipsync, handle, timeout_s=5)
    frames, sound = decoded(await lipsync.fetch(handle))
    # The video it was sent, with the audio it was sent as its sound track.
    assert frames == decoded_frames(CLIP)
    assert len(sound) == pytest.approx(16_000, abs=800)
    tone = decode_mono(SPEECH, sample_rate=16_000)[0]
    assert np.corrcoef(sound[2000:12000], tone[2000:12000])[0, 1] > 0.9
    assert sim.stats.keyed_downloads == 0  # the storage host never saw the key
    sim.config.redirect_outputs = False
    await lipsync.fetch(handle)
    assert sim.stats.keyed_downloads == 1  # our own host gets it, as it should
