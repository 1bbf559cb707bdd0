"""The one shape of a chapter script, and how a writer's answer becomes one the studio can save.

`SCHEMA` is the JSON schema of a chapter (title, synopsis, scenes with dialog); the prompts show
it to the writer and `script_errors` checks answers against the same rules. Checking is in three
steps, each saying what it did:

- `extract_script`: the JSON object in the answer (bare, in code fences, or wrapped in prose);
  an empty answer or one cut at max_tokens is an error, never a short chapter;
- `script_errors`: what breaks the schema, as sentences the writer can fix on a retry;
- `script_repair`: what the studio fixes itself and reports as warnings: speakers and cast
  matched to registered characters (case and spacing tolerant), unknown speakers kept by name
  and flagged, durations clamped to what the video provider accepts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from dramas.models import SCENE_MAX_S, SCENE_MIN_S, Chapter, DialogLine, Scene, TimeOfDay

MAX_SCENES = 12
MAX_DECODE_STARTS = 20  # places in an answer where extract_script tries to read a JSON object
TIMES = [choice.value for choice in TimeOfDay]


def _max_length(model, name: str) -> int:
    return model._meta.get_field(name).max_length


# A script's text limits are the fields it is saved into.
LIMITS = {
    "title": _max_length(Chapter, "title"),
    "synopsis": _max_length(Chapter, "synopsis"),
    "location": _max_length(Scene, "location"),
    "action": _max_length(Scene, "action"),
    "camera": _max_length(Scene, "camera"),
    "mood": _max_length(Scene, "mood"),
    "line": _max_length(DialogLine, "line"),
    "emotion": _max_length(DialogLine, "emotion"),
    "speaker": _max_length(DialogLine, "speaker_name"),
}


def name_key(name: str) -> str:
    """How names are compared: case and spacing do not matter."""
    return " ".join(name.split()).casefold()


_TEXT = {"type": "string"}
SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "chapter",
    "type": "object",
    "required": ["title", "synopsis", "scenes"],
    "additionalProperties": False,
    "properties": {
        "title": {**_TEXT, "maxLength": LIMITS["title"]},
        "synopsis": {**_TEXT, "maxLength": LIMITS["synopsis"]},
        "scenes": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_SCENES,
            "items": {
                "type": "object",
                "required": [
                    "location",
                    "time_of_day",
                    "action",
                    "camera",
                    "duration_s",
                    "mood",
                    "characters",
                    "dialog",
                ],
                "additionalProperties": False,
                "properties": {
                    "location": {**_TEXT, "maxLength": LIMITS["location"]},
                    "time_of_day": {"type": "string", "enum": TIMES},
                    "action": {**_TEXT, "maxLength": LIMITS["action"]},
                    "camera": {**_TEXT, "maxLength": LIMITS["camera"]},
                    "duration_s": {"type": "number", "minimum": SCENE_MIN_S},
                    "mood": {**_TEXT, "maxLength": LIMITS["mood"]},
                    "characters": {"type": "array", "items": _TEXT},
                    "dialog": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["speaker", "line", "emotion"],
                            "additionalProperties": False,
                            "properties": {
                                "speaker": {**_TEXT, "maxLength": LIMITS["speaker"]},
                                "line": {**_TEXT, "maxLength": LIMITS["line"]},
                                "emotion": {**_TEXT, "maxLength": LIMITS["emotion"]},
                            },
                        },
                    },
                },
            },
        },
    },
}


class ScriptError(Exception):
    """The answer cannot become a chapter. `retryable`: asking again (with the errors) may help."""

    def __init__(self, message: str, *, retryable: bool = False, errors: Sequence[str] = ()):
        super().__init__(message)
        self.retryable = retryable
        self.errors = list(errors) or [message]


@dataclass
class Checked:
    script: dict
    warnings: list[str] = field(default_factory=list)


def extract_script(text: str, *, finish_reason: str = "", max_tokens: int | None = None) -> dict:
    """The JSON object in a writer's answer. Raises ScriptError (retryable when the writer could
    do better: not JSON, not an object; not for an answer cut at max_tokens or an empty one)."""
    if finish_reason == "length":
        limit = f" of {max_tokens} tokens" if max_tokens else ""
        raise ScriptError(
            f"The writer's answer was cut off at its length limit{limit}, so the chapter is "
            "incomplete and was not saved. Ask for a shorter chapter or raise WRITER_MAX_TOKENS."
        )
    if not text.strip():
        raise ScriptError("The writer returned an empty answer; nothing was saved. Try again.")
    body = text.strip()
    fenced = re.search(r"```(?:json|JSON)?\s*\n?(.*?)```", body, re.DOTALL)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(body)
    decoder = json.JSONDecoder()
    problem = "there is no JSON object in it"
    for candidate in candidates:
        start = candidate.find("{")
        # A few starts at most: each failed decode costs a scan of the text, so a huge answer
        # full of braces would otherwise take quadratic time.
        for _try in range(MAX_DECODE_STARTS):
            if start == -1:
                break
            try:
                value, _end = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError as error:
                problem = f"its JSON is invalid ({error.msg} at character {error.pos})"
                start = candidate.find("{", start + 1)
                continue
            except RecursionError:
                problem = "its JSON is nested too deeply"
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise ScriptError(f"The answer is not a chapter script: {problem}.", retryable=True)


def script_errors(script: dict, *, max_scenes: int = MAX_SCENES) -> list[str]:
    """What breaks SCHEMA, one sentence each (a producer, or the writer on a retry, can act on
    them); empty when the script fits it.

    Durations are only checked to be numbers (range problems are clamped by `script_repair`);
    time_of_day is compared case-insensitively (repair lowers it). Speakers and cast may be
    anyone: unknown ones are flagged by repair, not refused.
    """
    if not isinstance(script, dict):
        return ["the answer must be a JSON object"]
    errors: list[str] = []

    def text(value, where: str, key: str, *, required: bool = False) -> None:
        if not isinstance(value, str):
            errors.append(f"{where}: {key} must be a string")
        elif required and not value.strip():
            errors.append(f"{where}: {key} is empty")
        elif len(value) > LIMITS[key]:
            errors.append(f"{where}: {key} is longer than {LIMITS[key]} characters")

    text(script.get("title"), "chapter", "title", required=True)
    text(script.get("synopsis", ""), "chapter", "synopsis")
    scenes = script.get("scenes")
    if not isinstance(scenes, list) or not (1 <= len(scenes) <= max_scenes):
        return [*errors, f"chapter: scenes must be a list of 1 to {max_scenes} scenes"]
    for number, scene in enumerate(scenes, start=1):
        where = f"scene {number}"
        if not isinstance(scene, dict):
            errors.append(f"{where}: must be an object")
            continue
        text(scene.get("location"), where, "location", required=True)
        text(scene.get("action"), where, "action", required=True)
        for key in ("camera", "mood"):
            text(scene.get(key, ""), where, key)
        time = scene.get("time_of_day")
        if not isinstance(time, str) or time.strip().lower() not in TIMES:
            errors.append(f"{where}: time_of_day must be one of {', '.join(TIMES)}")
        duration = scene.get("duration_s")
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)  # NaN and Infinity are valid JSON to Python
        ):
            errors.append(f"{where}: duration_s must be a number of seconds")
        names = scene.get("characters", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            errors.append(f"{where}: characters must be a list of names")
        dialog = scene.get("dialog", [])
        if not isinstance(dialog, list):
            errors.append(f"{where}: dialog must be a list")
            continue
        for index, line in enumerate(dialog, start=1):
            spot = f"{where}, line {index}"
            if not isinstance(line, dict):
                errors.append(f"{spot}: must be an object")
                continue
            text(line.get("speaker", ""), spot, "speaker")
            text(line.get("line"), spot, "line", required=True)
            text(line.get("emotion", ""), spot, "emotion")
    return errors


def duration_range(capabilities) -> tuple[float, float]:
    """Shortest and longest scene the video provider accepts, within the scene model's limits."""
    if capabilities.durations_s:
        low, high = min(capabilities.durations_s), max(capabilities.durations_s)
    else:
        low, high = capabilities.min_duration_s, capabilities.max_duration_s
    low = max(float(low), float(SCENE_MIN_S))
    return low, max(low, min(float(high), float(SCENE_MAX_S)))


