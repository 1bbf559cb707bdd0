import json

import pytest
from asgiref.sync import async_to_sync

from dramas import services
from studio.providers.errors import BadRequest, MalformedResponse
from studio.providers.ledger import MemoryLedger
from studio.providers.local_writer import LocalWriter, draft_script
from studio.providers.writer import (
    TIMES_OF_DAY,
    ChapterBrief,
    CharacterNote,
    brief_from_messages,
    brief_messages,
    parse_script,
    validate_script,
    write_chapter,
)
from tests.factories import create_chapter, create_character
from tests.providers_support import chat_for, running_sim

CAST = (
    CharacterNote("Marcus Hale", "tall, grey suit, scar over the left eyebrow"),
    CharacterNote("Dr. Ada Quinn", "silver bob, round glasses, lab coat"),
)
SCENE_KEYS = {
    "location",
    "time_of_day",
    "action",
    "camera",
    "duration_s",
    "mood",
    "characters",
    "dialog",
}


def brief(**fields) -> ChapterBrief:
    values = dict(
        genre="revenge",
        style="photoreal, warm neon night",
        characters=CAST,
        target_seconds=60,
        plot_turns=4,
    )
    return ChapterBrief(**(values | fields))


def test_it_writes_the_same_script_for_the_same_brief():
    assert draft_script(brief()) == draft_script(brief())
    assert draft_script(brief()) != draft_script(brief(genre="romance"))
    assert draft_script(brief()) != draft_script(brief(previous_synopses=("Ada left.",)))


@pytest.mark.parametrize(
    "genre",
    [
        "romance",
        "revenge",
        "thriller",
        "mystery",
        "fantasy",
        "sci-fi",
        "comedy",
        "family",
        "other",
        "western",
    ],
)
@pytest.mark.parametrize("seconds", [10, 45, 90, 300])
@pytest.mark.parametrize("turns", [1, 3, 5, 9])
def test_it_keeps_to_the_script_shape(genre, seconds, turns):
    script = draft_script(brief(genre=genre, target_seconds=seconds, plot_turns=turns))
    assert set(script) == {"title", "synopsis", "scenes"}
    assert 4 <= len(script["scenes"]) <= 8
    assert validate_script(script, characters=[c.name for c in CAST]) == []
    for scene in script["scenes"]:
        assert set(scene) == SCENE_KEYS and scene["time_of_day"] in TIMES_OF_DAY
        assert 1 <= scene["duration_s"] <= 60 and scene["camera"]
        assert {line["speaker"] for line in scene["dialog"]} <= {c.name for c in CAST}
    total = sum(scene["duration_s"] for scene in script["scenes"])
    assert total == seconds
    # Each plot turn is a beat of the synopsis: 3 to 5 of them.
    assert 3 <= script["synopsis"].count(";") + 1 <= 5


def test_it_hits_the_target_length_and_the_asked_turns():
    script = draft_script(brief(target_seconds=75, plot_turns=5))
    assert sum(s["duration_s"] for s in script["scenes"]) == 75
    assert script["synopsis"].count(";") + 1 == 5


def test_it_describes_each_character_on_first_appearance():
    actions = " ".join(s["action"] for s in draft_script(brief())["scenes"])
    for note in CAST:
        assert actions.count(f"{note.name} ({note.appearance})") == 1


def test_it_gives_lines_to_the_narrator_when_nobody_is_registered():
    script = draft_script(brief(characters=()))
    assert validate_script(script, characters=[]) == []
    assert {line["speaker"] for s in script["scenes"] for line in s["dialog"]} == {""}


def test_it_keeps_the_title_wish():
    assert draft_script(brief(title_wish="The Contract"))["title"] == "The Contract"


def test_it_round_trips_the_brief_through_the_messages():
    original = brief(previous_synopses=("One.", "Two."), notes="keep it tense")
    assert brief_from_messages(brief_messages(original)) == original
    assert brief_from_messages([{"role": "user", "content": "hello"}]) is None


async def test_it_writes_offline_through_the_chat_protocol():
    ledger = MemoryLedger()
    writer = LocalWriter(recorder=ledger, chunk_chars=50)
    seen = []
    draft = await write_chapter(writer=writer, brief=brief(), on_text=seen.append)
    assert draft.script == draft_script(brief()) and draft.errors == []
    assert draft.label == "offline draft" and draft.model == "offline-draft"
    assert len(seen) > 3 and seen[-1] == json.dumps(draft.script, ensure_ascii=False)
    plain = await write_chapter(writer=writer, brief=brief())
    assert plain.script == draft.script
    assert [e.operation for e in ledger.entries] == ["chat.stream", "chat.complete"]


async def test_it_refuses_messages_without_a_brief():
    with pytest.raises(BadRequest):
        await LocalWriter(recorder=MemoryLedger()).complete([{"role": "user", "content": "hi"}])


async def test_it_writes_through_an_llm_endpoint_the_same_way():
    async with running_sim() as sim:
        draft = await write_chapter(writer=chat_for(sim), brief=brief(), on_text=lambda _: None)
    assert draft.script == draft_script(brief()) and draft.errors == []
    assert draft.usage.output_tokens > 0 and draft.label == "gpt-4.1"


def test_it_finds_the_script_in_chatty_answers():
    assert parse_script('```json\n{"title": "A"}\n```') == {"title": "A"}
    assert parse_script('Here you go: {"title": "A"} Enjoy!') == {"title": "A"}
    with pytest.raises(MalformedResponse):
        parse_script("no json here")


def test_it_lists_what_is_wrong_with_a_script():
    script = draft_script(brief())
    script["title"] = ""
    scene = script["scenes"][0]
    scene.update(time_of_day="noon", duration_s=90, characters=["Nobody"])
    scene["dialog"].append({"speaker": "Stranger", "line": ""})
    errors = validate_script(script, characters=[c.name for c in CAST])
    assert "chapter: title is empty" in errors
    assert any("time_of_day" in e for e in errors) and any("duration_s" in e for e in errors)
    assert any("'Nobody' is not one of" in e for e in errors)
    assert any("speaker 'Stranger'" in e for e in errors) and any(
        "line is empty" in e for e in errors
    )
    assert validate_script({"title": "x", "scenes": []}, characters=[]) == [
        "chapter: scenes must be a list of 1 to 12 scenes"
    ]


@pytest.mark.django_db
def test_it_writes_a_script_the_studio_stores_as_is(drama):
    for note in CAST:
        create_character(drama=drama, name=note.name, appearance_notes=note.appearance)
    chapter = create_chapter(drama=drama)
    draft = async_to_sync(write_chapter)(
        writer=LocalWriter(recorder=MemoryLedger()),
        brief=brief(characters=tuple(CAST)),
    )
    services.chapter_script_replace(
        chapter=chapter, script=draft.script, note="Offline draft", source="generated"
    )
    stored = services.chapter_script(chapter=chapter)
    for scene in (*stored["scenes"], *draft.script["scenes"]):
        scene["characters"] = sorted(scene["characters"])
    assert stored == draft.script
