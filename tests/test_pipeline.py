"""The take pipeline offline, end to end: the animatic renders, frames are sampled and scored."""

import pytest
from asgiref.sync import sync_to_async

from characters.consistency import score_frame
from characters.services import character_profile
from dramas.models import Take, TakeStatus, Verdict
from dramas.sampling import sample_frames, sample_times
from dramas.takes import take_enqueue
from studio.jobs.models import Job
from tests.render_support import (
    offline_video,
    running,
    seed_prices,
    two_person_drama,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def offline(settings, tmp_path, transactional_db):
    offline_video(settings, tmp_path)
    seed_prices()


def test_it_samples_two_frames_a_second_plus_the_last(tmp_path):
    assert sample_times(2.5) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sample_times(0.4) == [0.0]


async def finished(ids):
    async def check():
        takes = [t async for t in Take.objects.filter(id__in=ids)]
        return all(not t.active for t in takes) and takes

    return check


async def settled(ids):
    async def check():
        job_ids = [t.job_id async for t in Take.objects.filter(id__in=ids)]
        jobs = Job.objects.filter(id__in=job_ids, status="succeeded")
        return await jobs.acount() == len(ids)

    return check


async def test_it_renders_samples_and_scores_every_scene_offline():
    drama, _chapter, cast = await sync_to_async(two_person_drama)()
    scenes = [cast["first"], cast["second"]]
    takes = await sync_to_async(take_enqueue)(drama=drama, scenes=scenes, priority=2)

    async with running():
        await wait_for(await finished([t.id for t in takes]), timeout=60)
        # A take is marked done just before its job settles: stopping the worker in between
        # would hand the job back to the queue (to run `finish` again), not fail it.
        await wait_for(await settled([t.id for t in takes]), timeout=10)

    for take in takes:
        take = await Take.objects.select_related("scene").aget(id=take.id)
        assert take.status == TakeStatus.DONE, (take.error, take.note)
        assert take.verdict == Verdict.ACCEPT, take.consistency
        assert take.score >= drama.consistency_threshold
        assert take.video and take.poster
        assert "Skipped" in take.lipsync_note
        frames = [f async for f in take.frames.order_by("index")]
        # 2.5 s: 0, 0.5, 1, 1.5, 2 and the last frame
        assert len(frames) == 6
        assert frames[0].time_s == 0 and frames[-1].time_s > 2.3
        assert frames[0].scores.get("skipped")  # the animatic's title card is not judged
        assert all(f.verdict == Verdict.ACCEPT for f in frames[1:])
        job = await Job.objects.aget(id=take.job_id)
        assert job.status == "succeeded" and job.checkpoint == {"step": "done"}
        assert take.cost_usd == 0  # the offline animatic is booked at its price: free


async def test_it_scores_the_right_character_high_and_the_wrong_one_low():
    drama, _chapter, cast = await sync_to_async(two_person_drama)()
    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])
    async with running():
        await wait_for(await finished([take.id]), timeout=60)

    marcus = await sync_to_async(character_profile)(character=cast["marcus"])
    ada = await sync_to_async(character_profile)(character=cast["ada"])
    best = await take.frames.exclude(score=None).order_by("-score").afirst()
    right = score_frame(best.image.path, [marcus]).characters[0]
    wrong = score_frame(best.image.path, [ada]).characters[0]
    assert right.score >= 80
    assert wrong.score < drama.consistency_threshold - 15
    badge = best.scores["characters"][0]
    assert badge["name"] == "Marcus" and badge["box"] and badge["verdict"] == "match"


def test_it_decodes_a_rendered_clip_into_jpegs(tmp_path):
    from studio.providers.animatic import RenderOptions, render_animatic
    from studio.providers.base import VideoRequest

    clip = str(tmp_path / "clip.mp4")
    render_animatic(
        VideoRequest(prompt="A quiet street.", duration_s=1.2),
        clip,
        options=RenderOptions(preset="ultrafast", size=(160, 284)),
    )
    frames = sample_frames(clip, str(tmp_path / "frames"))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [round(f.time_s, 1) for f in frames[:3]] == [0.0, 0.5, 1.0]
    assert frames[-1].time_s > 1.1 and (frames[0].width, frames[0].height) == (160, 284)


async def test_a_silent_character_present_in_the_scene_is_seen_and_scored():
    drama, _chapter, cast = await sync_to_async(two_person_drama)(seconds=3.0)
    both = cast["first"]  # Marcus speaks; Ada is present and says nothing
    await sync_to_async(both.characters.add)(cast["ada"])
    (take,) = await sync_to_async(take_enqueue)(drama=drama, scenes=[both])

    async with running():
        await wait_for(await finished([take.id]), timeout=60)

    take = await Take.objects.aget(id=take.id)
    assert take.status == TakeStatus.DONE, (take.error, take.note)
    assert take.consistency["unseen"] == [], take.consistency
    assert take.verdict == Verdict.ACCEPT, take.consistency


def test_a_take_is_marked_done_only_with_its_auto_regenerated_follow_up(monkeypatch):
    from dramas import pipeline_db
    from tests.factories import create_take

    _drama, _chapter, cast = two_person_drama(auto_regenerate=True, max_attempts=3)
    take = create_take(scene=cast["first"], status="scoring", score=20.0)  # below the threshold

    def crash(**kwargs):
        raise RuntimeError("worker killed while queueing the follow-up")

    monkeypatch.setattr(pipeline_db.take_services, "take_enqueue", crash)
    with pytest.raises(RuntimeError):
        pipeline_db.mark_done(take_id=take.id)
    take.refresh_from_db()
    assert take.status == "scoring"  # not done: the resumed job will do both

    monkeypatch.undo()
    note = pipeline_db.mark_done(take_id=take.id)
    take.refresh_from_db()
    assert take.status == TakeStatus.DONE
    assert note == "Below the threshold: take 2 queued with a new seed." == take.note
    assert cast["first"].takes.count() == 2


def test_a_take_with_no_scored_frame_has_no_score_never_zero():
    from dramas import pipeline_db
    from tests.factories import create_take

    _drama, _chapter, cast = two_person_drama()
    take = create_take(scene=cast["first"], score=None)  # its one frame found nobody

    result = pipeline_db.take_verdict(take_id=take.id, expected=["Marcus"], unprofiled=[])

    take.refresh_from_db()
    assert result == {"verdict": Verdict.REJECT, "score": None}  # Marcus was never found
    assert (take.score, take.consistency["unseen"]) == (None, ["Marcus"])


def test_frames_are_stored_with_the_verdict_and_score_of_the_one_rule():
    from dramas import pipeline_db
    from dramas.models import Frame
    from tests.factories import create_take

    _drama, _chapter, cast = two_person_drama()
    frame = create_take(scene=cast["first"]).frames.get()
    partial = {
        "face_count": 1,
        "characters": [
            {"name": "Marcus", "verdict": "match", "score": 91.0},
            {"name": "Ada", "verdict": "missing", "score": None},
        ],
    }

    pipeline_db.save_frame_scores(scores={frame.id: partial})

    frame = Frame.objects.get(id=frame.id)
    assert (frame.verdict, frame.score) == (Verdict.NONE, 91.0)  # Ada out of view: not judged
