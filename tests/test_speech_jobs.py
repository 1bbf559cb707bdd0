"""Line speech as jobs: "Voice the chapter" queues one `dialog.speak` job per line, each spoken
through the configured service (here the simulator's OpenAI speech route, counted), cached and
billed like the render's speech step; failures stay with their line; the editor plays the audio."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from characters import services as character_services
from characters import voices
from dramas import speech
from dramas.jobs import scene_warnings
from dramas.models import DialogLine, LineAudio, Role
from dramas.speech_jobs import (
    SPEAK,
    SPEAK_ATTEMPTS,
    chapter_speak_enqueue,
    dialog_speak,
    line_speak_enqueue,
    line_voices,
)
from studio.jobs.models import Job, JobStatus
from studio.models import UsageRecord
from studio.providers import registry
from studio.providers.audio import decode_mono, wav_bytes
from studio.providers.sim.http import Response, error_response
from studio.providers.sim.server import simulator_thread
from studio.providers.sim.speech import spoken_tones
from studio.providers.sim.state import SimConfig
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
    create_user,
)
from tests.providers_support import API_KEY, running_sim
from tests.render_support import jobs_settled, running

HTMX = {"HX-Request": "true"}


def speech_on(settings, sim, *, attempts: int = 1) -> None:
    """The registry's speech service is the simulator's OpenAI route; no in-call retries, so
    the job engine's own retries are what a test sees."""
    settings.PROVIDER_SPEECH = {
        **settings.PROVIDER_SPEECH,
        "api": "openai",
        "base_url": f"{sim.url}/v1",
        "provider": "openai",
        "model": "gpt-4o-mini-tts",
        "api_key": "",
        "timeout_s": 3.0,
    }
    settings.PROVIDER_RETRY = {
        "max_attempts": attempts,
        "base_s": 0.001,
        "cap_s": 0.01,
        "retry_after_cap_s": 0.05,
    }
    settings.PROVIDER_BREAKER = {"failures": 50, "recovery_s": 0.5, "successes": 1}
    registry.forget()


@pytest.fixture
async def sim(settings):
    async with running_sim() as simulator:
        speech_on(settings, simulator)
        yield simulator
    registry.forget()


def answer_by_text(sim, answers: dict[str, Response]) -> None:
    """The speech route answers these responses to lines containing these words; the
    simulator's counting and faults still come first."""
    original = next(handler for _m, _p, name, handler in sim.routes if name == "speech")

    async def handler(state, request, fault, **groups):
        text = str(request.json().get("input", ""))
        for word, response in answers.items():
            if word in text:
                return response
        return await original(state, request, fault, **groups)

    sim.routes = [
        (method, pattern, name, handler if name == "speech" else existing)
        for method, pattern, name, existing in sim.routes
    ]


def a_chapter(*, owner=None):
    """Two scenes, three lines in two voices (Ada's differs from the narrator's)."""
    drama = create_drama(owner=owner)
    ada = create_character(drama=drama, name="Ada", voice_id="nova")
    chapter = create_chapter(drama=drama)
    booth = create_scene(chapter=chapter, location="Booth", characters=[ada])
    lab = create_scene(chapter=chapter, location="Lab", characters=[ada])
    lines = [
        create_line(scene=booth, speaker=ada, line="You are on the air."),
        create_line(scene=booth, line="The red light comes on."),
        create_line(scene=lab, speaker=ada, line="Nobody listens at this hour."),
    ]
    return drama, chapter, lines


# --- voicing a chapter ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_it_voices_the_chapter_one_job_per_line_cached_and_billed(sim):
    drama, chapter, lines = await sync_to_async(a_chapter)()
    client = await sync_to_async(login)(drama.created_by)
    url = reverse("chapter_voice", args=[drama.id, chapter.id])

    response = await sync_to_async(client.post)(url)

    assert response.status_code == 302
    jobs = [job async for job in Job.objects.filter(kind=SPEAK).order_by("id")]
    assert [job.payload["line_id"] for job in jobs] == [line.id for line in lines]
    assert jobs[0].label == "Voice scene 1, Ada: “You are on the air.”"
    async with running():
        jobs = await jobs_settled([job.id for job in jobs])

    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 3
    assert all(job.progress == 1.0 for job in jobs)
    assert (
        jobs[0]
        .result["summary"]
        .endswith("voiced now (OpenAI-compatible speech (gpt-4o-mini-tts))")
    )
    assert sim.stats.requests["speech"] == 3
    assert {body["voice"] for body in sim.speech_bodies} == {"nova", "alloy"}
    for job in jobs:
        row = await LineAudio.objects.aget(key=job.result["key"])
        with row.audio.open("rb") as handle:
            samples, rate = decode_mono(handle.read())
        assert len(samples) / rate == pytest.approx(row.duration_s, abs=0.02)
        assert row.duration_s > 0.5
    billed = UsageRecord.objects.filter(drama_id=drama.id, operation="speech.synthesize")
    assert await billed.acount() == 3
    # The render's own speech step finds every line in the cache: nothing is spoken again.
    booth = await sync_to_async(lambda: lines[0].scene)()
    result = await speech.speak_scene(
        scene=booth, lines=await sync_to_async(speech.scene_lines)(scene_id=booth.id), start_s=0
    )
    assert result["synthesised"] == 0 and sim.stats.requests["speech"] == 3


