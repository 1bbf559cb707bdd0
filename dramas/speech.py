"""Dialog as speech: each line spoken in its character's voice, cached by what made it, and
placed on the take's timeline (the dialog track).

A line's audio is a `LineAudio` keyed by a hash of (text, voice profile, service, model): an
unchanged line is found again and never paid for twice, whichever take or scene asks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from asgiref.sync import async_to_sync, sync_to_async
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from dramas.dialog_audio import SpokenLine, needed_seconds, place
from dramas.models import DialogLine, LineAudio, Scene
from studio.media import local_path
from studio.providers.base import SpeechProvider, SpeechRequest, Voice
from studio.providers.ledger import usage_scope

NARRATOR_VOICE = Voice()
# Before the first line when some of the scene's cast never speaks: a beat on the whole group,
# so everyone present is on screen (and checked) at least once.
ESTABLISHING_S = 1.0


def voice_of(character) -> Voice:
    """The character's voice profile (the narrator and unregistered speakers: the default)."""
    if character is None:
        return NARRATOR_VOICE
    return Voice(
        voice_id=character.voice_id,
        speed=character.voice_speed,
        pitch=character.voice_pitch,
        language=character.voice_language or "en",
    )


def line_key(*, text: str, voice: Voice, emotion: str, provider: str, model: str) -> str:
    profile = {k: v for k, v in asdict(voice).items() if k != "reference_audio"}
    if voice.reference_audio:
        profile["reference_audio"] = hashlib.sha256(voice.reference_audio).hexdigest()
    data = {"text": text, "voice": profile, "emotion": emotion, "provider": provider}
    data["model"] = model
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


async def line_audio(
    *, text: str, voice: Voice, emotion: str, speech: SpeechProvider
) -> tuple[LineAudio, bool]:
    """The line's stored audio, synthesised only if no identical line was spoken before.
    Returns (row, made now)."""
    text = " ".join(text.split())
    key = line_key(
        text=text, voice=voice, emotion=emotion, provider=speech.name, model=speech.model
    )
    found = await LineAudio.objects.filter(key=key).afirst()
    if found is not None:
        return found, False
    spoken = await speech.synthesize(SpeechRequest(text=text, voice=voice, emotion=emotion))
    store = sync_to_async(_store)
    return await store(key=key, text=text, voice=voice, speech=speech, spoken=spoken)


def _store(*, key, text, voice, speech, spoken) -> tuple[LineAudio, bool]:
    row = LineAudio(
        key=key,
        provider=speech.name,
        model=speech.model,
        text=text,
        voice={k: v for k, v in asdict(voice).items() if k != "reference_audio"},
        sample_rate=spoken.sample_rate,
        duration_s=spoken.duration_s,
        words=[[w.text, w.start_s, w.end_s] for w in spoken.words],
        timed=spoken.timed,
    )
    row.audio.save(f"{key[:2]}/{key}.wav", ContentFile(spoken.wav), save=False)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        # Another take spoke the same line at the same moment: keep theirs, drop ours.
        row.audio.delete(save=False)
        return LineAudio.objects.get(key=key), False
    return row, True


PREVIEW_LINE = "Hello, I'm {name}. This is how I sound in every scene."


def voice_preview(*, character) -> LineAudio:
    """A line in the character's voice through the configured speech service (sync: the
    preview view). Cached like every line: replaying it costs nothing."""
    from studio.providers import registry

    with usage_scope(drama_id=character.drama_id):
        row, _made = async_to_sync(line_audio)(
            text=PREVIEW_LINE.format(name=character.name),
            voice=voice_of(character),
            emotion="",
            speech=registry.speech(),
        )
    return row


def scene_lines(*, scene_id: int) -> list[DialogLine]:
    return [
        line
        for line in DialogLine.objects.filter(scene_id=scene_id).select_related("speaker")
        if line.line.strip()
    ]


async def speak_scene(
    *,
    scene: Scene,
    lines: list[DialogLine],
    speech: SpeechProvider,
    start_s: float,
    progress=None,
) -> dict:
    """Every line of the scene spoken (cached lines reused) and placed. Returns the track, how
    long the scene must be to hold it, and how many lines were synthesised now."""
    cast = await sync_to_async(_cast_ids)(scene_id=scene.id)
    if cast - {line.speaker_id for line in lines}:
        start_s += ESTABLISHING_S
    spoken, made = [], 0
    for index, line in enumerate(lines):
        row, new = await line_audio(
            text=line.line, voice=voice_of(line.speaker), emotion=line.emotion, speech=speech
        )
        made += new
        spoken.append(
            SpokenLine(
                line_id=line.id,
                speaker=line.display_speaker,
                text=line.line,
                duration_s=row.duration_s,
                audio_key=row.key,
                words=tuple(tuple(w) for w in row.words),
            )
        )
        if progress is not None:
            await progress(index + 1, len(lines))
    return {
        "track": place(spoken, start_s=start_s, scene_s=scene.duration_s),
        "needed_s": round(needed_seconds(spoken, start_s=start_s), 2),
        "synthesised": made,
    }


def _cast_ids(*, scene_id: int) -> set[int]:
    return set(
        Scene.characters.through.objects.filter(scene_id=scene_id).values_list(
            "character_id", flat=True
        )
    )


def audio_paths(*, track: list[dict]) -> dict[str, str]:
    """Local file paths of the track's line audio, by key (for the pool's mixer)."""
    keys = {entry["audio_key"] for entry in track}
    return {row.key: local_path(row.audio) for row in LineAudio.objects.filter(key__in=keys)}
