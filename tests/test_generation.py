"""Chapter generation against the provider simulator and the offline writer: the writing job,
validation and repair on the wire, usage and cost, cancel, rewrite, views and the live panel."""

import asyncio
import datetime
import json
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from dramas import generation, generation_jobs, live
from dramas.models import ChapterSource, Role
from dramas.scripts import ScriptError
from studio.jobs.models import Job, JobStatus
from studio.jobs.services import job_cancel
from studio.jobs.worker import Worker, WorkerConfig
from studio.models import Price, PriceKind, UsageRecord
from studio.providers import registry
from studio.providers.errors import StreamError
from studio.providers.ledger import DbLedger
from studio.providers.local_writer import draft_script
from studio.providers.writer import ChapterBrief, CharacterNote
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
)
from tests.providers_support import chat_for, running_sim

pytestmark = pytest.mark.django_db(transaction=True)
VALID = json.dumps(
    draft_script(ChapterBrief(characters=(CharacterNote("Mei"), CharacterNote("Jun"))))
)


class Context:
    """What the worker hands a handler, minus the worker."""

    def __init__(self, job: Job) -> None:
        self.job_id, self.payload, self.drama_id = job.id, job.payload, job.drama_id
        self.checkpoint = None
        self.previews: list[str] = []
        self.reports: list[tuple[float, str]] = []

    async def save_checkpoint(self, data) -> None:
        self.checkpoint = data
        self.previews.append(data["preview"])

    async def progress(self, fraction: float, *, note: str = "") -> None:
        self.reports.append((fraction, note))


@pytest.fixture(autouse=True)
def prices(db):
    """The seeded prices this module relies on (a transactional test's flush removes them)."""
    for provider, model, rates in (
        ("openai", "gpt-4.1", ("2.00", "0.50", "8.00")),
        ("local", "offline-draft", ("0", "0", "0")),
    ):
        Price.objects.get_or_create(
            provider=provider,
            model=model,
            kind=PriceKind.CHAT,
            effective_date=datetime.date(2000, 1, 1),
            defaults=dict(
                input_per_mtok=Decimal(rates[0]),
                cached_input_per_mtok=Decimal(rates[1]),
                output_per_mtok=Decimal(rates[2]),
                source="test",
            ),
        )


@pytest.fixture
async def sim(monkeypatch):
    """The simulator as the studio's writer (OpenAI-compatible, gpt-4.1, usage in the DB)."""
    async with running_sim() as simulator:
        chat = chat_for(simulator, ledger=DbLedger())
        monkeypatch.setattr(registry, "writer", lambda: chat)
        yield simulator


@sync_to_async
def world():
    drama = create_drama(genre="thriller")
    mei = create_character(drama=drama, name="Mei", appearance_notes="red coat")
    create_character(drama=drama, name="Jun")
    chapter = create_chapter(drama=drama, title="Handwritten")
    create_line(scene=create_scene(chapter=chapter, characters=[mei]), speaker=mei)
    return drama, chapter


async def generate(chapter, **options) -> tuple[dict, Context]:
    job = await sync_to_async(generation.chapter_generate)(chapter=chapter, **options)
    context = Context(job)
    return await generation_jobs.chapter_generate_job(context), context


@sync_to_async
def state(chapter):
    chapter.refresh_from_db()
    return {
        "title": chapter.title,
        "scenes": list(chapter.scenes.values_list("location", flat=True)),
        "versions": list(chapter.versions.order_by("number").values_list("number", flat=True)),
    }


async def test_it_writes_a_chapter_through_the_simulator_and_books_its_cost(sim):
    drama, chapter = await world()
    before = await state(chapter)

    result, context = await generate(chapter, target_seconds=60)

    after = await state(chapter)
    assert after["scenes"] != before["scenes"] and len(after["scenes"]) == result["scenes"]
    assert after["versions"] == [1, 2]  # the handwritten script, then the generated one
    version = await sync_to_async(chapter.versions.get)(number=2)
    first = await sync_to_async(chapter.versions.get)(number=1)
    assert first.script["scenes"][0]["location"] == "Rooftop bar"
    assert version.source == ChapterSource.GENERATED
    assert (version.provider, version.model) == ("openai", "gpt-4.1")
    assert version.input_tokens > 500 and version.output_tokens > 100
    expected = (Decimal(version.input_tokens) * 2 + Decimal(version.output_tokens) * 8) / 10**6
    assert version.cost_usd == expected  # gpt-4.1: $2 in, $8 out per MTok (no cache hit)
    record = await sync_to_async(UsageRecord.objects.get)(operation="chat.stream")
    assert (record.drama_id, record.input_tokens) == (drama.id, version.input_tokens)
    assert record.cost_usd == version.cost_usd
    assert context.previews and context.reports[-1] == (0.98, "Saving the script…")


