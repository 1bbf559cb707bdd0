"""What a chapter writer is asked: the brief, as plain data, and how it travels in messages.

The studio's prompts (dramas/prompts.py) end the user message with `BRIEF_MARKER` and the brief
as JSON; any chat provider answers them (an LLM through OpenAICompatibleChat), and the offline
LocalWriter and the simulator read the brief back out with `brief_from_messages`. The answer is
a chapter script, checked by the studio (dramas/scripts.py):

    {"title", "synopsis", "scenes": [{"location", "time_of_day", "action", "camera",
      "duration_s", "mood", "characters": [names], "dialog": [{"speaker", "line", "emotion"}]}]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from studio.providers.base import Message

TIMES_OF_DAY = ("dawn", "day", "dusk", "night")
BRIEF_MARKER = "Chapter brief (JSON):"


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


def brief_from_messages(messages: Sequence[Message]) -> ChapterBrief | None:
    """The brief the studio's prompt carries after BRIEF_MARKER in the last user message that
    has one (a fenced or bare JSON object), if there is one."""
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
