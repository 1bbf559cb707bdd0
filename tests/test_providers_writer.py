import json

import pytest

from dramas import services
from dramas.prompts import chapter_brief, chapter_messages
from dramas.scripts import script_errors
from studio.providers.errors import BadRequest
from studio.providers.ledger import MemoryLedger
from studio.providers.local_writer import LocalWriter, draft_script
from studio.providers.writer import (
    TIMES_OF_DAY,
    ChapterBrief,
    CharacterNote,
    brief_from_messages,
)
from tests.factories import create_chapter, create_character
from tests.providers_support import brief_messages, chat_for, running_sim

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
    assert script_errors(script) == []
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
    assert script_errors(script) == []
    assert {line["speaker"] for s in script["scenes"] for line in s["dialog"]} == {""}


def test_it_keeps_the_title_wish():
    assert draft_script(brief(title_wish="The Contract"))["title"] == "The Contract"


@pytest.mark.django_db
def test_it_reads_the_brief_back_out_of_the_studios_own_prompt(drama):
    for note in CAST:
        create_character(drama=drama, name=note.name, appearance_notes=note.appearance)
    create_chapter(drama=drama, synopsis="Ada left.")
    chapter = create_chapter(drama=drama, title="The Return")
    brief = chapter_brief(chapter=chapter, target_seconds=45, plot_turns=4, notes="keep it tense")
    assert brief.previous_synopses == ("Ada left.",) and len(brief.characters) == 2

    assert brief_from_messages(chapter_messages(chapter=chapter, brief=brief)) == brief
    assert brief_from_messages(brief_messages(brief)) == brief
    assert brief_from_messages([{"role": "user", "content": "hello"}]) is None


async def streamed(writer, messages) -> tuple[list[str], object]:
    """Every text piece of a streamed answer and the usage it ended with."""
    pieces, usage = [], None
    async for chunk in writer.stream(messages, json_output=True):
        if chunk.text:
            pieces.append(chunk.text)
        usage = chunk.usage or usage
    return pieces, usage


async def test_it_writes_offline_through_the_chat_protocol():
    ledger = MemoryLedger()
    writer = LocalWriter(recorder=ledger, chunk_chars=50)
    expected = json.dumps(draft_script(brief()), ensure_ascii=False)

    pieces, _usage = await streamed(writer, brief_messages(brief()))
    whole = await writer.complete(brief_messages(brief()), json_output=True)

    assert len(pieces) > 3 and "".join(pieces) == expected == whole.text
    assert writer.label == "offline draft" and whole.model == "offline-draft"
    assert [e.operation for e in ledger.entries] == ["chat.stream", "chat.complete"]


async def test_it_refuses_messages_without_a_brief():
    with pytest.raises(BadRequest):
        await LocalWriter(recorder=MemoryLedger()).complete([{"role": "user", "content": "hi"}])


async def test_it_writes_through_an_llm_endpoint_the_same_way():
    async with running_sim() as sim:
        pieces, usage = await streamed(chat_for(sim), brief_messages(brief()))
    assert json.loads("".join(pieces)) == draft_script(brief())
    assert usage.output_tokens > 0


@pytest.mark.django_db
def test_it_writes_a_script_the_studio_stores_as_is(drama):
    for note in CAST:
        create_character(drama=drama, name=note.name, appearance_notes=note.appearance)
    chapter = create_chapter(drama=drama)
    script = draft_script(brief(characters=tuple(CAST)))
    services.chapter_script_replace(
        chapter=chapter, script=script, note="Offline draft", source="generated"
    )
    stored = services.chapter_script(chapter=chapter, keys=False)
    for scene in (*stored["scenes"], *script["scenes"]):
        scene["characters"] = sorted(scene["characters"])
    assert stored == script