@pytest.mark.parametrize(
    "reply",
    [f"```json\n{VALID}\n```", f"Here is chapter 1, as asked:\n{VALID}\nI hope it works!"],
    ids=["fenced", "prose"],
)
async def test_it_accepts_fenced_and_prose_wrapped_json(sim, reply):
    _drama, chapter = await world()
    sim.queue_replies(reply)
    result, _ = await generate(chapter)
    assert result["scenes"] == len(json.loads(VALID)["scenes"])
    assert (await state(chapter))["title"] == json.loads(VALID)["title"]


async def test_it_repairs_a_schema_violation_on_one_retry_with_the_errors(sim):
    _drama, chapter = await world()
    broken = json.loads(VALID)
    broken["scenes"][0]["time_of_day"] = "noon"
    sim.queue_replies(json.dumps(broken))  # then the simulator's own, valid, answer

    result, _ = await generate(chapter)

    retried = "The first answer broke the script rules; it was fixed on a retry."
    assert result["warnings"][0] == retried
    assert sim.stats.requests["chat"] == 2
    assert await sync_to_async(UsageRecord.objects.filter(operation="chat.stream").count)() == 2
    version = await sync_to_async(chapter.versions.get)(number=2)
    assert version.warnings == result["warnings"]
    assert version.input_tokens > 2 * 500  # both calls are on the version


async def test_it_gives_up_when_the_retry_is_still_invalid(sim):
    _drama, chapter = await world()
    before = await state(chapter)
    sim.queue_replies('{"title": "x", "scenes": []}', '{"title": "x"}')
    with pytest.raises(ScriptError, match="still invalid after a retry") as error:
        await generate(chapter)
    assert not error.value.retryable
    assert await state(chapter) == before


