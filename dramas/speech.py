"""Dialog as speech: each line spoken in its character's voice, cached by what made it, and
placed on the take's timeline (the dialog track).

A line's audio is a `LineAudio` keyed by a hash of (text, voice profile, service, model): an
unchanged line is found again and never paid for twice, whichever take or scene asks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from dataclasses import asdict, dataclass, replace

from asgiref.sync import async_to_sync, sync_to_async
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from characters.voices import SERVICE_LABELS, voice_id_problem
from dramas.dialog_audio import SpokenLine, needed_seconds, place
from dramas.models import DialogLine, LineAudio, Scene
from studio.media import local_path
from studio.providers.base import SpeechProvider, SpeechRequest, Voice
from studio.providers.errors import ProviderError
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


@dataclass(frozen=True)
class VoicePlan:
    service: SpeechProvider
    voice: Voice
    note: str = ""  # for the producer: why the character's own voice is not the one heard
    clone: bool = False  # the service makes the voice from the character's sample first
    from_sample: bool = False  # the voice is made from the sample: it carries the recording


def voice_plan(character) -> VoicePlan:
    """Which service and voice speak the character's lines, decided without calling anyone.

    The character's voice belongs to a service (`voice_provider`; "" is the studio's own): the
    offline voice is always there, a remote one only when it is the configured SPEECH_API.
    When that service is not this studio's, or the voice id cannot be one of its voices, the
    studio's service speaks the lines with its default voice and the note says so."""
    from studio.providers import registry

    studio = registry.speech()
    if character is None:
        return VoicePlan(studio, NARRATOR_VOICE)
    voice = voice_of(character)
    api = character.voice_provider or registry.speech_api()
    service = registry.speech(api)
    name = character.name
    if service is None:
        chosen = f" “{voice.voice_id}”" if voice.voice_id else ""
        why = (
            f"{name}'s voice{chosen} is for {SERVICE_LABELS.get(api, api)}, which this studio "
            "is not set up for."
        )
        return _studio_default(character, studio, why)
    if _needs_clone(character, service):
        return VoicePlan(service, voice, clone=True)
    problem = voice_id_problem(api=api, voice_id=voice.voice_id)
    if problem:
        return _studio_default(character, studio, problem)
    # The sample is part of the voice (and so of each line's cache key) when the voice is made
    # from it: the sample's clone, or a service that takes the recording with every line.
    from_sample = bool(character.voice_sample) and (
        character.voice_cloned_from == character.voice_sample_sha256 or service.capabilities.cloning
    )
    note = ""
    if not voice.voice_id and service.capabilities.needs_voice:
        note = (
            f"{service.label} has no default voice: give {name} one of its voice ids, or a "
            "voice sample to clone, before their lines can be spoken."
        )
    elif not voice.voice_id and character.voice_sample and not service.capabilities.cloning:
        note = (
            f"{name}'s voice sample is used by services that clone voices (ElevenLabs); "
            f"{service.label} speaks their lines with its default voice."
        )
    return VoicePlan(service, voice, note=note, from_sample=from_sample)


def _studio_default(character, studio: SpeechProvider, why: str) -> VoicePlan:
    name = character.name
    if studio.capabilities.needs_voice:
        then = (
            f"The studio's speech service ({studio.label}) has no default voice, so {name}'s "
            "lines cannot be spoken until they have one of its voices."
        )
    else:
        then = (
            f"Until then, the studio's speech service ({studio.label}) speaks {name}'s lines "
            "with its default voice."
        )
    return VoicePlan(studio, replace(voice_of(character), voice_id=""), note=f"{why} {then}")


def _needs_clone(character, service: SpeechProvider) -> bool:
    """A sample to make the voice from, and no voice yet (or one cloned from an older one)."""
    if not (service.capabilities.clones_voices and character.voice_sample):
        return False
    stale = character.voice_cloned_from not in ("", character.voice_sample_sha256)
    return not character.voice_id.strip() or stale


def _sample_bytes(character) -> bytes:
    with character.voice_sample.open("rb") as handle:
        return handle.read()


