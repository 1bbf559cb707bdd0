import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from studio.management.commands.provider_sim import build_config
from studio.providers.sim.server import Simulator, simulator_thread
from studio.providers.sim.state import RouteFaults, SimConfig
from tests.providers_support import running_sim

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_it_serves_from_the_command_line_and_counts_requests():
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), "provider_sim", "--port", "0", "--fault-5xx", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "provider_sim listening on http://127.0.0.1:" in line
        url = line.rsplit(" ", 1)[1].strip()
        answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
        assert answer.status_code == 503  # every request fails, as asked
        stats = httpx.get(f"{url}/_sim/stats").json()
        assert stats["requests"] == {"chat": 1} and stats["statuses"]["chat"] == {"503": 1}
    finally:
        process.terminate()
        process.wait(10)


def test_it_turns_command_options_into_a_config():
    config = build_config(
        {
            "seed": 3,
            "latency_ms": 40,
            "fault_429": 0.2,
            "fault_hang": 0.1,
            "retry_after": 2,
            "drift": 0.3,
            "job_s": 0.0,
            "api_key": "k",
        }
    )
    assert config.seed == 3 and config.latency_ms == 40 and config.job_s == 0.0
    assert config.faults["*"] == RouteFaults(rate_429=0.2, hang=0.1)
    assert config.drift_rate == 0.3 and config.retry_after_s == 2 and config.api_key == "k"
    assert build_config({}).faults == {}


async def test_it_is_reconfigured_and_reset_over_http():
    async with running_sim() as sim, httpx.AsyncClient(base_url=sim.url) as client:
        await client.post(
            "/_sim/config",
            json={
                "latency_ms": 5,
                "faults": {"chat": {"error_5xx": 1.0}},
                "script": {"video_get": ["429"]},
            },
        )
        assert sim.config.latency_ms == 5 and sim.config.faults["chat"].error_5xx == 1.0
        assert list(sim.script["video_get"]) == ["429"]
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 503
        stats = (await client.get("/_sim/stats", params={"arrivals": "1"})).json()
        assert len(stats["arrivals"]["chat"]) == 1 and stats["config"]["api_key"] == ""
        assert (
            await client.post("/_sim/config", json={"script": {"chat": ["nope"]}})
        ).status_code == 400
        await client.post("/_sim/reset")
        assert (await client.get("/_sim/stats")).json()["requests"] == {}


async def test_it_draws_faults_at_the_configured_rate_from_its_seed():
    outcomes = []
    for _ in range(2):
        config = SimConfig(seed=11, faults={"*": RouteFaults(error_5xx=0.3, rate_429=0.2)})
        async with running_sim() as sim, httpx.AsyncClient(base_url=sim.url) as client:
            sim.config = config
            sim.rng.seed(11)
            codes = [
                (await client.post("/v1/chat/completions", json=CHAT)).status_code
                for _ in range(60)
            ]
        outcomes.append(codes)
    assert outcomes[0] == outcomes[1]
    assert 8 <= outcomes[0].count(503) <= 30 and 3 <= outcomes[0].count(429) <= 22


async def test_it_adds_latency_from_its_distribution():
    async with running_sim(latency_ms=30) as sim, httpx.AsyncClient(base_url=sim.url) as client:
        started = time.perf_counter()
        await client.post("/v1/chat/completions", json=CHAT)
        assert time.perf_counter() - started >= 0.03
        sim.config.latency_sigma = 0.5
        delays = []
        for _ in range(8):
            started = time.perf_counter()
            await client.post("/v1/chat/completions", json=CHAT)
            delays.append(time.perf_counter() - started)
        assert max(delays) - min(delays) > 0.005  # spread, not fixed


async def test_it_answers_unknown_routes_and_bad_bodies_plainly():
    async with running_sim() as sim, httpx.AsyncClient(base_url=sim.url) as client:
        assert (await client.get("/v1/nothing")).status_code == 404
        assert (await client.post("/v1/chat/completions", content=b"{oops")).status_code == 400
        assert (await client.post("/v1/videos", files={"model": (None, "x")})).status_code == 400
        assert (await client.post("/v2/generate", json={"input": []})).status_code == 400


def test_it_runs_in_a_thread_for_sync_callers():
    with simulator_thread(SimConfig()) as sim:
        assert httpx.post(f"{sim.url}/v1/chat/completions", json=CHAT).status_code == 200
        assert sim.stats.requests["chat"] == 1


def test_it_refuses_unknown_scripted_faults():
    with pytest.raises(ValueError):
        Simulator().queue_faults("chat", "gremlins")


async def test_with_cache_clips_an_identical_request_reuses_the_rendered_clip(monkeypatch):
    from studio.providers.sim import jobs

    rendered = []
    real = jobs._render_clip
    monkeypatch.setattr(jobs, "_render_clip", lambda *a, **k: rendered.append(1) or real(*a, **k))
    form = {"model": "m", "prompt": "Rain.", "seconds": "1", "size": "64x64"}
    async with running_sim(job_s=0.0, cache_clips=True) as sim, httpx.AsyncClient() as client:
        clips = []
        for key in ("a", "b"):
            job = await client.post(
                f"{sim.url}/v1/videos",
                files={k: (None, v) for k, v in form.items()},
                headers={"Idempotency-Key": key},
            )
            content = await client.get(f"{sim.url}/v1/videos/{job.json()['id']}/content")
            clips.append(content.content)

    assert clips[0] == clips[1] and clips[0][4:8] == b"ftyp"
    assert len(rendered) == 1  # two vendor jobs, one rendering