@pytest.mark.django_db(transaction=True)
async def test_a_line_already_voiced_finishes_at_once_without_a_synthesis(sim):
    _drama, chapter, lines = await sync_to_async(a_chapter)()
    first = await sync_to_async(line_speak_enqueue)(line=lines[0])
    async with running():
        await jobs_settled([first.id])
        # The same words in the same voice elsewhere, and the same line asked again.
        lab = await sync_to_async(lambda: lines[2].scene)()
        twin = await sync_to_async(create_line)(
            scene=lab,
            speaker=await sync_to_async(lambda: lines[0].speaker)(),
            line="You are  on the air.",
        )
        again = await sync_to_async(line_speak_enqueue)(line=lines[0])
        copy = await sync_to_async(line_speak_enqueue)(line=twin)
        jobs = await jobs_settled([again.id, copy.id])

    assert sim.stats.requests["speech"] == 1
    for job in jobs:
        assert job.status == JobStatus.SUCCEEDED
        assert job.result["synthesised"] is False
        assert "already voiced, nothing synthesised" in job.result["summary"]
    # And "Voice the chapter" skips voiced lines: only the two others are queued.
    queued = await sync_to_async(chapter_speak_enqueue)(chapter=chapter)
    assert [job.payload["line_id"] for job in queued.queued] == [lines[1].id, lines[2].id]
    assert queued.voiced == 2  # the line and its twin


@pytest.mark.django_db(transaction=True)
async def test_a_refused_or_malformed_reply_fails_only_that_lines_job_and_says_why(sim):
    _drama, chapter, _lines = await sync_to_async(a_chapter)()
    answer_by_text(
        sim,
        {
            "air": error_response(400, "voice 'nova' is not available for this model"),
            "red light": Response(
                200, b"<html>502 Bad Gateway</html>", {"content-type": "text/html"}
            ),
        },
    )
    queued = await sync_to_async(chapter_speak_enqueue)(chapter=chapter)

    async with running():
        refused, garbled, spoken = await jobs_settled([job.id for job in queued.queued])

    assert refused.status == JobStatus.FAILED and refused.attempts == 1  # not worth retrying
    assert refused.last_error.startswith("Failed and not worth retrying: BadRequest:")
    assert "voice 'nova' is not available for this model" in refused.last_error
    assert garbled.status == JobStatus.FAILED
    assert garbled.attempts == SPEAK_ATTEMPTS  # an unreadable answer may be a proxy's hiccup
    assert garbled.last_error.startswith(f"Gave up after {SPEAK_ATTEMPTS} attempts.")
    assert "MalformedResponse" in garbled.last_error and "not audio" in garbled.last_error
    assert spoken.status == JobStatus.SUCCEEDED  # the other line went on
    assert await LineAudio.objects.acount() == 1


@pytest.mark.django_db(transaction=True)
async def test_a_vendor_outage_is_retried_by_the_engine(sim):
    _drama, _chapter, lines = await sync_to_async(a_chapter)()
    sim.queue_faults("speech", "5xx", "429")
    job = await sync_to_async(line_speak_enqueue)(line=lines[0])

    async with running():
        [job] = await jobs_settled([job.id])

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 3
    assert sim.stats.requests["speech"] == 3


@pytest.mark.django_db(transaction=True)
async def test_a_line_deleted_before_its_job_ran_fails_it_saying_so(sim):
    _drama, _chapter, lines = await sync_to_async(a_chapter)()
    job = await sync_to_async(line_speak_enqueue)(line=lines[1])
    await lines[1].adelete()

    async with running():
        [job] = await jobs_settled([job.id])

    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert "The line was deleted before it could be voiced." in job.last_error
    assert sim.stats.requests["speech"] == 0