def voicing(character) -> tuple[SpeechProvider, Voice]:
    """The speech service and voice a character's lines are spoken with: the one place that
    decides it (see voice_plan). A voice still to be cloned from the character's sample is
    cloned here, once, and kept on the character."""
    plan = voice_plan(character)
    if plan.clone:
        character = voice_clone(character=character, service=plan.service)
        plan = voice_plan(character)
    if plan.from_sample:
        return plan.service, replace(plan.voice, reference_audio=_sample_bytes(character))
    return plan.service, plan.voice


def voicing_note(character) -> str:
    """What the producer should know about how the character's lines are voiced ("" when
    they are spoken in the character's own voice): for the character page and a take's
    dialog note."""
    return voice_plan(character).note


def voicing_notes(characters) -> str:
    """The notes of these characters (a take's speakers), each once, in the order given."""
    notes = []
    for character in characters:
        note = voicing_note(character)
        if note and note not in notes:
            notes.append(note)
    return " ".join(notes)


# Within one process, one clone at a time: the others then find the voice already made.
_clone_lock = threading.Lock()


def voice_clone(*, character, service: SpeechProvider):
    """Make the character's voice from their sample with the service's voice cloning, and keep
    its id on the character (voice service: that one). Once: a voice is only cloned while
    the character still needs one, and a clone stored first by another worker wins (ours is
    removed from the service again). Booked to the drama, not to any take."""
    from characters.models import Character
    from studio.providers import registry

    with _clone_lock:
        fresh = Character.objects.select_related("drama").get(pk=character.pk)
        if _needs_clone(fresh, service):
            with usage_scope(drama_id=fresh.drama_id):
                voice_id = async_to_sync(service.clone_voice)(
                    name=f"{fresh.name} · {fresh.drama.title}",
                    sample=_sample_bytes(fresh),
                    filename=f"{slugify(fresh.name) or 'voice'}.wav",
                )
                kept = Character.objects.filter(
                    pk=fresh.pk,
                    voice_id=fresh.voice_id,
                    voice_sample_sha256=fresh.voice_sample_sha256,
                ).update(
                    voice_id=voice_id,
                    # Only the studio's own remote service is ever asked to clone.
                    voice_provider=registry.speech_api(),
                    voice_cloned_from=fresh.voice_sample_sha256,
                )
                if not kept:  # stored meanwhile by another worker, or changed by the producer
                    with contextlib.suppress(ProviderError):
                        async_to_sync(service.delete_voice)(voice_id)
            fresh.refresh_from_db()
    for field in ("voice_id", "voice_provider", "voice_cloned_from"):
        setattr(character, field, getattr(fresh, field))
    return fresh


def line_key(*, text: str, voice: Voice, emotion: str, provider: str, model: str) -> str:
    profile = {k: v for k, v in asdict(voice).items() if k != "reference_audio"}
    if voice.reference_audio:
        profile["reference_audio"] = hashlib.sha256(voice.reference_audio).hexdigest()
    data = {"text": text, "voice": profile, "emotion": emotion, "provider": provider}
    data["model"] = model
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def spoken_key(*, text: str, voice: Voice, emotion: str, speech: SpeechProvider) -> str:
    """The cache key `line_audio` files a line under (its text with whitespace collapsed)."""
    text = " ".join(text.split())
    return line_key(
        text=text, voice=voice, emotion=emotion, provider=speech.name, model=speech.model
    )


async def line_audio(
    *, text: str, voice: Voice, emotion: str, speech: SpeechProvider
) -> tuple[LineAudio, bool]:
    """The line's stored audio, synthesised only if no identical line was spoken before.
    Returns (row, made now)."""
    text = " ".join(text.split())
    key = spoken_key(text=text, voice=voice, emotion=emotion, speech=speech)
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
    service, voice = voicing(character)
    with usage_scope(drama_id=character.drama_id):
        row, _made = async_to_sync(line_audio)(
            text=PREVIEW_LINE.format(name=character.name), voice=voice, emotion="", speech=service
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
        service, voice = await sync_to_async(voicing)(line.speaker)
        row, new = await line_audio(
            text=line.line, voice=voice, emotion=line.emotion, speech=service
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
                voice=f"{service.label} · {voice.voice_id or 'default voice'}",
                voice_note=await sync_to_async(voicing_note)(line.speaker),
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
