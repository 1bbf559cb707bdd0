"""The shared process pool (studio.cpu) when processes die: a pool whose process was killed is
replaced for the next call, and pool processes (and multiprocessing's resource tracker) end
within seconds of their parent dying by SIGKILL, including a real `manage.py studio` killed
mid-render."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from studio import cpu
from tests.conftest import processes_marked
from tests.render_batch_support import wait_until
from tests.studio_process import REPO, serve_studio, studio_env

EXIT_S = 10  # how long orphaned pool processes may take to notice and exit
MARKER = "STUDIO_TEST_POOL_MARK"  # set for one test's subprocess, inherited by what it starts


@pytest.fixture
def own_pool(monkeypatch):
    """A one-process pool for this test alone: the session's shared pool (with the face models
    other tests loaded into it) is put aside and comes back afterwards."""
    monkeypatch.setenv("STUDIO_CPU_WORKERS", "1")
    monkeypatch.setattr(cpu, "_pool", None)
    yield
    cpu.shutdown_cpu_pool()


def reaped(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_a_pool_whose_idle_process_was_killed_is_replaced_for_the_next_call(own_pool):
    pool = cpu.cpu_pool()
    victim = pool.submit(os.getpid).result(timeout=60)

    os.kill(victim, signal.SIGKILL)
    # The pool reaps its dead process once it has marked itself broken.
    wait_until(lambda: reaped(victim), timeout=10, what="the pool to notice its dead process")

    # Even through the stale handle: the call never ran, so it goes to a fresh pool.
    fresh_pid = pool.submit(os.getpid).result(timeout=60)
    assert fresh_pid != victim
    assert cpu.cpu_pool() is not pool
    assert cpu.cpu_pool().submit(os.getpid).result(timeout=60) == fresh_pid


async def test_a_call_whose_process_dies_fails_retryably_and_the_next_call_runs(own_pool):
    victim = await cpu.run_cpu(os.getpid)
    pool = cpu.cpu_pool()
    running = asyncio.ensure_future(cpu.run_cpu(time.sleep, 60))
    await asyncio.sleep(0.3)

    os.kill(victim, signal.SIGKILL)
    with pytest.raises(cpu.CpuPoolBroken) as failure:
        await asyncio.wait_for(running, timeout=30)

    assert failure.value.retryable is True  # the job engine tries the step again
    assert isinstance(failure.value, BrokenProcessPool)
    assert "died (killed, or out of memory) while running sleep" in str(failure.value)
    assert cpu.cpu_pool() is not pool
    assert await cpu.run_cpu(os.getpid) != victim


def test_a_sync_caller_sees_the_broken_pool_and_the_next_call_gets_a_fresh_one(own_pool):
    pool = cpu.cpu_pool()
    victim = pool.submit(os.getpid).result(timeout=60)
    results = pool.map(time.sleep, [60])  # as characters.faces.scan_many_in_pool calls it

    time.sleep(0.3)
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        list(results)

    assert cpu.cpu_pool().submit(os.getpid).result(timeout=60) != victim
    assert cpu.cpu_pool() is not pool


def test_a_pool_broken_under_calls_nobody_holds_any_more_still_winds_down(own_pool):
    """The futures of fire-and-forget calls are the last holders of a broken pool (through
    their done callbacks): the pool's manager thread must still finish, or the interpreter
    hangs at exit waiting for it."""
    pool = cpu.cpu_pool()
    victim = pool.submit(os.getpid).result(timeout=60)
    for _ in range(3):
        pool.submit(time.sleep, 60)
    manager = pool._executor_manager_thread
    del pool
    time.sleep(0.3)

    os.kill(victim, signal.SIGKILL)
    manager.join(timeout=20)

    assert not manager.is_alive(), "the broken pool's manager thread deadlocked"
    assert cpu.cpu_pool().submit(os.getpid).result(timeout=60) != victim


# Starts two pool processes (a call each, at the same time), says so, and waits.
POOL_OWNER = """
import pathlib, sys, time
from studio.cpu import cpu_pool
list(cpu_pool().map(time.sleep, [1.0, 1.0]))
pathlib.Path(sys.argv[1]).touch()
time.sleep(600)
"""


def marked(marker: str):
    return processes_marked(MARKER, marker)


def kill_marked(marker: str) -> None:
    """Clean up after a failed test: its leftovers would outlive the session."""
    for process in marked(marker):
        os.kill(process.pid, signal.SIGKILL)


def test_pool_processes_and_the_resource_tracker_end_when_their_parent_is_killed(tmp_path):
    marker, ready = secrets.token_hex(8), tmp_path / "ready"
    env = {**os.environ, MARKER: marker, "STUDIO_CPU_WORKERS": "2"}
    owner = subprocess.Popen([sys.executable, "-c", POOL_OWNER, str(ready)], cwd=REPO, env=env)
    try:
        wait_until(ready.exists, timeout=60, what="the pool to start")
        children = [p for p in marked(marker) if p.ppid == owner.pid]
        workers = [p for p in children if "multiprocessing.spawn" in p.cmdline]
        trackers = [p for p in children if "multiprocessing.resource_tracker" in p.cmdline]
        assert (len(workers), len(trackers)) == (2, 1), children

        owner.kill()
        owner.wait(timeout=10)
        wait_until(
            lambda: not marked(marker),
            timeout=EXIT_S,
            what="the pool processes and the resource tracker to exit",
        )
    finally:
        owner.kill()
        owner.wait(timeout=10)
        kill_marked(marker)


# The offline animatic renders every seeded scene in the studio's pool (two processes).
RENDER_ENV = {
    "STUDIO_CPU_WORKERS": "2",
    # With several web processes the job worker is a process of its own: when the studio is
    # killed it is told to stop (SIGTERM) and gives its running render this grace period.
    "STUDIO_JOB_GRACE_S": "2",
    "VIDEO_BASE_URL": "",
    "ANIMATIC_PRESET": "ultrafast",
}


def test_a_studio_killed_mid_render_leaves_no_process_behind(tmp_path):
    marker = secrets.token_hex(8)
    env = {**studio_env(tmp_path), **RENDER_ENV, MARKER: marker}
    animatics = tmp_path / "var" / "animatics"
    try:
        with serve_studio(tmp_path, env) as (_, studio, _):
            queued = subprocess.run(
                [sys.executable, "manage.py", "render_chapter", "1"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert queued.returncode == 0, queued.stderr
            wait_until(
                lambda: any(animatics.glob("*.progress")),
                timeout=60,
                what="a render under way",
            )
            started = [p for p in marked(marker) if p.pid != studio.pid]
            assert [p for p in started if "multiprocessing.spawn" in p.cmdline], started

            studio.kill()
            studio.wait(timeout=10)
            wait_until(
                lambda: not marked(marker),
                timeout=EXIT_S,
                what="every process the studio started to exit",
            )
    finally:
        kill_marked(marker)


async def test_an_animatic_whose_pool_process_died_is_lost_not_failed_and_renders_again(
    own_pool, tmp_path
):
    from studio.providers.animatic import RenderOptions
    from studio.providers.base import JobState
    from studio.providers.ledger import MemoryLedger
    from studio.providers.local_animatic import LocalAnimatic
    from tests.test_providers_animatic import scene

    animatic = LocalAnimatic(
        output_dir=tmp_path, options=RenderOptions(preset="ultrafast"), recorder=MemoryLedger()
    )
    victim = await cpu.run_cpu(os.getpid)
    request = scene(duration_s=20)
    handle = await animatic.submit(request, "take-crash")
    while (await animatic.poll(handle)).progress == 0:
        await asyncio.sleep(0.05)

    os.kill(victim, signal.SIGKILL)
    while not (status := await animatic.poll(handle)).state.finished:
        await asyncio.sleep(0.05)

    # Lost with its process, not failed: the take pipeline submits the same key again.
    assert (status.state, status.vendor_status, status.retryable) == (JobState.FAILED, "lost", True)
    short = scene(duration_s=1.0)
    again = await animatic.submit(short, "take-crash")
    while not (status := await animatic.poll(again)).state.finished:
        await asyncio.sleep(0.05)
    assert status.state is JobState.SUCCEEDED


def test_the_pool_runs_below_the_studio_s_own_priority(own_pool, monkeypatch):
    monkeypatch.setenv("STUDIO_CPU_NICE", "7")

    pool_niceness = cpu.cpu_pool().submit(os.nice, 0).result(timeout=60)

    assert pool_niceness == os.nice(0) + 7
