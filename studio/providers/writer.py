"""Chapter scripts from a chat provider: the brief, the prompt, the answer's shape and checks.

Both writers speak the chat protocol: `brief_messages(brief)` builds the messages, any
ChatProvider answers them (an LLM through OpenAICompatibleChat, or the offline LocalWriter,
which reads the brief back out of the messages), and `write_chapter` parses and checks the
answer. The script has exactly the shape the studio stores for a chapter version:

    {"title", "synopsis", "scenes": [{"location", "time_of_day", "action", "camera",
      "duration_s", "mood", "characters": [names], "dialog": [{"speaker", "line", "emotion"}]}]}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from studio.providers.base import ChatProvider, Message, Usage
from studio.providers.errors import MalformedResponse

TIMES_OF_DAY = ("dawn", "day", "dusk", "night")
BRIEF_MARKER = "Chapter brief (JSON):"
# Field limits mirror the studio's scene and dialog fields.
LIMITS = {
    "title": 200,
    "synopsis": 5000,
    "location": 200,
    "action": 4000,
    "camera": 300,
    "mood": 100,
    "line": 1000,
    "emotion": 50,
    "speaker": 100,
}


@dataclass(frozen=True)
class CharacterNote:
    name: str
    appearance: str = ""


@dataclass(frozen=True)
class ChapterBrief:
    """Everything a writer needs for one chapter; no database objects."""

    drama_title: str = ""
    title_wish: str = ""
    genre: str = "romance"
    style: str = ""
    language: str = "en"
    logline: str = ""
    characters: tuple[CharacterNote, ...] = ()
    previous_synopses: tuple[str, ...] = ()
    chapter_number: int = 1
    target_seconds: int = 60
    plot_turns: int = 3  # 3 to 5
    notes: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ChapterBrief:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["characters"] = tuple(
            CharacterNote(**{k: v for k, v in c.items() if k in ("name", "appearance")})
            for c in values.get("characters", ())
        )
        values["previous_synopses"] = tuple(values.get("previous_synopses", ()))
        return cls(**values)


SYSTEM_PROMPT = """You write chapters of vertical short dramas: fast, visual, one hook per scene.
Answer with ONE JSON object and nothing else, in exactly this shape:
{"title": str, "synopsis": str, "scenes": [{"location": str,
 "time_of_day": "dawn"|"day"|"dusk"|"night", "action": str (what the camera sees: the visual
 prompt), "camera": str (e.g. "slow push-in, close-up"), "duration_s": number 1-60, "mood": str,
 "characters": [names], "dialog": [{"speaker": name or "" for the narrator, "line": str,
 "emotion": str}]}]}
Rules: 4 to 8 scenes whose durations add up to about the target length; the plot turns the brief
asks for, the last scene ending on a hook; speakers and scene characters only from the brief's
characters (exact names), or "" for narration; dialog in the brief's language; describe each
character's look in the action when they first appear."""


def brief_messages(brief: ChapterBrief) -> list[Message]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"{BRIEF_MARKER}\n```json\n"
            + json.dumps(brief.to_dict(), ensure_ascii=False, indent=1)
            + "\n```",
        },
    ]


def brief_from_messages(messages: Sequence[Message]) -> ChapterBrief | None:
    """The brief `brief_messages` wrote into the last user message, if there is one."""
    for message in reversed(messages):
        content = message.get("content") or ""
        if message.get("role") == "user" and BRIEF_MARKER in content:
            text = content.split(BRIEF_MARKER, 1)[1]
            try:
                return ChapterBrief.from_dict(json.loads(_strip_fences(text)))
            except (json.JSONDecodeError, TypeError, AttributeError):
                return None
    return None


def _strip_fences(text: str) -> str:
    text = text.strip()
    match = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    return match.group(1) if match else text


def parse_script(text: str) -> dict:
    """The JSON object in a writer's answer (code fences and surrounding chatter tolerated)."""
    body = _strip_fences(text)
    if not body.startswith("{"):
        start, end = body.find("{"), body.rfind("}")
        body = body[start : end + 1] if start != -1 and end > start else body
    try:
        script = json.loads(body)
    except json.JSONDecodeError as error:
        raise MalformedResponse(f"the script is not valid JSON: {error.msg}") from None
    if not isinstance(script, dict):
        raise MalformedResponse("the script is not a JSON object")
    return script


