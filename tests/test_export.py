"""A chapter's cut and its export: the cut's defaults, gaps and trims; an export as a job that
writes the whole package (asserted by decoding it), reused for an unchanged cut, stale once the
cut changes; the Cut page and the package's downloads; `export_chapter` on the command line."""

import hashlib
import io
import json
import zipfile

import av
import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse

from dramas.delivery.cut import cut_entry_set, cut_of, runtime_s
from dramas.delivery.export import export_request, with_export_stage
from dramas.delivery.timelines import read_back
from dramas.models import ChapterStatus, Export, ExportStatus, Take, TakeStatus
from dramas.stages import chapter_stage, chapters_with_stage
from dramas.takes import take_approve, take_enqueue
from studio.jobs.models import Job
from studio.providers import registry
from tests.conftest import login
from tests.factories import add_member, create_line, create_user
from tests.render_support import (
    jobs_settled,
    offline_video,
    running,
    seed_prices,
    two_person_drama,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def offline(settings, tmp_path):
    offline_video(settings, tmp_path)
    seed_prices()
    registry.forget()
    yield settings
    registry.forget()


def speaking_chapter():
    drama, chapter, cast = two_person_drama(seconds=3.0)
    create_line(scene=cast["second"], speaker=cast["ada"], line="Nobody listens at this hour.")
    return drama, chapter, cast


async def render_all(drama, scenes) -> list[Take]:
    takes = await sync_to_async(take_enqueue)(drama=drama, scenes=scenes)

    async def finished():
        rows = [await Take.objects.aget(id=take.id) for take in takes]
        return rows if all(not row.active for row in rows) else None

    async with running():
        return await wait_for(finished, timeout=120)


async def approved_chapter():
    drama, chapter, cast = await sync_to_async(speaking_chapter)()
    takes = await render_all(drama, [cast["first"], cast["second"]])
    assert all(take.status == TakeStatus.DONE for take in takes), [t.error for t in takes]
    for take in takes:
        await sync_to_async(take_approve)(take=take, user=drama.created_by)
    return drama, chapter, cast, takes


async def export_through_the_worker(chapter, **options) -> Export:
    export, made = await sync_to_async(export_request)(chapter=chapter, **options)
    assert made
    async with running():
        await jobs_settled([export.job_id], timeout=240)
    return await Export.objects.aget(id=export.id)


def stored(export: Export, name: str) -> bytes:
    with default_storage.open(f"{export.folder}/{name}", "rb") as handle:
        return handle.read()


# --- the cut ----------------------------------------------------------------------------------


async def test_the_cut_plays_approved_takes_and_marks_the_scenes_without_one(offline):
    drama, chapter, cast = await sync_to_async(speaking_chapter)()
    [first] = await render_all(drama, [cast["first"]])
    items = await sync_to_async(cut_of)(chapter=chapter)
    assert [item.take for item in items] == [None, None]
    assert "approve one" in items[0].gap and "Not rendered yet" in items[1].gap
    with pytest.raises(ValidationError, match="no scene of this chapter has a take"):
        await sync_to_async(export_request)(chapter=chapter)

    await sync_to_async(take_approve)(take=first, user=drama.created_by)
    items = await sync_to_async(cut_of)(chapter=chapter)
    assert items[0].take.id == first.id and items[1].take is None
    assert items[0].in_s == 0 and items[0].out_s == pytest.approx(3.0, abs=0.05)
    assert await sync_to_async(runtime_s)(items) == pytest.approx(3.0, abs=0.05)
    with pytest.raises(ValidationError, match="1 scene has no take to play"):
        await sync_to_async(export_request)(chapter=chapter)


async def test_trims_are_checked_against_the_take(offline):
    drama, chapter, cast = await sync_to_async(speaking_chapter)()
    [take] = await render_all(drama, [cast["first"]])
    scene = cast["first"]
    entry = dict(scene=scene, take=take, transition="cut", transition_s=0.5)
    for in_s, out_s, message in [
        (1.0, 0.5, "must come after the in point"),
        (0.0, 9.0, "past the take's end"),
        (-1.0, None, "before the take's start"),
    ]:
        with pytest.raises(ValidationError, match=message):
            await sync_to_async(cut_entry_set)(in_s=in_s, out_s=out_s, **entry)
    await sync_to_async(cut_entry_set)(in_s=0.5, out_s=2.0, **entry)
    [item, _gap] = await sync_to_async(cut_of)(chapter=chapter)
    assert (item.take.id, item.in_s, item.out_s, item.chosen) == (take.id, 0.5, 2.0, True)


# --- the export -------------------------------------------------------------------------------


async def test_an_export_writes_the_whole_package_and_is_reused_for_an_unchanged_cut(offline):
    drama, chapter, cast, _takes = await approved_chapter()
    await sync_to_async(cut_entry_set)(
        scene=cast["first"], take=None, in_s=0.25, out_s=2.75, transition="dissolve",
        transition_s=0.5,
    )  # fmt: skip

    export = await export_through_the_worker(chapter)

    assert export.status == ExportStatus.DONE, export.error
    expected = {
        "episode.mp4", "episode_clean.mp4", "episode.srt", "episode.vtt", "episode.otio",
        "episode.fcpxml", "episode.xml", "episode.edl", "cover.jpg", "cover_3x4.jpg",
        "manifest.json", "episode.zip",
    }  # fmt: skip
    assert expected <= set(export.files)
    assert len([name for name in export.files if name.startswith("media/")]) == 2
    for name, entry in export.files.items():  # the manifest's hashes are the stored bytes'
        data = stored(export, name)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    with av.open(io.BytesIO(stored(export, "episode.mp4"))) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height, video.codec_context.name) == (1080, 1920, "h264")
        assert video.codec_context.profile == "High"  # at the tests' superfast preset too
        assert (audio.codec_context.name, audio.rate, audio.channels) == ("aac", 48000, 2)
        duration = float(container.duration) / 1_000_000
    assert duration == pytest.approx(2.5 + 3.0, abs=0.1)  # the trimmed first take + the second
    assert export.duration_s == pytest.approx(5.5, abs=0.05)
    assert export.loudness_lufs == pytest.approx(-14.0, abs=0.5)
    assert export.true_peak_dbtp <= -1.0 + 1e-6
    manifest = json.loads(stored(export, "manifest.json"))
    assert manifest["input_hash"] == export.input_hash
    assert manifest["loudness_lufs"] == pytest.approx(export.loudness_lufs)
    vtt = stored(export, "episode.vtt").decode()
    assert "Nobody listens at this hour." in vtt and "You are on the air." in vtt
    with zipfile.ZipFile(io.BytesIO(stored(export, "episode.zip"))) as archive:
        assert expected - {"episode.zip"} <= set(archive.namelist())
    timeline = await sync_to_async(read_back)(default_storage.path(f"{export.folder}/episode.otio"))
    assert len(list(timeline.find_clips())) >= 2

    # Asked again for the same cut: the same package, no second job.
    jobs = await Job.objects.acount()
    again, made = await sync_to_async(export_request)(chapter=chapter)
    assert (again.id, made) == (export.id, False) and await Job.objects.acount() == jobs

    # The chapter reads Exported while the export is current, and stale once the cut changes.
    def stage():
        counted = chapters_with_stage(type(chapter).objects.filter(id=chapter.id)).get()
        return with_export_stage(chapter=counted, stage=chapter_stage(counted)), counted

    now, counted = await sync_to_async(stage)()
    assert now == ChapterStatus.EXPORTED and counted.export_current
    await sync_to_async(cut_entry_set)(
        scene=cast["first"], take=None, in_s=0.0, out_s=2.0, transition="cut", transition_s=0
    )
    now, counted = await sync_to_async(stage)()
    assert now == ChapterStatus.APPROVED and not counted.export_current
    client = await sync_to_async(login)(drama.created_by)
    board = await sync_to_async(client.get)(
        reverse("drama_board", args=[drama.id]) + f"?chapter={chapter.id}"
    )
    page = board.content.decode()
    assert "stale: the cut changed since" in page
    assert reverse("export_file", args=[drama.id, export.id, "episode.mp4"]) in page


