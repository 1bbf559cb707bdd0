"""Dialog voiced ahead of a render: `dialog.speak`, one job per line (registered through
dramas.jobs).

A job speaks its line exactly as the render's speech step would (dramas/speech.py: `voicing`
picks the service and voice, `line_audio` finds the cached audio or makes it, billed to the
drama), so the render later finds every voiced line in the cache and pays nothing for it, and
the chapter check measures real durations instead of guessing from word counts. A line that
fails fails its own job only; the chapter's other lines go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import transaction

from dramas.models import Chapter, DialogLine, LineAudio
from dramas.speech import line_audio, spoken_key, voice_plan, voicing
from studio.jobs.models import ACTIVE, Job, JobStatus
from studio.jobs.registry import PermanentError, register
from studio.jobs.services import job_enqueue
from studio.providers.ledger import usage_scope

if TYPE_CHECKING:
    from collections.abc import Iterable

SPEAK = "dialog.speak"
SPEAK_PRIORITY = 1  # a producer is waiting to hear it, or to check the chapter with it
SPEAK_ATTEMPTS = 4
RECENT_JOBS = 2000  # a chapter's voicing jobs read for the editor, newest first


def line_keys(*, lines: Iterable[DialogLine]) -> dict[int, str]:
    """The cache key of each line's audio, as the render's speech step looks it up ("" while
    the speaker's voice is still to be cloned: nothing can have been spoken in it yet). Empty
    lines are never spoken. A lookup: pages and the check call it, so it never clones."""
    voices: dict[int | None, tuple | None] = {}
    keys: dict[int, str] = {}
    for line in lines:
        if not line.line.strip():
            continue
        if line.speaker_id not in voices:
            # `voicing` would clone a voice not made yet (a paid call): only the job may.
            cloning = line.speaker is not None and voice_plan(line.speaker).clone
            voices[line.speaker_id] = None if cloning else voicing(line.speaker)
        if voices[line.speaker_id] is None:
            keys[line.id] = ""
            continue
        service, voice = voices[line.speaker_id]
        keys[line.id] = spoken_key(
            text=line.line, voice=voice, emotion=line.emotion, speech=service
        )
    return keys


def voiced_audio(*, lines: Iterable[DialogLine]) -> dict[int, LineAudio]:
    """The cached audio of each line voiced already, by line id (one query)."""
    keys = line_keys(lines=lines)
    found = _audio_by_key(keys)
    return {line_id: found[key] for line_id, key in keys.items() if key in found}


def _audio_by_key(keys: dict[int, str]) -> dict[str, LineAudio]:
    wanted = set(keys.values()) - {""}
    return {row.key: row for row in LineAudio.objects.filter(key__in=wanted)}


@dataclass(frozen=True)
class LineVoice:
    """What the editor shows beside a line: its audio once voiced, its latest voicing job."""

    key: str
    audio: LineAudio | None
    job: Job | None

    @property
    def voiced(self) -> bool:
        return self.audio is not None

    @property
    def voicing(self) -> bool:
        return self.audio is None and self.job is not None and self.job.status in ACTIVE

    @property
    def failed(self) -> bool:
        """The last try failed or was cancelled and the line has no audio yet."""
        finished_badly = (JobStatus.FAILED, JobStatus.CANCELLED)
        return self.audio is None and self.job is not None and self.job.status in finished_badly


def line_voices(*, chapter: Chapter, lines: Iterable[DialogLine]) -> dict[int, LineVoice]:
    """Each spoken line's voice state, by line id (two queries for the whole chapter)."""
    keys = line_keys(lines=lines)
    found = _audio_by_key(keys)
    latest: dict[int, Job] = {}
    recent = Job.objects.filter(
        kind=SPEAK, drama_id=chapter.drama_id, payload__chapter_id=chapter.id
    ).order_by("-id")
    for job in recent[:RECENT_JOBS]:
        latest.setdefault(job.payload.get("line_id"), job)
    return {
        line_id: LineVoice(key=key, audio=found.get(key), job=latest.get(line_id))
        for line_id, key in keys.items()
    }


# --- Queueing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeakQueued:
    queued: list[Job]  # new jobs
    waiting: int  # lines whose job was queued or running already
    voiced: int  # lines voiced already: nothing to do


@transaction.atomic
def line_speak_enqueue(*, line: DialogLine) -> Job:
    """Queue voicing one line; while a job for it is queued or running, that job (one line,
    one job at a time, however often the button is pressed)."""
    if not line.line.strip():
        raise ValidationError("An empty line has nothing to voice.")
    chapter = line.scene.chapter
    Chapter.objects.select_for_update().filter(id=chapter.id).first()  # one request at a time
    active = _active_jobs(line_ids=[line.id])
    return active.get(line.id) or _enqueue(line=line, chapter=chapter)


@transaction.atomic
def chapter_speak_enqueue(*, chapter: Chapter) -> SpeakQueued:
    """Queue a job for every line of the chapter not voiced yet and not already on its way."""
    Chapter.objects.select_for_update().filter(id=chapter.id).first()
    lines = [
        line
        for scene in chapter.scenes.prefetch_related("lines__speaker").select_related("chapter")
        for line in scene.lines.all()
        if line.line.strip()
    ]
    voiced = voiced_audio(lines=lines)
    active = _active_jobs(line_ids=[line.id for line in lines])
    queued = [
        _enqueue(line=line, chapter=chapter)
        for line in lines
        if line.id not in voiced and line.id not in active
    ]
    return SpeakQueued(queued=queued, waiting=len(active), voiced=len(voiced))


def _active_jobs(*, line_ids: list[int]) -> dict[int, Job]:
    jobs = Job.objects.filter(kind=SPEAK, status__in=ACTIVE, payload__line_id__in=line_ids)
    return {job.payload["line_id"]: job for job in jobs.order_by("id")}


def _enqueue(*, line: DialogLine, chapter: Chapter) -> Job:
    scene = line.scene
    words = " ".join(line.line.split())
    excerpt = words if len(words) <= 50 else words[:49] + "…"
    return job_enqueue(
        kind=SPEAK,
        drama_id=chapter.drama_id,
        label=f"Voice scene {scene.order}, {line.display_speaker}: “{excerpt}”",
        priority=SPEAK_PRIORITY,
        # `scene_id` puts the job's bar on the scene's tile of the board (dramas/live.py).
        payload={"line_id": line.id, "scene_id": scene.id, "chapter_id": chapter.id},
    )


# --- The job ------------------------------------------------------------------------------------


def _line_to_speak(line_id: int) -> DialogLine:
    line = DialogLine.objects.select_related("speaker").filter(id=line_id).first()
    if line is None:
        raise PermanentError("The line was deleted before it could be voiced.")
    if not line.line.strip():
        raise PermanentError("The line is empty now: there is nothing to voice.")
    return line


@register(SPEAK, max_attempts=SPEAK_ATTEMPTS)
async def dialog_speak(ctx) -> dict:
    """Speak one line, or find it spoken already. A vendor error propagates as it is: the
    engine retries the retryable ones (outages, rate limits, unreadable answers) and fails the
    job at once on the others (a refused voice or text), with the vendor's reason."""
    line = await sync_to_async(_line_to_speak)(ctx.payload["line_id"])
    service, voice = await sync_to_async(voicing)(line.speaker)
    await ctx.progress(0.1, note=f"Speaking with {service.label}")
    with usage_scope(drama_id=ctx.drama_id):
        row, made = await line_audio(
            text=line.line, voice=voice, emotion=line.emotion, speech=service
        )
    how = "voiced now" if made else "already voiced, nothing synthesised"
    summary = f"{row.duration_s:.1f} s, {how} ({service.label})"
    await ctx.progress(1.0, note=summary)
    return {
        "summary": summary,
        "line_id": line.id,
        "key": row.key,
        "duration_s": row.duration_s,
        "synthesised": made,
    }
