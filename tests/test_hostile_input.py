"""Hostile input corpus (#9): polyglot uploads, malformed and gigantic writer answers, script
injection in every text field, oversized fields, bad ids and bad websocket messages. Each case:
no 500, a clear error, nothing (partially) stored. Cases already proven elsewhere (image bombs,
empty, huge, SVG and HTML uploads in test_uploads; empty, truncated and prose answers in
test_scripts; binary and oversized live websocket frames in test_consumers) are not repeated."""

import io
import json
import time
import zipfile

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.urls import reverse
from PIL import Image

from characters import services as character_services
from characters.models import Character, ReferenceImage
from dramas import generation, generation_jobs, live, services, takes
from dramas.models import Chapter, ChapterVersion, DialogLine, Drama, Review, Role, Scene
from dramas.scripts import ScriptError, extract_script, script_errors, script_repair
from studio import provider_health
from studio.asgi import application
from studio.providers import registry
from studio.providers.base import ChatChunk, Usage
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
    create_take,
    create_user,
    image_bytes,
    upload,
)
from tests.test_permissions import _snapshot

# --- Polyglots and wrong extensions: only the re-encoded copy is stored ------------------------

HTML_PAYLOAD = b"<html><script>alert('polyglot')</script></html>"


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("evil.html", HTML_PAYLOAD)
    return out.getvalue()


def stored_bytes(reference) -> bytes:
    with reference.image.open("rb") as handle:
        return handle.read()


POLYGLOTS = [
    pytest.param("face.png", image_bytes() + HTML_PAYLOAD, b"<script", id="png-plus-html"),
    pytest.param(
        "face.jpg", image_bytes(format="JPEG") + zip_bytes(), b"PK\x03\x04", id="jpeg-plus-zip"
    ),
    pytest.param(
        "face.webp", image_bytes(format="WEBP") + HTML_PAYLOAD, b"<script", id="webp-plus-html"
    ),
    pytest.param("face.html", image_bytes(), b"PNG", id="png-named-html"),
    pytest.param("face.exe", image_bytes(format="JPEG"), b"MZ", id="jpeg-named-exe"),
    pytest.param("../../etc/passwd.png", image_bytes(), b"root:", id="path-traversal-name"),
]


@pytest.mark.parametrize(("name", "content", "payload"), POLYGLOTS)
def test_it_stores_only_a_reencoded_jpeg_of_a_polyglot(drama, media_root, name, content, payload):
    character = create_character(drama=drama, name="Mei")
    [result] = character_services.reference_images_add(
        character=character, files=[upload(name=name, content=content)]
    )

    assert result.ok, result.error
    data = stored_bytes(result.reference)
    assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")  # nothing after EOI
    assert payload not in data and HTML_PAYLOAD not in data
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    stored = list(media_root.rglob("*.*"))
    assert all(path.suffix == ".jpg" for path in stored)
    assert all(media_root in path.resolve().parents for path in stored)