# --- queueing ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_enqueuing_is_idempotent_while_the_lines_job_is_queued_or_running():
    _drama, chapter, lines = a_chapter()

    first = line_speak_enqueue(line=lines[0])
    assert line_speak_enqueue(line=lines[0]).id == first.id
    Job.objects.filter(id=first.id).update(status=JobStatus.RUNNING)
    assert line_speak_enqueue(line=lines[0]).id == first.id
    queued = chapter_speak_enqueue(chapter=chapter)
    assert [job.payload["line_id"] for job in queued.queued] == [lines[1].id, lines[2].id]
    assert queued.waiting == 1
    assert chapter_speak_enqueue(chapter=chapter).queued == []
    assert Job.objects.filter(kind=SPEAK).count() == 3

    Job.objects.filter(id=first.id).update(status=JobStatus.FAILED)
    assert line_speak_enqueue(line=lines[0]).id != first.id  # "Voice again" after a failure


@pytest.mark.django_db
def test_only_editors_and_producers_may_voice_lines():
    producer = create_user(username="prod")
    drama, chapter, lines = a_chapter(owner=producer)
    viewer = add_member(drama=drama, role=Role.VIEWER)
    editor = add_member(drama=drama, role=Role.EDITOR)
    chapter_url = reverse("chapter_voice", args=[drama.id, chapter.id])
    line_url = reverse("line_voice", args=[drama.id, lines[0].id])

    assert login(create_user()).post(chapter_url).status_code == 404
    assert login(viewer).post(chapter_url).status_code == 403
    assert login(viewer).post(line_url).status_code == 403
    csrf_checked = Client(enforce_csrf_checks=True)
    csrf_checked.force_login(editor)
    assert csrf_checked.post(chapter_url).status_code == 403
    assert not Job.objects.filter(kind=SPEAK).exists()

    assert login(editor).post(line_url, headers=HTMX).status_code == 200
    assert login(producer).post(chapter_url).status_code == 302
    assert Job.objects.filter(kind=SPEAK).count() == 3


# --- what the pages show --------------------------------------------------------------------


@pytest.mark.django_db
def test_voicing_jobs_show_on_the_board_and_the_queue():
    drama, chapter, lines = a_chapter()
    job = line_speak_enqueue(line=lines[0])
    Job.objects.filter(id=job.id).update(
        status=JobStatus.RUNNING, progress=0.1, progress_note="Speaking with the sim"
    )
    client = login(drama.created_by)

    board = client.get(reverse("drama_board", args=[drama.id]) + f"?chapter={chapter.id}")
    queue = client.get(reverse("drama_queue", args=[drama.id]))

    tile = board.content.decode().split(f'id="scene-job-{lines[0].scene_id}"')[1][:600]
    assert "Voice scene 1, Ada: “You are on the air.”" in tile and "10%" in tile
    assert "Voice scene 1, Ada" in queue.content.decode()
    assert "Speaking with the sim" in queue.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_the_editor_shows_each_lines_voice_and_plays_it(sim):
    drama, chapter, lines = await sync_to_async(a_chapter)()
    viewer = await sync_to_async(add_member)(drama=drama, role=Role.VIEWER)
    job = await sync_to_async(line_speak_enqueue)(line=lines[0])
    producer = await sync_to_async(login)(drama.created_by)
    editor_url = reverse("chapter_editor", args=[drama.id, chapter.id])
    poll_url = reverse("chapter_voice", args=[drama.id, chapter.id])

    page = (await sync_to_async(producer.get)(editor_url)).content.decode()
    assert "Queued to voice" in page
    assert "every 2s" not in page  # the live channel follows the voicing, not a poll
    async with running():
        await jobs_settled([job.id])
    page = (await sync_to_async(producer.get)(editor_url)).content.decode()
    poll = (await sync_to_async(producer.get)(poll_url, headers=HTMX)).content.decode()

    row = await LineAudio.objects.aget()
    voice = (await sync_to_async(line_voices)(chapter=chapter, lines=lines))[lines[0].id]
    audio_url = reverse("line_voice", args=[drama.id, lines[0].id]) + f"?audio={voice.key}"
    assert f'src="{audio_url}"' in page and f"{row.duration_s:.1f} s" in page
    assert "1 of 3 lines voiced" in page and "Voice the chapter (2 lines)" in page
    assert f'id="line-voice-{lines[0].id}"' in poll
    assert 'hx-swap-oob="true"' in poll
    client = await sync_to_async(login)(viewer)  # viewers listen too
    played = await sync_to_async(client.get)(audio_url)
    assert played.status_code == 200 and played["Content-Type"] == "audio/wav"
    samples, rate = decode_mono(b"".join(played.streaming_content))
    assert len(samples) / rate == pytest.approx(row.duration_s, abs=0.02)
    assert "Voice the chapter" not in (await sync_to_async(client.get)(editor_url)).content.decode()
    # A line edited since it was voiced has no audio under its new words.
    await DialogLine.objects.filter(id=lines[0].id).aupdate(line="Off air.")
    assert (await sync_to_async(client.get)(audio_url)).status_code == 404