async def test_it_reports_an_answer_cut_at_max_tokens_and_saves_nothing(sim):
    _drama, chapter = await world()
    before = await state(chapter)
    sim.queue_replies({"content": VALID[: len(VALID) // 2], "finish_reason": "length"})
    with pytest.raises(ScriptError, match="cut off at its length limit"):
        await generate(chapter)
    assert await state(chapter) == before
    assert sim.stats.requests["chat"] == 1  # not retried: the same limit cuts it again


async def test_it_reports_an_empty_answer(sim):
    _drama, chapter = await world()
    before = await state(chapter)
    sim.queue_replies("")
    with pytest.raises(ScriptError, match="empty answer"):
        await generate(chapter)
    assert await state(chapter) == before


async def test_it_keeps_unknown_speakers_by_name_and_flags_them(sim):
    _drama, chapter = await world()
    answer = json.loads(VALID)
    answer["scenes"][0]["dialog"] = [
        {"speaker": " mei ", "line": "Who sent you?", "emotion": "wary"},
        {"speaker": "Detective Lo", "line": "Your father.", "emotion": "calm"},
    ]
    sim.queue_replies(json.dumps(answer))

    result, _ = await generate(chapter)

    assert result["warnings"][0].startswith("Detective Lo speaks (scene 1)")
    scene = await sync_to_async(chapter.scenes.get)(order=1)
    lines = await sync_to_async(list)(scene.lines.values_list("speaker__name", "speaker_name"))
    assert lines == [("Mei", "Mei"), (None, "Detective Lo")]


async def test_a_stream_error_midway_fails_the_attempt_and_the_next_one_writes(sim):
    _drama, chapter = await world()
    before = await state(chapter)
    sim.queue_faults("chat", "stream_error")
    with pytest.raises(StreamError) as error:
        await generate(chapter)
    assert error.value.retryable  # the job engine runs the job again
    assert await state(chapter) == before

    job = await sync_to_async(Job.objects.get)(kind=generation.GENERATE)
    await sync_to_async(Job.objects.filter(id=job.id).update)(status=JobStatus.SUCCEEDED)
    result, _ = await generate(chapter)
    assert result["version"] == 2


async def test_it_waits_out_a_429_and_succeeds(sim):
    _drama, chapter = await world()
    sim.queue_faults("chat", "429")
    result, _ = await generate(chapter)
    assert result["version"] == 2
    assert sim.stats.statuses["chat"] == {"429": 1, "200": 1}


async def test_cancel_midstream_keeps_the_previous_version(sim):
    _drama, chapter = await world()
    before = await state(chapter)
    sim.config.slow_stream_s = 0.05
    sim.queue_faults("chat", "slow_stream")
    config = WorkerConfig(poll_s=0.05, watch_s=0.05, progress_interval_s=0.05, lease_s=5)
    worker = Worker(config=config)
    running = asyncio.create_task(worker.run())
    try:
        job = await sync_to_async(generation.chapter_generate)(chapter=chapter)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await job.arefresh_from_db()
            if isinstance(job.checkpoint, dict) and '"location"' in job.checkpoint["preview"]:
                break
            await asyncio.sleep(0.05)
        assert job.status == JobStatus.RUNNING, job.last_error
        panel = await sync_to_async(live.snapshot)(
            drama_id=chapter.drama_id, view="editor", chapter_id=chapter.id, can_edit=True
        )
        assert "Writing scene" in panel and 'id="generation-live"' in panel
        await sync_to_async(job_cancel)(job=job)
        while job.status == JobStatus.RUNNING and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            await job.arefresh_from_db()
        assert job.status == JobStatus.CANCELLED
    finally:
        await worker.stop(grace_s=0.5)
        await running
    assert await state(chapter) == before


async def test_it_rewrites_one_scene_in_place_offline():
    _drama, chapter = await world()
    other = await sync_to_async(create_scene)(chapter=chapter, location="Harbour")
    scene = await sync_to_async(chapter.scenes.get)(order=1)
    job = await sync_to_async(generation.scene_rewrite)(
        scene=scene, instruction="Make it a confrontation in the rain"
    )
    assert job.payload["estimate"]["text"] == "free"  # the offline writer

    result = await generation_jobs.scene_rewrite_job(Context(job))

    await scene.arefresh_from_db()
    assert scene.location != "Rooftop bar"
    assert await sync_to_async(chapter.scenes.filter(id=other.id).exists)()  # untouched
    assert result["version"] == 2 and result["model"] == "offline-draft"
    assert (await state(chapter))["versions"] == [1, 2]


def test_it_estimates_before_generating_and_says_when_the_price_is_unknown(settings):
    drama = create_drama()
    chapter = create_chapter(drama=drama)
    offline = generation.generation_estimate(chapter=chapter, target_seconds=120)
    assert (offline.model, offline.text) == ("offline-draft", "free")
    assert offline.output_tokens == 250 + 9 * 120 and offline.input_tokens > 300

    registry.forget()
    openai = {"base_url": "https://api.openai.com/v1", "model": "gpt-4.1"}
    settings.PROVIDER_WRITER = {**settings.PROVIDER_WRITER, **openai}
    try:
        priced = generation.generation_estimate(chapter=chapter)
        settings.PROVIDER_WRITER = {**settings.PROVIDER_WRITER, "model": "gpt-unpriced"}
        unknown = generation.generation_estimate(chapter=chapter)
    finally:
        registry.forget()
    assert priced.provider == "openai" and priced.cost_usd > 0
    assert priced.text.startswith("≈ $")
    assert (unknown.cost_usd, unknown.text) == (None, "cost unknown")


def test_it_refuses_a_second_writer_on_the_same_chapter():
    chapter = create_chapter(drama=create_drama())
    generation.chapter_generate(chapter=chapter)
    with pytest.raises(Exception, match="already working on this chapter"):
        generation.chapter_generate(chapter=chapter)


def test_a_viewer_cannot_generate_rewrite_or_cancel():
    drama = create_drama()
    chapter = create_chapter(drama=drama)
    scene = create_scene(chapter=chapter)
    job = generation.chapter_generate(chapter=chapter)
    viewer = login(add_member(drama=drama, role=Role.VIEWER))
    posts = [
        (reverse("chapter_generate", args=[drama.id, chapter.id]), {"target_seconds": 60}),
        (reverse("scene_rewrite", args=[drama.id, scene.id]), {"instruction": "more rain"}),
        (reverse("generation_cancel", args=[drama.id, chapter.id, job.id]), {}),
        (reverse("chapter_generate_new", args=[drama.id]), {"title_wish": "More"}),
    ]
    for url, data in posts:
        assert viewer.post(url, data).status_code == 403
    assert Job.objects.filter(kind__in=generation.KINDS).count() == 1
    assert drama.chapters.count() == 1


def test_an_editor_generates_from_the_editor_and_sees_the_live_panel():
    drama = create_drama()
    chapter = create_chapter(drama=drama)
    create_scene(chapter=chapter)
    editor = login(add_member(drama=drama, role=Role.EDITOR))

    page = editor.get(reverse("chapter_editor", args=[drama.id, chapter.id])).content.decode()
    assert "Generate chapter · free" in page and "Rewrite scene · free" in page
    assert "view=editor&amp;chapter=" in page

    url = reverse("chapter_generate", args=[drama.id, chapter.id])
    data = {"target_seconds": 90, "plot_turns": 4, "title_wish": "Rain"}
    panel = editor.post(url, data, headers={"HX-Request": "true"}).content.decode()
    job = Job.objects.get(kind=generation.GENERATE)
    assert job.payload["target_seconds"] == 90 and job.payload["plot_turns"] == 4
    assert 'id="generation-live"' in panel and "Write chapter 1" in panel and "Cancel" in panel

    again = editor.post(url, data, headers={"HX-Request": "true"})
    assert again.status_code == 422 and "already working" in again.content.decode()

    cancel = reverse("generation_cancel", args=[drama.id, chapter.id, job.id])
    assert "Cancelled" in editor.post(cancel, headers={"HX-Request": "true"}).content.decode()
    estimate = reverse("generation_estimate", args=[drama.id, chapter.id])
    button = editor.get(estimate, {"target_seconds": 30}).content.decode()
    assert "Generate chapter · free" in button


def test_the_board_form_creates_a_chapter_and_queues_its_writer(producer_client, drama):
    url = reverse("chapter_generate_new", args=[drama.id])
    assert "Generate chapter · free" in producer_client.get(url).content.decode()
    response = producer_client.post(
        url, {"title_wish": "Night shift", "target_seconds": 45, "plot_turns": 3}
    )
    chapter = drama.chapters.get()
    assert response.status_code == 302 and str(chapter.id) in response["Location"]
    assert chapter.title == "Night shift"
    assert Job.objects.get(kind=generation.GENERATE).payload["chapter_id"] == chapter.id


async def test_the_simulator_answers_with_queued_replies_first():
    async with running_sim() as simulator:
        chat = chat_for(simulator)
        simulator.queue_replies("first", {"content": "cut", "finish_reason": "length"})
        first = await chat.complete([{"role": "user", "content": "hi"}])
        second = [c async for c in chat.stream([{"role": "user", "content": "hi"}])]
        third = await chat.complete([{"role": "user", "content": "hi"}])
    assert (first.text, first.finish_reason) == ("first", "stop")
    assert "".join(c.text for c in second) == "cut" and second[-1].finish_reason == "length"
    assert third.text.startswith("Simulated answer")


def test_the_live_editor_view_renders_the_preview_only_for_its_chapters_writer():
    drama = create_drama()
    chapter = create_chapter(drama=drama)
    job = generation.chapter_generate(chapter=chapter)
    half = VALID[: len(VALID) // 2]
    Job.objects.filter(id=job.id).update(status=JobStatus.RUNNING, checkpoint={"preview": half})
    where = {"drama_id": drama.id, "view": "editor", "chapter_id": chapter.id, "can_edit": True}

    html = live.progress(**where, ids=[job.id])

    assert (
        'id="generation-live" class="generation-live" aria-live="polite" hx-swap-oob="true"' in html
    )
    assert json.loads(VALID)["title"] in html and 'class="preview-scene"' in html
    other = create_chapter(drama=drama, title="Other")
    assert live.progress(**{**where, "chapter_id": other.id}, ids=[job.id]) == ""


def test_the_versions_page_shows_the_writer_tokens_cost_and_warnings(producer, drama):
    chapter = create_chapter(drama=drama)
    version = services_version(chapter)
    version.provider, version.model = "openai", "gpt-4.1"
    version.input_tokens, version.output_tokens = 1200, 800
    version.cost_usd, version.warnings = Decimal("0.0088"), ["Mei speaks but is not registered"]
    version.save()
    unknown = services_version(chapter, title="Second")
    unknown.provider, unknown.model, unknown.cost_usd = "acme", "mystery-1", None
    unknown.save()

    page = login(producer).get(reverse("chapter_versions", args=[drama.id, chapter.id]))

    text = page.content.decode()
    assert "gpt-4.1" in text and "1200 / 800" in text and "$0.0088" in text
    assert "1 warning" in text and "Mei speaks but is not registered" in text
    assert "mystery-1" in text and "unknown" in text


def services_version(chapter, title: str = "First"):
    from dramas import services

    chapter.title = title
    chapter.save()
    return services.chapter_version_save(chapter=chapter)