async def test_the_cut_page_previews_exports_and_serves_the_package_to_members_only(offline):
    drama, chapter, _cast, takes = await approved_chapter()
    viewer = await sync_to_async(add_member)(drama=drama, role="viewer")
    producer = await sync_to_async(login)(drama.created_by)
    cut_url = reverse("chapter_cut", args=[drama.id, chapter.id])

    page = (await sync_to_async(producer.get)(cut_url)).content.decode()
    assert 'id="cut-preview"' in page and "runtime" in page
    assert reverse("take_video", args=[drama.id, takes[0].id]) in page  # the preview's playlist
    watcher = await sync_to_async(login)(viewer)
    refused = await sync_to_async(watcher.post)(
        reverse("chapter_export", args=[drama.id, chapter.id])
    )
    assert refused.status_code == 403 and not await Export.objects.aexists()

    response = await sync_to_async(producer.post)(
        reverse("chapter_export", args=[drama.id, chapter.id]), {"loudness": "-23"}
    )
    assert response.status_code == 302
    export = await Export.objects.aget()
    assert export.loudness_target_lufs == -23.0
    async with running():
        await jobs_settled([export.job_id], timeout=240)
    export = await Export.objects.aget()
    assert export.loudness_lufs == pytest.approx(-23.0, abs=0.5)

    url = reverse("export_file", args=[drama.id, export.id, "episode.srt"])
    served = await sync_to_async(watcher.get)(url)
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == stored(export, "episode.srt")
    outsider = await sync_to_async(login)(await sync_to_async(create_user)())
    assert (await sync_to_async(outsider.get)(url)).status_code == 404
    missing = reverse("export_file", args=[drama.id, export.id, "../../settings.py"])
    assert (await sync_to_async(producer.get)(missing)).status_code == 404


