"""The chapter script schema: extracting JSON from answers, schema errors, repair, preview."""

import json

import pytest

from dramas.generation import count_tokens
from dramas.models import Genre
from dramas.prompts import chapter_brief
from dramas.scripts import (
    ScriptError,
    duration_range,
    extract_script,
    preview_of,
    script_errors,
    script_repair,
)
from studio.providers.base import Capabilities
from studio.providers.local_writer import draft_script
from studio.providers.writer import ChapterBrief, CharacterNote
from tests.factories import create_chapter, create_character, create_drama


def script(**changes) -> dict:
    scene = {
        "location": "Rooftop bar",
        "time_of_day": "night",
        "action": "Mei turns away from the skyline.",
        "camera": "slow push-in",
        "duration_s": 8,
        "mood": "tense",
        "characters": ["Mei"],
        "dialog": [{"speaker": "Mei", "line": "You came back.", "emotion": "cold"}],
    }
    return {"title": "The Contract", "synopsis": "Mei meets Jun.", "scenes": [scene | changes]}


def test_it_reads_bare_fenced_and_prose_wrapped_json():
    body = json.dumps(script())
    assert extract_script(body) == script()
    assert extract_script(f"```json\n{body}\n```") == script()
    chatty = f"Sure! Here is the chapter:\n\n{body}\n\nEnjoy {{the drama}}."
    assert extract_script(chatty) == script()


def test_it_reports_empty_truncated_and_non_json_answers():
    with pytest.raises(ScriptError, match="empty") as empty:
        extract_script("  \n")
    assert not empty.value.retryable
    with pytest.raises(ScriptError, match="cut off at its length limit of 2048") as cut:
        extract_script('{"title": "The Con', finish_reason="length", max_tokens=2048)
    assert not cut.value.retryable
    with pytest.raises(ScriptError, match="not a chapter script") as prose:
        extract_script("I cannot write that chapter.")
    assert prose.value.retryable


def test_it_lists_schema_errors_a_writer_can_fix():
    broken = script(time_of_day="noon", duration_s="long", action="")
    broken["scenes"][0]["dialog"] = [{"speaker": "Mei"}]
    assert script_errors(broken) == [
        "scene 1: action is empty",
        "scene 1: time_of_day must be one of dawn, day, dusk, night",
        "scene 1: duration_s must be a number of seconds",
        "scene 1, line 1: line must be a string",
    ]
    assert script_errors({"title": "x", "scenes": []}) == [
        "chapter: scenes must be a list of 1 to 12 scenes"
    ]
    assert script_errors(script()) == []


def test_it_leaves_to_repair_what_the_studio_can_fix_and_refuses_the_rest():
    fixable = script(time_of_day=" Night ", duration_s=90, characters=["Nobody"])
    fixable["scenes"][0]["dialog"].append({"speaker": "Stranger", "line": "Who?"})
    assert script_errors(fixable) == []  # case, a long scene and unknown names: repaired

    broken = script(location="x" * 201, camera=7)
    broken["title"] = ""
    broken["scenes"][0]["dialog"].append({"speaker": "Mei", "line": " "})
    assert script_errors(broken) == [
        "chapter: title is empty",
        "scene 1: location is longer than 200 characters",
        "scene 1: camera must be a string",
        "scene 1, line 2: line is empty",
    ]
    assert script_errors(["not", "an", "object"]) == ["the answer must be a JSON object"]


def test_it_maps_speakers_tolerantly_and_flags_unknown_ones_without_dropping_lines():
    answer = script(characters=[" mei ", "Ghost"])
    answer["scenes"][0]["dialog"] = [
        {"speaker": "  MEI", "line": "Stay.", "emotion": ""},
        {"speaker": "Old  Lee", "line": "Too late.", "emotion": "sad"},
        {"speaker": "Narrator", "line": "Midnight.", "emotion": ""},
    ]
    checked = script_repair(answer, characters=["Mei", "Jun"], durations=(1, 60))
    scene = checked.script["scenes"][0]
    assert scene["characters"] == ["Mei"]
    assert [line["speaker"] for line in scene["dialog"]] == ["Mei", "Old Lee", ""]
    assert checked.warnings[0].startswith("Old Lee speaks (scene 1) but is not a registered")
    assert any("Ghost is not a registered character" in w for w in checked.warnings)


def test_it_clamps_durations_to_the_video_providers_range_and_says_so():
    assert duration_range(Capabilities(durations_s=(4.0, 8.0, 12.0))) == (4.0, 12.0)
    assert duration_range(Capabilities(min_duration_s=0.5, max_duration_s=90)) == (1.0, 60.0)
    checked = script_repair(script(duration_s=30), characters=["Mei"], durations=(4.0, 12.0))
    assert checked.script["scenes"][0]["duration_s"] == 12.0
    assert checked.warnings == [
        "Scene 1: 30 s is outside what the video provider accepts (4-12 s), so it was set to 12 s."
    ]


def test_it_previews_the_complete_scenes_of_a_half_written_answer():
    body = json.dumps(draft_script(ChapterBrief(characters=(CharacterNote("Mei"),))))
    full = preview_of(body)
    assert full.title and len(full.scenes) >= 4
    half = preview_of(body[: len(body) // 2])
    assert half.title == full.title
    assert 0 < len(half.scenes) < len(full.scenes)
    assert preview_of('{"tit').scenes == []


def test_it_counts_tokens_by_a_documented_rule_of_thumb():
    assert count_tokens("abcd" * 10) == 10
    assert count_tokens("你回来了") == 4
    assert count_tokens("") == 0


@pytest.mark.django_db
@pytest.mark.parametrize("genre", [choice.value for choice in Genre])
def test_it_accepts_the_offline_writers_script_for_every_genre(genre):
    drama = create_drama(genre=genre, style="photoreal, neon night")
    for name in ("Mei", "Jun Park"):
        create_character(drama=drama, name=name, appearance_notes="red coat")
    chapter = create_chapter(drama=drama)
    for seconds in (15, 60, 180):
        brief = chapter_brief(chapter=chapter, target_seconds=seconds, plot_turns=5)
        answer = extract_script(json.dumps(draft_script(brief)))
        assert script_errors(answer) == []
        checked = script_repair(answer, characters=["Mei", "Jun Park"], durations=(1.0, 60.0))
        assert checked.warnings == []
