"""200 takes rendered by a real `studio_worker` that is SIGKILLed 20 times along the way.

The vendor is the loopback simulator in its own process. Kill moments come from a seeded RNG:
one in each twentieth of the first 90 % of the batch (once a random number of its takes have
finished, plus a random delay, and never before the worker holds takes), so they land in every
pipeline step. After each kill a fresh worker starts; jobs
the dead one held come back when their short lease expires.

Nobody is in the scenes, so no take loads the face models (2 s in each pool process of each of
the 21 workers) or scores frames: this proves submission and billing, which scoring does not
touch; tests/test_pipeline_crash.py kills a worker around a scored take.

Proved at the end: every take finished, the vendor saw one job per take (its idempotency key),
and the ledger bills each vendor job exactly once.
"""

import collections
import json
import random
import time

import pytest

from tests.render_batch_support import Studio, kill_hard, log_tail, stop_gently, wait_until

TAKES = 200
KILLS = 20
SEED = 9
WORKER = ("--concurrency", "8", "--lease", "2")
BATCH_TIMEOUT_S = 170
FRAMES = 3  # sampled from a 1 s clip: 0 s, 0.5 s and the last frame


@pytest.fixture
def studio(tmp_path):
    studio = Studio(
        tmp_path,
        VIDEO_DURATIONS="1",
        VIDEO_POLL_S="0.2",
        STUDIO_CPU_WORKERS="2",
        PROVIDER_HEALTH_PUBLISH_S="0",
    )
    try:
        yield studio
    finally:
        studio.close()


def kill_plan(rng: random.Random) -> list[tuple[int, float]]:
    """(finished takes, extra delay) per kill: one kill in each twentieth of the first 90 % of
    the batch (later, too few takes are left to be caught running)."""
    size = TAKES * 9 // 10 // KILLS
    return [(n * size + rng.randrange(size), rng.uniform(0.0, 1.5)) for n in range(KILLS)]


def remote_id(take: dict) -> str:
    handle = json.loads(take["remote_handle"])
    return (json.loads(handle) if isinstance(handle, str) else handle)["id"]


def held_by(studio: Studio, worker) -> list[dict]:
    """The takes whose jobs this worker holds (lease owners are "name@host:pid:nonce")."""
    owner = f":{worker.pid}:"
    return [
        t
        for t in studio.takes()
        if t["job_status"] == "running" and owner in (t["lease_owner"] or "")
    ]


def step_of(take: dict) -> str:
    return json.loads(take["checkpoint"] or "{}").get("step", "prompt")


def alive(worker) -> bool:
    if worker.poll() is not None:
        pytest.fail(f"the worker died on its own:\n{log_tail(worker)}")
    return True


def test_it_renders_every_take_once_and_bills_it_once_through_twenty_kills(studio):
    started = time.monotonic()
    studio.start_sim("--job-s", "1")
    studio.configure_sim({"video_max_side": 320})  # small frames: quick to render and sample
    studio.setup_takes(takes=TAKES, seconds=1, faces=False)
    rng = random.Random(SEED)
    plan = kill_plan(rng)
    worker = studio.start_worker(*WORKER)
    batch_started = time.monotonic()
    kills, unsaved = [], collections.Counter()
    for threshold, delay in plan:
        wait_until(
            lambda w=worker, n=threshold: alive(w) and studio.terminal_count() >= n,
            timeout=BATCH_TIMEOUT_S,
            what=f"{threshold} finished takes",
        )
        time.sleep(delay)
        # Never kill a worker still starting: each kill catches work in flight.
        wait_until(
            lambda w=worker: alive(w) and held_by(studio, w),
            timeout=60,
            what="the new worker to claim takes",
        )
        kill_hard(worker)
        # The dead worker writes nothing more: the database shows what it held when it died.
        held = held_by(studio, worker)
        kills.append(
            {
                "at_s": round(time.monotonic() - batch_started, 1),
                "finished": studio.terminal_count(),
                "steps": dict(collections.Counter(step_of(t) for t in held)),
            }
        )
        # Killed after its POST went out but before the handle was saved: the next worker can
        # only POST again, with the same Idempotency-Key (the vendor answers with the same job).
        unsaved.update(t["idempotency_key"] for t in held if not t["remote_handle"])
        worker = studio.start_worker(*WORKER)

    wait_until(
        lambda: studio.terminal_count() == TAKES,
        timeout=BATCH_TIMEOUT_S,
        what="every take to finish",
        step=0.2,
    )
    batch_s = time.monotonic() - batch_started
    stop_gently(worker)

    takes = studio.takes()
    stats = studio.stats()
    billed = studio.billed()
    keys = {take["idempotency_key"] for take in takes}
    handles = {remote_id(take): take["id"] for take in takes}
    resumed = sum(1 for take in takes if take["attempts"] > 1)
    summary = (
        f"{TAKES} takes, {len(kills)} kills in {batch_s:.0f} s "
        f"(with setup {time.monotonic() - started:.0f} s); "
        f"{resumed} takes resumed after a kill; kills (s, takes finished, running steps): {kills}; "
        f"POSTs {sum(stats['submissions'].values())} ({sum(unsaved.values())} takes killed "
        f"before their handle was saved), vendor jobs "
        f"{sum(stats['jobs_per_key'].values())}, billed records {len(billed)}"
    )
    print(summary)

    assert len(kills) == KILLS
    assert [t["status"] for t in takes] == ["done"] * TAKES, [
        (t["id"], t["status"], t["error"]) for t in takes if t["status"] != "done"
    ]
    # The vendor: one job per take, and one POST per idempotency key, except a POST repeated
    # by a take that a kill caught between sending it and saving its handle.
    assert len(keys) == TAKES
    assert stats["jobs_per_key"] == dict.fromkeys(keys, 1), summary
    assert set(stats["submissions"]) == keys
    repeated = {k: n - 1 for k, n in stats["submissions"].items() if n > 1}
    assert all(extra <= unsaved[key] for key, extra in repeated.items()), (repeated, summary)
    # The ledger: each vendor job billed once, on the take that rendered it.
    assert len(handles) == TAKES
    assert sorted((row["request_id"], row["take_id"]) for row in billed) == sorted(
        handles.items()
    ), summary
    assert {float(row["units"]) for row in billed} == {1.0}
    assert all(json.loads(t["checkpoint"]) == {"step": "done"} for t in takes)
    assert studio.query("SELECT COUNT(*) AS n FROM dramas_frame") == [{"n": FRAMES * TAKES}]