def validate_script(
    script: dict,
    *,
    characters: Sequence[str] | None,
    min_scenes: int = 1,
    max_scenes: int = 12,
    strict: bool = True,
) -> list[str]:
    """Problems with a script, one sentence each (a producer or a writer on retry can act on
    them); empty when it is valid.

    `characters`: the registered names every speaker and cast member must be (None: any name).
    `strict=False` is for answers that `script_repair` will still fix: durations need only be
    numbers (repair clamps them) and time_of_day may differ in case (repair lowers it).
    """
    if not isinstance(script, dict):
        return ["the answer must be a JSON object"]
    errors: list[str] = []
    known = None if characters is None else {name_key(name) for name in characters}

    def text(value, where: str, key: str, *, required: bool = False) -> None:
        if not isinstance(value, str):
            errors.append(f"{where}: {key} must be a string")
        elif required and not value.strip():
            errors.append(f"{where}: {key} is empty")
        elif len(value) > LIMITS[key]:
            errors.append(f"{where}: {key} is longer than {LIMITS[key]} characters")

    def registered(name, where: str, what: str) -> None:
        if known is not None and isinstance(name, str) and name and name_key(name) not in known:
            errors.append(f"{where}: {what} {name!r} is not one of the drama's characters")

    text(script.get("title"), "chapter", "title", required=True)
    text(script.get("synopsis", ""), "chapter", "synopsis")
    scenes = script.get("scenes")
    if not isinstance(scenes, list) or not (min_scenes <= len(scenes) <= max_scenes):
        return [*errors, f"chapter: scenes must be a list of {min_scenes} to {max_scenes} scenes"]
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
        if not isinstance(time, str) or (time if strict else time.strip().lower()) not in (
            TIMES_OF_DAY
        ):
            errors.append(f"{where}: time_of_day must be one of {', '.join(TIMES_OF_DAY)}")
        duration = scene.get("duration_s")
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)  # NaN and Infinity are valid JSON to Python
        ):
            errors.append(f"{where}: duration_s must be a number of seconds")
        elif strict and not 1 <= duration <= 60:
            errors.append(f"{where}: duration_s must be between 1 and 60")
        names = scene.get("characters", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            errors.append(f"{where}: characters must be a list of names")
        else:
            for name in names:
                registered(name, where, "character")
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
            registered(line.get("speaker", ""), spot, "speaker")
            text(line.get("line"), spot, "line", required=True)
            text(line.get("emotion", ""), spot, "emotion")
    return errors


def name_key(name: str) -> str:
    """How names are compared: case and spacing do not matter."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class ScriptDraft:
    script: dict
    usage: Usage
    model: str
    label: str  # what the UI shows beside it, e.g. "offline draft"
    errors: list[str] = field(default_factory=list)


async def write_chapter(
    *,
    writer: ChatProvider,
    brief: ChapterBrief,
    on_text: Callable[[str], None] | None = None,
) -> ScriptDraft:
    """Ask `writer` for the chapter; with `on_text`, stream and report the text so far.

    A script that parses but breaks the rules is returned with its `errors` listed, so the
    caller decides (show them, retry, or keep the draft); unparseable answers raise.
    """
    messages = brief_messages(brief)
    if on_text is None:
        result = await writer.complete(messages, json_output=True)
        text, usage, model = result.text, result.usage, result.model
    else:
        parts: list[str] = []
        usage = Usage()
        async for chunk in writer.stream(messages, json_output=True):
            if chunk.text:
                parts.append(chunk.text)
                on_text("".join(parts))
            if chunk.usage is not None:
                usage = chunk.usage
        text, model = "".join(parts), writer.model
    script = parse_script(text)
    names = [c.name for c in brief.characters]
    return ScriptDraft(
        script=script,
        usage=usage,
        model=model,
        label=getattr(writer, "label", "") or model,
        errors=validate_script(script, characters=names),
    )