@pytest.mark.django_db
def test_a_failed_line_offers_voice_again_with_its_reason():
    drama, chapter, lines = a_chapter()
    job = line_speak_enqueue(line=lines[1])
    Job.objects.filter(id=job.id).update(
        status=JobStatus.FAILED, last_error="Failed and not worth retrying: BadRequest: no voice"
    )

    page = login(drama.created_by).get(reverse("chapter_editor", args=[drama.id, chapter.id]))

    html = page.content.decode().split(f'id="line-voice-{lines[1].id}"')[1][:1200]
    assert "Voicing failed" in html and "BadRequest: no voice" in html
    assert "Voice again" in html
    assert "1 failed" in page.content.decode()


class JobContext:
    """What the worker hands the handler, minus the database writes."""

    def __init__(self, job: Job) -> None:
        self.payload, self.drama_id = job.payload, job.drama_id
        self.reports: list[tuple[float, str]] = []

    async def progress(self, fraction: float, *, note: str = "") -> None:
        self.reports.append((fraction, note))


@pytest.mark.django_db
def test_pages_never_clone_a_voice_only_the_lines_job_does(settings):
    """A sample still to be cloned (ElevenLabs) is a paid call: a page view or the check must
    not make it; voicing the line does, once."""
    with simulator_thread(SimConfig(api_key=API_KEY)) as sim:
        settings.PROVIDER_SPEECH = {
            **settings.PROVIDER_SPEECH,
            "api": "elevenlabs",
            "base_url": f"{sim.url}/elevenlabs",
            "provider": "elevenlabs",
            "model": "eleven_multilingual_v2",
            "api_key": API_KEY,
        }
        registry.forget()
        drama, chapter, lines = a_chapter()
        ada = lines[0].speaker
        sample = voices.voice_sample_from(
            SimpleUploadedFile(
                "ada.wav",
                wav_bytes(
                    spoken_tones("a voice sample to clone, long enough to be one person speaking"),
                    24_000,
                ),
            )
        )
        character_services.character_update(character=ada, voice_sample=sample, voice_id="")
        client = login(drama.created_by)

        page = client.get(reverse("chapter_editor", args=[drama.id, chapter.id])).content.decode()
        scene_warnings(scene=lines[0].scene, language="en")

        assert sim.stats.requests["voice_add_elevenlabs"] == 0
        assert "Not voiced" in page.split(f'id="line-voice-{lines[0].id}"')[1][:400]
        job = line_speak_enqueue(line=lines[0])
        context = JobContext(job)
        result = async_to_sync(dialog_speak)(context)

        assert sim.stats.requests["voice_add_elevenlabs"] == 1
        assert result["synthesised"] is True
        assert context.reports[-1] == (1.0, result["summary"])
        fresh = DialogLine.objects.select_related("speaker").get(id=lines[0].id)
        voice = line_voices(chapter=chapter, lines=[fresh])[fresh.id]
        assert voice.voiced and voice.key == result["key"]  # the page now finds it
    registry.forget()


@pytest.mark.django_db(transaction=True)
async def test_the_editor_follows_each_lines_voicing_live(sim):
    """The editor's live channel: a line's job moving shows on its line, and its end brings
    the line's player and the chapter's count, without a reload or a poll."""
    from channels.layers import channel_layers

    from studio.jobs import store
    from tests.test_consumers import connect

    channel_layers.backends.clear()  # this test's event loop gets its own in-memory layer
    drama, chapter, lines = await sync_to_async(a_chapter)()
    job = await sync_to_async(line_speak_enqueue)(line=lines[0])
    path = f"/ws/dramas/{drama.id}/live/?view=editor&chapter={chapter.id}"
    communicator, connected, _ = await connect(path, user=drama.created_by)
    assert connected
    snapshot = await communicator.receive_from(timeout=5)
    assert f'id="line-voice-{lines[0].id}"' in snapshot and "Queued to voice" in snapshot

    await Job.objects.filter(id=job.id).aupdate(status=JobStatus.RUNNING, lease_owner="w")
    await sync_to_async(store.save_progress)(
        owner="w", job_id=job.id, drama_id=drama.id, progress=0.5, note="Speaking"
    )
    moved = await communicator.receive_from(timeout=5)
    assert f'id="line-voice-{lines[0].id}"' in moved and "Voicing 50%" in moved

    await Job.objects.filter(id=job.id).aupdate(status=JobStatus.QUEUED, lease_owner="")
    async with running():
        await jobs_settled([job.id])
    seen = ""
    while "1 of 3 lines voiced" not in seen:
        seen = await communicator.receive_from(timeout=10)
    assert "<audio" in seen
    await communicator.disconnect()
    channel_layers.backends.clear()