def script_repair(
    script: dict, *, characters: Sequence[str], durations: tuple[float, float]
) -> Checked:
    """A schema-valid script made ready to save, with a warning for each change or doubt."""
    registered = {name_key(name): name for name in characters}
    low, high = durations
    warnings: list[str] = []
    unknown_speakers: dict[str, list[int]] = {}
    scenes = []
    for number, scene in enumerate(script["scenes"], start=1):
        cast = []
        for name in scene.get("characters", []):
            match = registered.get(name_key(name))
            if match is None:
                if name.strip():
                    warnings.append(
                        f"Scene {number}: {name.strip()!s} is not a registered character, so "
                        "they are not linked to the scene. Register them or edit the scene."
                    )
            elif match not in cast:
                cast.append(match)
        dialog = []
        for line in scene.get("dialog", []):
            speaker = " ".join(str(line.get("speaker", "")).split())
            if speaker.casefold() in ("narrator", "narration", "voice-over", "v.o."):
                speaker = ""
            if speaker:
                match = registered.get(name_key(speaker))
                if match is None:
                    unknown_speakers.setdefault(speaker, []).append(number)
                speaker = match or speaker
            dialog.append(
                {
                    "speaker": speaker,
                    "line": line["line"].strip(),
                    "emotion": str(line.get("emotion", "")).strip(),
                }
            )
        duration = float(scene["duration_s"])
        if not low <= duration <= high:
            fitted = min(max(duration, low), high)
            warnings.append(
                f"Scene {number}: {duration:g} s is outside what the video provider accepts "
                f"({low:g}-{high:g} s), so it was set to {fitted:g} s."
            )
            duration = fitted
        scenes.append(
            {
                "location": scene["location"].strip(),
                "time_of_day": scene["time_of_day"].strip().lower(),
                "action": scene["action"].strip(),
                "camera": str(scene.get("camera", "")).strip(),
                "duration_s": duration,
                "mood": str(scene.get("mood", "")).strip(),
                "characters": cast,
                "dialog": dialog,
            }
        )
    for speaker, numbers in unknown_speakers.items():
        where = ", ".join(str(n) for n in sorted(set(numbers)))
        warnings.insert(
            0,
            f"{speaker} speaks (scene {where}) but is not a registered character: the lines are "
            "kept under that name. Register the character or change the speaker.",
        )
    return Checked(
        script={
            "title": script["title"].strip(),
            "synopsis": str(script.get("synopsis", "")).strip(),
            "scenes": scenes,
        },
        warnings=warnings,
    )


@dataclass
class Preview:
    """What a half-written answer already holds: its title and its complete scenes."""

    title: str = ""
    scenes: list[dict] = field(default_factory=list)


_TITLE = re.compile(r'"title"\s*:\s*("(?:[^"\\]|\\.)*")')


def preview_of(text: str) -> Preview:
    """The title and each scene object already complete in a streamed answer (partial JSON)."""
    preview = Preview()
    match = _TITLE.search(text)
    if match:
        try:
            preview.title = str(json.loads(match.group(1)))
        except json.JSONDecodeError:
            preview.title = ""
    start = text.find('"scenes"')
    start = text.find("[", start) if start != -1 else -1
    if start == -1:
        return preview
    decoder, position = json.JSONDecoder(), start + 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] != "{":
            return preview
        try:
            scene, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return preview  # the next scene is still being written
        if isinstance(scene, dict):
            preview.scenes.append(scene)
