"""LocalWriter: the offline, deterministic chapter writer ("offline draft").

It speaks the chat protocol so the studio can swap it with an LLM: it reads the brief that the
studio's prompt carries (`writer.brief_from_messages`) and answers with the script as JSON.
The same brief always gives the same script (seeded by the brief's content): 4-8 scenes, 3-5
plot turns, dialog only by the brief's characters (or the narrator when there are none), camera
directions and durations adding up to the target length. Lines are English stock material per
genre.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Sequence

from studio.providers import writer_material as material
from studio.providers.base import ChatChunk, ChatResult, Message, Usage
from studio.providers.errors import BadRequest
from studio.providers.ledger import DbLedger, Recorder, UsageEntry
from studio.providers.writer import TIMES_OF_DAY, ChapterBrief, brief_from_messages

LABEL = "offline draft"
MODEL = "offline-draft"


def _seed(brief: ChapterBrief) -> int:
    digest = hashlib.sha256(json.dumps(brief.to_dict(), sort_keys=True).encode()).hexdigest()
    return int(digest[:16], 16)


def _durations(rng: random.Random, count: int, total: float) -> list[float]:
    """`count` durations of 1-60 s in half seconds, adding up to `total` when it fits."""
    total = min(max(total, count * 1.0), count * 60.0)
    weights = [rng.uniform(0.8, 1.2) for _ in range(count)]
    scale = total / sum(weights)
    values = [min(max(round(w * scale * 2) / 2, 1.0), 60.0) for w in weights]
    # Settle the rounding on the scenes that can still take it, half a second at a time.
    for _ in range(count * 240):
        gap = round((total - sum(values)) * 2) / 2
        if abs(gap) < 0.5:
            break
        step = 0.5 if gap > 0 else -0.5
        movable = [i for i, v in enumerate(values) if 1.0 <= v + step <= 60.0]
        if not movable:
            break
        values[rng.choice(movable)] += step
    return values


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,.;") + "…"


def draft_script(brief: ChapterBrief) -> dict:
    rng = random.Random(_seed(brief))
    genre = material.GENRES.get(brief.genre, material.GENRES["other"])
    names = [c.name for c in brief.characters if c.name.strip()]
    looks = {c.name: _short(c.appearance, 80) for c in brief.characters if c.appearance.strip()}
    scene_count = min(max(round(brief.target_seconds / 12), 4), 8)
    turn_count = min(max(brief.plot_turns, 3), 5, scene_count - 1)
    # Turns land after the opening; the last scene is always one (the hook).
    turn_at = {*rng.sample(range(1, scene_count - 1), turn_count - 1), scene_count - 1}
    turns = rng.sample(genre["turns"], turn_count)
    durations = _durations(rng, scene_count, float(brief.target_seconds))
    start = rng.randrange(len(TIMES_OF_DAY))
    places = rng.sample(genre["places"], min(len(genre["places"]), scene_count))
    introduced: set[str] = set()
    scenes, beats = [], []

    def cast_pair() -> tuple[str, str]:
        if not names:
            return "a stranger", "someone"
        a = rng.choice(names)
        others = [n for n in names if n != a]
        return a, (rng.choice(others) if others else "a stranger")

    def described(text: str, people: list[str]) -> str:
        # First appearance of a character in the chapter carries their look, for video prompts.
        for name in people:
            if name in looks and name not in introduced and name in text:
                text = text.replace(name, f"{name} ({looks[name]})", 1)
            introduced.add(name)
        return text

    for index in range(scene_count):
        a, b = cast_pair()
        place = places[index % len(places)]
        if index in turn_at:
            action, summary, line, emotion = turns.pop(0)
            beats.append(summary.format(a=a, b=b, place=place.lower()))
            camera = rng.choice(material.CAMERAS["turn"])
        else:
            action, line, emotion = rng.choice(
                material.OPENINGS if index == 0 else material.BRIDGES
            )
            camera = rng.choice(material.CAMERAS["open" if index == 0 else "bridge"])
        people = [n for n in (a, b) if n in names]
        if "close-up" in camera and people:
            camera = f"{camera} on {people[0]}"
        action_text = action.format(a=a, b=b, place=place.lower())
        action_text = described(action_text, people)
        if brief.style:
            action_text = f"{action_text} Style: {_short(brief.style, 120)}."
        speaker, listener = (b, a) if line.startswith("b:") else (a, b)
        line = line.removeprefix("b:")
        dialog = [
            {"speaker": speaker if speaker in names else "", "line": line, "emotion": emotion}
        ]
        if listener in names and rng.random() < 0.7:
            reply, mood = rng.choice(material.REPLIES)
            dialog.append({"speaker": listener, "line": reply, "emotion": mood})
        scenes.append(
            {
                "location": place,
                "time_of_day": TIMES_OF_DAY[min(start + index * 4 // scene_count, 3)],
                "action": _short(action_text, 4000),
                "camera": camera,
                "duration_s": durations[index],
                "mood": rng.choice(genre["moods"]),
                "characters": people,
                "dialog": dialog,
            }
        )
    title = brief.title_wish.strip() or rng.choice(genre["titles"]).format(
        noun=rng.choice(genre["nouns"])
    )
    opening = (
        f"After “{_short(brief.previous_synopses[-1], 80)}”, " if brief.previous_synopses else ""
    )
    synopsis = opening + "; ".join(beats) + "."
    return {
        "title": _short(title, 200),
        "synopsis": _short(synopsis[0].upper() + synopsis[1:], 5000),
        "scenes": scenes,
    }


class LocalWriter:
    """A ChatProvider that only writes chapter scripts, offline, for free."""

    name = "local"
    model = MODEL
    label = LABEL

    def __init__(self, *, recorder: Recorder | None = None, chunk_chars: int = 120) -> None:
        self.recorder = recorder if recorder is not None else DbLedger()
        self.chunk_chars = chunk_chars

    def _answer(self, messages: Sequence[Message]) -> str:
        brief = brief_from_messages(messages)
        if brief is None:
            raise BadRequest(
                "the offline writer only writes chapters from a brief (see writer.BRIEF_MARKER)",
                provider=self.name,
            )
        return json.dumps(draft_script(brief), ensure_ascii=False)

    async def _book(self, operation: str, started: float, *, ok: bool, error: str = "") -> None:
        await self.recorder.record(
            UsageEntry(
                provider=self.name,
                model=self.model,
                kind="chat",
                operation=operation,
                ok=ok,
                error=error,
                latency_ms=int((time.perf_counter() - started) * 1000),
            )
        )

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_output: bool | dict = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult:
        started = time.perf_counter()
        try:
            text = self._answer(messages)
        except BadRequest as error:
            await self._book("chat.complete", started, ok=False, error=str(error))
            raise
        await self._book("chat.complete", started, ok=True)
        return ChatResult(
            text=text, usage=Usage(), model=self.model, finish_reason="stop", label=self.label
        )

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        json_output: bool | dict = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncIterator[ChatChunk]:
        started = time.perf_counter()
        try:
            text = self._answer(messages)
        except BadRequest as error:
            await self._book("chat.stream", started, ok=False, error=str(error))
            raise
        for offset in range(0, len(text), self.chunk_chars):
            yield ChatChunk(text=text[offset : offset + self.chunk_chars])
            await asyncio.sleep(0)  # let a live preview render between pieces
        await self._book("chat.stream", started, ok=True)
        yield ChatChunk(usage=Usage(), finish_reason="stop")
