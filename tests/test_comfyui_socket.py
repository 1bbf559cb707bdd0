"""ComfyUI's progress websocket: steps become progress, the end wakes the poller, and a socket
that is refused, cut or silent leaves polling over HTTP exactly as it was."""

import asyncio
import time

import pytest
from websockets.asyncio.client import connect

from studio.providers import comfyui_socket
from studio.providers.base import JobState, wait_for_news
from studio.providers.comfyui_socket import PromptProgress, socket_url
from studio.providers.video_comfyui import executed_nodes
from studio.providers.video_http import wait_for
from tests.providers_support import running_sim
from tests.test_video_comfyui import comfy_for, scene


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def http_looks(sim) -> int:
    return sim.stats.requests["comfyui_history"] + sim.stats.requests["comfyui_queue"]


async def poll_until(video, handle, check, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await video.poll(handle)
        if check(status):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"no status matched within {timeout_s} s; last {status}")


def test_progress_follows_the_events_a_real_comfyui_sent():
    """The order seen from ComfyUI 0.3.64 (../shared/research/comfyui_api.md): a cached node,
    progress_state and executing per node, sampler steps, the end marker."""
    progress = PromptProgress("p1", nodes_total=4)
    assert progress.fraction() == 0.0
    assert progress.take("execution_start", {"prompt_id": "p1"}) is True
    progress.take("execution_cached", {"nodes": ["1"], "prompt_id": "p1"})
    running = {"value": 0, "max": 1, "state": "running"}
    progress.take("progress_state", {"prompt_id": "p1", "nodes": {"2": running}})
    progress.take("executing", {"node": "2", "display_node": "2", "prompt_id": "p1"})
    assert progress.fraction() == pytest.approx(1 / 4)
    progress.take("executing", {"node": "3", "prompt_id": "p1"})
    progress.take("progress", {"value": 10, "max": 20, "node": "3", "prompt_id": "p1"})
    assert progress.fraction() == pytest.approx(2.5 / 4)
    assert progress.vendor_status() == "running step 10/20"
    assert progress.take("progress", {"value": 5, "max": 20, "prompt_id": "other"}) is False
    assert progress.value == 10  # another prompt's events change nothing
    output = {"images": [{"filename": "a.mp4"}], "animated": [True]}
    progress.take("executed", {"node": "4", "output": output, "prompt_id": "p1"})
    assert progress.take("execution_success", {"prompt_id": "p1"}) is True
    assert progress.ended == "execution_success"
    assert progress.fraction() < 1.0  # done only once the history says so


def test_the_socket_url_follows_the_base_url():
    assert socket_url("http://gpu:8188/", "c1") == "ws://gpu:8188/ws?clientId=c1"
    assert socket_url("https://h/comfy", "c1") == "wss://h/comfy/ws?clientId=c1"


async def test_the_simulated_socket_speaks_rfc_6455_to_a_real_client(sim):
    async with connect(f"{socket_url(sim.url + '/comfyui', 'c9')}") as ws:
        first = await ws.recv()
        assert '"type": "status"' in first and '"sid": "c9"' in first
        await ws.ping()
    assert sim.stats.statuses["comfyui_ws"]["101"] == 1


async def test_sampler_steps_become_progress_without_http_looks(sim):
    sim.config.job_s = 1.5
    video = comfy_for(sim, poll_s=0.05)
    handle = await video.submit(scene(), "take-1")
    mid = await poll_until(video, handle, lambda s: s.vendor_status.startswith("running step "))
    assert mid.state is JobState.RUNNING and 0 < mid.progress < 0.99
    looks = http_looks(sim)
    later = await poll_until(video, handle, lambda s: s.progress > mid.progress)
    assert later.state is JobState.RUNNING
    assert http_looks(sim) == looks  # the socket answered those polls alone
    done = await wait_for(video, handle, timeout_s=5)
    assert done.state is JobState.SUCCEEDED and done.progress == 1.0
    assert sim.stats.requests["comfyui_ws"] == 1
    assert video._sockets == {}  # closed with the prompt's end


async def test_the_end_wakes_the_poller_at_once(sim):
    sim.config.job_s = 0.6
    video = comfy_for(sim, poll_s=30.0)  # a poller that would otherwise sleep 30 s
    handle = await video.submit(scene(), "take-1")
    await poll_until(video, handle, lambda s: video._sockets[handle.id].live)
    await video.poll(handle)  # the HTTP look after the socket went live
    started = time.monotonic()
    while not (status := await video.poll(handle)).state.finished:
        await wait_for_news(video, handle, 30.0)
    assert status.state is JobState.SUCCEEDED
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("fault", ["5xx", "drop", "malformed", "cut_stream"])
async def test_a_refused_or_cut_socket_leaves_http_polling(sim, fault):
    sim.config.job_s = 0.8
    sim.queue_faults("comfyui_ws", fault)
    video = comfy_for(sim, poll_s=0.05)
    handle = await video.submit(scene(), "take-1")
    status = await wait_for(video, handle, timeout_s=5)
    assert status.state is JobState.SUCCEEDED
    assert sim.stats.requests["comfyui_history"] >= 3  # polled over HTTP meanwhile
    assert sim.stats.jobs_per_key == {"take-1": 1}


async def test_a_server_without_a_socket_renders_as_before(sim):
    sim.routes = [route for route in sim.routes if route[2] != "comfyui_ws"]
    video = comfy_for(sim)
    handle = await video.submit(scene(), "take-1")
    assert (await wait_for(video, handle, timeout_s=5)).state is JobState.SUCCEEDED


async def test_a_silent_socket_is_checked_over_http_again(sim, monkeypatch):
    """A queued prompt deleted from ComfyUI's queue by hand sends no event: the next HTTP
    look, RECHECK_S later, finds it gone."""
    monkeypatch.setattr(comfyui_socket, "RECHECK_S", 0.3)
    sim.config.job_s = 10.0
    video = comfy_for(sim, poll_s=0.05)
    await video.submit(scene(), "take-1")  # keeps the executor busy
    handle = await video.submit(scene(), "take-2")
    await poll_until(video, handle, lambda s: video._sockets[handle.id].trusted())
    job = next(job for job in sim.jobs.values() if job.get("prompt_id") == handle.id)
    job["deleted"] = True  # as someone clearing the queue in ComfyUI's own page
    status = await poll_until(video, handle, lambda s: s.state.finished, timeout_s=3)
    assert status.state is JobState.FAILED and status.vendor_status == "missing"


def test_progress_counts_only_the_nodes_comfyui_will_run():
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 16}},
        "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0]}},
        "4": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a note"}},
    }
    assert executed_nodes(graph) == 3  # the note is never run
    assert executed_nodes({"1": {"class_type": "Custom", "inputs": {}}}) == 1