WRONG = [
    pytest.param("face.png", image_bytes(format="BMP"), id="bmp-named-png"),
    pytest.param("face.jpg", image_bytes(format="TIFF"), id="tiff-named-jpg"),
    pytest.param("face.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF", id="pdf-named-jpg"),
    pytest.param("face.png", zip_bytes(), id="zip-named-png"),
    pytest.param("face.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, id="png-signature-only"),
]


@pytest.mark.parametrize(("name", "content"), WRONG)
def test_it_refuses_a_file_that_is_not_an_allowed_image_whatever_it_is_called(
    drama, media_root, name, content
):
    character = create_character(drama=drama, name="Mei")
    [result] = character_services.reference_images_add(
        character=character, files=[upload(name=name, content=content)]
    )

    assert not result.ok and result.error
    assert ReferenceImage.objects.count() == 0
    assert [p for p in media_root.rglob("*") if p.is_file()] == []


# --- Malformed and gigantic writer answers ------------------------------------------------------


def good_script(**changes) -> dict:
    scene = {
        "location": "Rooftop bar",
        "time_of_day": "night",
        "action": "Mei turns away.",
        "camera": "push-in",
        "duration_s": 8,
        "mood": "tense",
        "characters": ["Mei"],
        "dialog": [{"speaker": "Mei", "line": "You came back.", "emotion": "cold"}],
    }
    return {"title": "T", "synopsis": "S", "scenes": [scene | changes]}


def checked(text: str) -> list[str]:
    """What the generation job does with an answer: extract, then validate. Errors or raise."""
    return script_errors(extract_script(text))


def test_it_refuses_deeply_nested_json_with_a_script_error():
    for text in ['{"a":' * 50_000 + "1" + "}" * 50_000, '{"title": ' + "[" * 50_000]:
        with pytest.raises(ScriptError, match="not a chapter script") as raised:
            extract_script(text)
        assert raised.value.retryable


def test_it_gives_up_quickly_on_a_ten_megabyte_answer():
    for text in ["{" * 10_000_000, "Sure! " + "{x " * 3_000_000]:
        started = time.monotonic()
        with pytest.raises(ScriptError):
            extract_script(text)
        assert time.monotonic() - started < 5


def test_it_reports_a_ten_megabyte_field_as_too_long():
    answer = json.dumps(good_script() | {"title": "x" * 10_000_000})
    assert "chapter: title is longer than 200 characters" in checked(answer)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_it_refuses_a_duration_that_is_not_a_finite_number(number):
    answer = json.dumps(good_script()).replace('"duration_s": 8', f'"duration_s": {number}')
    assert checked(answer) == ["scene 1: duration_s must be a number of seconds"]


def test_it_takes_the_last_of_duplicate_keys_and_still_validates_it():
    body = json.dumps(good_script())
    answer = body.replace('{"title": "T"', '{"title": ["not", "text"], "title": "T"', 1)
    assert checked(answer) == []
    answer = body.replace('{"title": "T"', '{"title": "T", "title": 42', 1)
    assert checked(answer) == ["chapter: title must be a string"]


WRONG_TYPES = [
    ({"title": None}, "chapter: title must be a string"),
    ({"title": {"nested": "object"}}, "chapter: title must be a string"),
    ({"synopsis": 3.5}, "chapter: synopsis must be a string"),
    ({"scenes": {"0": "a dict"}}, "chapter: scenes must be a list of 1 to 12 scenes"),
    ({"scenes": "one scene"}, "chapter: scenes must be a list of 1 to 12 scenes"),
    ({"scenes": [[1, 2]]}, "scene 1: must be an object"),
    ({"scenes": [None]}, "scene 1: must be an object"),
    ({"scenes": [{}] * 13}, "chapter: scenes must be a list of 1 to 12 scenes"),
]
SCENE_WRONG_TYPES = [
    ({"location": 7}, "scene 1: location must be a string"),
    ({"action": ["a"]}, "scene 1: action must be a string"),
    ({"camera": None}, "scene 1: camera must be a string"),
    ({"mood": False}, "scene 1: mood must be a string"),
    ({"time_of_day": 12}, "scene 1: time_of_day must be one of"),
    ({"duration_s": True}, "scene 1: duration_s must be a number of seconds"),
    ({"duration_s": "8"}, "scene 1: duration_s must be a number of seconds"),
    ({"characters": "Mei"}, "scene 1: characters must be a list of names"),
    ({"characters": [1, None]}, "scene 1: characters must be a list of names"),
    ({"dialog": "hello"}, "scene 1: dialog must be a list"),
    ({"dialog": ["hello"]}, "scene 1, line 1: must be an object"),
    ({"dialog": [{"speaker": 1, "line": "x", "emotion": ""}]}, "speaker must be a string"),
    ({"dialog": [{"speaker": "Mei", "line": None, "emotion": ""}]}, "line must be a string"),
    ({"dialog": [{"speaker": "Mei", "line": "x", "emotion": []}]}, "emotion must be a string"),
]


@pytest.mark.parametrize(("change", "error"), WRONG_TYPES)
def test_it_lists_a_wrong_type_in_the_chapter_as_an_error(change, error):
    errors = checked(json.dumps(good_script() | change))
    assert any(message.startswith(error) for message in errors), errors


@pytest.mark.parametrize(("change", "error"), SCENE_WRONG_TYPES)
def test_it_lists_a_wrong_type_in_a_scene_as_an_error(change, error):
    errors = checked(json.dumps(good_script(**change)))
    assert any(error in message for message in errors), errors


def test_it_refuses_a_top_level_array_or_scalar():
    for text in ["[1, 2, 3]", '"just a string"', "42", "null", "true"]:
        with pytest.raises(ScriptError, match="no JSON object"):
            extract_script(text)


class HostileWriter:
    """A writer whose every answer is the same hostile text."""

    name, model, label = "hostile", "hostile-1", "Hostile"

    def __init__(self, text: str) -> None:
        self.text = text

    async def stream(self, messages, **options):
        yield ChatChunk(text=self.text)
        yield ChatChunk(usage=Usage(100, 0, 100), finish_reason="stop")


class Context:
    def __init__(self, job) -> None:
        self.job_id, self.payload, self.drama_id = job.id, job.payload, job.drama_id

    async def save_checkpoint(self, data) -> None:
        pass

    async def progress(self, fraction: float, *, note: str = "") -> None:
        pass


NAN_SCRIPT = json.dumps(good_script()).replace('"duration_s": 8', '"duration_s": NaN')
HOSTILE_ANSWERS = [
    pytest.param('{"title":' + "[" * 100_000, id="deep-nesting"),
    pytest.param(NAN_SCRIPT, id="nan-duration"),
    pytest.param("{" * 2_000_000, id="two-megabytes-of-braces"),
    pytest.param(json.dumps(good_script(dialog=[{"line": 5}] * 500)), id="wrong-types"),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("answer", HOSTILE_ANSWERS)
async def test_it_fails_a_generation_on_a_hostile_answer_and_keeps_the_chapter(monkeypatch, answer):
    monkeypatch.setattr(registry, "writer", lambda: HostileWriter(answer))

    @sync_to_async
    def make():
        drama = create_drama()
        create_character(drama=drama, name="Mei")
        chapter = create_chapter(drama=drama)
        create_scene(chapter=chapter)
        return chapter, generation.chapter_generate(chapter=chapter)

    @sync_to_async
    def state(chapter):
        return (
            list(Scene.objects.filter(chapter=chapter).values()),
            list(ChapterVersion.objects.filter(chapter=chapter).values()),
            list(DialogLine.objects.values()),
            list(Chapter.objects.filter(id=chapter.id).values()),
        )

    chapter, job = await make()
    before = await state(chapter)
    started = time.monotonic()
    with pytest.raises(ScriptError) as raised:
        await generation_jobs.chapter_generate_job(Context(job))
    assert time.monotonic() - started < 10
    assert "invalid" in str(raised.value) or "not a chapter script" in str(raised.value)
    assert await state(chapter) == before


def test_it_repairs_nothing_it_cannot_and_never_keeps_a_nan():
    script = good_script(duration_s=float("nan"))
    assert script_errors(script)  # refused before repair could store it
    fixed = script_repair(good_script(duration_s=1e9), characters=["Mei"], durations=(4, 12))
    assert fixed.script["scenes"][0]["duration_s"] == 12


# --- Script injection in every text field: rendered escaped on every page ----------------------

XSS = '<script>alert("{}")</script>'
RAW = '<script>alert("'


@pytest.fixture
def injected(db, media_root):
    """A drama where every user text field holds a script tag naming the field."""
    producer = create_user(username="prod")
    drama = create_drama(
        owner=producer,
        title=XSS.format("drama-title"),
        logline=XSS.format("logline"),
        style=XSS.format("style"),
    )
    mei = create_character(
        drama=drama,
        name=XSS.format("character-name"),
        appearance_notes=XSS.format("notes"),
        voice=XSS.format("voice"),
    )
    chapter = create_chapter(
        drama=drama, title=XSS.format("chapter-title"), synopsis=XSS.format("synopsis")
    )
    scene = create_scene(
        chapter=chapter,
        location=XSS.format("location"),
        action=XSS.format("action"),
        camera=XSS.format("camera"),
        mood=XSS.format("mood"),
        characters=[mei],
    )
    create_line(scene=scene, line=XSS.format("line"), speaker=mei, emotion=XSS.format("emotion"))
    create_line(scene=scene, line="narration", speaker=None)
    version = services.chapter_version_save(chapter=chapter, note=XSS.format("version-note"))
    take = create_take(scene=scene)
    takes.take_comment(take=take, user=producer, comment=XSS.format("take-comment"))
    takes.frame_review(
        frame=take.frames.get(), user=producer, action="comment", comment=XSS.format("frame")
    )
    member = create_user(username='<b onmouseover="x">"><script>alert("member")</script>')
    add_member(drama=drama, user=member, role=Role.EDITOR)
    from dramas.jobs import chapter_check_enqueue

    chapter_check_enqueue(chapter=chapter)
    return {
        "client": login(producer),
        "drama": drama,
        "chapter": chapter,
        "scene": scene,
        "mei": mei,
        "version": version,
        "take": take,
    }


INJECTED_PAGES = [
    ("dashboard", lambda w: reverse("dashboard")),
    ("drama_board", lambda w: reverse("drama_board", args=[w["drama"].id])),
    ("drama_edit", lambda w: reverse("drama_edit", args=[w["drama"].id])),
    ("drama_members", lambda w: reverse("drama_members", args=[w["drama"].id])),
    ("character", lambda w: reverse("character_detail", args=[w["drama"].id, w["mei"].id])),
    ("character_edit", lambda w: reverse("character_edit", args=[w["drama"].id, w["mei"].id])),
    ("editor", lambda w: reverse("chapter_editor", args=[w["drama"].id, w["chapter"].id])),
    ("versions", lambda w: reverse("chapter_versions", args=[w["drama"].id, w["chapter"].id])),
    (
        "version_compare",
        lambda w: reverse(
            "chapter_version_detail", args=[w["drama"].id, w["chapter"].id, w["version"].id]
        ),
    ),
    ("scene_takes", lambda w: reverse("scene_takes", args=[w["drama"].id, w["scene"].id])),
    ("take_review", lambda w: reverse("take_review", args=[w["drama"].id, w["take"].id])),
    ("scene_edit", lambda w: reverse("scene_edit", args=[w["drama"].id, w["scene"].id])),
    ("queue", lambda w: reverse("drama_queue", args=[w["drama"].id])),
    ("costs", lambda w: reverse("drama_costs", args=[w["drama"].id])),
]


@pytest.mark.parametrize(("page", "url"), INJECTED_PAGES, ids=[p for p, _ in INJECTED_PAGES])
def test_it_renders_injected_text_escaped(injected, page, url):
    response = injected["client"].get(url(injected))

    assert response.status_code == 200
    html = response.content.decode()
    assert RAW not in html
    assert "onmouseover=" not in html.replace("onmouseover=&quot;", "")
    assert "&lt;script&gt;" in html  # the text is shown, escaped


def test_it_escapes_every_field_somewhere_and_in_the_live_fragments(injected):
    client, drama = injected["client"], injected["drama"]
    pages = "".join(client.get(url(injected)).content.decode() for _, url in INJECTED_PAGES)
    for view, chapter_id in [("board", injected["chapter"].id), ("queue", None)]:
        for role_edits in (True, False):
            pages += live.snapshot(
                drama_id=drama.id, view=view, chapter_id=chapter_id, can_edit=role_edits
            )
    pages += live.snapshot(
        drama_id=drama.id, view="editor", chapter_id=injected["chapter"].id, can_edit=True
    )
    assert RAW not in pages
    for field in [
        "drama-title",
        "logline",
        "style",
        "character-name",
        "notes",
        "voice",
        "chapter-title",
        "synopsis",
        "location",
        "action",
        "camera",
        "mood",
        "line",
        "emotion",
        "version-note",
        "take-comment",
        "frame",
        "member",
    ]:
        assert f"&lt;script&gt;alert(&quot;{field}&quot;)" in pages, field


# --- Oversized form fields: 422, a clear message, nothing stored --------------------------------

LONG = "x" * 5_001


@pytest.fixture
def editing(db, media_root):
    producer = create_user()
    drama = create_drama(owner=producer)
    mei = create_character(drama=drama, name="Mei")
    chapter = create_chapter(drama=drama)
    scene = create_scene(chapter=chapter, characters=[mei])
    line = create_line(scene=scene, speaker=mei)
    other = create_drama()
    return {
        "client": login(producer),
        "drama": drama,
        "mei": mei,
        "chapter": chapter,
        "scene": scene,
        "line": line,
        "other_character": create_character(drama=other, name="Jun"),
        "other_scene": create_scene(chapter=create_chapter(drama=other)),
        "other": other,
    }


def oversized_posts(w) -> list[tuple[str, str, dict]]:
    d = w["drama"].id
    fields = {"location": "Bar", "time_of_day": "day", "action": "A", "duration_s": "8"}

    def scene(prefix: str, **changes) -> dict:
        return {f"{prefix}-{key}": value for key, value in (fields | changes).items()}

    edit = f"scene-{w['scene'].id}"
    line_prefix = f"line-new-{w['scene'].id}"
    return [
        ("drama title", reverse("drama_create"), {"title": "x" * 201, "genre": "romance"}),
        ("drama logline", reverse("drama_edit", args=[d]), {"title": "T", "logline": LONG}),
        ("drama style", reverse("drama_edit", args=[d]), {"title": "T", "style": "x" * 201}),
        ("character name", reverse("character_create", args=[d]), {"name": "x" * 101}),
        (
            "character voice",
            reverse("character_edit", args=[d, w["mei"].id]),
            {"name": "Mei", "voice": "x" * 201},
        ),
        ("chapter title", reverse("chapter_create", args=[d]), {"title": "x" * 201}),
        (
            "chapter synopsis",
            reverse("chapter_edit", args=[d, w["chapter"].id]),
            {"title": "T", "synopsis": LONG},
        ),
        (
            "scene location",
            reverse("scene_create", args=[d, w["chapter"].id]),
            scene("new", location="x" * 201),
        ),
        (
            "scene camera",
            reverse("scene_edit", args=[d, w["scene"].id]),
            scene(edit, camera="x" * 301),
        ),
        (
            "scene mood",
            reverse("scene_edit", args=[d, w["scene"].id]),
            scene(edit, mood="x" * 101),
        ),
        (
            "dialog line",
            reverse("line_create", args=[d, w["scene"].id]),
            {f"{line_prefix}-line": "x" * 1001},
        ),
        (
            "dialog emotion",
            reverse("line_edit", args=[d, w["line"].id]),
            {f"line-{w['line'].id}-line": "Hi", f"line-{w['line'].id}-emotion": "x" * 51},
        ),
        ("member username", reverse("drama_members", args=[d]), {"username": "x" * 151}),
        (
            "version note",
            reverse("chapter_versions", args=[d, w["chapter"].id]),
            {"note": "x" * 201},
        ),
    ]


def everything() -> tuple:
    return (
        list(Drama.objects.values()),
        list(Character.objects.values()),
        list(Chapter.objects.values()),
        list(Scene.objects.values()),
        list(DialogLine.objects.values()),
        list(ChapterVersion.objects.values()),
        list(Review.objects.values()),
    )


def test_it_answers_422_to_every_oversized_field_and_stores_nothing(editing):
    for label, url, data in oversized_posts(editing):
        before = everything()
        response = editing["client"].post(url, data)
        assert response.status_code == 422, (label, response.status_code)
        assert "Ensure this value has at most" in response.content.decode(), label
        assert everything() == before, label


def test_it_refuses_an_oversized_review_comment_and_stores_nothing(editing):
    take = create_take(scene=editing["scene"])
    d = editing["drama"].id
    frame = take.frames.get()
    for url in [
        reverse("take_review_action", args=[d, take.id]),
        reverse("frame_review_action", args=[d, take.id, frame.id]),
    ]:
        before = everything()
        response = editing["client"].post(url, {"action": "comment", "comment": "x" * 2001})
        assert response.status_code in (302, 422)
        assert everything() == before
        page = editing["client"].get(reverse("take_review", args=[d, take.id]))
        assert "at most 2000 characters" in page.content.decode()


# --- Bad ids: 404 or 422, never 500 ------------------------------------------------------------


def test_it_answers_404_to_bad_ids_in_urls(editing):
    client, d = editing["client"], editing["drama"].id
    for url in [
        f"/dramas/{d}/scenes/-1/",
        f"/dramas/{d}/scenes/abc/",
        f"/dramas/{d}/scenes/{'9' * 19}/",
        f"/dramas/{d}/scenes/{'9' * 18}/",
        f"/dramas/{d}/scenes/{editing['other_scene'].id}/",
        f"/dramas/{d}/characters/{editing['other_character'].id}/",
        f"/dramas/{'9' * 18}/",
        f"/dramas/{d}/scenes/1.5/",
        f"/dramas/{d}/scenes/%00/",
    ]:
        assert client.get(url).status_code == 404, url
        assert client.post(url).status_code in (404, 405), url  # 405: a page that is only read


@pytest.mark.parametrize(
    "ids",
    [
        ["-1"],
        ["abc"],
        ["9" * 40],
        ["1e3"],
        [""],
        "own+foreign",
        "own-twice",
    ],
    ids=["negative", "non-numeric", "huge", "float", "empty", "foreign", "duplicate"],
)
def test_it_keeps_the_order_when_reorder_gets_bad_scene_ids(editing, ids):
    chapter = editing["chapter"]
    second = create_scene(chapter=chapter, location="Harbour")
    own = [str(editing["scene"].id), str(second.id)]
    if ids == "own+foreign":
        ids = [*own, str(editing["other_scene"].id)]
    elif ids == "own-twice":
        ids = [own[0], own[0]]
    before = everything(), _snapshot(editing["other"])
    url = reverse("scenes_reorder", args=[editing["drama"].id, chapter.id])
    response = editing["client"].post(url, {"scene": ids})
    assert response.status_code == 302
    assert (everything(), _snapshot(editing["other"])) == before
    follow = editing["client"].get(response["Location"])
    assert "here is the current order" in follow.content.decode()


@pytest.mark.parametrize(
    "speaker", ["foreign", "-1", "abc", "9" * 40, "1.5"], ids=lambda value: value[:8]
)
def test_it_refuses_a_bad_speaker_id_with_422(editing, speaker):
    if speaker == "foreign":
        speaker = str(editing["other_character"].id)
    scene, line = editing["scene"], editing["line"]
    d = editing["drama"].id
    posts = [
        (
            reverse("line_create", args=[d, scene.id]),
            {f"line-new-{scene.id}-line": "Hi", f"line-new-{scene.id}-speaker": speaker},
        ),
        (
            reverse("line_edit", args=[d, line.id]),
            {f"line-{line.id}-line": "Hi", f"line-{line.id}-speaker": speaker},
        ),
    ]
    for url, data in posts:
        before = everything()
        response = editing["client"].post(url, data)
        assert response.status_code == 422, url
        assert "Select a valid choice" in response.content.decode()
        assert everything() == before


@pytest.mark.parametrize("character", ["foreign", "-1", "abc", "9" * 40])
def test_it_refuses_bad_character_ids_on_a_scene_with_422(editing, character):
    if character == "foreign":
        character = str(editing["other_character"].id)
    d = editing["drama"].id
    fields = {
        "location": "Bar",
        "time_of_day": "day",
        "action": "A",
        "duration_s": "8",
        "characters": [character],
    }
    for url, prefix in [
        (reverse("scene_create", args=[d, editing["chapter"].id]), "new"),
        (reverse("scene_edit", args=[d, editing["scene"].id]), f"scene-{editing['scene'].id}"),
    ]:
        data = {f"{prefix}-{key}": value for key, value in fields.items()}
        before = everything()
        response = editing["client"].post(url, data)
        assert response.status_code == 422, url
        assert everything() == before


def test_it_refuses_bad_offsets_actions_and_priorities_without_a_500(editing):
    d, scene, line = editing["drama"].id, editing["scene"], editing["line"]
    take = create_take(scene=scene)
    before = everything()
    client = editing["client"]
    for url, data in [
        (reverse("scene_move", args=[d, scene.id]), {"offset": "abc"}),
        (reverse("scene_move", args=[d, scene.id]), {"offset": "9" * 40}),
        (reverse("line_move", args=[d, line.id]), {"offset": ""}),
        (reverse("take_review_action", args=[d, take.id]), {"action": "<script>"}),
        (
            reverse("frame_review_action", args=[d, take.id, take.frames.get().id]),
            {"action": "delete"},
        ),
        (reverse("render_scene", args=[d, scene.id]), {"priority": "9" * 40}),
        (reverse("render_scene", args=[d, scene.id]), {"priority": "-abc"}),
        (reverse("drama_members", args=[d]), {"username": "nobody", "role": "god"}),
        (reverse("chapter_generate", args=[d, editing["chapter"].id]), {"target_seconds": "x"}),
    ]:
        response = client.post(url, data)
        assert response.status_code < 500, (url, data)
    assert everything()[:5] == before[:5]


# --- Bad websocket messages ---------------------------------------------------------------------


@pytest.fixture
def fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def open_socket(path: str, user) -> WebsocketCommunicator:
    client = await sync_to_async(login)(user)
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.receive_from()  # the snapshot
    return communicator


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layer")
async def test_it_keeps_the_live_socket_up_after_nested_or_odd_json():
    @sync_to_async
    def make():
        producer = create_user()
        drama = create_drama(owner=producer)
        return producer, drama

    producer, drama = await make()
    communicator = await open_socket(f"/ws/dramas/{drama.id}/live/?view=queue", producer)
    for junk in [
        "[" * 4000,
        '{"type": ' * 400 + "1" + "}" * 400,
        '{"type": "resync", "type": "resync", "x": NaN}'[:0] + '{"type": ["resync"]}',
        '{"type": "resync"' + "," * 10,
        "\ud800",
        "1" * 4096,
    ]:
        await communicator.send_to(text_data=junk)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.send_to(text_data='{"type": "resync"}')
    assert 'id="queue-sections"' in await communicator.receive_from()
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layer")
async def test_it_keeps_the_health_socket_up_whatever_the_client_sends():
    @sync_to_async
    def make():
        producer = create_user()
        create_drama(owner=producer)
        return producer

    communicator = await open_socket("/ws/providers/health/", await make())
    for frame in [
        {"bytes_data": b"\x00\xff" * 100},
        {"text_data": "not json {"},
        {"text_data": "x" * 1_000_000},
        {"text_data": "[" * 5000},
        {"text_data": '{"type": "health.changed"}'},
        {"text_data": '{"type": "websocket.disconnect"}'},
    ]:
        await communicator.send_to(**frame)
    assert await communicator.receive_nothing(timeout=0.3)
    await get_channel_layer().group_send(
        provider_health.GROUP, {"type": "health.changed", "id": "after-junk"}
    )
    assert "health-live" in await communicator.receive_from(timeout=2)
    await communicator.disconnect()