def test_export_chapter_writes_the_package_and_reports_it(offline, tmp_path):
    from asgiref.sync import async_to_sync

    _drama, chapter, _cast, _takes = async_to_sync(approved_chapter)()
    out = io.StringIO()
    call_command("export_chapter", str(chapter.id), "--out", str(tmp_path / "pkg"), "--json",
                 stdout=out, stderr=io.StringIO())  # fmt: skip
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (result["width"], result["height"], result["reused"]) == (1080, 1920, False)
    assert result["loudness_lufs"] == pytest.approx(-14.0, abs=0.5)
    for name, entry in result["files"].items():
        data = (tmp_path / "pkg" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]

    again = io.StringIO()
    call_command("export_chapter", str(chapter.id), "--out", str(tmp_path / "again"), "--json",
                 stdout=again, stderr=io.StringIO())  # fmt: skip
    assert json.loads(again.getvalue().strip().splitlines()[-1])["reused"] is True


async def test_the_cut_page_follows_the_export_live(offline):
    from channels.layers import channel_layers

    from studio.jobs import store
    from studio.jobs.models import JobStatus
    from tests.test_consumers import connect

    channel_layers.backends.clear()  # this test's event loop gets its own in-memory layer
    drama, chapter, _cast, _takes = await approved_chapter()
    path = f"/ws/dramas/{drama.id}/live/?view=cut&chapter={chapter.id}"
    communicator, connected, _ = await connect(path, user=drama.created_by)
    assert connected
    snapshot = await communicator.receive_from(timeout=5)
    assert 'id="export-panel"' in snapshot and "Not exported yet." in snapshot
    # Rendered without the request, the swapped-in form has no CSRF field: it posts through
    # htmx, whose header carries the page's token (a plain post was refused with a 403).
    export_url = f"/dramas/{drama.id}/chapters/{chapter.id}/export/"
    assert f'hx-post="{export_url}"' in snapshot

    export, _made = await sync_to_async(export_request)(chapter=chapter)
    queued = await communicator.receive_from(timeout=5)
    assert "Queued" in queued
    await Job.objects.filter(id=export.job_id).aupdate(status=JobStatus.RUNNING, lease_owner="w")
    await Export.objects.filter(id=export.id).aupdate(
        status=ExportStatus.RUNNING, progress=0.4, note="Mastering the episode"
    )
    await sync_to_async(store.save_progress)(
        owner="w", job_id=export.job_id, drama_id=drama.id, progress=0.4, note="Mastering"
    )
    moved = await communicator.receive_from(timeout=5)
    assert moved.startswith('<section id="export-panel"') and "Mastering the episode" in moved
    assert "40%" in moved
    await communicator.disconnect()
    channel_layers.backends.clear()


async def test_the_producer_picks_the_cover_and_the_export_follows(offline):
    from dramas.delivery.cut import cover_candidates, cover_frame

    drama, chapter, _cast, _takes = await approved_chapter()
    items = await sync_to_async(cut_of)(chapter=chapter)
    candidates = await sync_to_async(cover_candidates)(items=items)
    best = await sync_to_async(cover_frame)(chapter=chapter, items=items)
    assert best == candidates[0] and len(candidates) > 1
    scores = [frame.score for frame in candidates if frame.score is not None]
    assert scores == sorted(scores, reverse=True)

    first, _ = await sync_to_async(export_request)(chapter=chapter)
    assert first.inputs["cover_frame"] == best.id
    producer = await sync_to_async(login)(drama.created_by)
    url = reverse("chapter_cover", args=[drama.id, chapter.id])
    await sync_to_async(producer.post)(url, {"frame": 10**9})  # not one of the chapter's
    await chapter.arefresh_from_db()
    assert chapter.cover_frame_id is None
    picked = candidates[-1]
    await sync_to_async(producer.post)(url, {"frame": picked.id})
    await chapter.arefresh_from_db()
    assert chapter.cover_frame_id == picked.id

    second, made = await sync_to_async(export_request)(chapter=chapter)
    assert made and second.input_hash != first.input_hash
    assert second.inputs["cover_frame"] == picked.id
    page = await sync_to_async(producer.get)(reverse("chapter_cut", args=[drama.id, chapter.id]))
    assert (
        reverse("frame_image", args=[drama.id, picked.take_id, picked.id]) in page.content.decode()
    )
